/*
 * admin.c — topics: whether one exists (a metadata request for it alone),
 * creating it through the admin API when kafka.topic.partitions allows,
 * and waiting until the broker's metadata shows it with a leader for every
 * partition. Runs on the caller's thread (subscribe), bounded by its
 * timeout; results come back on a temporary queue of its own, so nothing
 * here depends on the producer's poll thread.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kafka.h"

#define MAX_TOPIC_NAME 249 /* Kafka's limit */

/** Kafka's rule for topic names: 1..249 of [a-zA-Z0-9._-], not "." or "..". */
static bool topic_name_is_legal(const char *topic)
{
    size_t len = strlen(topic);
    if (len == 0 || len > MAX_TOPIC_NAME || strcmp(topic, ".") == 0 ||
        strcmp(topic, "..") == 0)
        return false;
    return strspn(topic, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789._-") == len;
}

static int remaining_ms(const kf_bus *kb, int64_t deadline_ns)
{
    int64_t left = (deadline_ns - kb->host->now_ns()) / 1000000;
    return left < 1 ? 1 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/* A topic is usable when every partition has a leader. */
static rd_kafka_resp_err_t readiness_of(const rd_kafka_metadata_topic_t *t)
{
    if (t->err)
        return t->err;
    if (t->partition_cnt == 0)
        return RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
    for (int i = 0; i < t->partition_cnt; i++)
        if (t->partitions[i].err || t->partitions[i].leader < 0)
            return RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

/** Asks the cluster about `topic` alone. @returns NO_ERROR when it is
 *  usable, the topic's error (UNKNOWN_TOPIC_OR_PART, ...) or the request's. */
static rd_kafka_resp_err_t describe_topic(rd_kafka_t *rk, const char *topic, int timeout_ms)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt)
        return rd_kafka_last_error();
    const struct rd_kafka_metadata *md;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    rd_kafka_topic_destroy(rkt);
    if (err)
        return err;
    err = md->topic_cnt == 1 ? readiness_of(&md->topics[0])
                             : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    rd_kafka_metadata_destroy(md);
    return err;
}

/* ---------------------------------------------------------------- create */

/** Reads the one topic result of a CreateTopics event; an existing topic
 *  (another member raced us) counts as created. */
static int creation_outcome(rd_kafka_event_t *ev, const char *topic, char *errstr, size_t n)
{
    rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
    const char *why = rd_kafka_event_error_string(ev);
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    size_t count = 0;
    const rd_kafka_topic_result_t **results =
        res ? rd_kafka_CreateTopics_result_topics(res, &count) : NULL;
    if (!err && count == 1) {
        err = rd_kafka_topic_result_error(results[0]);
        why = rd_kafka_topic_result_error_string(results[0]);
    }
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        return 0;
    snprintf(errstr, n, "cannot create topic '%s': %s", topic,
             why && *why ? why : rd_kafka_err2str(err));
    return kf_error_of(err);
}

static rd_kafka_AdminOptions_t *creation_options(rd_kafka_t *rk, int timeout_ms)
{
    char ignored[128];
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, ignored, sizeof ignored);
    return opts;
}

static int create_topic(kf_bus *kb, rd_kafka_t *rk, const char *topic, int64_t deadline_ns,
                        char *errstr, size_t n)
{
    int replication = kb->topic_replication > 0 ? kb->topic_replication : 1;
    char why[256];
    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(topic, kb->topic_partitions, replication, why, sizeof why);
    if (!nt) {
        snprintf(errstr, n, "cannot create topic '%s': %s", topic, why);
        return EB_ERR_INVALID;
    }
    int timeout_ms = remaining_ms(kb, deadline_ns);
    rd_kafka_AdminOptions_t *opts = creation_options(rk, timeout_ms);
    rd_kafka_queue_t *results = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, opts, results);
    /* The request timeout bounds the result; the margin covers its own
     * timer's granularity. */
    rd_kafka_event_t *ev = rd_kafka_queue_poll(results, timeout_ms + 1000);
    int rc;
    if (ev) {
        rc = creation_outcome(ev, topic, errstr, n);
        rd_kafka_event_destroy(ev);
    } else {
        snprintf(errstr, n, "cannot create topic '%s': no answer within %d ms", topic,
                 timeout_ms);
        rc = EB_ERR_TIMEOUT;
    }
    rd_kafka_queue_destroy(results);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_NewTopic_destroy(nt);
    if (rc == 0)
        kb->host->log(kb->hb, EB_LOG_INFO, "kafka: topic '%s' created (%d partitions, "
                      "replication %d) or created by another member", topic,
                      kb->topic_partitions, replication);
    return rc;
}

/* ------------------------------------------------------------------ wait */

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/*
 * Polls metadata until the topic has a leader for every partition. Kafka
 * gives no notification when a new topic reaches the brokers' metadata, so
 * this is the one place that sleeps: a backoff of 5 ms doubling to 100 ms
 * between requests, never past the deadline.
 */
static int wait_until_usable(kf_bus *kb, rd_kafka_t *rk, const char *topic, int64_t deadline_ns,
                             char *errstr, size_t n)
{
    int backoff_ms = 5;
    for (;;) {
        rd_kafka_resp_err_t err = describe_topic(rk, topic, remaining_ms(kb, deadline_ns));
        if (!err)
            return 0;
        if (kb->host->now_ns() >= deadline_ns) {
            snprintf(errstr, n, "topic '%s' has no leader for every partition yet (%s)",
                     topic, rd_kafka_err2str(err));
            return EB_ERR_TIMEOUT;
        }
        int left = remaining_ms(kb, deadline_ns);
        sleep_ms(backoff_ms < left ? backoff_ms : left);
        backoff_ms = backoff_ms < 50 ? backoff_ms * 2 : 100;
    }
}

/* ---------------------------------------------------------------- ensure */

static int not_found(const char *topic, char *errstr, size_t n)
{
    snprintf(errstr, n, "topic '%s' does not exist; create it, or set "
             "kafka.topic.partitions (and kafka.topic.replication) to let eventbus "
             "create it", topic);
    return EB_ERR_NOT_FOUND;
}

int kf_topic_ensure(kf_bus *kb, rd_kafka_t *rk, const char *topic, int timeout_ms,
                    char *errstr, size_t errstr_size)
{
    char scratch[512];
    if (!errstr || !errstr_size)
        errstr = scratch, errstr_size = sizeof scratch;
    if (!topic_name_is_legal(topic)) {
        snprintf(errstr, errstr_size, "invalid topic name '%s': Kafka topic names are 1 "
                 "to %d characters of a-z, A-Z, 0-9, '.', '_' and '-', and not '.' or '..'",
                 topic, MAX_TOPIC_NAME);
        return EB_ERR_INVALID;
    }
    int64_t deadline_ns = kb->host->now_ns() + (int64_t)timeout_ms * 1000000;
    rd_kafka_resp_err_t err = describe_topic(rk, topic, remaining_ms(kb, deadline_ns));
    int rc = 0;
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return 0;
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        rc = kb->topic_partitions > 0
                 ? create_topic(kb, rk, topic, deadline_ns, errstr, errstr_size)
                 : not_found(topic, errstr, errstr_size);
        break;
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
        break; /* being created, or a leader is moving: wait */
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
        snprintf(errstr, errstr_size, "invalid topic name '%s': %s", topic,
                 rd_kafka_err2str(err));
        return EB_ERR_INVALID;
    default:
        snprintf(errstr, errstr_size, "cannot read the metadata of topic '%s': %s", topic,
                 rd_kafka_err2str(err));
        return kf_error_of(err);
    }
    if (rc != 0)
        return rc;
    return wait_until_usable(kb, rk, topic, deadline_ns, errstr, errstr_size);
}
