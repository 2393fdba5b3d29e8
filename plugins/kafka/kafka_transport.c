/*
 * kafka_transport.c — the Kafka transport's descriptor and the slots of the
 * plugin ABI: each a thin call into producer.c, member.c or admin.c. The
 * plugin stays resident: unloading code linked to librdkafka makes its
 * globals look leaked (DESIGN.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"

#define KAFKA_VERSION "0.1.0"

static int kafka_config_check(const eb_host *host, const char *key, const char *value,
                              char *errstr, size_t errstr_size)
{
    return kf_config_check(host, key, value, errstr, errstr_size);
}

static long long setting(const eb_host *host, eb_host_bus *hb, const char *key, long long def)
{
    const char *value = host->config_get(hb, key);
    return value ? atoll(value) : def; /* checked at open by config_check */
}

/** A revoke (the handlers' time, then at least KF_COMMIT_MIN_MS for the
 *  commit) must finish before librdkafka gives up on the poll thread. */
static int check_revoke_timeout(const eb_host *host, eb_host_bus *hb, kf_bus *kb,
                                char *errstr, size_t size)
{
    long long max_poll = setting(host, hb, "kafka.max.poll.interval.ms", 300000);
    if (kb->revoke_timeout_ms + KF_COMMIT_MIN_MS < max_poll)
        return 0;
    snprintf(errstr, size,
             "dispatch.revoke.timeout.ms (%lld) must be at least %d ms below "
             "kafka.max.poll.interval.ms (%lld): a revoke, then its commit, runs on the "
             "consumer's poll thread",
             (long long)kb->revoke_timeout_ms, KF_COMMIT_MIN_MS, max_poll);
    return EB_ERR_CONFIG;
}

void kf_bus_unref(kf_bus *kb)
{
    pthread_mutex_lock(&kb->mu);
    bool last = --kb->refs == 0;
    pthread_mutex_unlock(&kb->mu);
    if (last) {
        kf_known_topics_free(kb);
        pthread_mutex_destroy(&kb->mu);
        free(kb);
    }
}

static int kafka_open(const eb_host *host, eb_host_bus *hb, void **state, char *errstr,
                      size_t errstr_size)
{
    kf_bus *kb = calloc(1, sizeof *kb);
    if (!kb)
        return EB_ERR_NOMEM;
    kb->host = host;
    kb->hb = hb;
    kb->refs = 1;
    pthread_mutex_init(&kb->mu, NULL);
    kb->topic_partitions = (int)setting(host, hb, "kafka.topic.partitions", 0);
    kb->topic_replication = (int)setting(host, hb, "kafka.topic.replication", 1);
    kb->revoke_timeout_ms = setting(host, hb, "dispatch.revoke.timeout.ms", 10000);
    int rc = check_revoke_timeout(host, hb, kb, errstr, errstr_size);
    if (rc == 0)
        rc = kf_config_check_limits(kb, errstr, errstr_size);
    if (rc == 0)
        rc = kf_producer_start(kb, &kb->producer, errstr, errstr_size);
    if (rc != 0) {
        kf_bus_unref(kb);
        return rc;
    }
    *state = kb;
    return 0;
}

static void kafka_close(void *state)
{
    kf_bus *kb = state;
    kf_producer_stop(kb->producer);
    kf_bus_unref(kb); /* members end with their last subscription */
}

/**
 * When eventbus may create topics, the first publish to a topic makes sure
 * it exists (a publish that may wait; handlers' publishes may not, and go
 * straight to librdkafka). Without kafka.topic.partitions a missing topic
 * fails through the delivery callback.
 */
static int kafka_publish(void *state, const eb_outgoing *msg, int64_t timeout_ms,
                         void *token)
{
    kf_bus *kb = state;
    if (kb->topic_partitions > 0 && timeout_ms > 0) {
        int rc = kf_topic_ensure_once(kb, kf_producer_handle(kb->producer), msg->topic,
                                      (int)timeout_ms, NULL, 0);
        if (rc != 0)
            return rc;
    }
    return kf_producer_publish(kb->producer, msg, timeout_ms, token);
}

static void kafka_begin_close(void *state)
{
    kf_producer_begin_close(((kf_bus *)state)->producer);
}

static int kafka_flush(void *state, int64_t deadline_ns)
{
    return kf_producer_flush(((kf_bus *)state)->producer, deadline_ns);
}

static int kafka_subscribe(void *state, eb_host_sub *hs, const eb_sub_params *p,
                           void **sub_state, char *errstr, size_t errstr_size)
{
    return kf_sub_start(state, hs, p, (kf_sub **)sub_state, errstr, errstr_size);
}

static void kafka_unsubscribe(void *sub_state) { kf_sub_stop(sub_state, 0); }

static int kafka_unsubscribe_until(void *sub_state, int64_t deadline_ns)
{
    return kf_sub_stop(sub_state, deadline_ns);
}
static void kafka_sub_destroy(void *sub_state) { kf_sub_free(sub_state); }

static void kafka_ack(void *sub_state, eb_msg *const *msgs, size_t n)
{
    kf_sub_ack(sub_state, msgs, n);
}

static void kafka_release(void *sub_state, eb_msg *const *msgs, size_t n)
{
    kf_sub_release(sub_state, msgs, n);
}

static void kafka_resume(void *sub_state) { kf_sub_resume(sub_state); }

static int kafka_health(void *state, eb_health *out)
{
    return kf_health_report(state, out);
}

/** Where the next part of a JSON text goes, snprintf-style. */
static char *at(char *buf, size_t size, int len, size_t *room)
{
    size_t used = (size_t)len < size ? (size_t)len : size;
    *room = size - used;
    return *room ? buf + used : NULL;
}

static int kafka_stats(void *state, char *buf, size_t size)
{
    kf_bus *kb = state;
    size_t room;
    int n = snprintf(buf, size, "{\"producer\":");
    char *p = at(buf, size, n, &room);
    n += kf_producer_stats(kb->producer, p, room);
    p = at(buf, size, n, &room);
    n += snprintf(p, room, ",\"members\":");
    p = at(buf, size, n, &room);
    n += kf_members_stats(kb, p, room);
    p = at(buf, size, n, &room);
    n += snprintf(p, room, "}");
    return n;
}

static const eb_transport kafka_transport = {
    .abi_major = EB_TRANSPORT_ABI_MAJOR,
    .abi_minor = EB_TRANSPORT_ABI_MINOR,
    .struct_size = sizeof(eb_transport),
    .name = "kafka",
    .version = KAFKA_VERSION,
    .features = EB_FEATURE_DURABLE | EB_FEATURE_GROUPS | EB_FEATURE_KEY_ORDER |
                EB_FEATURE_REDELIVERY | EB_FEATURE_HEADERS | EB_FEATURE_TIMESTAMPS,
    .plugin_flags = EB_PLUGIN_RESIDENT,
    .config_check = kafka_config_check,
    .open = kafka_open,
    .close = kafka_close,
    .publish = kafka_publish,
    .flush = kafka_flush,
    .subscribe = kafka_subscribe,
    .unsubscribe = kafka_unsubscribe,
    .sub_destroy = kafka_sub_destroy,
    .ack = kafka_ack,
    .release = kafka_release,
    .resume = kafka_resume,
    .health = kafka_health,
    .stats = kafka_stats,
    .begin_close = kafka_begin_close,
    .unsubscribe_until = kafka_unsubscribe_until,
};

EB_TRANSPORT_EXPORT const eb_transport *eb_transport_entry(void)
{
    return &kafka_transport;
}
