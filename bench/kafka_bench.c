/*
 * kafka_bench.c — the Kafka transport against raw librdkafka doing the
 * same work, in one run, against the same broker and settings: 100-byte
 * messages, 1,000 keys, fresh 6-partition topics and fresh groups.
 *
 *   produce    raw rd_kafka_producev loop (eventbus's producer settings:
 *              idempotence, acks=all, linger.ms=5, murmur2_random; delivery
 *              reports counted; flush) vs eb_publish with delivery
 *              callbacks counted, then eb_flush
 *   consume    a raw group consumer (eager assignor, auto offset store off,
 *              rd_kafka_consumer_poll, rd_kafka_offsets_store of every
 *              message, auto commit of stored offsets) vs a group
 *              subscription dispatching to 4 workers with a no-op handler;
 *              both read the same backlog (the round's raw-produced topic),
 *              timed from the first message to the last
 *   end-to-end one process publishing while it consumes a fresh topic, at
 *              full speed and paced at 50% of eventbus's peak: msgs/s and
 *              latency (p50, p99, p99.9) of every SAMPLE-th message (its
 *              publish time travels in the payload), publish -> handler
 *              start
 *
 * Every run is a forked child, so threads and peak RSS (wait4) are those
 * of that run alone. Each round runs raw and eventbus of every kind, raw
 * first in even rounds and eventbus first in odd ones; medians are
 * reported.
 *
 * Usage: kafka_bench [--smoke] [--messages N] [--rounds R] [--bootstrap ADDR]
 *                    [--only RUN [--rate MSGS_PER_S] | --rate MSGS_PER_S... |
 *                     --pools] [--set KEY=VALUE]... [--work-us N] [--workers K]
 * --rate R (without --only; repeatable: --rate 5000 --rate 20000): instead
 * of the kinds above, latency at fixed rates, which full-speed runs cannot
 * show: for each rate, --rounds rounds of raw and eventbus end-to-end paced
 * at R (run_pair's alternating order), fresh topics each, every message
 * timed so p99.9 rests on thousands of samples; a table per rate of msgs/s,
 * p50/p99/p99.9 publish -> handler start, CPU us/msg, the sample count and
 * the eventbus/raw ratios. A run is --messages long, or R*10 messages
 * (about 10 s) without it. --work-us and --workers apply to the eventbus
 * side only, as everywhere.
 * --work-us N: every eventbus handler waits N us off the CPU (as one
 * writing to a database does) before it returns. --workers K: the
 * eventbus buses' dispatch.workers (default 4; 0: the library's default,
 * the elastic pool). --pools: instead of the comparison with raw
 * librdkafka, eventbus alone consuming one backlog per round with the
 * elastic pool and with fixed pools of 2, 16, 64 and 256 workers (their
 * peak sizes too), then end-to-end at 50% of the best fixed pool's rate
 * with the elastic pool and that fixed one: send -> handler start
 * latency. Meant with --work-us (no-op handlers need no more workers).
 * --set adds an eventbus setting to every bus of the run (tuning
 * experiments: --set kafka.queued.min.messages=1000000); the raw loops keep
 * eventbus's defaults.
 * --only runs one of raw-produce, eb-publish, raw-consume, eb-subscribe,
 * raw-e2e, eb-e2e once in this process (consumers get their backlog from a
 * forked raw producer first), for a profiler: perf record -g kafka_bench
 * --only eb-subscribe, then perf report --pid of the pid it prints; with
 * --rate the end-to-end runs are paced (every SAMPLE-th message timed).
 * The broker comes from --bootstrap or $EB_KAFKA_BOOTSTRAP; without one it
 * exits 77 (skipped).
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "bench_common.h"
#define BENCH_NAME "kafka_bench"
#include "bench_bus.h"
#include "bus_stat.h"
#include "eventbus/eventbus.h"

enum { PARTITIONS = 6, WORKERS = 4, SAMPLE = 16,
       MAX_ROUNDS = 16,
       WARM_UP = 1000 /* messages before each timed part: metadata, producer id,
                         fetch positions and connections settle first */ };

static const char *bootstrap;
static const char *extra_settings[32]; /* --set KEY=VALUE */
static int n_extra_settings;
static int bus_workers = WORKERS;   /* --workers: dispatch.workers (0: elastic) */

/* ------------------------------------------------------------- messages */

/** CPU seconds (user + system) of every thread of this process so far. */
static double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double cpu_us_per(double cpu_start, long messages)
{
    return (cpu_now() - cpu_start) * 1e6 / (double)messages;
}

/* ------------------------------------------------------- raw librdkafka */

static void conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char err[512];
    if (rd_kafka_conf_set(conf, name, value, err, sizeof err) != RD_KAFKA_CONF_OK)
        die("%s=%s: %s", name, value, err);
}

/** A plain handle on the broker for admin requests and metadata. */
static rd_kafka_t *admin_client(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    conf_set(conf, "bootstrap.servers", bootstrap);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk)
        die("admin client: %s", err);
    return rk;
}

/** Creates `topic` with `partitions` partitions and waits until metadata
 *  shows each with a leader. */
/** Creates the topic and waits until every partition has a leader;
 *  `may_exist`: one there already is fine (a dead-letter topic that
 *  several runs on one backlog share). */
static void create_topic_ex(const char *topic, int partitions, bool may_exist)
{
    rd_kafka_t *rk = admin_client();
    char err[512];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, err, sizeof err);
    if (!nt)
        die("new topic %s: %s", topic, err);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    if (!ev)
        die("creating topic %s: no answer in 30 s from %s", topic, bootstrap);
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    size_t cnt = 0;
    const rd_kafka_topic_result_t **results =
        res ? rd_kafka_CreateTopics_result_topics(res, &cnt) : NULL;
    if (rd_kafka_event_error(ev))
        die("creating topic %s: %s", topic, rd_kafka_event_error_string(ev));
    if (cnt == 1 && rd_kafka_topic_result_error(results[0]) &&
        !(may_exist &&
          rd_kafka_topic_result_error(results[0]) == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS))
        die("creating topic %s: %s", topic, rd_kafka_topic_result_error_string(results[0]));
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);

    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    for (int64_t give_up = now_ns() + 30 * 1000000000LL;;) {
        const rd_kafka_metadata_t *md;
        bool ready = false;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            ready = md->topic_cnt == 1 && !md->topics[0].err &&
                    md->topics[0].partition_cnt == partitions;
            for (int i = 0; ready && i < md->topics[0].partition_cnt; i++)
                ready = md->topics[0].partitions[i].leader >= 0;
            rd_kafka_metadata_destroy(md);
        }
        if (ready)
            break;
        if (now_ns() > give_up)
            die("topic %s not in metadata after 30 s", topic);
        sleep_us(50000);
    }
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
}

static void create_topic(const char *topic, int partitions)
{
    create_topic_ex(topic, partitions, false);
}

/**
 * Deletes every topic whose name starts with `prefix` (a round's): runs of
 * several rounds would otherwise leave gigabytes on the broker and slow
 * the later rounds down. Only once every client of the topics closed.
 */
static void delete_topics(const char *prefix)
{
    rd_kafka_t *rk = admin_client();
    const rd_kafka_metadata_t *md;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, 10000);
    if (e)
        die("listing topics: %s", rd_kafka_err2str(e));
    enum { MAX_DELETE = 64 };
    rd_kafka_DeleteTopic_t *del[MAX_DELETE];
    size_t n = 0;
    for (int i = 0; i < md->topic_cnt && n < MAX_DELETE; i++)
        if (strncmp(md->topics[i].topic, prefix, strlen(prefix)) == 0)
            del[n++] = rd_kafka_DeleteTopic_new(md->topics[i].topic);
    rd_kafka_metadata_destroy(md);
    if (n > 0) {
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_DeleteTopics(rk, del, n, NULL, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
        if (!ev)
            die("deleting topics %s*: no answer in 30 s", prefix);
        if (rd_kafka_event_error(ev))
            fprintf(stderr, "kafka_bench: deleting topics %s*: %s\n", prefix,
                    rd_kafka_event_error_string(ev));
        rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        rd_kafka_DeleteTopic_destroy_array(del, n);
    }
    rd_kafka_destroy(rk);
}

typedef struct raw_dr {
    long ok, failed;
    rd_kafka_resp_err_t first_error;
} raw_dr;

static void raw_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    raw_dr *dr = opaque;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        dr->ok++;
    } else {
        if (!dr->failed++)
            dr->first_error = m->err;
    }
}

/** The settings eventbus's producer uses (plugins/kafka/config.c). */
static rd_kafka_t *raw_producer(raw_dr *dr)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    conf_set(conf, "bootstrap.servers", bootstrap);
    conf_set(conf, "client.id", "kafka-bench-raw-producer");
    conf_set(conf, "enable.idempotence", "true");
    conf_set(conf, "acks", "all");
    conf_set(conf, "linger.ms", "5");
    conf_set(conf, "partitioner", "murmur2_random");
    rd_kafka_conf_set_dr_msg_cb(conf, raw_on_delivery);
    rd_kafka_conf_set_opaque(conf, dr);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk)
        die("raw producer: %s", err);
    return rk;
}

/** The produce loop: reports served on this thread between produces and
 *  while the queue is full. */
static void raw_produce_all(rd_kafka_t *rk, const char *topic, long n, int every,
                            double rate)
{
    unsigned char payload[PAYLOAD] = {0};
    int64_t start = now_ns();
    for (long i = 0; i < n; i++) {
        pace(start, i, rate);
        stamp(payload, i, every);
        for (;;) {
            rd_kafka_resp_err_t err = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic),
                RD_KAFKA_V_KEY(keys[i % KEYS], (size_t)key_len[i % KEYS]),
                RD_KAFKA_V_VALUE(payload, sizeof payload),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
                break;
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                die("raw produce: %s", rd_kafka_err2str(err));
            rd_kafka_poll(rk, 1);
        }
        rd_kafka_poll(rk, 0);
    }
}

static void raw_flush(rd_kafka_t *rk, raw_dr *dr, long n)
{
    if (rd_kafka_flush(rk, (int)deadline_s * 1000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        die("raw flush: %d message(s) still queued", rd_kafka_outq_len(rk));
    if (dr->ok != n)
        die("raw produce: %ld of %ld delivered, %ld failed (%s)", dr->ok, n, dr->failed,
            rd_kafka_err2str(dr->first_error));
}

enum { MAX_PARTITIONS = 64 };

/* The raw consumer: what a librdkafka user writes to get eventbus's
 * semantics (plugins/kafka/config.c's consumer settings). Offsets are
 * stored through one reused single-element list per partition: a list
 * caches its partition's handle in the element, so one list may not be
 * re-pointed at another partition, and every list must be gone before
 * rd_kafka_destroy() (a cached handle keeps it waiting). */
typedef struct raw_consumer {
    rd_kafka_t *rk;
    char topic[128];
    rd_kafka_topic_partition_list_t *store[MAX_PARTITIONS];
    atomic_bool assigned;
    histogram *hist;                        /* NULL: no latency */
    atomic_long got;    /* written by the consuming thread only */
    int64_t first_ns;
} raw_consumer;

static void raw_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    raw_consumer *c = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_assign(rk, parts);
        atomic_store(&c->assigned, true);
    } else {
        rd_kafka_commit(rk, NULL, 0);
        rd_kafka_assign(rk, NULL);
    }
}

static void raw_consumer_open(raw_consumer *c, const char *topic, const char *group)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    conf_set(conf, "bootstrap.servers", bootstrap);
    conf_set(conf, "client.id", "kafka-bench-raw-consumer");
    conf_set(conf, "group.id", group);
    conf_set(conf, "enable.auto.commit", "true");
    conf_set(conf, "auto.commit.interval.ms", "1000");
    conf_set(conf, "enable.auto.offset.store", "false");
    conf_set(conf, "partition.assignment.strategy", "range,roundrobin");
    conf_set(conf, "auto.offset.reset", "earliest");
    conf_set(conf, "enable.partition.eof", "false");
    /* Without it librdkafka 2.0.2 stops fetching a partition whose queue
     * is full and looks again only a second later: the raw loop stalled
     * in some rounds and read 0.5-2M msgs/s. */
    conf_set(conf, "queued.min.messages", "10000000");
    rd_kafka_conf_set_rebalance_cb(conf, raw_rebalance);
    rd_kafka_conf_set_opaque(conf, c);
    char err[512];
    if (!(c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err)))
        die("raw consumer: %s", err);
    rd_kafka_poll_set_consumer(c->rk);
    snprintf(c->topic, sizeof c->topic, "%s", topic);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e)
        die("raw subscribe: %s", rd_kafka_err2str(e));
}

/** Polls until n messages were consumed, storing the offset of each. */
static void raw_consume_all(raw_consumer *c, long n)
{
    int64_t give_up = now_ns() + deadline_s * 1000000000LL;
    while (atomic_load_explicit(&c->got, memory_order_relaxed) < n) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(c->rk, 100);
        if (!rkm) {
            if (now_ns() > give_up)
                die("raw consume: only %ld of %ld in %lld s", atomic_load(&c->got), n,
                    (long long)deadline_s);
            continue;
        }
        if (rkm->err) {
            fprintf(stderr, "kafka_bench: raw consume: %s\n", rd_kafka_message_errstr(rkm));
        } else {
            if (atomic_load_explicit(&c->got, memory_order_relaxed) == 0)
                c->first_ns = now_ns();
            atomic_store_explicit(&c->got, atomic_load_explicit(&c->got, memory_order_relaxed) + 1,
                                  memory_order_release);
            if (c->hist)
                record_latency(c->hist, rkm->payload, rkm->len);
            if (rkm->partition >= MAX_PARTITIONS)
                die("raw consume: partition %d", (int)rkm->partition);
            rd_kafka_topic_partition_list_t **store = &c->store[rkm->partition];
            if (!*store) {
                *store = rd_kafka_topic_partition_list_new(1);
                rd_kafka_topic_partition_list_add(*store, c->topic, rkm->partition);
            }
            (*store)->elems[0].offset = rkm->offset + 1; /* the next one */
            rd_kafka_offsets_store(c->rk, *store);
        }
        rd_kafka_message_destroy(rkm);
    }
}

static void raw_consumer_close(raw_consumer *c)
{
    rd_kafka_consumer_close(c->rk); /* commits what was stored */
    for (int p = 0; p < MAX_PARTITIONS; p++)
        if (c->store[p])
            rd_kafka_topic_partition_list_destroy(c->store[p]);
    rd_kafka_destroy(c->rk);
}

/* ---------------------------------------------------------------- eventbus */

static eb_bus *open_bus(void)
{
    eb_config *cfg = eb_config_new();
    char err[512] = "", set[600];
    int rc = eb_config_set(cfg, "transport", "kafka", err, sizeof err);
    if (rc == 0)
        rc = eb_config_set(cfg, "kafka.bootstrap.servers", bootstrap, err, sizeof err);
    if (rc == 0) {
        snprintf(set, sizeof set, "%d", bus_workers);
        rc = eb_config_set(cfg, "dispatch.workers", set, err, sizeof err);
    }
#ifdef EB_BENCH_PLUGIN_DIR
    if (rc == 0 && !getenv("EVENTBUS_PLUGIN_PATH"))
        rc = eb_config_set(cfg, "plugin.path", EB_BENCH_PLUGIN_DIR, err, sizeof err);
#endif
    for (int i = 0; rc == 0 && i < n_extra_settings; i++) { /* later settings win */
        snprintf(set, sizeof set, "%s", extra_settings[i]);
        char *eq = strchr(set, '=');
        if (!eq)
            die("--set %s: KEY=VALUE expected", set);
        *eq = '\0';
        rc = eb_config_set(cfg, set, eq + 1, err, sizeof err);
    }
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
    char topic[128], group[128];
    long n;
    double rate; /* end-to-end: msgs/s, 0 = full speed */
    int sample;  /* end-to-end: time every sample-th message; 0 = SAMPLE */
} job;

static int sample_every(const job *j) { return j->sample > 0 ? j->sample : SAMPLE; }

typedef struct row {
    double msgs_per_s, p50_us, p99_us, p999_us, close_ms, rss_mib;
    double cpu_us; /* CPU time of the whole process per message (all threads) */
    int threads;
    int workers_peak; /* eventbus: the pool's most workers at once */
    long samples;     /* end-to-end: latencies the percentiles are from */
} row;

/** Fills the row's percentiles and sample count from the run's latencies. */
static void set_latency(row *r, histogram *h)
{
    long total = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        total += (long)atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
    r->samples = total;
    r->p50_us = hist_quantile_us(h, 0.50);
    r->p99_us = hist_quantile_us(h, 0.99);
    r->p999_us = hist_quantile_us(h, 0.999);
}


static row run_raw_produce(const job *j)
{
    create_topic(j->topic, PARTITIONS);
    raw_dr dr = {0};
    rd_kafka_t *rk = raw_producer(&dr);
    raw_produce_all(rk, j->topic, WARM_UP, 0, 0);
    raw_flush(rk, &dr, WARM_UP);
    int64_t start = now_ns();
    double cpu = cpu_now();
    raw_produce_all(rk, j->topic, j->n, 0, 0);
    raw_flush(rk, &dr, WARM_UP + j->n);
    row r = {.msgs_per_s = (double)j->n / ((double)(now_ns() - start) / 1e9),
             .cpu_us = cpu_us_per(cpu, j->n), .threads = proc_thread_count()};
    int64_t close_start = now_ns();
    rd_kafka_destroy(rk);
    r.close_ms = (double)(now_ns() - close_start) / 1e6;
    return r;
}

static row run_eb_publish(const job *j)
{
    create_topic(j->topic, PARTITIONS);
    delivered d = {0};
    eb_bus *bus = open_bus();
    eb_publish_all(bus, j->topic, WARM_UP, 0, 0, &d);
    eb_flush_checked(bus, &d, WARM_UP);
    int64_t start = now_ns();
    double cpu = cpu_now();
    eb_publish_all(bus, j->topic, j->n, 0, 0, &d);
    eb_flush_checked(bus, &d, WARM_UP + j->n);
    row r = {.msgs_per_s = (double)j->n / ((double)(now_ns() - start) / 1e9),
             .cpu_us = cpu_us_per(cpu, j->n), .threads = proc_thread_count()};
    r.close_ms = close_bus(bus);
    return r;
}

static row run_raw_consume(const job *j)
{
    raw_consumer c = {0};
    double cpu = cpu_now(); /* the join's CPU is noise next to N messages */
    raw_consumer_open(&c, j->topic, j->group);
    raw_consume_all(&c, WARM_UP + j->n);
    row r = {.msgs_per_s = (double)(WARM_UP + j->n) / ((double)(now_ns() - c.first_ns) / 1e9),
             .cpu_us = cpu_us_per(cpu, WARM_UP + j->n), .threads = proc_thread_count()};
    int64_t start = now_ns();
    raw_consumer_close(&c);
    r.close_ms = (double)(now_ns() - start) / 1e6;
    return r;
}

static void create_dlq_topic(const char *topic)
{
    char dlq[160];
    snprintf(dlq, sizeof dlq, "%s.dlq", topic);
    create_topic_ex(dlq, 1, true);
}

static row run_eb_subscribe(const job *j)
{
    create_dlq_topic(j->topic);
    run_state *rs = calloc(1, sizeof *rs);
    eb_bus *bus = open_bus();
    double cpu = cpu_now();
    subscribe(bus, j->topic, j->group, rs);
    wait_handled(rs, WARM_UP + j->n);
    row r = {.msgs_per_s = (double)(WARM_UP + j->n) /
                           ((double)(now_ns() - atomic_load(&rs->first_ns)) / 1e9),
             .cpu_us = cpu_us_per(cpu, WARM_UP + j->n), .threads = proc_thread_count(),
             .workers_peak = (int)bus_stat(bus, "workers_peak")};
    r.close_ms = close_bus(bus);
    free(rs);
    return r;
}

typedef struct consumer_arg {
    raw_consumer *c;
    long n;
} consumer_arg;

static void *raw_consumer_main(void *arg)
{
    consumer_arg *a = arg;
    raw_consume_all(a->c, a->n);
    return NULL;
}

static row run_raw_e2e(const job *j)
{
    create_topic(j->topic, PARTITIONS);
    histogram *hist = calloc(1, sizeof *hist);
    raw_consumer c = {.hist = hist};
    raw_consumer_open(&c, j->topic, j->group);
    raw_dr dr = {0};
    rd_kafka_t *producer = raw_producer(&dr);
    for (int64_t give_up = now_ns() + 30 * 1000000000LL; !atomic_load(&c.assigned);) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(c.rk, 10); /* serves the join */
        if (rkm)
            die("raw end-to-end: a message before any was produced");
        if (now_ns() > give_up)
            die("raw end-to-end: no assignment in 30 s");
    }
    consumer_arg arg = {&c, WARM_UP + j->n};
    pthread_t consumer;
    if (pthread_create(&consumer, NULL, raw_consumer_main, &arg) != 0)
        die("raw end-to-end: cannot start the consumer thread");
    raw_produce_all(producer, j->topic, WARM_UP, 0, 0);
    raw_flush(producer, &dr, WARM_UP);
    for (int64_t give_up = now_ns() + 30 * 1000000000LL; atomic_load(&c.got) < WARM_UP;) {
        if (now_ns() > give_up)
            die("raw end-to-end: warm-up not consumed in 30 s");
        sleep_us(100);
    }
    int64_t start = now_ns();
    double cpu = cpu_now();
    raw_produce_all(producer, j->topic, j->n, sample_every(j), j->rate);
    row r = {.threads = proc_thread_count()};
    raw_flush(producer, &dr, WARM_UP + j->n);
    pthread_join(consumer, NULL);
    r.msgs_per_s = (double)j->n / ((double)(now_ns() - start) / 1e9);
    r.cpu_us = cpu_us_per(cpu, j->n);
    set_latency(&r, hist);
    int64_t close_start = now_ns();
    raw_consumer_close(&c);
    rd_kafka_destroy(producer);
    r.close_ms = (double)(now_ns() - close_start) / 1e6;
    free(hist);
    return r;
}

static row run_eb_e2e(const job *j)
{
    create_topic(j->topic, PARTITIONS);
    create_dlq_topic(j->topic);
    run_state *rs = calloc(1, sizeof *rs);
    rs->timed = true;
    delivered d = {0};
    eb_bus *bus = open_bus();
    subscribe(bus, j->topic, j->group, rs);
    eb_publish_all(bus, j->topic, WARM_UP, 0, 0, &d);
    eb_flush_checked(bus, &d, WARM_UP);
    wait_handled(rs, WARM_UP);
    int64_t start = now_ns();
    double cpu = cpu_now();
    eb_publish_all(bus, j->topic, j->n, sample_every(j), j->rate, &d);
    row r = {.threads = proc_thread_count()};
    eb_flush_checked(bus, &d, WARM_UP + j->n);
    wait_handled(rs, WARM_UP + j->n);
    r.msgs_per_s = (double)j->n / ((double)(now_ns() - start) / 1e9);
    r.cpu_us = cpu_us_per(cpu, j->n);
    set_latency(&r, &rs->hist);
    r.workers_peak = (int)bus_stat(bus, "workers_peak");
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
        die("run on %s failed", j->topic);
    r.rss_mib = rss;
    return r;
}

/* -------------------------------------------------------------- report */

static double median(const double *v, int n) { return bench_median(v, n); }

typedef struct series {
    double rate[MAX_ROUNDS], p50[MAX_ROUNDS], p99[MAX_ROUNDS], p999[MAX_ROUNDS],
        close_ms[MAX_ROUNDS], rss[MAX_ROUNDS], threads[MAX_ROUNDS], cpu_us[MAX_ROUNDS],
        samples[MAX_ROUNDS];
    int n;
} series;

static void add_row(series *s, row r)
{
    s->rate[s->n] = r.msgs_per_s;
    s->p50[s->n] = r.p50_us;
    s->p99[s->n] = r.p99_us;
    s->p999[s->n] = r.p999_us;
    s->samples[s->n] = (double)r.samples;
    s->close_ms[s->n] = r.close_ms;
    s->rss[s->n] = r.rss_mib;
    s->threads[s->n] = r.threads;
    s->cpu_us[s->n] = r.cpu_us;
    s->n++;
}

static double rate_of(const series *s) { return median(s->rate, s->n); }

static void print_series(const char *name, const series *s, bool latency, const series *raw)
{
    double rate = rate_of(s);
    printf("%-30s %10.0f %7.1f", name, rate, rate * PAYLOAD / 1e6);
    if (latency)
        printf(" %9.0f %9.0f %9.0f", median(s->p50, s->n), median(s->p99, s->n),
               median(s->p999, s->n));
    else
        printf(" %9s %9s %9s", "-", "-", "-");
    printf(" %6.2f %7.0f %7.1f %8.1f", median(s->cpu_us, s->n), median(s->threads, s->n),
           median(s->rss, s->n), median(s->close_ms, s->n));
    if (raw)
        printf("   %.2fx  (cpu %.2fx)", rate / rate_of(raw),
               median(s->cpu_us, s->n) / median(raw->cpu_us, raw->n));
    printf("\n");
}

typedef struct named_run {
    const char *name;
    row (*fn)(const job *);
    bool needs_backlog;
} named_run;

static const named_run named_runs[] = {
    {"raw-produce", run_raw_produce, false}, {"eb-publish", run_eb_publish, false},
    {"raw-consume", run_raw_consume, true},  {"eb-subscribe", run_eb_subscribe, true},
    {"raw-e2e", run_raw_e2e, false},         {"eb-e2e", run_eb_e2e, false},
};

/** --only: one run in this process, for a profiler. */
static int run_only(const char *name, long n, double rate)
{
    for (size_t i = 0; i < sizeof named_runs / sizeof named_runs[0]; i++) {
        const named_run *nr = &named_runs[i];
        if (strcmp(nr->name, name) != 0)
            continue;
        job j = {.n = n, .rate = rate};
        snprintf(j.topic, sizeof j.topic, "kbench-only-%d-%lld", (int)getpid(),
                 (long long)(time(NULL) % 100000));
        snprintf(j.group, sizeof j.group, "%.100s-group", j.topic);
        if (nr->needs_backlog)
            in_child(run_raw_produce, &j);
        fprintf(stderr, "kafka_bench: %s in pid %d\n", name, (int)getpid());
        row r = nr->fn(&j);
        printf("%-30s %10.0f msgs/s  %.2f us/msg  p50 %.0f us  p99 %.0f us  p99.9 %.0f us "
               "(%ld samples)  threads %d  close %.1f ms\n",
               name, r.msgs_per_s, r.cpu_us, r.p50_us, r.p99_us, r.p999_us, r.samples,
               r.threads, r.close_ms);
        return 0;
    }
    fprintf(stderr, "kafka_bench: --only: no run named %s\n", name);
    return 2;
}

static void progress(const char *what, int round, row r)
{
    fprintf(stderr,
            "kafka_bench: round %d %-24s %10.0f msgs/s  %5.2f us/msg  p50 %8.0f us  p99 %8.0f us"
            "  p99.9 %8.0f us\n",
            round + 1, what, r.msgs_per_s, r.cpu_us, r.p50_us, r.p99_us, r.p999_us);
}

/** A child's job: deletes the topics whose names start with j->topic. */
static row run_delete_topics(const job *j)
{
    delete_topics(j->topic);
    return (row){0};
}

static void delete_round_topics(const char *run_id, int round, const char *kind)
{
    job j = {0};
    snprintf(j.topic, sizeof j.topic, "%s-r%d-%s", run_id, round, kind);
    in_child(run_delete_topics, &j);
}

/** Gives the raw and the eventbus job of a kind a fresh topic and group
 *  each: "<run>-r<round>-raw-<kind>" and "...-group", likewise "-eb-". */
static void name_own_topics(job *raw, job *eb, const char *run_id, int round,
                            const char *kind)
{
    snprintf(raw->topic, sizeof raw->topic, "%s-r%d-raw-%s", run_id, round, kind);
    snprintf(raw->group, sizeof raw->group, "%.100s-group", raw->topic);
    snprintf(eb->topic, sizeof eb->topic, "%s-r%d-eb-%s", run_id, round, kind);
    snprintf(eb->group, sizeof eb->group, "%.100s-group", eb->topic);
}

/** One run of a kind: its name, function, job and the series it adds to. */
typedef struct pair {
    const char *name;
    row (*fn)(const job *);
    const job *j;
    series *out;
} pair;

/** Runs the raw and the eventbus run of one kind; odd rounds run eventbus
 *  first, so that neither side always inherits the broker's flushing and
 *  page cache from the other. */
static void run_pair(int round, const pair *raw, const pair *eb)
{
    const pair *order[2] = {raw, eb};
    if (round % 2) {
        order[0] = eb;
        order[1] = raw;
    }
    for (int i = 0; i < 2; i++) {
        row x = in_child(order[i]->fn, order[i]->j);
        add_row(order[i]->out, x);
        progress(order[i]->name, round, x);
    }
}

/* --pools: the elastic pool against fixed ones, eventbus alone. */
enum { N_POOLS = 5 };
static const int pool_sizes[N_POOLS] = {0, 2, 16, 64, 256};

static int run_pools(long n, int rounds, const char *run_id)
{
    static series cons[N_POOLS];
    int peak[N_POOLS] = {0};
    for (int r = 0; r < rounds; r++) {
        job backlog = {.n = n};
        snprintf(backlog.topic, sizeof backlog.topic, "%s-r%d-pools", run_id, r);
        in_child(run_raw_produce, &backlog);
        for (int k = 0; k < N_POOLS; k++) {
            int i = r % 2 ? N_POOLS - 1 - k : k; /* odd rounds the other way round */
            job j = backlog;
            snprintf(j.group, sizeof j.group, "%.100s-group-%d", backlog.topic, pool_sizes[i]);
            bus_workers = pool_sizes[i];
            row x = in_child(run_eb_subscribe, &j);
            add_row(&cons[i], x);
            peak[i] = x.workers_peak > peak[i] ? x.workers_peak : peak[i];
            char what[48];
            snprintf(what, sizeof what, "subscribe, %s %d", pool_sizes[i] ? "fixed" : "elastic",
                     pool_sizes[i] ? pool_sizes[i] : x.workers_peak);
            progress(what, r, x);
        }
        delete_round_topics(run_id, r, "");
    }
    int best = 1;
    for (int i = 1; i < N_POOLS; i++)
        if (rate_of(&cons[i]) > rate_of(&cons[best]))
            best = i;
    /* Latency at 50% of the best fixed pool's rate: elastic and that pool. */
    double half = rate_of(&cons[best]) / 2;
    static series lat[2];
    const int lat_pools[2] = {0, pool_sizes[best]};
    int lat_peak[2] = {0};
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < 2; k++) {
            int i = r % 2 ? 1 - k : k;
            job j = {.n = n / 2, .rate = half};
            snprintf(j.topic, sizeof j.topic, "%s-r%d-pools-lat-%d", run_id, r, lat_pools[i]);
            snprintf(j.group, sizeof j.group, "%.100s-group", j.topic);
            bus_workers = lat_pools[i];
            row x = in_child(run_eb_e2e, &j);
            add_row(&lat[i], x);
            lat_peak[i] = x.workers_peak > lat_peak[i] ? x.workers_peak : lat_peak[i];
            progress(lat_pools[i] ? "end-to-end @50%, fixed" : "end-to-end @50%, elastic", r, x);
        }
        delete_round_topics(run_id, r, "");
    }
    printf("%-30s %10s %7s %9s %9s %9s %6s %7s %7s %8s   %s\n", "", "msgs/s", "MB/s",
           "p50 us", "p99 us", "p99.9 us", "us/msg", "threads", "RSS MiB", "close ms",
           "vs best fixed");
    for (int i = 0; i < N_POOLS; i++) {
        char name[64];
        if (pool_sizes[i])
            snprintf(name, sizeof name, "subscribe, %d workers", pool_sizes[i]);
        else
            snprintf(name, sizeof name, "subscribe, elastic (peak %d)", peak[i]);
        print_series(name, &cons[i], false, &cons[best]);
    }
    for (int i = 0; i < 2; i++) {
        char name[64];
        if (lat_pools[i])
            snprintf(name, sizeof name, "e2e @%.0f/s, %d workers", half, lat_pools[i]);
        else
            snprintf(name, sizeof name, "e2e @%.0f/s, elastic (peak %d)", half, lat_peak[i]);
        print_series(name, &lat[i], true, i ? NULL : &lat[1]);
    }
    double ratio = rate_of(&cons[0]) / rate_of(&cons[best]);
    double p99 = median(lat[0].p99, lat[0].n) / median(lat[1].p99, lat[1].n);
    printf("goals: elastic >= 0.8x the best fixed pool (%d workers): %.2fx %s; p99 at 50%% "
           "load no worse than that pool: %.2fx %s\n",
           pool_sizes[best], ratio, ratio >= 0.8 ? "met" : "MISSED", p99,
           p99 <= 1.0 ? "met" : "MISSED");
    return 0;
}

/* --rate R without --only: latency at fixed rates, raw against eventbus. */
enum { MAX_RATES = 8, RATE_SECONDS = 10 /* a run's length at its rate, by default */ };

static void print_rate_series(const char *name, const series *s)
{
    printf("%-30s %10.0f %9.0f %9.0f %9.0f %7.2f %7.0f %8.0f\n", name, rate_of(s),
           median(s->p50, s->n), median(s->p99, s->n), median(s->p999, s->n),
           median(s->cpu_us, s->n), median(s->threads, s->n), median(s->samples, s->n));
}

static double ratio_of(const double *eb, const double *raw, int n)
{
    double r = median(raw, n);
    return r > 0 ? median(eb, n) / r : 0;
}

/**
 * For each rate, `rounds` rounds of raw and eventbus end-to-end paced at
 * it (run_pair's alternating order), every message timed, on fresh topics;
 * a table per rate. `n_given`: messages per run, 0 = RATE_SECONDS at the
 * rate.
 */
static int run_rates(const double *rates, int n_rates, long n_given, int rounds,
                     const char *run_id)
{
    for (int k = 0; k < n_rates; k++) {
        double rate = rates[k];
        long n = n_given > 0 ? n_given : (long)(rate * RATE_SECONDS);
        if (n < 1000)
            n = 1000;
        series raw_s = {0}, eb_s = {0};
        char kind[32], raw_name[64], eb_name[64];
        snprintf(kind, sizeof kind, "rate%.0f", rate);
        snprintf(raw_name, sizeof raw_name, "raw end-to-end @%.0f/s", rate);
        snprintf(eb_name, sizeof eb_name, "eventbus end-to-end @%.0f/s", rate);
        for (int r = 0; r < rounds; r++) {
            job raw = {.n = n, .rate = rate, .sample = 1}, eb = raw;
            name_own_topics(&raw, &eb, run_id, r, kind);
            run_pair(r, &(pair){raw_name, run_raw_e2e, &raw, &raw_s},
                     &(pair){eb_name, run_eb_e2e, &eb, &eb_s});
            delete_round_topics(run_id, r, "");
        }
        long samples = (long)median(eb_s.samples, eb_s.n);
        printf("\nat %.0f msgs/s: %ld messages per run (%.1f s at the rate), every one timed: "
               "p99 is the %ldth and p99.9 the %ldth slowest of about %ld samples per run; "
               "%d round(s), medians\n",
               rate, n, (double)n / rate, samples / 100, samples / 1000, samples, rounds);
        printf("%-30s %10s %9s %9s %9s %7s %7s %8s\n", "", "msgs/s", "p50 us", "p99 us",
               "p99.9 us", "us/msg", "threads", "samples");
        print_rate_series(raw_name, &raw_s);
        print_rate_series(eb_name, &eb_s);
        printf("%-30s %9.2fx %8.2fx %8.2fx %8.2fx %6.2fx\n", "eventbus/raw",
               rate_of(&eb_s) / rate_of(&raw_s), ratio_of(eb_s.p50, raw_s.p50, eb_s.n),
               ratio_of(eb_s.p99, raw_s.p99, eb_s.n), ratio_of(eb_s.p999, raw_s.p999, eb_s.n),
               ratio_of(eb_s.cpu_us, raw_s.cpu_us, eb_s.n));
        fflush(stdout);
    }
    printf("\nlatency: publish call (producev for raw) -> handler start (raw: the message "
           "returned by rd_kafka_consumer_poll); us/msg: CPU time (user+system, every thread "
           "of the run's process: producer and consumer) per message\n");
    return 0;
}

int main(int argc, char **argv)
{
    long n = 1000000;
    int rounds = 3;
    long n_given = 0; /* --messages or --smoke: the run's size, also at --rate */
    const char *only = NULL;
    double rates[MAX_RATES];
    int n_rates = 0;
    bool pools = false;
    bootstrap = getenv("EB_KAFKA_BOOTSTRAP");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0)
            n = n_given = 20000, rounds = 1, deadline_s = 120;
        else if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc)
            n = n_given = atol(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--bootstrap") == 0 && i + 1 < argc)
            bootstrap = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc && n_rates < MAX_RATES) {
            if ((rates[n_rates++] = atof(argv[++i])) <= 0) {
                fprintf(stderr, "kafka_bench: --rate %s: msgs/s > 0 expected\n", argv[i]);
                return 2;
            }
        }
        else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc && n_extra_settings < 32)
            extra_settings[n_extra_settings++] = argv[++i];
        else if (strcmp(argv[i], "--work-us") == 0 && i + 1 < argc)
            work_us = atol(argv[++i]);
        else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
            bus_workers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--pools") == 0)
            pools = true;
        else {
            fprintf(stderr,
                    "usage: %s [--smoke] [--messages N] [--rounds R] [--bootstrap ADDR] "
                    "[--only RUN [--rate MSGS_PER_S] | --rate MSGS_PER_S... | --pools] "
                    "[--set KEY=VALUE]... [--work-us N] [--workers K]\n",
                    argv[0]);
            return 2;
        }
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || n < 1000 || work_us < 0 || bus_workers < 0) {
        fprintf(stderr, "kafka_bench: rounds must be 1..%d and messages >= 1000\n",
                MAX_ROUNDS);
        return 2;
    }
    if ((only && n_rates > 1) || (pools && (only || n_rates > 0))) {
        fprintf(stderr, "kafka_bench: --only takes one --rate; --pools neither --only "
                        "nor --rate\n");
        return 2;
    }
    if (!bootstrap || !*bootstrap) {
        printf("skip: no broker: set EB_KAFKA_BOOTSTRAP or pass --bootstrap "
               "(tests/servers/kafka.sh start)\n");
        return 77;
    }
    make_keys();
    if (only)
        return run_only(only, n, n_rates ? rates[0] : 0);
    char run_id[32];
    snprintf(run_id, sizeof run_id, "kbench-%d-%lld", (int)getpid(),
             (long long)(time(NULL) % 100000));
    if (n_rates > 0) {
        printf("kafka_bench: end-to-end at fixed rates, raw librdkafka and eventbus: %d-byte "
               "messages, %d keys, %d partitions; eventbus: %d workers%s, handlers wait %ld us; "
               "broker %s (librdkafka %s)\n",
               PAYLOAD, KEYS, PARTITIONS, bus_workers, bus_workers ? "" : " (elastic)",
               work_us, bootstrap, rd_kafka_version_str());
        fflush(stdout);
        return run_rates(rates, n_rates, n_given, rounds, run_id);
    }
    printf("kafka_bench: %ld messages of %d bytes, %d keys, %d partitions, %d workers%s, "
           "handlers wait %ld us, %d round(s), medians; broker %s (librdkafka %s)\n",
           n, PAYLOAD, KEYS, PARTITIONS, bus_workers, bus_workers ? "" : " (elastic)", work_us,
           rounds, bootstrap, rd_kafka_version_str());
    fflush(stdout);

    series raw_prod = {0}, eb_pub = {0}, raw_cons = {0}, eb_cons = {0}, raw_e2e = {0},
           eb_e2e = {0}, raw_half = {0}, eb_half = {0};
    if (pools)
        return run_pools(n, rounds, run_id);
    for (int r = 0; r < rounds; r++) {
        job raw = {.n = n}, eb = {.n = n};
        snprintf(raw.topic, sizeof raw.topic, "%s-r%d-raw", run_id, r);
        snprintf(eb.topic, sizeof eb.topic, "%s-r%d-eb", run_id, r);
        run_pair(r, &(pair){"raw produce", run_raw_produce, &raw, &raw_prod},
                 &(pair){"eventbus publish", run_eb_publish, &eb, &eb_pub});

        /* Both consumers read the same backlog: the raw-produced topic. */
        eb = raw;
        snprintf(raw.group, sizeof raw.group, "%s-r%d-raw-group", run_id, r);
        snprintf(eb.group, sizeof eb.group, "%s-r%d-eb-group", run_id, r);
        run_pair(r, &(pair){"raw consume", run_raw_consume, &raw, &raw_cons},
                 &(pair){"eventbus subscribe", run_eb_subscribe, &eb, &eb_cons});

        name_own_topics(&raw, &eb, run_id, r, "e2e");
        run_pair(r, &(pair){"raw end-to-end", run_raw_e2e, &raw, &raw_e2e},
                 &(pair){"eventbus end-to-end", run_eb_e2e, &eb, &eb_e2e});
        delete_round_topics(run_id, r, "");
    }
    /* Latency at a fixed rate, the same for both: 50% of eventbus's peak,
     * where p99 means something. */
    double half_rate = rate_of(&eb_e2e) / 2;
    for (int r = 0; r < rounds; r++) {
        job raw = {.n = n / 2, .rate = half_rate}, eb = raw;
        name_own_topics(&raw, &eb, run_id, r, "half");
        run_pair(r, &(pair){"raw end-to-end @50%", run_raw_e2e, &raw, &raw_half},
                 &(pair){"eventbus end-to-end @50%", run_eb_e2e, &eb, &eb_half});
        delete_round_topics(run_id, r, "");
    }

    char half_raw_name[64], half_eb_name[64];
    snprintf(half_raw_name, sizeof half_raw_name, "raw end-to-end @%.0f/s", half_rate);
    snprintf(half_eb_name, sizeof half_eb_name, "eventbus end-to-end @%.0f/s", half_rate);
    printf("%-30s %10s %7s %9s %9s %9s %6s %7s %7s %8s   %s\n", "", "msgs/s", "MB/s",
           "p50 us", "p99 us", "p99.9 us", "us/msg", "threads", "RSS MiB", "close ms",
           "eventbus/raw");
    print_series("raw produce", &raw_prod, false, NULL);
    print_series("eventbus publish", &eb_pub, false, &raw_prod);
    print_series("raw consume (store each)", &raw_cons, false, NULL);
    print_series(bus_workers == WORKERS ? "eventbus subscribe (4 workers)"
                                        : "eventbus subscribe", &eb_cons, false, &raw_cons);
    print_series("raw end-to-end", &raw_e2e, true, NULL);
    print_series("eventbus end-to-end", &eb_e2e, true, &raw_e2e);
    print_series(half_raw_name, &raw_half, true, NULL);
    print_series(half_eb_name, &eb_half, true, &raw_half);
    double pub_ratio = rate_of(&eb_pub) / rate_of(&raw_prod);
    double sub_ratio = rate_of(&eb_cons) / rate_of(&raw_cons);
    printf("goals: publish >= 0.90x raw produce: %.2fx %s; handling >= 0.70x raw consume "
           "(0.80x stretch): %.2fx %s\n",
           pub_ratio, pub_ratio >= 0.9 ? "met" : "MISSED", sub_ratio,
           sub_ratio >= 0.8 ? "met (stretch too)" : sub_ratio >= 0.7 ? "met" : "MISSED");
    printf("us/msg: CPU time (user+system, every thread of the run's process) per message; "
           "threads and RSS are each run's own (a forked child); close: eb_bus_close, or the "
           "raw handles' close and destroy\n");
    printf("latency: publish -> handler start of every %dth message: %.0f samples per "
           "full-speed run, %.0f per 50%% run (p99.9 is the slowest 1/1000 of them; "
           "--rate R times every message)\n",
           SAMPLE, median(eb_e2e.samples, eb_e2e.n), median(eb_half.samples, eb_half.n));
    return 0;
}
