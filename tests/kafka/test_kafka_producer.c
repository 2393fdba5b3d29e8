/*
 * test_kafka_producer.c — the Kafka transport's settings and producer,
 * through the public API: kafka.* keys checked at open (librdkafka's reason,
 * near-miss suggestions, properties eventbus refuses, a missing bootstrap),
 * and publishing against librdkafka's mock cluster (hosted in this process)
 * or a real broker (EB_KAFKA_BOOTSTRAP): keys, headers and payloads read
 * back byte-exact by a raw librdkafka consumer and by kcat, an error
 * callback for a missing topic and an unreachable broker, close purging
 * what is undelivered with PURGED or UNCERTAIN callbacks, topics checked
 * and created by eb_subscribe, and the thread count back to where it was.
 */
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "eventbus/eventbus.h"
#include "kafka_helpers.h"
#include "proc_threads.h"
#include "test_wait.h"

static char err[1024];

/* ------------------------------------------------------------- helpers */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *unique_topic(const char *what)
{
    static char name[128];
    static int serial;
    snprintf(name, sizeof name, "eb-test-%s-%d-%d", what, (int)getpid(), ++serial);
    return name;
}

typedef struct setting {
    const char *key, *value;
} setting;

static eb_config *config_of(const char *bootstrap, const setting *extra)
{
    eb_config *cfg = eb_config_new();
    cr_assert_not_null(cfg);
    cr_assert_eq(eb_config_set(cfg, "transport", "kafka", err, sizeof err), 0, "%s", err);
    if (bootstrap)
        cr_assert_eq(eb_config_set(cfg, "kafka.bootstrap.servers", bootstrap, err, sizeof err),
                     0, "%s", err);
    for (; extra && extra->key; extra++)
        cr_assert_eq(eb_config_set(cfg, extra->key, extra->value, err, sizeof err), 0,
                     "%s = %s: %s", extra->key, extra->value, err);
    return cfg;
}

static eb_bus *open_bus(const char *bootstrap, const setting *extra)
{
    eb_config *cfg = config_of(bootstrap, extra);
    eb_bus *bus = NULL;
    int rc = eb_bus_open(cfg, &bus, err, sizeof err);
    eb_config_destroy(cfg);
    cr_assert_eq(rc, 0, "eb_bus_open: %s: %s", eb_err_name(rc), err);
    return bus;
}

/** Opens a bus that must fail with EB_ERR_CONFIG; returns the sentence. */
static const char *open_fails(const char *bootstrap, const setting *extra)
{
    eb_config *cfg = config_of(bootstrap, extra);
    eb_bus *bus = NULL;
    int rc = eb_bus_open(cfg, &bus, err, sizeof err);
    eb_config_destroy(cfg);
    cr_assert_eq(rc, EB_ERR_CONFIG, "eb_bus_open returned %s (%s)", eb_err_name(rc), err);
    cr_assert_null(bus);
    return err;
}

/* ------------------------------------------------------ delivery reports */

#define MAX_REPORTS 256

typedef struct reports reports;

typedef struct report {
    reports *owner;
    int calls;
    int status;
    char id[48];
} report;

struct reports {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t done;
    report r[MAX_REPORTS];
};

static reports *reports_new(void)
{
    reports *rs = calloc(1, sizeof *rs);
    cr_assert_not_null(rs);
    pthread_mutex_init(&rs->mu, NULL);
    pthread_cond_init(&rs->cv, NULL);
    for (size_t i = 0; i < MAX_REPORTS; i++)
        rs->r[i].owner = rs;
    return rs;
}

static void on_delivery(int status, const char *id, void *opaque)
{
    report *r = opaque;
    pthread_mutex_lock(&r->owner->mu);
    r->calls++;
    r->status = status;
    snprintf(r->id, sizeof r->id, "%s", id ? id : "");
    r->owner->done++;
    pthread_cond_broadcast(&r->owner->cv);
    pthread_mutex_unlock(&r->owner->mu);
}

/** Waits until `n` callbacks ran or timeout_ms passed; @returns how many ran. */
static size_t wait_reports(reports *rs, size_t n, int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000)
        deadline.tv_sec++, deadline.tv_nsec -= 1000000000;
    pthread_mutex_lock(&rs->mu);
    while (rs->done < n && pthread_cond_timedwait(&rs->cv, &rs->mu, &deadline) == 0)
        ;
    size_t done = rs->done;
    pthread_mutex_unlock(&rs->mu);
    return done;
}

static void reports_free(reports *rs)
{
    pthread_cond_destroy(&rs->cv);
    pthread_mutex_destroy(&rs->mu);
    free(rs);
}

static void publish_plain(eb_bus *bus, const char *topic, reports *rs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        eb_outgoing m = {.topic = topic, .payload = "x", .payload_len = 1};
        int rc = eb_publish(bus, &m, on_delivery, &rs->r[i]);
        cr_assert_eq(rc, 0, "publish %zu: %s", i, eb_err_name(rc));
    }
}

/* --------------------------------------------------------- mock cluster */

static rd_kafka_t *mock_host;
static rd_kafka_mock_cluster_t *mock;

static const char *mock_start(void)
{
    char why[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", why, sizeof why);
    mock_host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    cr_assert_not_null(mock_host, "%s", why);
    mock = rd_kafka_mock_cluster_new(mock_host, 1);
    cr_assert_not_null(mock);
    return rd_kafka_mock_cluster_bootstraps(mock);
}

static void mock_topic(const char *topic, int partitions)
{
    cr_assert_eq(rd_kafka_mock_topic_create(mock, topic, partitions, 1), 0);
}

static void mock_stop(void)
{
    rd_kafka_mock_cluster_destroy(mock);
    rd_kafka_destroy(mock_host);
}

/* ------------------------------------------------------------- settings */

Test(kafka_config, unknown_property_names_librdkafkas_reason_and_a_near_miss)
{
    const setting s[] = {{"kafka.bootstrap.servrs", "127.0.0.1:1"}, {NULL, NULL}};
    const char *why = open_fails("127.0.0.1:1", s);
    cr_expect(strstr(why, "kafka.bootstrap.servrs") != NULL, "%s", why);
    cr_expect(strstr(why, "No such configuration property") != NULL, "%s", why);
    cr_expect(strstr(why, "did you mean 'kafka.bootstrap.servers'?") != NULL, "%s", why);
}

Test(kafka_config, unknown_property_far_from_any_gets_no_suggestion)
{
    const setting s[] = {{"kafka.zzzzzzzzzzzzzzzzzzzz", "1"}, {NULL, NULL}};
    const char *why = open_fails("127.0.0.1:1", s);
    cr_expect(strstr(why, "No such configuration property") != NULL, "%s", why);
    cr_expect(strstr(why, "did you mean") == NULL, "%s", why);
}

Test(kafka_config, invalid_value_names_librdkafkas_reason)
{
    const setting s[] = {{"kafka.acks", "banana"}, {NULL, NULL}};
    const char *why = open_fails("127.0.0.1:1", s);
    cr_expect(strstr(why, "kafka.acks") != NULL, "%s", why);
    cr_expect(strstr(why, "Invalid value") != NULL, "%s", why);
}

Test(kafka_config, callbacks_cannot_be_set_as_strings)
{
    const setting s[] = {{"kafka.dr_msg_cb", "x"}, {NULL, NULL}};
    const char *why = open_fails("127.0.0.1:1", s);
    cr_expect(strstr(why, "kafka.dr_msg_cb") != NULL, "%s", why);
}

Test(kafka_config, incompatible_settings_fail_open_with_librdkafkas_reason)
{
    const setting s[] = {{"kafka.acks", "1"}, {NULL, NULL}};
    const char *why = open_fails("127.0.0.1:1", s);
    cr_expect(strstr(why, "acks") != NULL && strstr(why, "idempotence") != NULL, "%s", why);
}

Test(kafka_config, properties_eventbus_owns_are_refused_with_a_reason)
{
    const setting refused[][2] = {
        {{"kafka.group.id", "g"}, {NULL, NULL}},
        {{"kafka.enable.auto.offset.store", "true"}, {NULL, NULL}},
        {{"kafka.transactional.id", "t"}, {NULL, NULL}},
        {{"kafka.partition.assignment.strategy", "cooperative-sticky"}, {NULL, NULL}},
        {{"kafka.log.queue", "true"}, {NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        const char *why = open_fails("127.0.0.1:1", refused[i]);
        cr_expect(strstr(why, refused[i][0].key) != NULL, "%s", why);
        cr_expect(strstr(why, "refused: ") != NULL, "%s", why);
    }
}

Test(kafka_config, a_revoke_timeout_that_outlasts_max_poll_interval_is_refused)
{
    /* A revoke runs on the poll thread: its handlers' time plus a second
     * for the commit must end before librdkafka drops the member. */
    const setting s[] = {{"kafka.max.poll.interval.ms", "20000"},
                         {"dispatch.revoke.timeout.ms", "19500"}, {NULL, NULL}};
    const char *why = open_fails("127.0.0.1:1", s);
    cr_expect(strstr(why, "dispatch.revoke.timeout.ms (19500)") != NULL, "%s", why);
    cr_expect(strstr(why, "kafka.max.poll.interval.ms (20000)") != NULL, "%s", why);
}

Test(kafka_config, harmless_values_of_guarded_properties_are_accepted)
{
    const setting s[] = {{"kafka.partition.assignment.strategy", "roundrobin"},
                         {"kafka.log.queue", "false"},
                         {"kafka.topic.partitions", "3"},
                         {"kafka.topic.replication", "1"},
                         {NULL, NULL}};
    eb_bus *bus = open_bus("127.0.0.1:1", s);
    cr_expect_eq(eb_bus_close(bus, 1000), 0);
    eb_bus_destroy(bus);
}

Test(kafka_config, own_keys_are_checked_by_range)
{
    const setting bad[][2] = {
        {{"kafka.topic.partitions", "0"}, {NULL, NULL}},
        {{"kafka.topic.partitions", "3x"}, {NULL, NULL}},
        {{"kafka.topic.replication", "40000"}, {NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = open_fails("127.0.0.1:1", bad[i]);
        cr_expect(strstr(why, bad[i][0].key) != NULL, "%s", why);
        cr_expect(strstr(why, "not an integer from 1 to") != NULL, "%s", why);
    }
}

Test(kafka_config, missing_bootstrap_servers)
{
    const char *why = open_fails(NULL, NULL);
    cr_expect(strstr(why, "kafka.bootstrap.servers is required") != NULL, "%s", why);
}

/* ------------------------------------------------- round trip, read back */

static const char binary_key[] = {0, 1, 2, (char)0xff};
static const char binary_value[] = {0, (char)0xfe, 0};

static const eb_header rich_headers[] = {
    {"h", "a", 1},
    {"bin", binary_value, sizeof binary_value},
    {"h", "b", 1},
    {"empty", NULL, 0},
};

/* Message i: 0 no key, 1 empty key and empty payload, 2 binary key and
 * headers, 3.. the same key (one partition, in order). */
#define ROUND_TRIP_N 8

static eb_outgoing round_trip_message(const char *topic, size_t i, char *payload)
{
    snprintf(payload, 16, "m%zu", i);
    eb_outgoing m = {.topic = topic, .payload = payload, .payload_len = strlen(payload)};
    if (i == 1) {
        m.key = "", m.key_len = 0;
        m.payload = NULL, m.payload_len = 0;
    } else if (i == 2) {
        m.key = binary_key, m.key_len = sizeof binary_key;
        m.headers = rich_headers, m.header_count = 4;
    } else if (i >= 3) {
        m.key = "same", m.key_len = 4;
    }
    return m;
}

static int partition_of_id(const char *id)
{
    int32_t partition;
    int64_t offset;
    cr_assert(kt_parse_id(id, &partition, &offset), "id '%s'", id);
    return partition;
}

static rd_kafka_t *reader_new(const char *bootstrap, const char *topic, int partitions)
{
    rd_kafka_t *rk = kt_raw_consumer(bootstrap, "eb-test-reader");
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    cr_assert_eq(rd_kafka_assign(rk, parts), 0);
    rd_kafka_topic_partition_list_destroy(parts);
    return rk;
}

static void expect_headers(const rd_kafka_message_t *km)
{
    rd_kafka_headers_t *hdrs = NULL;
    cr_assert_eq(rd_kafka_message_headers(km, &hdrs), 0, "message 2 lost its headers");
    cr_assert_eq(rd_kafka_header_cnt(hdrs), 4);
    for (size_t i = 0; i < 4; i++) {
        const char *name;
        const void *value;
        size_t size;
        cr_assert_eq(rd_kafka_header_get_all(hdrs, i, &name, &value, &size), 0);
        cr_expect_str_eq(name, rich_headers[i].name, "header %zu", i);
        cr_expect_eq(size, rich_headers[i].value_len, "header %zu", i);
        cr_expect_not_null(value, "header %zu: an empty value came back NULL", i);
        if (size == rich_headers[i].value_len && size)
            cr_expect_eq(memcmp(value, rich_headers[i].value, size), 0, "header %zu", i);
    }
}

static void expect_read_back(const rd_kafka_message_t *km)
{
    cr_assert_not_null(km->payload, "a value came back NULL (a tombstone)");
    if (km->len == 0) { /* message 1 */
        cr_expect_not_null(km->key, "the empty key came back as no key");
        cr_expect_eq(km->key_len, 0);
        return;
    }
    const char *text = km->payload;
    if (km->len == 2 && memcmp(text, "m0", 2) == 0) {
        cr_expect_null(km->key, "no key came back as a key");
    } else if (km->len == 2 && memcmp(text, "m2", 2) == 0) {
        cr_expect_eq(km->key_len, sizeof binary_key);
        cr_expect_eq(memcmp(km->key, binary_key, sizeof binary_key), 0);
        expect_headers(km);
    } else {
        cr_expect_eq(km->key_len, 4);
    }
}

/** Reads `n` messages of `topic` with a raw consumer and checks each. */
static void read_back(const char *bootstrap, const char *topic, int partitions, size_t n)
{
    rd_kafka_t *rk = reader_new(bootstrap, topic, partitions);
    size_t got = 0;
    int64_t deadline = now_ms() + 30000;
    while (got < n && now_ms() < deadline) {
        rd_kafka_message_t *km = rd_kafka_consumer_poll(rk, 200);
        if (!km)
            continue;
        if (!km->err) {
            expect_read_back(km);
            got++;
        }
        rd_kafka_message_destroy(km);
    }
    cr_expect_eq(got, n, "read back %zu of %zu messages", got, n);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/** The partition librdkafka's Java-compatible murmur2 picks for `key`. */
static int java_partition_of(const char *key, size_t len, int partitions)
{
    return rd_kafka_msg_partitioner_murmur2(NULL, key, len, partitions, NULL, NULL);
}

/** Reads the topic with kcat: key length, headers, payload length and
 *  payload (not the key: kcat writes message 2's binary key raw). */
static void kcat_reads_keys_and_headers(const char *bootstrap, const char *topic)
{
    if (access("/usr/bin/kcat", X_OK) != 0)
        return;
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "kcat -C -b '%s' -t '%s' -o beginning -e -q -f '%%K|%%h|%%S|%%s\\n' 2>&1",
             bootstrap, topic);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    char line[512];
    bool saw_no_key = false, saw_empty_key = false, saw_headers = false;
    while (fgets(line, sizeof line, f)) {
        saw_no_key |= strcmp(line, "-1||2|m0\n") == 0;
        saw_empty_key |= strcmp(line, "0||0|\n") == 0;
        /* kcat prints header values as C strings: the binary one is cut. */
        saw_headers |= strncmp(line, "4|h=a,bin=,h=b,empty=|2|m2", 26) == 0;
    }
    pclose(f);
    cr_expect(saw_no_key, "kcat did not see message 0 without a key");
    cr_expect(saw_empty_key, "kcat did not see message 1 with an empty key and payload");
    cr_expect(saw_headers, "kcat did not see message 2's headers in order");
}

static void round_trip(const char *bootstrap, const char *topic, int partitions,
                       const setting *extra)
{
    int threads_before = proc_thread_count();
    eb_bus *bus = open_bus(bootstrap, extra);
    reports *rs = reports_new();
    char payloads[ROUND_TRIP_N][16];
    for (size_t i = 0; i < ROUND_TRIP_N; i++) {
        eb_outgoing m = round_trip_message(topic, i, payloads[i]);
        int rc = eb_publish(bus, &m, on_delivery, &rs->r[i]);
        cr_assert_eq(rc, 0, "publish %zu: %s", i, eb_err_name(rc));
    }
    cr_assert_eq(eb_flush(bus, 30000), 0);
    cr_assert_eq(wait_reports(rs, ROUND_TRIP_N, 0), ROUND_TRIP_N);
    int same_key_partition = java_partition_of("same", 4, partitions);
    for (size_t i = 0; i < ROUND_TRIP_N; i++) {
        cr_expect_eq(rs->r[i].calls, 1, "message %zu: %d callbacks", i, rs->r[i].calls);
        cr_expect_eq(rs->r[i].status, 0, "message %zu: %s", i, eb_err_name(rs->r[i].status));
        int partition = partition_of_id(rs->r[i].id);
        if (i >= 3)
            cr_expect_eq(partition, same_key_partition, "key 'same' not on Java's partition");
    }
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    eb_bus_destroy(bus);
    cr_expect_eq(proc_thread_count(), threads_before, "threads left behind after destroy");
    reports_free(rs);
    read_back(bootstrap, topic, partitions, ROUND_TRIP_N);
    kcat_reads_keys_and_headers(bootstrap, topic);
}

Test(kafka_mock, keys_headers_and_payloads_round_trip)
{
    const char *bootstrap = mock_start();
    const char *topic = unique_topic("roundtrip");
    mock_topic(topic, 3);
    round_trip(bootstrap, topic, 3, NULL);
    mock_stop();
}

/* --------------------------------------------------------------- failures */

/* The mock cluster creates any topic a client asks about; a topic error
 * makes it answer "unknown topic" like a broker without auto-creation. */
static const char *mock_missing_topic(const char *what)
{
    const char *topic = unique_topic(what);
    rd_kafka_mock_topic_set_error(mock, topic, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    return topic;
}

Test(kafka_mock, missing_topic_fails_through_an_error_not_silence)
{
    const char *bootstrap = mock_start();
    const setting s[] = {{"kafka.topic.metadata.propagation.max.ms", "1000"},
                         {"kafka.message.timeout.ms", "5000"},
                         {NULL, NULL}};
    eb_bus *bus = open_bus(bootstrap, s);
    reports *rs = reports_new();
    eb_outgoing m = {.topic = mock_missing_topic("missing"), .payload = "x", .payload_len = 1};
    int rc = eb_publish(bus, &m, on_delivery, &rs->r[0]);
    if (rc == 0) {
        cr_assert_eq(wait_reports(rs, 1, 20000), 1, "no callback for a missing topic");
        rc = rs->r[0].status;
    }
    cr_expect(rc == EB_ERR_NOT_FOUND || rc == EB_ERR_TIMEOUT, "%s", eb_err_name(rc));
    cr_log_info("missing topic: %s", eb_err_name(rc));
    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    eb_bus_destroy(bus);
    reports_free(rs);
    mock_stop();
}

Test(kafka_unreachable, publishes_time_out_through_callbacks_and_close_does_not_hang)
{
    int threads_before = proc_thread_count();
    const setting s[] = {{"kafka.message.timeout.ms", "1000"}, {NULL, NULL}};
    eb_bus *bus = open_bus("127.0.0.1:1", s);
    reports *rs = reports_new();
    publish_plain(bus, "eb-test-unreachable", rs, 5);
    cr_assert_eq(wait_reports(rs, 5, 15000), 5, "callbacks missing");
    for (size_t i = 0; i < 5; i++) {
        cr_expect_eq(rs->r[i].status, EB_ERR_TIMEOUT, "%s", eb_err_name(rs->r[i].status));
        cr_expect_str_empty(rs->r[i].id);
    }
    int64_t t0 = now_ms();
    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    cr_expect_lt(now_ms() - t0, 3000, "close took %lld ms", (long long)(now_ms() - t0));
    eb_bus_destroy(bus);
    cr_expect_eq(proc_thread_count(), threads_before, "threads left behind after destroy");
    reports_free(rs);
}

Test(kafka_unreachable, close_purges_what_was_never_sent)
{
    int threads_before = proc_thread_count();
    eb_bus *bus = open_bus("127.0.0.1:1", NULL); /* message.timeout.ms: 5 minutes */
    reports *rs = reports_new();
    publish_plain(bus, "eb-test-purge", rs, 50);
    int64_t t0 = now_ms();
    cr_expect_eq(eb_bus_close(bus, 300), EB_ERR_TIMEOUT);
    cr_expect_lt(now_ms() - t0, 3000, "close took %lld ms", (long long)(now_ms() - t0));
    cr_assert_eq(wait_reports(rs, 50, 0), 50, "close returned before every callback ran");
    for (size_t i = 0; i < 50; i++) {
        cr_expect_eq(rs->r[i].calls, 1);
        cr_expect_eq(rs->r[i].status, EB_ERR_PURGED, "%s", eb_err_name(rs->r[i].status));
    }
    eb_bus_destroy(bus);
    cr_expect_eq(proc_thread_count(), threads_before, "threads left behind after destroy");
    reports_free(rs);
}

/* Issue 7, defect 12: a delivery callback that publishes again what failed
 * (an application retrying its own publishes) put a new message in the
 * queue after close's purge, and the producer's stop waited for it until
 * message.timeout.ms (5 minutes here). */
typedef struct republisher {
    eb_bus *bus;
    atomic_int callbacks, republished;
} republisher;

static void republish_failures(int status, const char *id, void *opaque)
{
    (void)id;
    republisher *r = opaque;
    atomic_fetch_add(&r->callbacks, 1);
    eb_outgoing m = {.topic = "eb-test-republish", .payload = "again", .payload_len = 5};
    if (status != 0 && eb_publish(r->bus, &m, republish_failures, r) == 0)
        atomic_fetch_add(&r->republished, 1);
}

Test(kafka_unreachable, a_callback_publishing_during_close_does_not_hold_it, .timeout = 60)
{
    int threads_before = proc_thread_count();
    republisher r = {.bus = open_bus("127.0.0.1:1", NULL)}; /* message.timeout.ms: 5 min */
    eb_outgoing m = {.topic = "eb-test-republish", .payload = "first", .payload_len = 5};
    for (int i = 0; i < 10; i++)
        cr_assert_eq(eb_publish(r.bus, &m, republish_failures, &r), 0);
    int64_t t0 = now_ms();
    int rc = eb_bus_close(r.bus, 300);
    int64_t took = now_ms() - t0;
    cr_expect_eq(rc, EB_ERR_TIMEOUT, "%s", eb_err_name(rc));
    cr_expect_lt(took, 3000, "close took %lld ms (%d publishes from callbacks)",
                 (long long)took, atomic_load(&r.republished));
    cr_expect_eq(atomic_load(&r.callbacks), 10 + atomic_load(&r.republished),
                 "a publish got no callback");
    eb_bus_destroy(r.bus);
    cr_expect_eq(proc_thread_count(), threads_before, "threads left behind after destroy");
}

/* A publisher waiting for room in librdkafka's full queue held close for
 * its whole publish.timeout.ms; close now wakes it with EB_ERR_CLOSED
 * (issue 7, defect 7, as the memory transport does). */
typedef struct waiting_publisher {
    eb_bus *bus;
    int rc;
    int64_t returned_ms;
} waiting_publisher;

static void *publish_into_full_queue(void *arg)
{
    waiting_publisher *w = arg;
    eb_outgoing m = {.topic = "eb-test-full", .payload = "x", .payload_len = 1};
    w->rc = eb_publish(w->bus, &m, NULL, NULL); /* waits: the queue is full */
    w->returned_ms = now_ms();
    return NULL;
}

static bool publisher_waits(void *bus)
{
    char *json = NULL;
    bool waiting = eb_bus_stats(bus, &json) == 0 && strstr(json, "\"inflight\":6");
    eb_free(json);
    return waiting;
}

Test(kafka_unreachable, close_wakes_a_publisher_waiting_for_room, .timeout = 60)
{
    const setting s[] = {{"kafka.queue.buffering.max.messages", "5"},
                         {"publish.timeout.ms", "20000"},
                         {NULL, NULL}};
    waiting_publisher w = {.bus = open_bus("127.0.0.1:1", s)};
    eb_outgoing m = {.topic = "eb-test-full", .payload = "x", .payload_len = 1};
    int accepted = 0;
    while (accepted < 100 && eb_publish(w.bus, &m, NULL, NULL) == 0 && ++accepted < 5)
        ;
    cr_assert_eq(accepted, 5, "the queue of 5 took %d", accepted);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, publish_into_full_queue, &w), 0);
    /* The waiting publish counts in the producer's in-flight messages. */
    cr_assert(test_wait_for(publisher_waits, w.bus, 10000),
              "the publisher never waited for room");
    int64_t t0 = now_ms();
    int rc = eb_bus_close(w.bus, 300);
    int64_t took = now_ms() - t0;
    pthread_join(t, NULL);
    cr_expect_eq(rc, EB_ERR_TIMEOUT, "%s", eb_err_name(rc));
    cr_expect_lt(took, 3000, "close took %lld ms", (long long)took);
    cr_expect_eq(w.rc, EB_ERR_CLOSED, "the waiting publish returned %s", eb_err_name(w.rc));
    cr_expect_lt(w.returned_ms - t0, 3000, "the publisher waited %lld ms",
                 (long long)(w.returned_ms - t0));
    eb_bus_destroy(w.bus);
}

Test(kafka_mock, close_reports_messages_in_flight_as_uncertain)
{
    const char *bootstrap = mock_start();
    const char *topic = unique_topic("inflight");
    mock_topic(topic, 1);
    int threads_before = proc_thread_count();
    eb_bus *bus = open_bus(bootstrap, NULL);
    reports *rs = reports_new();
    /* One delivered message: the producer id is taken and the connection up. */
    publish_plain(bus, topic, rs, 1);
    cr_assert_eq(eb_flush(bus, 10000), 0);
    cr_assert_eq(rs->r[0].status, 0);
    /* The broker now answers after 10 s: what is sent stays in flight. */
    rd_kafka_mock_broker_set_rtt(mock, 1, 10000);
    for (size_t i = 1; i <= 20; i++) {
        eb_outgoing m = {.topic = topic, .payload = "y", .payload_len = 1};
        cr_assert_eq(eb_publish(bus, &m, on_delivery, &rs->r[i]), 0);
    }
    /* Nothing observable says "sent, unanswered": give linger.ms (5 ms) and
     * the local socket ample time to put the batch on the wire. */
    usleep(500 * 1000);
    int64_t t0 = now_ms();
    cr_expect_eq(eb_bus_close(bus, 100), EB_ERR_TIMEOUT);
    cr_expect_lt(now_ms() - t0, 3000, "close took %lld ms", (long long)(now_ms() - t0));
    cr_assert_eq(wait_reports(rs, 21, 0), 21, "close returned before every callback ran");
    size_t uncertain = 0;
    for (size_t i = 1; i <= 20; i++) {
        cr_expect_eq(rs->r[i].calls, 1);
        cr_expect(rs->r[i].status == EB_ERR_UNCERTAIN || rs->r[i].status == EB_ERR_PURGED,
                  "%s", eb_err_name(rs->r[i].status));
        uncertain += rs->r[i].status == EB_ERR_UNCERTAIN;
    }
    cr_expect_gt(uncertain, 0, "no in-flight message was reported UNCERTAIN");
    cr_log_info("close with 20 in flight: %zu UNCERTAIN, %zu PURGED", uncertain, 20 - uncertain);
    eb_bus_destroy(bus);
    cr_expect_eq(proc_thread_count(), threads_before, "threads left behind after destroy");
    reports_free(rs);
    mock_stop();
}

Test(kafka_unreachable, a_full_queue_returns_full_at_once_with_a_zero_timeout)
{
    const setting s[] = {{"kafka.queue.buffering.max.messages", "10"},
                         {"publish.timeout.ms", "0"},
                         {NULL, NULL}};
    eb_bus *bus = open_bus("127.0.0.1:1", s);
    reports *rs = reports_new();
    publish_plain(bus, "eb-test-full", rs, 10);
    eb_outgoing m = {.topic = "eb-test-full", .payload = "x", .payload_len = 1};
    cr_expect_eq(eb_publish(bus, &m, on_delivery, &rs->r[10]), EB_ERR_FULL);
    eb_bus_close(bus, 100);
    cr_expect_eq(wait_reports(rs, 10, 0), 10);
    eb_bus_destroy(bus);
    reports_free(rs);
}

Test(kafka_unreachable, a_full_queue_waits_publish_timeout_then_returns_full)
{
    const setting s[] = {{"kafka.queue.buffering.max.messages", "10"},
                         {"publish.timeout.ms", "300"},
                         {NULL, NULL}};
    eb_bus *bus = open_bus("127.0.0.1:1", s);
    reports *rs = reports_new();
    publish_plain(bus, "eb-test-full", rs, 10);
    eb_outgoing m = {.topic = "eb-test-full", .payload = "x", .payload_len = 1};
    int64_t t0 = now_ms();
    cr_expect_eq(eb_publish(bus, &m, on_delivery, &rs->r[10]), EB_ERR_FULL);
    int64_t waited = now_ms() - t0;
    cr_expect(waited >= 290 && waited < 2000, "waited %lld ms for room", (long long)waited);
    eb_bus_close(bus, 100);
    cr_expect_eq(wait_reports(rs, 10, 0), 10);
    eb_bus_destroy(bus);
    reports_free(rs);
}

Test(kafka_mock, publishers_wait_for_room_and_everything_is_delivered)
{
    const char *bootstrap = mock_start();
    const char *topic = unique_topic("room");
    mock_topic(topic, 2);
    const setting s[] = {{"kafka.queue.buffering.max.messages", "10"},
                         {"publish.timeout.ms", "10000"},
                         {NULL, NULL}};
    eb_bus *bus = open_bus(bootstrap, s);
    reports *rs = reports_new();
    publish_plain(bus, topic, rs, MAX_REPORTS); /* 25 times the queue's room */
    cr_expect_eq(eb_flush(bus, 30000), 0);
    cr_assert_eq(wait_reports(rs, MAX_REPORTS, 0), MAX_REPORTS);
    for (size_t i = 0; i < MAX_REPORTS; i++)
        cr_expect_eq(rs->r[i].status, 0, "%zu: %s", i, eb_err_name(rs->r[i].status));
    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    eb_bus_destroy(bus);
    reports_free(rs);
    mock_stop();
}

/* ------------------------------------------------------- topics (subscribe) */

static eb_result ignore_message(const eb_msg *msg, void *opaque)
{
    return EB_ACK;
}

static void subscribe_missing_topic_is_not_found(const char *bootstrap, const char *topic)
{
    eb_bus *bus = open_bus(bootstrap, NULL);
    eb_sub *sub = NULL;
    int rc = eb_subscribe(bus, topic, "g", ignore_message, NULL, NULL, &sub, err, sizeof err);
    cr_expect_eq(rc, EB_ERR_NOT_FOUND, "%s: %s", eb_err_name(rc), err);
    cr_expect(strstr(err, topic) && strstr(err, "kafka.topic.partitions"), "%s", err);
    eb_sub_destroy(sub);
    eb_bus_close(bus, 5000);
    eb_bus_destroy(bus);
}

static void subscribe_creates_topics(const char *bootstrap)
{
    const setting s[] = {{"kafka.topic.partitions", "2"}, {NULL, NULL}};
    eb_bus *bus = open_bus(bootstrap, s);
    eb_sub *sub = NULL;
    const char *topic = unique_topic("created");
    int rc = eb_subscribe(bus, topic, "g", ignore_message, NULL, NULL, &sub, err, sizeof err);
    cr_expect_eq(rc, 0, "%s: %s", eb_err_name(rc), err);
    eb_sub_destroy(sub);
    eb_bus_close(bus, 10000);
    eb_bus_destroy(bus);
}

static void subscribe_invalid_topic_name(const char *bootstrap)
{
    eb_bus *bus = open_bus(bootstrap, NULL);
    eb_sub *sub = NULL;
    int rc = eb_subscribe(bus, "bad/name", "g", ignore_message, NULL, NULL, &sub, err,
                          sizeof err);
    cr_expect_eq(rc, EB_ERR_INVALID, "%s: %s", eb_err_name(rc), err);
    cr_expect(strstr(err, "bad/name") != NULL, "%s", err);
    eb_sub_destroy(sub);
    eb_bus_close(bus, 5000);
    eb_bus_destroy(bus);
}

/* Creation is tested on the real broker only: the mock creates topics by
 * itself and has no CreateTopics in librdkafka 2.0.2. */
Test(kafka_mock, subscribe_checks_topics)
{
    const char *bootstrap = mock_start();
    subscribe_missing_topic_is_not_found(bootstrap, mock_missing_topic("nosuch"));
    subscribe_invalid_topic_name(bootstrap);
    mock_stop();
}

/* ------------------------------------------------------------ real broker */

static const char *real_broker(void)
{
    const char *bootstrap = getenv("EB_KAFKA_BOOTSTRAP");
    if (!bootstrap || !*bootstrap)
        cr_skip_test("EB_KAFKA_BOOTSTRAP is not set (tests/servers/kafka.sh starts a broker)");
    return bootstrap;
}


Test(kafka_broker, keys_headers_and_payloads_round_trip)
{
    const char *bootstrap = real_broker();
    const char *topic = unique_topic("roundtrip");
    kt_create_topic(bootstrap, topic, 3);
    round_trip(bootstrap, topic, 3, NULL);
}

Test(kafka_broker, subscribe_checks_and_creates_topics)
{
    const char *bootstrap = real_broker();
    subscribe_missing_topic_is_not_found(bootstrap, unique_topic("nosuch"));
    subscribe_invalid_topic_name(bootstrap);
    subscribe_creates_topics(bootstrap);
}

Test(kafka_broker, a_message_above_the_brokers_limit_fails_as_too_large)
{
    const char *bootstrap = real_broker();
    const char *topic = unique_topic("large");
    kt_create_topic(bootstrap, topic, 1);
    /* Allowed by the client, refused by the broker (1 MiB by default). */
    const setting s[] = {{"kafka.message.max.bytes", "5000000"}, {NULL, NULL}};
    eb_bus *bus = open_bus(bootstrap, s);
    reports *rs = reports_new();
    size_t size = 3 * 1024 * 1024;
    char *big = calloc(1, size);
    eb_outgoing m = {.topic = topic, .payload = big, .payload_len = size};
    int rc = eb_publish(bus, &m, on_delivery, &rs->r[0]);
    if (rc == 0) {
        cr_assert_eq(wait_reports(rs, 1, 30000), 1);
        rc = rs->r[0].status;
    }
    cr_expect_eq(rc, EB_ERR_TOO_LARGE, "%s", eb_err_name(rc));
    free(big);
    eb_bus_close(bus, 5000);
    eb_bus_destroy(bus);
    reports_free(rs);
}

/* ------------------------------------------------------------------ health */

static atomic_int disconnected_events;

static void count_disconnected(eb_bus *bus, const eb_event *ev, void *opaque)
{
    if (ev->type == EB_EVENT_DISCONNECTED)
        atomic_fetch_add(&disconnected_events, 1);
}

Test(kafka_unreachable, health_says_down_and_an_event_says_disconnected)
{
    eb_config *cfg = config_of("127.0.0.1:1", NULL);
    eb_config_set_event_cb(cfg, count_disconnected, NULL);
    eb_bus *bus = NULL;
    cr_assert_eq(eb_bus_open(cfg, &bus, err, sizeof err), 0, "%s", err);
    eb_config_destroy(cfg);
    reports *rs = reports_new();
    publish_plain(bus, "eb-test-health", rs, 1); /* makes librdkafka connect */
    eb_health h = {0};
    int64_t deadline = now_ms() + 10000;
    while (now_ms() < deadline) {
        cr_assert_eq(eb_bus_health(bus, &h), 0);
        if (h.state == EB_HEALTH_DOWN)
            break;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL); /* polling the health with a deadline */
    }
    cr_expect_eq(h.state, EB_HEALTH_DOWN, "health: %d (%s)", h.state, h.detail);
    cr_expect(strstr(h.detail, "no broker reachable") != NULL, "%s", h.detail);
    cr_expect_geq(atomic_load(&disconnected_events), 1);
    eb_bus_close(bus, 1000);
    eb_bus_destroy(bus);
    reports_free(rs);
}
