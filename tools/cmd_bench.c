/*
 * cmd_bench.c — `eventbus bench`: publishes N messages through the
 * configured transport and handles them in one process (one bus: a
 * subscription to a fresh topic, then the publishes), reporting publish
 * and end-to-end rates, handler-start latency, threads and peak RSS.
 * --work-us makes each handler wait as if doing I/O. Public API only.
 *
 * Each payload starts with the publish time (CLOCK_MONOTONIC, ns) and the
 * message's number, so latency is measured per message without a table
 * shared with the publisher; smaller payloads than 16 bytes are padded.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const char USAGE[] =
    "usage: eventbus bench [--messages N] [--size BYTES] [--keys K] [--workers W]\n"
    "                      [--work-us U] [--json] [-c FILE] [-X key=value]...\n"
    "\n"
    "Publishes N messages (default 1000000) of BYTES bytes (100, at least 16)\n"
    "to a new topic through the configured transport (memory when none is\n"
    "set) and handles them in the same process, with K keys (1000; 0:\n"
    "unkeyed) and W handler threads (dispatch.workers; 0: the elastic pool).\n"
    "Each handler waits U microseconds (0), as if doing I/O.\n"
    "Reports publish and end-to-end msgs/s and MB/s, the latency from\n"
    "publish to handler start (p50, p99, p99.9, max), the peak thread count\n"
    "and the peak RSS; --json prints them as one JSON object. A progress\n"
    "line goes to stderr while it runs, when stderr is a terminal.\n"
    "\n"
    "Exit: 0 done, 1 the bus failed (open, publish, handling), 2 bad usage.\n";

typedef struct bench {
    long n, size, keys, workers, work_us;
    bool json;
    uint32_t *latency_us;          /* per message number */
    atomic_long handled, failed_publishes, confirmed;
    int64_t last_handled_ns;       /* under mu */
    pthread_mutex_t mu;
    pthread_cond_t done_cv;
} bench;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static eb_result handle(const eb_msg *msg, void *opaque)
{
    bench *b = opaque;
    int64_t start = now_ns();
    size_t len;
    const unsigned char *p = eb_msg_payload(msg, &len);
    if (len >= 16) {
        int64_t sent;
        uint64_t seq;
        memcpy(&sent, p, 8);
        memcpy(&seq, p + 8, 8);
        if (seq < (uint64_t)b->n)
            b->latency_us[seq] = (uint32_t)((start - sent) / 1000 > UINT32_MAX
                                                ? UINT32_MAX
                                                : (start - sent) / 1000);
    }
    if (b->work_us > 0) {
        struct timespec wait = {b->work_us / 1000000, (b->work_us % 1000000) * 1000};
        nanosleep(&wait, NULL);
    }
    if (atomic_fetch_add(&b->handled, 1) + 1 == b->n) {
        pthread_mutex_lock(&b->mu);
        b->last_handled_ns = now_ns();
        pthread_cond_broadcast(&b->done_cv);
        pthread_mutex_unlock(&b->mu);
    }
    return EB_ACK;
}

static void delivered(int status, const char *id, void *opaque)
{
    (void)id;
    bench *b = opaque;
    if (status == 0)
        atomic_fetch_add(&b->confirmed, 1);
    else
        atomic_fetch_add(&b->failed_publishes, 1);
}

static long threads_now(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long n = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %ld", &n) == 1)
            break;
    if (f)
        fclose(f);
    return n;
}

static int by_value(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint32_t *sorted, long n, double q)
{
    long i = (long)(q * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1] / 1000.0; /* ms */
}

/** Parses a non-negative number option. @returns false (printed) when bad. */
static bool number(const char *opt, const char *text, long min, long *out)
{
    char *end;
    errno = 0;
    long v = text ? strtol(text, &end, 10) : 0;
    if (!text || errno || *end || end == text || v < min) {
        cli_fail(CLI_USAGE, "bench: %s needs a whole number >= %ld, not '%s'", opt, min,
                 text ? text : "");
        return false;
    }
    *out = v;
    return true;
}

static int parse(cli *c, bench *b, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        int rc = CLI_OK;
        if (cli_common_option(c, argc, argv, &i, &rc)) {
            if (rc != CLI_OK)
                return rc;
            continue;
        }
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long *target = strcmp(a, "--messages") == 0  ? &b->n
                       : strcmp(a, "--size") == 0    ? &b->size
                       : strcmp(a, "--keys") == 0    ? &b->keys
                       : strcmp(a, "--workers") == 0 ? &b->workers
                       : strcmp(a, "--work-us") == 0 ? &b->work_us
                                                     : NULL;
        if (target) {
            long min = target == &b->n ? 1 : target == &b->size ? 16 : 0;
            if (!number(a, v, min, target))
                return CLI_USAGE;
            i++;
        } else if (strcmp(a, "--json") == 0) {
            b->json = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(USAGE, stdout);
            return -1;
        } else if (a[0] == '-') {
            return cli_fail(CLI_USAGE, "bench: unknown option '%s' (see eventbus bench --help)",
                            a);
        } else {
            return cli_fail(CLI_USAGE, "bench: unexpected argument '%s'", a);
        }
    }
    return CLI_OK;
}

typedef struct report {
    double publish_s, e2e_s;
    double p50, p99, p999, max;
    long threads;
    long rss_kib;
} report;

static void print_report(const bench *b, const char *transport, const report *r)
{
    double mb = (double)b->n * (double)b->size / 1e6;
    if (b->json) {
        printf("{\"transport\":\"%s\",\"messages\":%ld,\"size\":%ld,\"keys\":%ld,"
               "\"workers\":%ld,\"work_us\":%ld,\"publish_msgs_per_s\":%.0f,"
               "\"publish_mb_per_s\":%.1f,\"e2e_msgs_per_s\":%.0f,\"e2e_mb_per_s\":%.1f,"
               "\"latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"p99_9\":%.3f,\"max\":%.3f},"
               "\"threads_peak\":%ld,\"rss_peak_kib\":%ld}\n",
               transport, b->n, b->size, b->keys, b->workers, b->work_us,
               (double)b->n / r->publish_s, mb / r->publish_s, (double)b->n / r->e2e_s,
               mb / r->e2e_s, r->p50, r->p99, r->p999, r->max, r->threads, r->rss_kib);
        return;
    }
    char workers[32];
    snprintf(workers, sizeof workers, b->workers ? "%ld workers" : "the elastic pool",
             b->workers);
    printf("eventbus bench: %s, %ld messages of %ld bytes, %ld keys, %s, work %ld us\n",
           transport, b->n, b->size, b->keys, workers, b->work_us);
    printf("  publish     %10.0f msgs/s  %8.1f MB/s\n", (double)b->n / r->publish_s,
           mb / r->publish_s);
    printf("  end to end  %10.0f msgs/s  %8.1f MB/s\n", (double)b->n / r->e2e_s,
           mb / r->e2e_s);
    printf("  latency     p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms "
           "(publish to handler start)\n",
           r->p50, r->p99, r->p999, r->max);
    printf("  threads     %ld at the peak; peak RSS %.1f MiB\n", r->threads,
           (double)r->rss_kib / 1024.0);
}

/** Waits for every message handled (or a stall of 60 s without progress),
 *  printing progress on a terminal. @returns whether all were handled. */
static bool wait_handled(bench *b, long *threads_peak)
{
    bool tty = isatty(2);
    long seen = -1;
    int64_t since = now_ns();
    pthread_mutex_lock(&b->mu);
    while (atomic_load(&b->handled) < b->n) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 200000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&b->done_cv, &b->mu, &ts);
        long t = threads_now();
        if (t > *threads_peak)
            *threads_peak = t;
        long h = atomic_load(&b->handled);
        if (tty)
            fprintf(stderr, "\r  handled %ld of %ld", h, b->n);
        if (h != seen) {
            seen = h;
            since = now_ns();
        } else if (now_ns() - since > 60LL * 1000000000) {
            break;
        }
    }
    pthread_mutex_unlock(&b->mu);
    if (tty)
        fprintf(stderr, "\r%40s\r", "");
    return atomic_load(&b->handled) >= b->n;
}

static int run(cli *c, bench *b)
{
    char err[1024] = "", value[32];
    if (b->workers > 0) {
        snprintf(value, sizeof value, "%ld", b->workers);
        if (eb_config_set(c->cfg, "dispatch.workers", value, err, sizeof err) != 0)
            return cli_fail(CLI_USAGE, "bench: %s", err);
    }
    eb_bus *bus = NULL;
    int rc = eb_bus_open(c->cfg, &bus, err, sizeof err);
    if (rc != 0)
        return cli_fail(rc == EB_ERR_CONFIG || rc == EB_ERR_PLUGIN ? CLI_USAGE : CLI_FAILED,
                        "bench: %s", err);
    char topic[96];
    snprintf(topic, sizeof topic, "eventbus-bench-%ld-%lld", (long)getpid(),
             (long long)time(NULL));
    eb_sub *sub = NULL;
    rc = eb_subscribe(bus, topic, "eventbus-bench", handle, b, NULL, &sub, err, sizeof err);
    if (rc == 0)
        rc = eb_sub_wait_ready(sub, 60000);
    if (rc != 0) {
        eb_bus_destroy(bus);
        return cli_fail(CLI_FAILED, "bench: subscribe to %s: %s %s", topic, eb_err_name(rc), err);
    }
    unsigned char *payload = calloc(1, (size_t)b->size);
    if (!payload) {
        eb_bus_destroy(bus);
        return cli_fail(CLI_FAILED, "bench: out of memory");
    }
    long threads_peak = threads_now();
    int64_t t0 = now_ns();
    for (long i = 0; i < b->n && rc == 0; i++) {
        char key[24];
        int klen = b->keys > 0 ? snprintf(key, sizeof key, "k%ld", i % b->keys) : 0;
        int64_t sent = now_ns();
        uint64_t seq = (uint64_t)i;
        memcpy(payload, &sent, 8);
        memcpy(payload + 8, &seq, 8);
        eb_outgoing m = {.topic = topic, .key = b->keys > 0 ? key : NULL,
                         .key_len = (size_t)klen, .payload = payload,
                         .payload_len = (size_t)b->size};
        rc = eb_publish(bus, &m, delivered, b);
    }
    if (rc == 0)
        rc = eb_flush(bus, 60000);
    int64_t t_published = now_ns();
    free(payload);
    if (rc != 0 || atomic_load(&b->failed_publishes) > 0) {
        eb_bus_destroy(bus);
        return cli_fail(CLI_FAILED, "bench: publishing failed: %s (%ld of %ld not stored)",
                        eb_err_name(rc), atomic_load(&b->failed_publishes), b->n);
    }
    bool all = wait_handled(b, &threads_peak);
    report r = {.publish_s = (double)(t_published - t0) / 1e9,
                .e2e_s = (double)(b->last_handled_ns - t0) / 1e9,
                .threads = threads_peak};
    char transport[64];
    snprintf(transport, sizeof transport, "%s", eb_bus_transport(bus));
    eb_unsubscribe(sub);
    eb_sub_destroy(sub);
    eb_bus_close(bus, 10000);
    eb_bus_destroy(bus);
    if (!all)
        return cli_fail(CLI_FAILED, "bench: only %ld of %ld messages were handled (no "
                        "progress for 60 s)", atomic_load(&b->handled), b->n);
    qsort(b->latency_us, (size_t)b->n, sizeof *b->latency_us, by_value);
    r.p50 = pct(b->latency_us, b->n, 0.50);
    r.p99 = pct(b->latency_us, b->n, 0.99);
    r.p999 = pct(b->latency_us, b->n, 0.999);
    r.max = b->latency_us[b->n - 1] / 1000.0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r.rss_kib = ru.ru_maxrss;
    print_report(b, transport, &r);
    return fflush(stdout) == 0 ? CLI_OK : cli_fail(CLI_FAILED, "bench: cannot write the report");
}

int cmd_bench(cli *c, int argc, char **argv)
{
    bench b = {.n = 1000000, .size = 100, .keys = 1000};
    int rc = parse(c, &b, argc, argv);
    if (rc != CLI_OK)
        return rc < 0 ? CLI_OK : rc;
    b.latency_us = calloc((size_t)b.n, sizeof *b.latency_us);
    if (!b.latency_us)
        return cli_fail(CLI_FAILED, "bench: out of memory for %ld latencies", b.n);
    pthread_mutex_init(&b.mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&b.done_cv, &attr);
    pthread_condattr_destroy(&attr);
    rc = run(c, &b);
    pthread_cond_destroy(&b.done_cv);
    pthread_mutex_destroy(&b.mu);
    free(b.latency_us);
    return rc;
}
