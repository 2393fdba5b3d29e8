/*
 * test_kafka_dead_letters.c — dead letters against Kafka's limits and
 * missing topics (issue 7, defect 8), on the real broker:
 *  - the open refuses a message.max.bytes that leaves no room for the
 *    dead-letter headers below kafka.message.max.bytes;
 *  - with the defaults, every message eb_publish accepts is dead-lettered
 *    whole (the old default let a message through whose dead letter
 *    librdkafka refused for ever);
 *  - a dead-letter topic whose own limit refuses the copy gets a stub;
 *  - a deleted dead-letter topic stops the lane (health DEGRADED, the key
 *    waits) until the topic is created again, then the lane goes on.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_helpers.h"
#include "test_bus.h"
#include "test_wait.h"

#define WAIT_MS 60000

/* ----------------------------------------------------------------- admin */

/** Creates (config: a name and value, or NULL) or deletes a topic with
 *  librdkafka's admin API. @returns the broker's answer. */
static rd_kafka_resp_err_t admin_topic_once(const char *bootstrap, const char *topic,
                                            bool create, const char *config,
                                            const char *value, char *failure, size_t size)
{
    char why[512];
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, why, sizeof why), 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    cr_assert_not_null(rk, "%s", why);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(
        rk, create ? RD_KAFKA_ADMIN_OP_CREATETOPICS : RD_KAFKA_ADMIN_OP_DELETETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opts, 15000, why, sizeof why);
    rd_kafka_NewTopic_t *nt = NULL;
    rd_kafka_DeleteTopic_t *dt = NULL;
    if (create) {
        nt = rd_kafka_NewTopic_new(topic, 1, 1, why, sizeof why);
        if (config)
            rd_kafka_NewTopic_set_config(nt, config, value);
        rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
    } else {
        dt = rd_kafka_DeleteTopic_new(topic);
        rd_kafka_DeleteTopics(rk, &dt, 1, opts, q);
    }
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    const rd_kafka_topic_result_t **res = NULL;
    size_t n = 0;
    if (ev && create)
        res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    else if (ev)
        res = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
    if (!ev || n != 1)
        snprintf(failure, size, "%s %s: no answer", create ? "create" : "delete", topic);
    else if ((err = rd_kafka_topic_result_error(res[0])))
        snprintf(failure, size, "%s %s: %s", create ? "create" : "delete", topic,
                 rd_kafka_topic_result_error_string(res[0]));
    if (ev)
        rd_kafka_event_destroy(ev);
    if (nt)
        rd_kafka_NewTopic_destroy(nt);
    if (dt)
        rd_kafka_DeleteTopic_destroy(dt);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return err;
}

/** admin_topic_once() until the broker agrees: a topic just deleted may
 *  still be "marked for deletion" when it is created again. */
static void admin_topic(const char *bootstrap, const char *topic, bool create,
                        const char *config, const char *value)
{
    char failure[600] = "";
    int64_t deadline = kt_now_ms() + 30000;
    rd_kafka_resp_err_t err;
    while ((err = admin_topic_once(bootstrap, topic, create, config, value, failure,
                                   sizeof failure)) == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS &&
           create && kt_now_ms() < deadline)
        test_next_look();
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "%s", failure);
}

/** Waits until metadata no longer lists the topic (a deletion takes a
 *  moment to reach every broker's metadata). */
static void wait_topic_gone(const char *bootstrap, const char *topic)
{
    char why[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, why, sizeof why), 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    cr_assert_not_null(rk, "%s", why);
    bool gone = false;
    for (int64_t deadline = kt_now_ms() + 30000; !gone && kt_now_ms() < deadline;) {
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(rk, 1, NULL, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            gone = true;
            for (int i = 0; i < md->topic_cnt; i++)
                gone &= strcmp(md->topics[i].topic, topic) != 0;
            rd_kafka_metadata_destroy(md);
        }
        if (!gone)
            test_next_look();
    }
    rd_kafka_destroy(rk);
    cr_assert(gone, "%s is still in the metadata 30 s after its deletion", topic);
}

/* ---------------------------------------------------------------- state */

static struct {
    pthread_mutex_t mu;
    atomic_int rejected, later_handled, others_handled;
    atomic_int dead_letters;
    size_t dead_letter_len[4];
    eb_msg *dead_letter;      /* a copy of the first */
    atomic_int dlq_failed_events, last_error;
} st = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void count_events(eb_bus *bus, const eb_event *ev, void *opaque)
{
    if (ev->type == EB_EVENT_DLQ_FAILED) {
        atomic_store(&st.last_error, ev->error);
        atomic_fetch_add(&st.dlq_failed_events, 1);
    }
}

/* Key "bad": the first is rejected, the later ones counted; other keys
 * counted. Unkeyed messages are rejected. */
static eb_result handle(const eb_msg *msg, void *opaque)
{
    size_t klen;
    const char *key = eb_msg_key(msg, &klen);
    if (!key) {
        atomic_fetch_add(&st.rejected, 1);
        return EB_REJECT;
    }
    if (klen != 3 || memcmp(key, "bad", 3) != 0) {
        atomic_fetch_add(&st.others_handled, 1);
        return EB_ACK;
    }
    if (atomic_fetch_add(&st.rejected, 1) == 0)
        return EB_REJECT;
    atomic_fetch_add(&st.later_handled, 1);
    return EB_ACK;
}

static eb_result handle_dead_letter(const eb_msg *msg, void *opaque)
{
    size_t len;
    eb_msg_payload(msg, &len);
    pthread_mutex_lock(&st.mu);
    int n = atomic_load(&st.dead_letters);
    if (n < 4)
        st.dead_letter_len[n] = len;
    if (!st.dead_letter)
        eb_msg_copy(msg, &st.dead_letter); /* checked on the test's thread */
    atomic_fetch_add(&st.dead_letters, 1);
    pthread_mutex_unlock(&st.mu);
    return EB_ACK;
}

static void wait_count(atomic_int *n, int want, const char *what)
{
    int64_t deadline = test_now_ms() + WAIT_MS;
    while (atomic_load(n) < want && test_now_ms() < deadline)
        test_next_look();
    cr_assert_geq(atomic_load(n), want, "%s: %d, want %d (DLQ_FAILED events: %d, last %s)",
                  what, atomic_load(n), want, atomic_load(&st.dlq_failed_events),
                  eb_err_name(atomic_load(&st.last_error)));
}

static eb_health wait_health(eb_bus *bus, eb_health_state want)
{
    int64_t deadline = test_now_ms() + WAIT_MS;
    eb_health h = {0};
    cr_assert_eq(eb_bus_health(bus, &h), 0);
    while (h.state != want && test_now_ms() < deadline) {
        test_next_look();
        cr_assert_eq(eb_bus_health(bus, &h), 0);
    }
    cr_assert_eq(h.state, want, "health %d (%s), want %d", h.state, h.detail, want);
    return h;
}

static void publish_keyed(eb_bus *bus, const char *topic, const char *key, size_t len)
{
    char *payload = calloc(1, len ? len : 1);
    eb_outgoing m = {.topic = topic, .key = key, .key_len = key ? strlen(key) : 0,
                     .payload = payload, .payload_len = len};
    int rc = eb_publish(bus, &m, NULL, NULL);
    free(payload);
    cr_assert_eq(rc, 0, "eb_publish(%zu bytes): %s", len, eb_err_name(rc));
}

static char dlq[200];

static const kt_setting create_topics[] = {{"kafka.topic.partitions", "1"}, {NULL, NULL}};

/** Topic and dead-letter topic (1 partition each); subscriptions to both
 *  unless `watch_dlq` is false. The bus creates the dead-letter topic of
 *  the dead-letter topic when it subscribes (kafka.topic.partitions). */
static const char *set_up(const char *bootstrap, eb_bus *bus, bool watch_dlq,
                          const char *dlq_config, const char *dlq_value)
{
    static char topic[160], group[160], dlq_group[160];
    kt_unique(topic, sizeof topic, "dl");
    kt_unique(group, sizeof group, "dl-g");
    kt_unique(dlq_group, sizeof dlq_group, "dl-gd");
    snprintf(dlq, sizeof dlq, "%s.dlq", topic);
    kt_create_topic(bootstrap, topic, 1);
    admin_topic(bootstrap, dlq, true, dlq_config, dlq_value);
    if (watch_dlq)
        kt_subscribe_ready(bus, dlq, dlq_group, handle_dead_letter, NULL, 30000);
    kt_subscribe_ready(bus, topic, group, handle, NULL, 30000);
    return topic;
}

/* ---------------------------------------------------------------- limits */

Test(kafka_limits, open_refuses_a_message_limit_without_room_for_dead_letter_headers)
{
    char err[1024];
    eb_config *cfg = eb_config_new();
    cr_assert_eq(eb_config_set(cfg, "transport", "kafka", err, sizeof err), 0, "%s", err);
    cr_assert_eq(eb_config_set(cfg, "kafka.bootstrap.servers", "127.0.0.1:1", err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(eb_config_set(cfg, "kafka.message.max.bytes", "100000", err, sizeof err), 0,
                 "%s", err);
    eb_bus *bus = NULL;
    int rc = eb_bus_open(cfg, &bus, err, sizeof err);
    cr_expect_eq(rc, EB_ERR_CONFIG, "%s: %s", eb_err_name(rc), err);
    cr_expect(strstr(err, "kafka.message.max.bytes (100000)") && strstr(err, "95904"), "%s",
              err);
    if (rc == 0) {
        eb_bus_close(bus, 1000);
        eb_bus_destroy(bus);
        bus = NULL;
    }
    cr_assert_eq(eb_config_set(cfg, "message.max.bytes", "95904", err, sizeof err), 0);
    rc = eb_bus_open(cfg, &bus, err, sizeof err);
    cr_expect_eq(rc, 0, "%s: %s", eb_err_name(rc), err);
    if (rc == 0) {
        eb_bus_close(bus, 1000);
        eb_bus_destroy(bus);
    }
    eb_config_destroy(cfg);
}

/* --------------------------------------------------------- dead letters */

Test(kafka_dead_letters, every_message_the_default_limit_accepts_is_dead_lettered_whole)
{
    const char *bootstrap = kt_real_broker();
    eb_bus *bus = kt_open(bootstrap, create_topics, count_events, NULL);
    const char *topic = set_up(bootstrap, bus, true, NULL, NULL);
    /* At the default limit (995,904 bytes), and at the most librdkafka
     * takes (1,000,000 with 36 bytes of framing): the old default of 1 MiB
     * let that through, and librdkafka refused its dead letter for ever. */
    const size_t sizes[] = {995904, 999964};
    int accepted = 0;
    for (size_t i = 0; i < 2; i++) {
        char *payload = calloc(1, sizes[i]);
        eb_outgoing m = {.topic = topic, .payload = payload, .payload_len = sizes[i]};
        int rc = eb_publish(bus, &m, NULL, NULL);
        free(payload);
        cr_assert(rc == 0 || rc == EB_ERR_TOO_LARGE, "eb_publish(%zu bytes): %s", sizes[i],
                  eb_err_name(rc));
        cr_assert(i > 0 || rc == 0, "the default limit refused %zu bytes", sizes[i]);
        accepted += rc == 0;
    }
    wait_count(&st.dead_letters, accepted, "whole dead letters");
    for (int i = 0; i < accepted; i++)
        cr_expect_eq(st.dead_letter_len[i], sizes[i], "dead letter %d has %zu bytes", i,
                     st.dead_letter_len[i]);
    cr_expect_eq(atomic_load(&st.dlq_failed_events), 0);
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    eb_bus_destroy(bus);
    eb_msg_destroy(st.dead_letter);
}

Test(kafka_dead_letters, a_dead_letter_topic_with_a_smaller_limit_gets_a_stub)
{
    const char *bootstrap = kt_real_broker();
    eb_bus *bus = kt_open(bootstrap, create_topics, count_events, NULL);
    const char *topic = set_up(bootstrap, bus, true, "max.message.bytes", "10000");
    publish_keyed(bus, topic, "bad", 50000); /* the broker refuses its copy */
    publish_keyed(bus, topic, "bad", 10);

    wait_count(&st.dead_letters, 1, "dead letters");
    wait_count(&st.later_handled, 1, "the key after its dead letter");
    cr_assert_not_null(st.dead_letter);
    size_t plen = 0;
    eb_msg_payload(st.dead_letter, &plen);
    cr_expect_eq(plen, 0, "the dead letter has %zu bytes of payload", plen);
    const void *v = NULL;
    size_t vlen = 0;
    cr_expect_eq(eb_msg_header_find(st.dead_letter, EB_DLQ_HEADER_ORIGINAL_SIZE, &v, &vlen), 0);
    cr_expect(vlen == 5 && memcmp(v, "50003", 5) == 0, "original size %.*s", (int)vlen,
              (const char *)v);
    cr_expect_eq(eb_msg_header_find(st.dead_letter, EB_DLQ_HEADER_STUB, &v, &vlen), 0);
    cr_expect_eq(test_stat_required(bus, "dlq_stubs"), 1);
    cr_expect_eq(atomic_load(&st.dlq_failed_events), 0);
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    eb_bus_destroy(bus);
    eb_msg_destroy(st.dead_letter);
}

Test(kafka_dead_letters, a_deleted_dead_letter_topic_stops_the_lane_until_created_again)
{
    const char *bootstrap = kt_real_broker();
    const kt_setting fast[] = {{"kafka.topic.partitions", "1"},
                               {"retry.backoff.ms", "100"}, {"retry.backoff.max.ms", "500"},
                               {NULL, NULL}};
    eb_bus *bus = kt_open(bootstrap, fast, count_events, NULL);
    /* No subscription to the dead-letter topic: librdkafka 2.0.2 can hang
     * closing a consumer of a deleted topic (DESIGN.md). */
    const char *topic = set_up(bootstrap, bus, false, NULL, NULL);
    admin_topic(bootstrap, dlq, false, NULL, NULL);
    wait_topic_gone(bootstrap, dlq);
    publish_keyed(bus, topic, "bad", 10);
    for (int i = 0; i < 3; i++)
        publish_keyed(bus, topic, "bad", 10);
    for (int i = 0; i < 10; i++)
        publish_keyed(bus, topic, "other", 10);

    wait_count(&st.others_handled, 10, "other keys");
    eb_health h = wait_health(bus, EB_HEALTH_DEGRADED);
    cr_expect(strstr(h.detail, dlq) != NULL, "%s", h.detail);
    cr_expect_eq(atomic_load(&st.last_error), EB_ERR_NOT_FOUND, "%s",
                 eb_err_name(atomic_load(&st.last_error)));
    cr_expect_eq(atomic_load(&st.later_handled), 0,
                 "messages of the key ran while its dead letter was refused");
    cr_expect_eq(test_stat_required(bus, "dead_lettered"), 0);

    admin_topic(bootstrap, dlq, true, NULL, NULL);
    wait_count(&st.later_handled, 3, "the key once its dead letter went out");
    wait_health(bus, EB_HEALTH_OK);
    cr_expect_eq(test_stat_required(bus, "dead_lettered"), 1);
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    eb_bus_destroy(bus);
}
