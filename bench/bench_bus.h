/*
 * bench_bus.h — the eventbus side that every server benchmark measures the
 * same way, so that the ratios of kafka_bench and redis_bench compare like
 * with like: 100-byte messages over 1,000 keys whose payload carries its
 * publish time when sampled, pacing, the no-op handler (which may wait as
 * if doing I/O: --work-us), delivery counting, and subscribe, wait, flush
 * and close under the run's deadline. Failures end the process with a
 * sentence. Define BENCH_NAME (the program's name) before including it.
 */
#ifndef EB_BENCH_BUS_H
#define EB_BENCH_BUS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "bench_common.h"
#include "eventbus/eventbus.h"

#ifndef BENCH_NAME
#error "define BENCH_NAME before including bench_bus.h"
#endif

enum { PAYLOAD = 100, KEYS = 1000 };

static int64_t deadline_s = 300; /* for any one wait of a run */
static long work_us;             /* --work-us: each eventbus handler waits */

static inline void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

__attribute__((format(printf, 1, 2), noreturn)) static inline void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, BENCH_NAME ": ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* ------------------------------------------------------------- messages */

static char keys[KEYS][8];
static int key_len[KEYS];

static inline void make_keys(void)
{
    for (int k = 0; k < KEYS; k++)
        key_len[k] = snprintf(keys[k], sizeof keys[k], "k%d", k);
}

/** The payload of message i: its publish time in the first 8 bytes when
 *  it is sampled (every `every`-th message; 0: the run measures no
 *  latency), else 0. */
static inline void stamp(unsigned char *payload, long i, int every)
{
    int64_t t = every > 0 && i % every == 0 ? now_ns() : 0;
    memcpy(payload, &t, sizeof t);
}

/** Paces message i to `rate` msgs/s (rate > 0) in bursts every 100 us
 *  with a sleep between: a spinning pacer would take a core from the
 *  threads being measured. */
static inline void pace(int64_t start, long i, double rate)
{
    if (rate <= 0)
        return;
    int64_t ahead = start + (int64_t)((double)i * 1e9 / rate) - now_ns();
    if (ahead > 100000)
        sleep_us((long)(ahead / 1000));
}

static inline void record_latency(histogram *h, const void *payload, size_t len)
{
    int64_t sent;
    if (len < sizeof sent)
        return;
    memcpy(&sent, payload, sizeof sent);
    if (sent)
        hist_add(h, (uint64_t)(now_ns() - sent));
}

/* The handler should cost what the raw consumer's loop body costs: nothing.
 * So it counts on a stripe of its own (one shared counter would bounce
 * between cores per message). */

typedef struct run_state {
    striped_counter handled;
    atomic_llong first_ns; /* first handler call */
    bool timed;
    histogram hist;
} run_state;

static inline eb_result noop_handler(const eb_msg *msg, void *opaque)
{
    run_state *rs = opaque;
    if (atomic_load_explicit(&rs->first_ns, memory_order_relaxed) == 0) {
        long long zero = 0;
        atomic_compare_exchange_strong(&rs->first_ns, &zero, now_ns());
    }
    if (rs->timed) {
        size_t len;
        const void *payload = eb_msg_payload(msg, &len);
        record_latency(&rs->hist, payload, len);
    }
    if (work_us > 0)
        sleep_us(work_us); /* the handler's simulated I/O */
    counter_add_one(&rs->handled);
    return EB_ACK;
}

/* Delivery callbacks run on the producer's one poll thread. */
typedef struct delivered {
    atomic_long ok, failed;
    atomic_int first_error;
} delivered;

static inline void on_delivered(int status, const char *id, void *opaque)
{
    delivered *d = opaque;
    if (status == 0) {
        atomic_fetch_add_explicit(&d->ok, 1, memory_order_relaxed);
    } else if (atomic_fetch_add(&d->failed, 1) == 0) {
        atomic_store(&d->first_error, status);
    }
}

static inline void eb_publish_all(eb_bus *bus, const char *topic, long n, int every, double rate,
                           delivered *d)
{
    unsigned char payload[PAYLOAD] = {0};
    int64_t start = now_ns();
    for (long i = 0; i < n; i++) {
        pace(start, i, rate);
        stamp(payload, i, every);
        eb_outgoing m = {.topic = topic, .key = keys[i % KEYS],
                         .key_len = (size_t)key_len[i % KEYS], .payload = payload,
                         .payload_len = PAYLOAD};
        int rc;
        while ((rc = eb_publish(bus, &m, on_delivered, d)) == EB_ERR_FULL)
            ;
        if (rc != 0)
            die("publish: %s", eb_strerror(rc));
    }
}

static inline void eb_flush_checked(eb_bus *bus, delivered *d, long n)
{
    int rc = eb_flush(bus, (int)deadline_s * 1000);
    if (rc != 0)
        die("flush: %s", eb_strerror(rc));
    if (atomic_load(&d->ok) != n)
        die("publish: %ld of %ld delivered, %ld failed (%s)", atomic_load(&d->ok), n,
            atomic_load(&d->failed), eb_strerror(atomic_load(&d->first_error)));
}

static inline eb_sub *subscribe(eb_bus *bus, const char *topic, const char *group, run_state *rs)
{
    eb_sub *sub;
    char err[512] = "";
    int rc = eb_subscribe(bus, topic, group, noop_handler, rs, NULL, &sub, err, sizeof err);
    if (rc != 0)
        die("subscribe: %s: %s", eb_strerror(rc), err);
    if ((rc = eb_sub_wait_ready(sub, 30000)) != 0)
        die("subscribe: not ready: %s", eb_strerror(rc));
    return sub;
}

static inline void wait_handled(run_state *rs, long n)
{
    int64_t give_up = now_ns() + deadline_s * 1000000000LL;
    while (counter_total(&rs->handled) < n) {
        if (now_ns() > give_up)
            die("only %ld of %ld handled in %lld s", counter_total(&rs->handled), n,
                (long long)deadline_s);
        sleep_us(1000); /* polling a counter with a deadline; 1 ms in runs of seconds */
    }
}

static inline double close_bus(eb_bus *bus)
{
    int64_t start = now_ns();
    int rc = eb_bus_close(bus, 10000);
    if (rc != 0)
        die("close: %s", eb_strerror(rc));
    double ms = (double)(now_ns() - start) / 1e6;
    eb_bus_destroy(bus);
    return ms;
}

#endif
