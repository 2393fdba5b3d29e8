/*
 * test_kafka_mock.c — faults a real broker cannot give on demand, from
 * librdkafka's mock cluster (3 brokers, hosted by an rd_kafka_t of this
 * process; no real broker needed):
 *   - retriable produce errors: every publish confirmed exactly once and
 *     handled exactly once;
 *   - the group coordinator moving between brokers mid-stream: nothing
 *     lost, and the final commit reaches the new coordinator;
 *   - a partition leader down for a while: nothing lost once it returns
 *     (the mock may append a retried Produce twice: see seen_offsets).
 * The mock's fresh group join takes a fixed 3 s (DESIGN.md): each case
 * joins once and has no rebalance, so the file runs in about 20 s.
 */
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka_helpers.h"

enum { BROKERS = 3, PARTITIONS = 3 };

/* The Kafka protocol's ApiKey of Produce: librdkafka 2.0.2 installs no
 * header with its API_KEY_PRODUCE. */
enum { API_KEY_PRODUCE = 0 };

/* ---------------------------------------------------------- mock cluster */

static rd_kafka_t *mock_host;
static rd_kafka_mock_cluster_t *mock;

/** Starts a 3-broker cluster with `topic` (and its DLQ topic, which
 *  subscribe checks), partition p led by broker p + 1. @returns the
 *  cluster's bootstrap servers. */
static const char *mock_start(const char *topic)
{
    char why[256], dlq[160];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "log_level", "3", why, sizeof why), 0);
    mock_host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    cr_assert_not_null(mock_host, "%s", why);
    mock = rd_kafka_mock_cluster_new(mock_host, BROKERS);
    cr_assert_not_null(mock);
    snprintf(dlq, sizeof dlq, "%s.dlq", topic);
    cr_assert_eq(rd_kafka_mock_topic_create(mock, topic, PARTITIONS, BROKERS), 0);
    cr_assert_eq(rd_kafka_mock_topic_create(mock, dlq, 1, BROKERS), 0);
    for (int p = 0; p < PARTITIONS; p++)
        cr_assert_eq(rd_kafka_mock_partition_set_leader(mock, topic, p, p + 1), 0);
    return rd_kafka_mock_cluster_bootstraps(mock);
}

static void mock_stop(void)
{
    rd_kafka_mock_cluster_destroy(mock);
    rd_kafka_destroy(mock_host);
}

/* Offsets committed 10 times a second: a commit to a coordinator that
 * moved shows within the case. Reconnects to a broker that is back come
 * within half a second (librdkafka's backoff grows to 10 s by default). */
static const kt_setting mock_settings[] = {
    {"kafka.auto.commit.interval.ms", "100"},
    {"kafka.reconnect.backoff.max.ms", "500"},
    {"kafka.message.timeout.ms", "30000"},
    {NULL, NULL},
};

static void publish_range(eb_bus *bus, kt_tracker *t, const char *topic, size_t from,
                          size_t to)
{
    for (size_t i = from; i < to; i++) {
        char key[16];
        snprintf(key, sizeof key, "key-%zu", i % 64);
        int rc = kt_publish(bus, t, topic, i, key);
        cr_assert_eq(rc, 0, "publish %zu: %s", i, eb_err_name(rc));
    }
}

/** Every publish reported exactly once, as stored. */
static void expect_confirmed_once(const kt_tracker *t)
{
    for (size_t i = 0; i < t->n; i++) {
        cr_expect_eq(t->reports[i], 1, "message %zu: %d delivery callbacks", i, t->reports[i]);
        cr_expect_eq(t->status[i], 0, "message %zu: status %s", i, eb_err_name(t->status[i]));
    }
}

static void wait_all(kt_tracker *t, const char *what)
{
    size_t n = t->n;
    cr_assert(kt_wait(t, kt_reports_at_least, &n, 40000), "%s: %zu of %zu delivery callbacks",
              what, t->n_reports, n);
    cr_assert(kt_wait(t, kt_handled_at_least, &n, 40000), "%s: %zu of %zu handled", what,
              t->n_handled_distinct, n);
}

/** Revokes so far (call before close, whose final revoke does not count). */
static size_t revokes(kt_tracker *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->n_revokes;
    pthread_mutex_unlock(&t->mu);
    return n;
}

/*
 * Copies in the log. The mock cluster checks an idempotent producer's
 * sequence numbers only when it is transactional (rdkafka_mock.c 2.0.2,
 * rd_kafka_mock_validate_records), so a Produce it appended but whose
 * answer a downed broker never sent is appended again on retry: the
 * message is in the log twice, at two offsets, and is rightly handled
 * twice. A real broker drops the retry. Only a second handling at the
 * same offset is the consumer's duplicate.
 */
typedef struct seen_offsets {
    pthread_mutex_t mu;
    size_t n;
    int32_t *partition; /* where each message was first handled; -1: not yet */
    int64_t *offset;
    size_t log_copies;  /* handled again at another offset */
    size_t redelivered; /* handled again at the same offset */
} seen_offsets;

static seen_offsets seen;

static void seen_start(size_t n)
{
    seen = (seen_offsets){.n = n,
                          .partition = malloc(n * sizeof *seen.partition),
                          .offset = malloc(n * sizeof *seen.offset)};
    cr_assert(seen.partition && seen.offset);
    pthread_mutex_init(&seen.mu, NULL);
    for (size_t i = 0; i < n; i++)
        seen.partition[i] = -1;
}

static void seen_free(void)
{
    pthread_mutex_destroy(&seen.mu);
    free(seen.partition);
    free(seen.offset);
}

/** kt_handle, telling the log's copies from redeliveries. */
static eb_result handle_noting_copies(const eb_msg *msg, void *opaque)
{
    size_t len;
    const char *payload = eb_msg_payload(msg, &len);
    char text[24];
    int32_t partition;
    int64_t offset;
    if (len && len < sizeof text && kt_parse_id(eb_msg_id(msg), &partition, &offset)) {
        memcpy(text, payload, len);
        text[len] = '\0';
        size_t i = strtoull(text, NULL, 10);
        pthread_mutex_lock(&seen.mu);
        if (i < seen.n && seen.partition[i] < 0) {
            seen.partition[i] = partition;
            seen.offset[i] = offset;
        } else if (i < seen.n && seen.partition[i] == partition && seen.offset[i] == offset) {
            seen.redelivered++;
        } else if (i < seen.n) {
            seen.log_copies++;
        }
        pthread_mutex_unlock(&seen.mu);
    }
    return kt_handle(msg, opaque);
}

/** Redeliveries fail a case only when no revoke happened (DESIGN.md). */
static void expect_no_duplicates_without_revoke(const kt_tracker *t, size_t revoked,
                                                const char *what)
{
    pthread_mutex_lock(&seen.mu);
    size_t dups = seen.redelivered, copies = seen.log_copies;
    pthread_mutex_unlock(&seen.mu);
    printf("mock %s: %zu handled, %zu redelivered, %zu copies in the log (the mock's retried "
           "Produce), %zu revokes before close\n",
           what, t->n_handled_distinct, dups, copies, revoked);
    cr_expect_eq(kt_duplicates(t) > 0, dups + copies > 0, "%s: the tallies disagree", what);
    if (revoked == 0)
        cr_expect_eq(dups, 0, "%s: %zu messages handled twice at one offset without a revoke",
                     what, dups);
}

/* ------------------------------------------------ retriable produce errors */

Test(kafka_mock, retriable_produce_errors_confirm_each_publish_once, .timeout = 60)
{
    enum { N = 1000 };
    char topic[128], group[128];
    kt_unique(topic, sizeof topic, "mock-produce");
    kt_unique(group, sizeof group, "mock-produce-g");
    const char *bootstrap = mock_start(topic);
    kt_tracker *t = kt_tracker_new(N);
    seen_start(N);
    eb_bus *bus = kt_open(bootstrap, mock_settings, kt_tracker_event, t);
    eb_sub *sub = kt_subscribe_ready(bus, topic, group, handle_noting_copies, t, 20000);

    /* The first Produce requests of each leader fail with retriable
     * errors, and two more wherever they land. */
    for (int b = 1; b <= BROKERS; b++)
        cr_assert_eq(rd_kafka_mock_broker_push_request_error_rtts(
                         mock, b, API_KEY_PRODUCE, 3,
                         RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0,
                         RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 0,
                         RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, 0),
                     0);
    rd_kafka_mock_push_request_errors(mock, API_KEY_PRODUCE, 2,
                                      RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT);
    publish_range(bus, t, topic, 0, N);
    wait_all(t, "produce errors");
    size_t revoked = revokes(t);
    for (int b = 1; b <= BROKERS; b++) {
        size_t left = 99;
        cr_assert_eq(rd_kafka_mock_broker_error_stack_cnt(mock, b, API_KEY_PRODUCE, &left), 0);
        cr_expect_eq(left, 0, "broker %d: %zu injected errors were never hit", b, left);
    }
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    expect_confirmed_once(t);
    expect_no_duplicates_without_revoke(t, revoked, "produce errors");

    eb_sub_destroy(sub);
    eb_bus_destroy(bus);
    kt_tracker_free(t);
    seen_free();
    mock_stop();
}

/* ------------------------------------------------------ coordinator moves */

static bool handled_below(const kt_tracker *t, void *arg)
{
    size_t to = *(size_t *)arg;
    for (size_t i = 0; i < to; i++)
        if (!t->handled[i])
            return false;
    return true;
}

Test(kafka_mock, coordinator_moves_lose_nothing, .timeout = 60)
{
    enum { ROUNDS = 4, PER_ROUND = 250, N = ROUNDS * PER_ROUND };
    char topic[128], group[128];
    kt_unique(topic, sizeof topic, "mock-coord");
    kt_unique(group, sizeof group, "mock-coord-g");
    const char *bootstrap = mock_start(topic);
    cr_assert_eq(rd_kafka_mock_coordinator_set(mock, "group", group, 1), 0);
    kt_tracker *t = kt_tracker_new(N);
    seen_start(N);
    eb_bus *bus = kt_open(bootstrap, mock_settings, kt_tracker_event, t);
    eb_sub *sub = kt_subscribe_ready(bus, topic, group, handle_noting_copies, t, 20000);

    /* Each round: publish, move the coordinator while those messages are
     * handled and their offsets committed, wait until they are handled. */
    for (int r = 0; r < ROUNDS; r++) {
        size_t to = (size_t)(r + 1) * PER_ROUND;
        publish_range(bus, t, topic, (size_t)r * PER_ROUND, to);
        int coordinator = (r + 1) % BROKERS + 1;
        cr_assert_eq(rd_kafka_mock_coordinator_set(mock, "group", group, coordinator), 0);
        cr_assert(kt_wait(t, handled_below, &to, 30000),
                  "round %d (coordinator now broker %d): %zu of %zu handled", r, coordinator,
                  t->n_handled_distinct, to);
    }
    wait_all(t, "coordinator moves");
    size_t revoked = revokes(t);
    /* Close commits the final offsets to the last coordinator. */
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    expect_confirmed_once(t);
    expect_no_duplicates_without_revoke(t, revoked, "coordinator moves");

    int64_t end[PARTITIONS] = {0}, committed[PARTITIONS];
    for (size_t i = 0; i < N; i++)
        if (t->partition[i] >= 0 && t->offset[i] + 1 > end[t->partition[i]])
            end[t->partition[i]] = t->offset[i] + 1;
    kt_committed(bootstrap, group, topic, PARTITIONS, committed);
    for (int p = 0; p < PARTITIONS; p++)
        cr_expect_eq(committed[p], end[p], "partition %d: committed %lld, end %lld", p,
                     (long long)committed[p], (long long)end[p]);

    eb_sub_destroy(sub);
    eb_bus_destroy(bus);
    kt_tracker_free(t);
    seen_free();
    mock_stop();
}

/* ---------------------------------------------------------- broker down */

Test(kafka_mock, leader_down_and_back_loses_nothing, .timeout = 60)
{
    enum { N = 1500, DOWN = 2 /* leads partition 1 */, OUTAGE_MS = 2000 };
    char topic[128], group[128];
    kt_unique(topic, sizeof topic, "mock-down");
    kt_unique(group, sizeof group, "mock-down-g");
    const char *bootstrap = mock_start(topic);
    /* The coordinator stays up: the outage is a partition leader's. */
    cr_assert_eq(rd_kafka_mock_coordinator_set(mock, "group", group, 1), 0);
    kt_tracker *t = kt_tracker_new(N);
    seen_start(N);
    eb_bus *consumer = kt_open(bootstrap, mock_settings, kt_tracker_event, t);
    eb_sub *sub = kt_subscribe_ready(consumer, topic, group, handle_noting_copies, t, 20000);
    eb_bus *producer = kt_open(bootstrap, mock_settings, NULL, NULL);

    /* About 500 messages/s, spanning the outage; the first refusal ends it. */
    kt_stream p = {.bus = producer, .t = t, .topic = topic, .keys = 64, .period_ms = 2};
    kt_stream_start(&p);
    size_t warm = 200;
    cr_assert(kt_wait(t, kt_handled_at_least, &warm, 20000), "%zu handled before the outage",
              t->n_handled_distinct);
    cr_assert_eq(rd_kafka_mock_broker_set_down(mock, DOWN), 0);
    size_t down_at = atomic_load(&p.next);
    /* The outage: broker 2 stays down this long while publishing goes on. */
    nanosleep(&(struct timespec){OUTAGE_MS / 1000, (OUTAGE_MS % 1000) * 1000000L}, NULL);
    size_t up_at = atomic_load(&p.next);
    cr_assert_eq(rd_kafka_mock_broker_set_up(mock, DOWN), 0);
    kt_stream_join(&p, false);
    cr_assert_eq(atomic_load(&p.next), N, "publish %zu failed", atomic_load(&p.next));

    wait_all(t, "leader down");
    size_t revoked = revokes(t);
    cr_expect_eq(eb_bus_close(consumer, 10000), 0);
    expect_confirmed_once(t);
    size_t outage_partition1 = 0;
    for (size_t i = down_at; i < up_at; i++)
        outage_partition1 += t->partition[i] == 1;
    printf("mock leader down: messages %zu..%zu published during the outage, %zu of them to "
           "the downed leader's partition\n",
           down_at, up_at, outage_partition1);
    cr_expect_gt(outage_partition1, 0, "nothing went to the downed leader during the outage");
    expect_no_duplicates_without_revoke(t, revoked, "leader down");

    eb_sub_destroy(sub);
    eb_bus_destroy(consumer);
    cr_expect_eq(eb_bus_close(producer, 10000), 0);
    eb_bus_destroy(producer);
    kt_tracker_free(t);
    seen_free();
    mock_stop();
}

/* --------------------------------------- LATEST when committed() fails */

/* The Kafka protocol's ApiKey of OffsetFetch (see API_KEY_PRODUCE). */
enum { API_KEY_OFFSET_FETCH = 9 };

/* Issue 7, defect 5: a member starting at the latest read its group's
 * committed offsets, ignored that the read failed, and started at the high
 * watermark: the group's backlog was skipped. Now a failed read keeps
 * librdkafka's start, the committed offset. */
Test(kafka_mock, latest_start_keeps_the_backlog_when_committed_offsets_cannot_be_read,
     .timeout = 90)
{
    enum { FIRST = 30, BACKLOG = 30 };
    char topic[128], group[128];
    kt_unique(topic, sizeof topic, "mock-latest");
    kt_unique(group, sizeof group, "mock-latest-g");
    const char *bootstrap = mock_start(topic);
    kt_tracker *t = kt_tracker_new(FIRST + BACKLOG);

    /* The group handles and commits the first messages, then leaves. */
    eb_bus *bus = kt_open(bootstrap, mock_settings, NULL, NULL);
    kt_subscribe_ready(bus, topic, group, kt_handle, t, 20000);
    publish_range(bus, t, topic, 0, FIRST);
    size_t first = FIRST;
    cr_assert(kt_wait(t, kt_handled_at_least, &first, 40000), "%zu of %d handled",
              t->n_handled_distinct, FIRST);
    cr_assert_eq(eb_bus_close(bus, 10000), 0);
    eb_bus_destroy(bus);

    /* A backlog builds up; the next member starts "at the latest", and
     * its first read of the committed offsets fails. */
    bus = kt_open(bootstrap, mock_settings, NULL, NULL);
    publish_range(bus, t, topic, FIRST, FIRST + BACKLOG);
    size_t all = FIRST + BACKLOG;
    cr_assert(kt_wait(t, kt_reports_at_least, &all, 40000), "backlog not confirmed");
    rd_kafka_mock_push_request_errors(mock, API_KEY_OFFSET_FETCH, 1,
                                      RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED);
    eb_sub_options latest = {.struct_size = sizeof latest, .start = EB_START_LATEST};
    eb_sub *sub;
    char err[512];
    cr_assert_eq(eb_subscribe(bus, topic, group, kt_handle, t, &latest, &sub, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(eb_sub_wait_ready(sub, 20000), 0);
    bool backlog = kt_wait(t, kt_handled_at_least, &all, 20000);
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    eb_bus_destroy(bus);
    cr_expect(backlog, "%zu of the %d messages of the backlog were handled",
              t->n_handled_distinct - FIRST, BACKLOG);
    kt_tracker_free(t);
    mock_stop();
}
