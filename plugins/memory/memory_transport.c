/*
 * memory_transport.c — the memory transport's descriptor, its config keys
 * and the slots of the plugin ABI, each a thin call into broker.c,
 * member.c or producer.c.
 *
 * Behaviour, for the docs: one in-process broker per memory.name, shared
 * by every bus in the process naming it, alive while at least one such bus
 * is open. Closing the last one frees the broker and its messages: the one
 * way this transport loses confirmed messages.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "int_keys.h"
#include "memory.h"

#define MEMORY_VERSION "0.1.0"

static const eb_int_key int_keys[] = {
    {"memory.partitions", 1, 1024, 4},
    {"memory.retention.messages", 1, 1000000000LL, 100000},
    {"memory.retention.bytes", 1024, 1LL << 40, 64LL << 20},
};
static const char *const known_keys[] = {
    "memory.name", "memory.partitions", "memory.retention.messages",
    "memory.retention.bytes", NULL};

static const eb_int_key *find_int_key(const char *key)
{
    return eb_int_key_find(int_keys, sizeof int_keys / sizeof *int_keys, key);
}

static int memory_config_check(const eb_host *host, const char *key, const char *value,
                               char *errstr, size_t errstr_size)
{
    const eb_int_key *k = find_int_key(key);
    long long v;
    if (k)
        return eb_int_key_parse(k, value, &v, errstr, errstr_size);
    if (strcmp(key, "memory.name") == 0) {
        if (value[0])
            return 0;
        snprintf(errstr, errstr_size, "the broker name must not be empty");
        return EB_ERR_CONFIG;
    }
    char near[64];
    if (host->nearest_key(key, known_keys, near, sizeof near))
        snprintf(errstr, errstr_size, "unknown key; did you mean '%s'?", near);
    else
        snprintf(errstr, errstr_size, "unknown key of the memory transport");
    return EB_ERR_CONFIG;
}

static long long setting(const eb_host *host, eb_host_bus *hb, const char *key)
{
    return eb_int_key_setting(find_int_key(key), host, hb);
}

static int memory_open(const eb_host *host, eb_host_bus *hb, void **state,
                       char *errstr, size_t errstr_size)
{
    mem_bus *mb = calloc(1, sizeof *mb);
    if (!mb)
        return EB_ERR_NOMEM;
    mb->host = host;
    mb->hb = hb;
    const char *name = host->config_get(hb, "memory.name");
    int rc = mem_broker_acquire(name ? name : "default",
                                (unsigned)setting(host, hb, "memory.partitions"),
                                (size_t)setting(host, hb, "memory.retention.messages"),
                                (size_t)setting(host, hb, "memory.retention.bytes"),
                                &mb->broker, errstr, errstr_size);
    if (rc == 0 && (rc = mem_producer_start(host, hb, &mb->producer)) != 0)
        mem_broker_release(mb->broker);
    if (rc != 0) {
        free(mb);
        return rc;
    }
    host->event(hb, EB_EVENT_CONNECTED, NULL, NULL, 0, "memory broker ready");
    *state = mb;
    return 0;
}

static void memory_close(void *state)
{
    mem_bus *mb = state;
    mem_producer_stop(mb->producer);
    mem_broker_release(mb->broker);
    free(mb);
}

static int64_t wall_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts); /* ms resolution suffices */
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int memory_publish(void *state, const eb_outgoing *msg, int64_t timeout_ms,
                          void *token)
{
    mem_bus *mb = state;
    mem_record *rec;
    int rc = mem_record_new(msg, wall_clock_ms(), &rec);
    if (rc != 0)
        return rc;
    unsigned partition;
    uint64_t offset;
    rc = mem_broker_append(mb, msg->topic, rec, timeout_ms, &partition, &offset);
    if (rc != 0) {
        mem_record_unref(rec); /* the log did not take it */
        return rc;
    }
    if (token)
        mem_producer_report(mb->producer, token, partition, offset);
    return 0;
}

static void memory_begin_close(void *state) { mem_broker_close_waits(state); }

static int memory_flush(void *state, int64_t deadline_ns)
{
    mem_bus *mb = state;
    return mem_producer_flush(mb->producer, deadline_ns, mb->host);
}

static int memory_subscribe(void *state, eb_host_sub *hs, const eb_sub_params *p,
                            void **sub_state, char *errstr, size_t errstr_size)
{
    return mem_member_start(state, hs, p, (mem_member **)sub_state, errstr, errstr_size);
}

static void memory_unsubscribe(void *sub_state) { mem_member_stop(sub_state); }
static void memory_sub_destroy(void *sub_state) { mem_member_free(sub_state); }

static void memory_ack(void *sub_state, eb_msg *const *msgs, size_t n)
{
    mem_member_ack(sub_state, msgs, n);
}

static void memory_release(void *sub_state, eb_msg *const *msgs, size_t n)
{
    mem_member_release(sub_state, msgs, n);
}

static void memory_resume(void *sub_state) { mem_member_resume(sub_state); }

static int memory_health(void *state, eb_health *out)
{
    mem_bus *mb = state;
    out->state = EB_HEALTH_OK;
    snprintf(out->detail, sizeof out->detail, "in-process broker '%s'", mb->broker->name);
    return 0;
}

static int memory_stats(void *state, char *buf, size_t size)
{
    mem_bus *mb = state;
    return mem_broker_stats(mb->broker, buf, size);
}

static const eb_transport memory_transport = {
    .abi_major = EB_TRANSPORT_ABI_MAJOR,
    .abi_minor = EB_TRANSPORT_ABI_MINOR,
    .struct_size = sizeof(eb_transport),
    .name = "memory",
    .version = MEMORY_VERSION,
    .features = EB_FEATURE_GROUPS | EB_FEATURE_KEY_ORDER | EB_FEATURE_REDELIVERY |
                EB_FEATURE_HEADERS | EB_FEATURE_TIMESTAMPS | EB_FEATURE_DURABLE,
    .plugin_flags = 0,
    .config_check = memory_config_check,
    .open = memory_open,
    .close = memory_close,
    .publish = memory_publish,
    .flush = memory_flush,
    .subscribe = memory_subscribe,
    .unsubscribe = memory_unsubscribe,
    .sub_destroy = memory_sub_destroy,
    .ack = memory_ack,
    .release = memory_release,
    .resume = memory_resume,
    .health = memory_health,
    .stats = memory_stats,
    .begin_close = memory_begin_close,
};

EB_TRANSPORT_EXPORT const eb_transport *eb_transport_entry(void)
{
    return &memory_transport;
}
