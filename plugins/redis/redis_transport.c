/*
 * redis_transport.c — the Redis transport's descriptor and the slots of
 * the plugin ABI, each a thin call into settings.c, writer.c or member.c.
 *
 * A topic is one stream named as the topic; a group is a Redis consumer
 * group on it, whose members share its entries (group mode `shared`).
 * Open proves the server answers (connect, AUTH, SELECT, PING within
 * their timeouts), so a wrong URL, password or a missing server is an
 * error at open naming the URL without its password; after that every
 * connection is rebuilt by itself, and the state shows in
 * eb_bus_health() and in CONNECTED/DISCONNECTED events.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lease.h"
#include "partitions.h"
#include "redis.h"

#define REDIS_VERSION "0.1.0"

/* Shared mode: members share a stream's entries; per-key order holds
 * only with one member per group under a stable consumer name (a claimed
 * old entry can run after newer entries of its key otherwise). */
#define SHARED_FEATURES                                                                   \
    (EB_FEATURE_DURABLE | EB_FEATURE_GROUPS | EB_FEATURE_KEY_ORDER_SINGLE_MEMBER |        \
     EB_FEATURE_REDELIVERY | EB_FEATURE_HEADERS | EB_FEATURE_TIMESTAMPS |                 \
     EB_FEATURE_DELIVERY_COUNT)

void rd_bus_unref(rd_bus *rb)
{
    pthread_mutex_lock(&rb->mu);
    bool last = --rb->refs == 0;
    pthread_mutex_unlock(&rb->mu);
    if (last) {
        rd_health_destroy(&rb->health);
        pthread_mutex_destroy(&rb->mu);
        free(rb);
    }
}

static int redis_config_check(const eb_host *host, const char *key, const char *value,
                              char *errstr, size_t errstr_size)
{
    return rd_settings_check_key(host, key, value, errstr, errstr_size);
}

/** Connects once to prove the URL, the login and the database; in keyed
 *  mode also that the server does not evict keys (leases). */
static int probe(const eb_host *host, eb_host_bus *hb, const rd_settings *set, char *errstr,
                 size_t errstr_size)
{
    rd_conn c = {0};
    if (rd_conn_open(&c, &set->url, set->timeouts, errstr, errstr_size) != 0)
        return EB_ERR_TRANSPORT;
    int rc = set->keyed ? rd_lease_check_eviction(&c, errstr, errstr_size) : 0;
    if (rc == 1) { /* unknown: CONFIG refused to this user */
        host->log(hb, EB_LOG_WARN, "%s", errstr);
        errstr[0] = '\0';
        rc = 0;
    }
    rd_conn_close(&c);
    return rc;
}

static int redis_open(const eb_host *host, eb_host_bus *hb, void **state, char *errstr,
                      size_t errstr_size)
{
    rd_bus *rb = calloc(1, sizeof *rb);
    if (!rb)
        return EB_ERR_NOMEM;
    rb->host = host;
    rb->hb = hb;
    rb->refs = 1;
    pthread_mutex_init(&rb->mu, NULL);
    rd_health_init(&rb->health, host, hb);
    int rc = rd_settings_load(host, hb, &rb->settings, errstr, errstr_size);
    if (rc == 0)
        rc = probe(host, hb, &rb->settings, errstr, errstr_size);
    if (rc == 0) {
        rd_writer_config wc = {.url = &rb->settings.url,
                               .timeouts = rb->settings.timeouts,
                               .queue_max = rb->settings.publish_queue_max,
                               .delivery_timeout_ms = rb->settings.delivery_timeout_ms,
                               .backoff_min_ms = rb->settings.backoff_min_ms,
                               .backoff_max_ms = rb->settings.backoff_max_ms,
                               .maxlen = rb->settings.maxlen,
                               .health = &rb->health,
                               .partitions = rb->settings.keyed ? rb->settings.partitions : 0};
        if (!(rb->writer = rd_writer_start(host, hb, &wc))) {
            snprintf(errstr, errstr_size, "redis transport: cannot start its writer thread");
            rc = EB_ERR_NOMEM;
        }
    }
    if (rc != 0) {
        rd_bus_unref(rb);
        return rc;
    }
    host->event(hb, EB_EVENT_CONNECTED, NULL, NULL, 0, rb->settings.url.display);
    *state = rb;
    return 0;
}

static void redis_close(void *state)
{
    rd_bus *rb = state;
    rd_writer_stop(rb->writer);
    rb->writer = NULL;
    rd_bus_unref(rb); /* subscriptions hold theirs until sub_destroy */
}

static int redis_publish(void *state, const eb_outgoing *msg, int64_t timeout_ms, void *token)
{
    rd_bus *rb = state;
    unsigned n = rb->settings.partitions, p = 0;
    if (n > 1)
        p = msg->key ? rd_partition_of_key(msg->key, msg->key_len, n)
                     : atomic_fetch_add_explicit(&rb->next_unkeyed, 1, memory_order_relaxed) % n;
    char stream[RD_NAME_MAX];
    if (rd_partition_stream(stream, sizeof stream, msg->topic, n, p) != 0)
        return EB_ERR_INVALID;
    return rd_writer_publish(rb->writer, stream, p, msg, timeout_ms, token);
}

static void redis_begin_close(void *state) { rd_writer_begin_close(((rd_bus *)state)->writer); }

static int redis_flush(void *state, int64_t deadline_ns)
{
    return rd_writer_flush(((rd_bus *)state)->writer, deadline_ns);
}

static int redis_subscribe(void *state, eb_host_sub *hs, const eb_sub_params *p,
                           void **sub_state, char *errstr, size_t errstr_size)
{
    return rd_sub_start(state, hs, p, (rd_sub **)sub_state, errstr, errstr_size);
}

static void redis_unsubscribe(void *sub_state) { rd_sub_stop(sub_state, 0); }

static int redis_unsubscribe_until(void *sub_state, int64_t deadline_ns)
{
    return rd_sub_stop(sub_state, deadline_ns);
}

static void redis_sub_destroy(void *sub_state) { rd_sub_free(sub_state); }

static void redis_ack(void *sub_state, eb_msg *const *msgs, size_t n)
{
    rd_sub_ack(sub_state, msgs, n);
}

static void redis_release(void *sub_state, eb_msg *const *msgs, size_t n)
{
    rd_sub_release(sub_state, msgs, n);
}

static void redis_resume(void *sub_state) { rd_sub_resume(sub_state); }

static int redis_health(void *state, eb_health *out)
{
    rd_health_report(&((rd_bus *)state)->health, out);
    return 0;
}

static int redis_stats(void *state, char *buf, size_t size)
{
    rd_bus *rb = state;
    eb_json_out o = {buf, size, 0};
    eb_json_printf(&o, "{\"mode\":\"%s\",\"partitions\":%u,\"url\":",
                   rb->settings.keyed ? "keyed" : "shared", rb->settings.partitions);
    eb_json_string(&o, rb->settings.url.display);
    eb_json_printf(&o, ",\"consumer\":");
    eb_json_string(&o, rb->settings.consumer);
    eb_json_printf(&o, ",\"outages\":%lu,\"subscriptions\":", rd_health_outages(&rb->health));
    rd_subs_stats(rb, &o);
    eb_json_printf(&o, "}");
    return (int)o.len;
}

/* Keyed mode: each partition is read by one member at a time, so a key's
 * entries are handled in order across the group's members. */
#define KEYED_FEATURES                                                                    \
    ((SHARED_FEATURES & ~(uint64_t)EB_FEATURE_KEY_ORDER_SINGLE_MEMBER) | EB_FEATURE_KEY_ORDER)

static uint64_t redis_bus_features(void *state)
{
    return ((rd_bus *)state)->settings.keyed ? KEYED_FEATURES : SHARED_FEATURES;
}

static const eb_transport redis_transport = {
    .abi_major = EB_TRANSPORT_ABI_MAJOR,
    .abi_minor = EB_TRANSPORT_ABI_MINOR,
    .struct_size = sizeof(eb_transport),
    .name = "redis",
    .version = REDIS_VERSION,
    .features = SHARED_FEATURES,
    .plugin_flags = 0,
    .config_check = redis_config_check,
    .open = redis_open,
    .close = redis_close,
    .publish = redis_publish,
    .flush = redis_flush,
    .subscribe = redis_subscribe,
    .unsubscribe = redis_unsubscribe,
    .sub_destroy = redis_sub_destroy,
    .ack = redis_ack,
    .release = redis_release,
    .resume = redis_resume,
    .health = redis_health,
    .stats = redis_stats,
    .begin_close = redis_begin_close,
    .unsubscribe_until = redis_unsubscribe_until,
    .bus_features = redis_bus_features,
};

EB_TRANSPORT_EXPORT const eb_transport *eb_transport_entry(void)
{
    return &redis_transport;
}
