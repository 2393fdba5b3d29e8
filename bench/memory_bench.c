/*
 * memory_bench.c — publish → handler throughput and latency through the
 * memory transport, against its baseline in the same run: a bare
 * two-thread mutex+condvar queue handing over one pointer per lock and
 * signal. Rounds alternate baseline and eventbus; medians are reported.
 *
 * Usage: memory_bench [--smoke] [--messages N] [--rounds R] [--workers W]
 * (--workers 0: the default elastic pool; its peak size is printed, and
 * no-op handlers must not grow it).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <dirent.h>

#include "bench_common.h"
#include "bus_stat.h"
#include "eventbus/eventbus.h"

enum { PAYLOAD = 100, KEYS = 1000 };

/* ------------------------------------------------------------ baseline */

/* A bounded ring (like the dispatcher's pool), so the producer hands over
 * instead of racing ahead into an unbounded array. */
enum { BARE_CAP = 1024 };

typedef struct bare_queue {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    void *items[BARE_CAP];
    size_t head, tail;
    long n;
} bare_queue;

static void *bare_consumer(void *arg)
{
    bare_queue *q = arg;
    for (long got = 0; got < q->n; got++) {
        pthread_mutex_lock(&q->mu);
        while (q->head == q->tail)
            pthread_cond_wait(&q->not_empty, &q->mu);
        void *item = q->items[q->head++ % BARE_CAP];
        pthread_cond_signal(&q->not_full);
        pthread_mutex_unlock(&q->mu);
        (void)item;
    }
    return NULL;
}

/** One pointer per lock and signal; @returns items per second. */
static double run_baseline(long n)
{
    bare_queue *q = calloc(1, sizeof *q);
    q->n = n;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    pthread_t consumer;
    int64_t start = now_ns();
    pthread_create(&consumer, NULL, bare_consumer, q);
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&q->mu);
        while (q->tail - q->head == BARE_CAP)
            pthread_cond_wait(&q->not_full, &q->mu);
        q->items[q->tail++ % BARE_CAP] = q;
        pthread_cond_signal(&q->not_empty);
        pthread_mutex_unlock(&q->mu);
    }
    pthread_join(consumer, NULL);
    double secs = (double)(now_ns() - start) / 1e9;
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    pthread_mutex_destroy(&q->mu);
    free(q);
    return (double)n / secs;
}

/* ------------------------------------------------------------ eventbus */

/* The handler should cost what the baseline's consumer costs: nothing.
 * So it counts on a stripe of its own (one shared counter would bounce
 * between cores per message) and only every SAMPLE-th message carries a
 * send time to measure. */
enum { SAMPLE = 16 };

typedef struct run_state {
    striped_counter handled;
    histogram hist;
} run_state;

static eb_result noop_handler(const eb_msg *msg, void *opaque)
{
    run_state *rs = opaque;
    size_t len;
    int64_t sent;
    memcpy(&sent, eb_msg_payload(msg, &len), sizeof sent);
    if (sent)
        hist_add(&rs->hist, (uint64_t)(now_ns() - sent));
    counter_add_one(&rs->handled);
    return EB_ACK;
}

typedef struct eb_result_row {
    double msgs_per_s, p50_us, p99_us, close_ms;
    int threads, workers_peak;
} eb_result_row;


static void die(const char *what, int rc, const char *err)
{
    fprintf(stderr, "memory_bench: %s: %s %s\n", what, eb_strerror(rc), err ? err : "");
    exit(1);
}

static eb_bus *open_bus(int workers, char *name)
{
    eb_config *cfg = eb_config_new();
    char w[16], err[512];
    snprintf(w, sizeof w, "%d", workers);
    int rc = eb_config_set(cfg, "dispatch.workers", w, err, sizeof err);
    if (rc == 0)
        rc = eb_config_set(cfg, "memory.name", name, err, sizeof err);
    eb_bus *bus = NULL;
    if (rc == 0)
        rc = eb_bus_open(cfg, &bus, err, sizeof err);
    eb_config_destroy(cfg);
    if (rc != 0)
        die("open", rc, err);
    return bus;
}

/** Publishes n messages; paced to `rate` msgs/s when rate > 0, in bursts
 *  every 100 us with a sleep between (a spinning pacer would take a core
 *  from the threads being measured). */
static void publish_all(eb_bus *bus, long n, bool keyed, double rate)
{
    unsigned char payload[PAYLOAD] = {0};
    static char keys[KEYS][8];
    static int key_len[KEYS];
    for (int k = 0; k < KEYS; k++)
        key_len[k] = snprintf(keys[k], sizeof keys[k], "k%d", k);
    int64_t start = now_ns();
    for (long i = 0; i < n; i++) {
        if (rate > 0) {
            int64_t due = start + (int64_t)((double)i * 1e9 / rate);
            int64_t ahead = due - now_ns();
            if (ahead > 100000) {
                struct timespec ts = {0, ahead};
                nanosleep(&ts, NULL);
            }
        }
        const char *key = keys[i % KEYS];
        int klen = key_len[i % KEYS];
        int64_t t = i % SAMPLE == 0 ? now_ns() : 0;
        memcpy(payload, &t, sizeof t);
        eb_outgoing m = {.topic = "bench", .key = keyed ? key : NULL,
                         .key_len = keyed ? (size_t)klen : 0,
                         .payload = payload, .payload_len = PAYLOAD};
        int rc;
        while ((rc = eb_publish(bus, &m, NULL, NULL)) == EB_ERR_FULL)
            ;
        if (rc != 0)
            die("publish", rc, NULL);
    }
}

static void wait_handled(run_state *rs, long n)
{
    int64_t deadline = now_ns() + 120 * 1000000000LL;
    while (counter_total(&rs->handled) < n) {
        if (now_ns() > deadline) {
            fprintf(stderr, "memory_bench: only %ld of %ld handled in 120 s\n",
                    counter_total(&rs->handled), n);
            exit(1);
        }
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL); /* polling a counter with a deadline */
    }
}

static eb_result_row run_eventbus(long n, bool keyed, int workers, double rate)
{
    static int seq;
    char name[32];
    snprintf(name, sizeof name, "bench-%d", seq++);
    run_state *rs = calloc(1, sizeof *rs);
    eb_bus *bus = open_bus(workers, name);
    eb_sub *sub;
    char err[256];
    int rc = eb_subscribe(bus, "bench", "g", noop_handler, rs, NULL, &sub, err, sizeof err);
    if (rc != 0 || (rc = eb_sub_wait_ready(sub, 10000)) != 0)
        die("subscribe", rc, err);
    eb_result_row row = {.threads = proc_thread_count()};
    int64_t start = now_ns();
    publish_all(bus, n, keyed, rate);
    wait_handled(rs, n);
    row.msgs_per_s = (double)n / ((double)(now_ns() - start) / 1e9);
    row.p50_us = hist_quantile_us(&rs->hist, 0.50);
    row.p99_us = hist_quantile_us(&rs->hist, 0.99);
    row.workers_peak = (int)bus_stat(bus, "workers_peak");
    int64_t close_start = now_ns();
    if ((rc = eb_bus_close(bus, 10000)) != 0)
        die("close", rc, NULL);
    row.close_ms = (double)(now_ns() - close_start) / 1e6;
    eb_bus_destroy(bus);
    free(rs);
    return row;
}

/* -------------------------------------------------------------- report */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

typedef struct series {
    double rate[16], p50[16], p99[16], close_ms[16];
    int threads, workers_peak;
} series;

static void add_row(series *s, int i, eb_result_row r)
{
    s->rate[i] = r.msgs_per_s;
    s->p50[i] = r.p50_us;
    s->p99[i] = r.p99_us;
    s->close_ms[i] = r.close_ms;
    s->threads = r.threads;
    if (r.workers_peak > s->workers_peak)
        s->workers_peak = r.workers_peak;
}

static void print_series(const char *name, series *s, int rounds, double base)
{
    double rate = median(s->rate, rounds);
    printf("%-22s %12.0f msgs/s %8.1f MB/s  p50 %8.1f us  p99 %9.1f us  "
           "close %6.1f ms  threads %d  workers peak %d  ratio %.2fx\n",
           name, rate, rate * PAYLOAD / 1e6, median(s->p50, rounds),
           median(s->p99, rounds), median(s->close_ms, rounds), s->threads, s->workers_peak,
           rate / base);
}

int main(int argc, char **argv)
{
    long n = 1000000;
    int rounds = 5, workers = 4;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0)
            n = 20000, rounds = 1;
        else if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc)
            n = atol(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
            workers = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--smoke] [--messages N] [--rounds R] [--workers W]\n",
                    argv[0]);
            return 2;
        }
    }
    if (rounds < 1 || rounds > 16 || n < 1000) {
        fprintf(stderr, "memory_bench: rounds must be 1..16 and messages >= 1000\n");
        return 2;
    }
    printf("memory_bench: %ld messages of %d bytes, %d workers, %d round(s), medians\n",
           n, PAYLOAD, workers, rounds);
    double base[16];
    series keyed = {0}, unkeyed = {0}, half = {0};
    for (int r = 0; r < rounds; r++) {
        base[r] = run_baseline(n);
        add_row(&keyed, r, run_eventbus(n, true, workers, 0));
        base[r] = (base[r] + run_baseline(n)) / 2;
        add_row(&unkeyed, r, run_eventbus(n, false, workers, 0));
    }
    double base_rate = median(base, rounds);
    /* Latency at a fixed 50% of the keyed peak, where p99 means something. */
    double half_rate = median(keyed.rate, rounds) / 2;
    for (int r = 0; r < rounds; r++)
        add_row(&half, r, run_eventbus(n / 2, true, workers, half_rate));
    printf("%-22s %12.0f items/s (one pointer per lock and signal)\n",
           "baseline queue", base_rate);
    print_series("eventbus keyed", &keyed, rounds, base_rate);
    print_series("eventbus unkeyed", &unkeyed, rounds, base_rate);
    print_series("eventbus keyed @50%", &half, rounds, base_rate);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak RSS %.1f MiB; threads before open %d\n", (double)ru.ru_maxrss / 1024,
           proc_thread_count());
    return 0;
}
