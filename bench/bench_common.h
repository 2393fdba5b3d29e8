/*
 * bench_common.h — what every benchmark measures with: the monotonic clock,
 * a lock-free latency histogram (16 sub-buckets per power of two, relaxed
 * atomic counts), a striped counter, the thread count of the process,
 * medians, and running one measurement in a forked child.
 */
#ifndef EB_BENCH_COMMON_H
#define EB_BENCH_COMMON_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/** The median of v[0..n), 1 <= n <= 64. */
static inline double bench_median(const double *v, int n)
{
    double s[64];
    memcpy(s, v, (size_t)n * sizeof *v);
    qsort(s, (size_t)n, sizeof *s, bench_cmp_double);
    return s[n / 2];
}

/**
 * Runs fn(job, out) in a forked child and copies its `out_size` bytes of
 * result back into `out`: the child's threads and peak RSS are the run's
 * own, and nothing (a client library's state, the plugin) carries over to
 * the next run. The parent must not have started threads (fork).
 * @returns the child's peak RSS in MiB, or -1 when it failed.
 */
static inline double bench_in_child(void (*fn)(const void *job, void *out), const void *job,
                                    void *out, size_t out_size)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fds[0]);
        fn(job, out);
        ssize_t w = write(fds[1], out, out_size);
        _exit(w == (ssize_t)out_size ? 0 : 1);
    }
    close(fds[1]);
    ssize_t got = read(fds[0], out, out_size);
    close(fds[0]);
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0 || got != (ssize_t)out_size)
        return -1;
    return (double)ru.ru_maxrss / 1024;
}

#endif
