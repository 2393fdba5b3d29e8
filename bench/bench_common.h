/*
 * bench_common.h — what every benchmark measures with: the monotonic clock,
 * a lock-free latency histogram (16 sub-buckets per power of two, relaxed
 * atomic counts), a striped counter, and the thread count of the process.
 */
#ifndef EB_BENCH_COMMON_H
#define EB_BENCH_COMMON_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "proc_threads.h"

enum { HIST_BUCKETS = 64 * 16 };

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct histogram {
    atomic_uint_fast64_t bucket[HIST_BUCKETS];
} histogram;

static inline unsigned bucket_of(uint64_t ns)
{
    if (ns < 16)
        return (unsigned)ns;
    unsigned msb = 63 - (unsigned)__builtin_clzll(ns);
    unsigned sub = (unsigned)(ns >> (msb - 4)) & 15;
    return (msb - 3) * 16 + sub;
}

static inline uint64_t bucket_floor(unsigned b)
{
    if (b < 16)
        return b;
    unsigned msb = b / 16 + 3, sub = b % 16;
    return ((uint64_t)(16 + sub)) << (msb - 4);
}

static inline void hist_add(histogram *h, uint64_t ns)
{
    atomic_fetch_add_explicit(&h->bucket[bucket_of(ns)], 1, memory_order_relaxed);
}

/** The q-quantile in microseconds (0 when empty). */
static inline double hist_quantile_us(histogram *h, double q)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        total += h->bucket[i];
    uint64_t want = (uint64_t)(q * (double)total), seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen > want)
            return (double)bucket_floor(i) / 1000.0;
    }
    return 0;
}

/* A counter each thread bumps on a stripe of its own: handlers should cost
 * what the baseline's consumer costs, and one shared counter would bounce
 * between cores once per message. Threads beyond STRIPES share stripes
 * (an elastic pool runs hundreds of workers), so the bump is an atomic
 * add: a load and a store lost counts there, and the run never ended. */
enum { STRIPES = 16 };

typedef struct striped_counter {
    struct {
        atomic_long n;
        char pad[64 - sizeof(atomic_long)];
    } stripe[STRIPES];
} striped_counter;

static inline void counter_add_one(striped_counter *c)
{
    static atomic_int next_stripe;
    static __thread int my_stripe = -1;
    if (my_stripe < 0)
        my_stripe = atomic_fetch_add(&next_stripe, 1) % STRIPES;
    atomic_fetch_add_explicit(&c->stripe[my_stripe].n, 1, memory_order_release);
}

static inline long counter_total(striped_counter *c)
{
    long n = 0;
    for (int i = 0; i < STRIPES; i++)
        n += atomic_load_explicit(&c->stripe[i].n, memory_order_acquire);
    return n;
}


#endif
