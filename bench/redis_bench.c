/*
 * redis_bench.c — the Redis transport against a plain hiredis loop doing
 * the same work, in one run, against one redis-server: 100-byte messages,
 * 1,000 keys, fresh streams and groups.
 *
 *   publish    raw: one connection, XADD (fields k, p: the transport's
 *              layout) pipelined in batches of 1,000, every reply read;
 *              eventbus: eb_publish with delivery callbacks counted, then
 *              eb_flush
 *   consume    raw: XREADGROUP COUNT 1000 on one connection and one
 *              XACK of each batch's ids; eventbus: a group subscription
 *              dispatching to 4 workers with a no-op handler; both read a
 *              backlog (written by a raw publisher first), timed from the
 *              first message to the last
 *   end-to-end one process publishing while it consumes a fresh stream, at
 *              full speed and paced at 50% of eventbus's peak: msgs/s and
 *              latency (p50, p99) of every message (its publish time
 *              travels in the payload), publish -> handler start (raw: a
 *              publisher thread with pipelines of up to 100, and a
 *              consumer thread: XREADGROUP BLOCK + XACK)
 *
 * Group mode `shared`, and the same eventbus runs again in group mode
 * `keyed` (redis.partitions = --partitions, 4 by default: the keys spread
 * over partition streams <topic>:0..N-1 by FNV-1a, each leased to the one
 * member, read under the lease check of fenced.c): publish to the
 * partitions, subscribe reading the backlog the keyed publish left (one
 * member holding every lease; timed from the first message to the last,
 * after the member settled), end to end and at the same 50% rate. Every
 * run is a forked child, so threads and peak RSS (wait4) are that run's
 * own. Each round runs raw, eventbus shared and eventbus keyed of every
 * kind, in that order in even rounds and the reverse in odd ones; medians
 * are reported with the eventbus/baseline ratios, the keyed/shared ratios
 * (of the medians, and the range of the rounds' own ratios) and the
 * issue's goals (keyed >= 0.80x shared).
 *
 * Usage: redis_bench [--smoke] [--messages N] [--rounds R] [--url URL] [--rate R]
 *                    [--partitions N]
 * --rate R: only end-to-end, raw and eventbus (shared and keyed), paced at
 * R msgs/s (latency where a full-speed run cannot show it).
 * --smoke: 20,000 messages in one round, the keyed runs 2,000 (they only
 * have to keep working there).
 * The server comes from --url or $EB_REDIS_URL; without one it exits 77
 * (skipped).
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#define BENCH_NAME "redis_bench"
#include "bench_bus.h"
#include "eventbus/eventbus.h"

enum { WORKERS = 4, BATCH = 1000, MAX_ROUNDS = 9 };

static const char *server_url;
static char host[256] = "127.0.0.1";
static int port = 6379;
static unsigned partitions = 4; /* --partitions: keyed mode's partition streams */
/* ------------------------------------------------------------- raw loop */

static redisContext *raw_connect(void)
{
    struct timeval tv = {10, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err)
        die("connect %s: %s", server_url, c ? c->errstr : "out of memory");
    redisSetTimeout(c, tv);
    return c;
}

static redisReply *raw_command(redisContext *c, int argc, const char **argv, const size_t *lens)
{
    redisReply *r = redisCommandArgv(c, argc, argv, lens);
    if (!r)
        die("%s: %s", argv[0], c->errstr);
    if (r->type == REDIS_REPLY_ERROR)
        die("%s: %s", argv[0], r->str);
    return r;
}

/** XADD n messages, pipelined `depth` at a time; paced at `rate` (0: full
 *  speed), a pipeline then holds the messages due by now, so none waits
 *  for others to fill it. */
static void raw_xadd_all(redisContext *c, const char *stream, long n, int depth, double rate)
{
    unsigned char payload[PAYLOAD] = {0};
    int64_t start = now_ns();
    for (long i = 0; i < n;) {
        long k = n - i < depth ? n - i : depth;
        if (rate > 0) {
            pace(start, i, rate); /* the next message is due */
            long due = (long)((double)(now_ns() - start) * rate / 1e9) + 1 - i;
            k = due < 1 ? 1 : due < k ? due : k;
        }
        for (long j = 0; j < k; j++) {
            stamp(payload, i + j, 1);
            int key = (int)((i + j) % KEYS);
            const char *argv[] = {"XADD", stream, "*", "k", keys[key], "p", (char *)payload};
            size_t lens[] = {4, strlen(stream), 1, 1, (size_t)key_len[key], 1, PAYLOAD};
            if (redisAppendCommandArgv(c, 7, argv, lens) != REDIS_OK)
                die("XADD: out of memory");
        }
        for (long j = 0; j < k; j++) {
            void *reply;
            if (redisGetReply(c, &reply) != REDIS_OK)
                die("XADD: %s", c->errstr);
            if (((redisReply *)reply)->type != REDIS_REPLY_STRING)
                die("XADD refused");
            freeReplyObject(reply);
        }
        i += k;
    }
}

static void raw_group_create(redisContext *c, const char *stream, const char *group)
{
    const char *argv[] = {"XGROUP", "CREATE", stream, group, "0", "MKSTREAM"};
    freeReplyObject(raw_command(c, 6, argv, NULL));
}

/** XREADGROUP batches and one XACK per batch until n were read. */
static void raw_consume(redisContext *c, const char *stream, const char *group, long n,
                        histogram *h, int64_t *first_ns)
{
    const char *ids[BATCH + 3];
    for (long got = 0; got < n;) {
        const char *argv[] = {"XREADGROUP", "GROUP", group, "bench", "COUNT", "1000",
                              "BLOCK", "100", "STREAMS", stream, ">"};
        redisReply *r = raw_command(c, 11, argv, NULL);
        if (r->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            continue;
        }
        redisReply *entries = r->element[0]->element[1];
        if (entries->elements && *first_ns == 0)
            *first_ns = now_ns();
        ids[0] = "XACK";
        ids[1] = stream;
        ids[2] = group;
        for (size_t i = 0; i < entries->elements; i++) {
            redisReply *e = entries->element[i];
            ids[3 + i] = e->element[0]->str;
            if (h) {
                redisReply *f = e->element[1];
                for (size_t j = 0; j + 1 < f->elements; j += 2)
                    if (f->element[j]->len == 1 && f->element[j]->str[0] == 'p')
                        record_latency(h, f->element[j + 1]->str, f->element[j + 1]->len);
            }
        }
        if (entries->elements)
            freeReplyObject(raw_command(c, (int)(3 + entries->elements), ids, NULL));
        got += (long)entries->elements;
        freeReplyObject(r);
    }
}

static void raw_delete(const char *stream)
{
    redisContext *c = raw_connect();
    const char *argv[] = {"DEL", stream};
    freeReplyObject(raw_command(c, 2, argv, NULL));
    redisFree(c);
}

/** Deletes what keyed mode made for `topic` and `group`: the partition
 *  streams, the topic's meta record, the leases and the members hash (the
 *  names of plugins/redis/partitions.c, lease.c, members.c). */
static void raw_delete_keyed(const char *topic, const char *group)
{
    int argc = 0;
    const char **argv = calloc(2 * (size_t)partitions + 3, sizeof *argv);
    char *names = calloc(2 * (size_t)partitions + 2, 512);
    if (!argv || !names)
        die("out of memory");
    argv[argc++] = "DEL";
    for (unsigned p = 0; p < partitions; p++) {
        char *at = names + (size_t)(argc - 1) * 512;
        if (partitions == 1)
            snprintf(at, 512, "%s", topic); /* one partition: the topic's stream */
        else
            snprintf(at, 512, "%s:%u", topic, p);
        argv[argc++] = at;
        at = names + (size_t)(argc - 1) * 512;
        snprintf(at, 512, "eventbus:%s:%s:lease:%u", topic, group, p);
        argv[argc++] = at;
    }
    char *at = names + (size_t)(argc - 1) * 512;
    snprintf(at, 512, "eventbus:%s:meta", topic);
    argv[argc++] = at;
    at = names + (size_t)(argc - 1) * 512;
    snprintf(at, 512, "eventbus:%s:%s:members", topic, group);
    argv[argc++] = at;
    redisContext *c = raw_connect();
    freeReplyObject(raw_command(c, argc, argv, NULL));
    redisFree(c);
    free(names);
    free(argv);
}

/* ------------------------------------------------------------- eventbus */

/** A bus in group mode shared, or keyed over `partitions` streams (the
 *  other settings are the defaults in both). */
static eb_bus *open_bus(bool keyed)
{
    eb_config *cfg = eb_config_new();
    char err[512] = "", workers[16], parts[16];
    snprintf(workers, sizeof workers, "%d", WORKERS);
    snprintf(parts, sizeof parts, "%u", partitions);
    int rc = eb_config_set(cfg, "transport", "redis", err, sizeof err);
    if (rc == 0)
        rc = eb_config_set(cfg, "redis.url", server_url, err, sizeof err);
    if (rc == 0)
        rc = eb_config_set(cfg, "dispatch.workers", workers, err, sizeof err);
    if (rc == 0 && keyed)
        rc = eb_config_set(cfg, "redis.group.mode", "keyed", err, sizeof err);
    if (rc == 0 && keyed)
        rc = eb_config_set(cfg, "redis.partitions", parts, err, sizeof err);
#ifdef EB_BENCH_PLUGIN_DIR
    if (rc == 0 && !getenv("EVENTBUS_PLUGIN_PATH"))
        rc = eb_config_set(cfg, "plugin.path", EB_BENCH_PLUGIN_DIR, err, sizeof err);
#endif
    eb_bus *bus = NULL;
    if (rc == 0)
        rc = eb_bus_open(cfg, &bus, err, sizeof err);
    eb_config_destroy(cfg);
    if (rc != 0)
        die("open: %s: %s", eb_strerror(rc), err);
    return bus;
}

/* ------------------------------------------------------------------ runs */

typedef struct job {
    char stream[128], group[160];
    long n;
    double rate; /* end-to-end: msgs/s, 0 = full speed */
    bool keyed;  /* eventbus in group mode keyed: `stream` is the topic */
} job;

typedef struct row {
    double msgs_per_s, p50_us, p99_us, close_ms, rss_mib;
    int threads;
} row;

static row run_raw_publish(const job *j)
{
    redisContext *c = raw_connect();
    int64_t t0 = now_ns();
    raw_xadd_all(c, j->stream, j->n, BATCH, 0);
    int64_t t1 = now_ns();
    row r = {.msgs_per_s = (double)j->n * 1e9 / (double)(t1 - t0), .threads = proc_thread_count()};
    t0 = now_ns();
    redisFree(c);
    r.close_ms = (double)(now_ns() - t0) / 1e6;
    return r;
}

static row run_eb_publish(const job *j)
{
    eb_bus *bus = open_bus(j->keyed);
    delivered d = {0};
    int64_t t0 = now_ns();
    eb_publish_all(bus, j->stream, j->n, 1, 0, &d);
    eb_flush_checked(bus, &d, j->n);
    int64_t t1 = now_ns();
    row r = {.msgs_per_s = (double)j->n * 1e9 / (double)(t1 - t0), .threads = proc_thread_count()};
    r.close_ms = close_bus(bus);
    return r;
}

static row run_raw_consume(const job *j)
{
    redisContext *c = raw_connect();
    raw_group_create(c, j->stream, j->group);
    int64_t first = 0;
    raw_consume(c, j->stream, j->group, j->n, NULL, &first);
    int64_t t1 = now_ns();
    row r = {.msgs_per_s = (double)j->n * 1e9 / (double)(t1 - first),
             .threads = proc_thread_count()};
    int64_t t0 = now_ns();
    redisFree(c);
    r.close_ms = (double)(now_ns() - t0) / 1e6;
    return r;
}

static row run_eb_subscribe(const job *j)
{
    run_state *rs = calloc(1, sizeof *rs);
    eb_bus *bus = open_bus(j->keyed);
    subscribe(bus, j->stream, j->group, rs);
    wait_handled(rs, j->n);
    int64_t t1 = now_ns();
    row r = {.msgs_per_s = (double)j->n * 1e9 / (double)(t1 - atomic_load(&rs->first_ns)),
             .threads = proc_thread_count()};
    r.close_ms = close_bus(bus);
    free(rs);
    return r;
}

typedef struct raw_e2e_consumer {
    const job *j;
    histogram *h;
    int64_t first;
} raw_e2e_consumer;

static void *raw_e2e_consumer_main(void *arg)
{
    raw_e2e_consumer *rc = arg;
    redisContext *c = raw_connect();
    raw_consume(c, rc->j->stream, rc->j->group, rc->j->n, rc->h, &rc->first);
    redisFree(c);
    return NULL;
}

static void set_latency(row *r, histogram *h)
{
    r->p50_us = hist_quantile_us(h, 0.50);
    r->p99_us = hist_quantile_us(h, 0.99);
}

static row run_raw_e2e(const job *j)
{
    histogram *h = calloc(1, sizeof *h);
    redisContext *c = raw_connect();
    raw_group_create(c, j->stream, j->group);
    raw_e2e_consumer rc = {.j = j, .h = h};
    pthread_t consumer;
    pthread_create(&consumer, NULL, raw_e2e_consumer_main, &rc);
    int64_t t0 = now_ns();
    raw_xadd_all(c, j->stream, j->n, 100, j->rate);
    int threads = proc_thread_count();
    pthread_join(consumer, NULL);
    int64_t t1 = now_ns();
    row r = {.msgs_per_s = (double)j->n * 1e9 / (double)(t1 - t0), .threads = threads};
    set_latency(&r, h);
    redisFree(c);
    free(h);
    return r;
}

static row run_eb_e2e(const job *j)
{
    run_state *rs = calloc(1, sizeof *rs);
    rs->timed = true;
    eb_bus *bus = open_bus(j->keyed);
    subscribe(bus, j->stream, j->group, rs);
    delivered d = {0};
    int64_t t0 = now_ns();
    eb_publish_all(bus, j->stream, j->n, 1, j->rate, &d);
    wait_handled(rs, j->n);
    int64_t t1 = now_ns();
    eb_flush_checked(bus, &d, j->n);
    row r = {.msgs_per_s = (double)j->n * 1e9 / (double)(t1 - t0), .threads = proc_thread_count()};
    set_latency(&r, &rs->hist);
    r.close_ms = close_bus(bus);
    free(rs);
    return r;
}

/* A run of fn in a forked child (bench_in_child), its peak RSS recorded. */
static row (*child_fn)(const job *);

static void run_in_child(const void *j, void *out) { *(row *)out = child_fn(j); }

static row in_child(row (*fn)(const job *), const job *j)
{
    child_fn = fn;
    row r;
    double rss = bench_in_child(run_in_child, j, &r, sizeof r);
    if (rss < 0)
        die("run on %s failed", j->stream);
    r.rss_mib = rss;
    return r;
}

/* -------------------------------------------------------------- report */

static double median(const double *v, int n) { return bench_median(v, n); }

typedef struct series {
    double rate[MAX_ROUNDS], p50[MAX_ROUNDS], p99[MAX_ROUNDS], close_ms[MAX_ROUNDS],
        rss[MAX_ROUNDS], threads[MAX_ROUNDS];
    int n;
} series;

static void add_row(series *s, row r)
{
    s->rate[s->n] = r.msgs_per_s;
    s->p50[s->n] = r.p50_us;
    s->p99[s->n] = r.p99_us;
    s->close_ms[s->n] = r.close_ms;
    s->rss[s->n] = r.rss_mib;
    s->threads[s->n] = r.threads;
    s->n++;
}

static double rate_of(const series *s) { return median(s->rate, s->n); }

enum { NAME_W = 40 };

/** A row: medians; eventbus/raw against `raw`, keyed/shared against
 *  `shared` (either NULL: not printed). */
static void print_series(const char *name, const series *s, bool latency, const series *raw,
                         const series *shared)
{
    double rate = rate_of(s);
    printf("%-*s %10.0f %7.1f", NAME_W, name, rate, rate * PAYLOAD / 1e6);
    if (latency)
        printf(" %9.0f %9.0f", median(s->p50, s->n), median(s->p99, s->n));
    else
        printf(" %9s %9s", "-", "-");
    printf(" %7.0f %7.1f %8.1f", median(s->threads, s->n), median(s->rss, s->n),
           median(s->close_ms, s->n));
    if (raw)
        printf("   %11.2fx", rate / rate_of(raw));
    else if (shared)
        printf("   %12s", "");
    if (shared)
        printf("   %11.2fx", rate / rate_of(shared));
    printf("\n");
}

static void print_header(void)
{
    printf("%-*s %10s %7s %9s %9s %7s %7s %8s   %12s   %12s\n", NAME_W, "", "msgs/s", "MB/s",
           "p50 us", "p99 us", "threads", "RSS MiB", "close ms", "eventbus/raw",
           "keyed/shared");
}

/** keyed/shared of the medians, and the lowest and highest of the rounds'
 *  own ratios (the two ran in the same round, one after the other). */
typedef struct ratio {
    double of_medians, lo, hi;
} ratio;

static ratio ratio_of(const series *keyed, const series *shared)
{
    ratio r = {rate_of(keyed) / rate_of(shared), 1e300, 0};
    for (int i = 0; i < keyed->n && i < shared->n; i++) {
        double x = keyed->rate[i] / shared->rate[i];
        r.lo = x < r.lo ? x : r.lo;
        r.hi = x > r.hi ? x : r.hi;
    }
    return r;
}

static void print_ratio(const char *what, const series *keyed, const series *shared, bool goal)
{
    ratio r = ratio_of(keyed, shared);
    printf("  %-28s %.2fx (rounds %.2f-%.2f)", what, r.of_medians, r.lo, r.hi);
    if (goal)
        printf("  goal >= 0.80x: %s", r.of_medians >= 0.8 ? "met" : "MISSED");
    printf("\n");
}

typedef struct pair {
    const char *name;
    row (*fn)(const job *);
    const job *j;
    series *out;
} pair;

/** One round of the runs of one kind: in the order given in even rounds,
 *  reversed in odd ones (raw and eventbus shared swap places, and so do
 *  eventbus shared and keyed). */
static void run_set(int round, const pair *const *runs, int n)
{
    for (int k = 0; k < n; k++) {
        const pair *p = runs[round % 2 ? n - 1 - k : k];
        row x = in_child(p->fn, p->j);
        add_row(p->out, x);
        fprintf(stderr, "redis_bench: round %d %-38s %10.0f msgs/s  p50 %8.0f us  p99 %8.0f us\n",
                round + 1, p->name, x.msgs_per_s, x.p50_us, x.p99_us);
    }
}

static void run_three(int round, const pair *raw, const pair *eb, const pair *keyed)
{
    const pair *runs[] = {raw, eb, keyed};
    run_set(round, runs, 3);
}

static void name_job(job *j, const char *run_id, int round, const char *kind, long n,
                     double rate, bool keyed)
{
    *j = (job){.n = n, .rate = rate, .keyed = keyed};
    snprintf(j->stream, sizeof j->stream, "%s-r%d-%s", run_id, round, kind);
    snprintf(j->group, sizeof j->group, "%s-group", j->stream);
}

static void delete_job(const job *j)
{
    if (j->keyed)
        raw_delete_keyed(j->stream, j->group);
    else
        raw_delete(j->stream);
}

static bool parse_url(const char *url)
{
    const char *p = strncmp(url, "redis://", 8) == 0 ? url + 8 : NULL;
    if (!p || strchr(p, '@'))
        return false; /* the bench keeps to plain local servers */
    const char *colon = strchr(p, ':');
    size_t host_len = colon ? (size_t)(colon - p) : strcspn(p, "/");
    if (host_len == 0 || host_len >= sizeof host)
        return false;
    memcpy(host, p, host_len);
    host[host_len] = '\0';
    port = colon ? atoi(colon + 1) : 6379;
    return port > 0;
}

int main(int argc, char **argv)
{
    long n = 1000000;
    int rounds = 3;
    double only_rate = 0;
    bool smoke = false;
    server_url = getenv("EB_REDIS_URL");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0)
            n = 20000, rounds = 1, deadline_s = 120, smoke = true;
        else if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc)
            n = atol(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
            server_url = argv[++i];
        else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc && (only_rate = atof(argv[++i])) > 0)
            ;
        else if (strcmp(argv[i], "--partitions") == 0 && i + 1 < argc)
            partitions = (unsigned)atoi(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: %s [--smoke] [--messages N] [--rounds R] [--url URL] [--rate R] "
                    "[--partitions N]\n",
                    argv[0]);
            return 2;
        }
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || n < 1000 || partitions < 1 || partitions > 1024) {
        fprintf(stderr,
                "redis_bench: rounds must be 1..%d, messages >= 1000, partitions 1..1024\n",
                MAX_ROUNDS);
        return 2;
    }
    if (!server_url || !*server_url) {
        printf("skip: no server: set EB_REDIS_URL or pass --url (tests/servers/redis.sh "
               "start)\n");
        return 77;
    }
    if (!parse_url(server_url)) {
        fprintf(stderr, "redis_bench: --url redis://host:port expected, not %s\n", server_url);
        return 2;
    }
    make_keys();
    char run_id[32];
    snprintf(run_id, sizeof run_id, "rbench-%d-%lld", (int)getpid(),
             (long long)(time(NULL) % 100000));
    /* The keyed runs only have to keep working in the smoke run (each waits
     * a leaser turn or so before it settles). */
    long kn = smoke ? 2000 : n;
    printf("redis_bench: %ld messages of %d bytes, %d keys, group mode shared and keyed (%u "
           "partitions; %ld messages), %d workers, %d round(s), medians; server %s\n",
           n, PAYLOAD, KEYS, partitions, kn, WORKERS, rounds, server_url);
    fflush(stdout);
    char keyed_name[3][64];
    snprintf(keyed_name[0], sizeof keyed_name[0], "eventbus publish, keyed (%u part.)",
             partitions);
    snprintf(keyed_name[1], sizeof keyed_name[1], "eventbus subscribe, keyed (%u part.)",
             partitions);
    snprintf(keyed_name[2], sizeof keyed_name[2], "eventbus end-to-end, keyed (%u part.)",
             partitions);

    series raw_pub = {0}, eb_pub = {0}, ek_pub = {0}, raw_cons = {0}, eb_cons = {0},
           ek_cons = {0}, raw_e2e = {0}, eb_e2e = {0}, ek_e2e = {0}, raw_half = {0},
           eb_half = {0}, ek_half = {0};
    if (only_rate > 0) {
        for (int r = 0; r < rounds; r++) {
            job raw, eb, ek;
            name_job(&raw, run_id, r, "raw-rate", n, only_rate, false);
            name_job(&eb, run_id, r, "eb-rate", n, only_rate, false);
            name_job(&ek, run_id, r, "ek-rate", kn, only_rate, true);
            run_three(r, &(pair){"raw end-to-end", run_raw_e2e, &raw, &raw_half},
                      &(pair){"eventbus end-to-end", run_eb_e2e, &eb, &eb_half},
                      &(pair){keyed_name[2], run_eb_e2e, &ek, &ek_half});
            delete_job(&raw);
            delete_job(&eb);
            delete_job(&ek);
        }
        print_header();
        print_series("raw end-to-end", &raw_half, true, NULL, NULL);
        print_series("eventbus end-to-end", &eb_half, true, &raw_half, NULL);
        print_series(keyed_name[2], &ek_half, true, &raw_half, &eb_half);
        return 0;
    }
    for (int r = 0; r < rounds; r++) {
        job raw, eb, ek;
        name_job(&raw, run_id, r, "raw", n, 0, false);
        name_job(&eb, run_id, r, "eb", n, 0, false);
        name_job(&ek, run_id, r, "ek", kn, 0, true);
        run_three(r, &(pair){"raw XADD pipeline", run_raw_publish, &raw, &raw_pub},
                  &(pair){"eventbus publish", run_eb_publish, &eb, &eb_pub},
                  &(pair){keyed_name[0], run_eb_publish, &ek, &ek_pub});
        raw_delete(eb.stream);
        /* Both shared consumers read the raw publisher's backlog, each its
         * group; the keyed one reads the partition streams the keyed
         * publish wrote (its group: ek.group). */
        eb = raw;
        snprintf(raw.group, sizeof raw.group, "%s-raw-group", raw.stream);
        snprintf(eb.group, sizeof eb.group, "%s-eb-group", raw.stream);
        run_three(r, &(pair){"raw XREADGROUP+XACK", run_raw_consume, &raw, &raw_cons},
                  &(pair){"eventbus subscribe", run_eb_subscribe, &eb, &eb_cons},
                  &(pair){keyed_name[1], run_eb_subscribe, &ek, &ek_cons});
        raw_delete(raw.stream);
        delete_job(&ek);
        name_job(&raw, run_id, r, "raw-e2e", n, 0, false);
        name_job(&eb, run_id, r, "eb-e2e", n, 0, false);
        name_job(&ek, run_id, r, "ek-e2e", kn, 0, true);
        run_three(r, &(pair){"raw end-to-end", run_raw_e2e, &raw, &raw_e2e},
                  &(pair){"eventbus end-to-end", run_eb_e2e, &eb, &eb_e2e},
                  &(pair){keyed_name[2], run_eb_e2e, &ek, &ek_e2e});
        delete_job(&raw);
        delete_job(&eb);
        delete_job(&ek);
    }
    double half_rate = rate_of(&eb_e2e) / 2;
    for (int r = 0; r < rounds; r++) {
        job raw, eb, ek;
        name_job(&raw, run_id, r, "raw-half", n / 2, half_rate, false);
        name_job(&eb, run_id, r, "eb-half", n / 2, half_rate, false);
        name_job(&ek, run_id, r, "ek-half", kn / 2, half_rate, true);
        run_three(r, &(pair){"raw end-to-end @50%", run_raw_e2e, &raw, &raw_half},
                  &(pair){"eventbus end-to-end @50%", run_eb_e2e, &eb, &eb_half},
                  &(pair){"eventbus end-to-end, keyed @50%", run_eb_e2e, &ek, &ek_half});
        delete_job(&raw);
        delete_job(&eb);
        delete_job(&ek);
    }

    char half_raw[64], half_eb[64], half_ek[64];
    snprintf(half_raw, sizeof half_raw, "raw end-to-end @%.0f/s", half_rate);
    snprintf(half_eb, sizeof half_eb, "eventbus end-to-end @%.0f/s", half_rate);
    snprintf(half_ek, sizeof half_ek, "eventbus e2e, keyed (%u part.) @%.0f/s", partitions,
             half_rate);
    print_header();
    print_series("raw XADD pipeline", &raw_pub, false, NULL, NULL);
    print_series("eventbus publish", &eb_pub, false, &raw_pub, NULL);
    print_series(keyed_name[0], &ek_pub, false, &raw_pub, &eb_pub);
    print_series("raw XREADGROUP+XACK (COUNT 1000)", &raw_cons, false, NULL, NULL);
    print_series("eventbus subscribe (4 workers)", &eb_cons, false, &raw_cons, NULL);
    print_series(keyed_name[1], &ek_cons, false, &raw_cons, &eb_cons);
    print_series("raw end-to-end", &raw_e2e, true, NULL, NULL);
    print_series("eventbus end-to-end", &eb_e2e, true, &raw_e2e, NULL);
    print_series(keyed_name[2], &ek_e2e, true, &raw_e2e, &eb_e2e);
    print_series(half_raw, &raw_half, true, NULL, NULL);
    print_series(half_eb, &eb_half, true, &raw_half, NULL);
    print_series(half_ek, &ek_half, true, &raw_half, &eb_half);
    double pub_ratio = rate_of(&eb_pub) / rate_of(&raw_pub);
    double sub_ratio = rate_of(&eb_cons) / rate_of(&raw_cons);
    printf("goals: publish >= 0.80x the pipelined XADD loop: %.2fx %s; handling >= 0.60x the "
           "XREADGROUP+XACK loop: %.2fx %s\n",
           pub_ratio, pub_ratio >= 0.8 ? "met" : "MISSED", sub_ratio,
           sub_ratio >= 0.6 ? "met" : "MISSED");
    printf("keyed (%u partitions) / shared, eventbus both%s:\n", partitions,
           kn != n ? " (smoke: the keyed runs are smaller, so not comparable)" : "");
    print_ratio("publish", &ek_pub, &eb_pub, false);
    print_ratio("subscribe", &ek_cons, &eb_cons, true);
    print_ratio("end-to-end", &ek_e2e, &eb_e2e, true);
    printf("threads and RSS are each run's own (a forked child); close: eb_bus_close, or "
           "redisFree; latency: publish -> handler start of every message\n");
    return 0;
}
