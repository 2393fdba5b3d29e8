/*
 * host.c — the host table handed to transport plugins: logging, clock,
 * config lookup, events, and the entry points into dispatch (deliver,
 * revoke, ready). eb_host_bus and eb_host_sub are the core's eb_bus and
 * eb_sub seen through opaque types.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "clock.h"
#include "config.h"
#include "dispatch.h"

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static void log_line(eb_bus *bus, eb_log_level level, const char *fmt, va_list ap)
{
    if ((int)level > bus->set.log_level)
        return;
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    fprintf(stderr, "eventbus %s [%s]: %s\n", level_names[level], bus->tp->name, line);
}

void eb__bus_log(eb_bus *bus, eb_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line(bus, level, fmt, ap);
    va_end(ap);
}

static void host_log(eb_host_bus *hb, eb_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line((eb_bus *)hb, level, fmt, ap);
    va_end(ap);
}

static int64_t host_now_ns(void) { return eb__now_ns(); }

static const char *host_config_get(eb_host_bus *hb, const char *key)
{
    return eb__config_value(((eb_bus *)hb)->cfg, key);
}

typedef struct foreach_ctx {
    int (*fn)(const char *key, const char *value, void *ctx);
    void *ctx;
} foreach_ctx;

static int visit_without_origin(const char *key, const char *value, const char *origin,
                                void *arg)
{
    foreach_ctx *fc = arg;
    return fc->fn(key, value, fc->ctx);
}

static int host_config_foreach(eb_host_bus *hb, const char *prefix,
                               int (*fn)(const char *key, const char *value, void *ctx),
                               void *ctx)
{
    foreach_ctx fc = {fn, ctx};
    return eb__config_foreach(((eb_bus *)hb)->cfg, prefix, visit_without_origin, &fc);
}

static void host_event(eb_host_bus *hb, eb_event_type type, const char *topic,
                       const char *group, int error, const char *detail)
{
    eb__bus_event((eb_bus *)hb, type, topic, group, error, detail);
}

static size_t host_deliver(eb_host_sub *hs, eb_msg **msgs, size_t n)
{
    eb_sub *sub = (eb_sub *)hs;
    return eb__dispatch_deliver(sub->bus->dispatch, sub, msgs, n);
}

static void host_revoke_until(eb_host_sub *hs, const eb_lane_ref *lanes, size_t n,
                              int64_t deadline_ns, unsigned flags)
{
    eb_sub *sub = (eb_sub *)hs;
    eb_bus *bus = sub->bus;
    bool lost = flags & EB_REVOKE_LOST;
    if (lost)
        deadline_ns = eb__now_ns(); /* another member may run them: no wait */
    else if (deadline_ns == 0)
        deadline_ns = eb__deadline_after_ms(bus->set.revoke_timeout_ms);
    bool finished = eb__dispatch_revoke(bus->dispatch, sub, lanes, n, false, deadline_ns);
    char detail[128];
    snprintf(detail, sizeof detail, "%zu lane(s) %s%s", n, lost ? "lost" : "revoked",
             finished ? "" : "; handlers still running at the revoke timeout");
    eb__bus_event(bus, EB_EVENT_REVOKED, sub->topic, sub->group,
                  finished ? 0 : EB_ERR_TIMEOUT, detail);
}

static void host_revoke(eb_host_sub *hs, const eb_lane_ref *lanes, size_t n)
{
    host_revoke_until(hs, lanes, n, 0, 0);
}

static void host_ready(eb_host_sub *hs)
{
    eb_sub *sub = (eb_sub *)hs;
    pthread_mutex_lock(&sub->mu);
    sub->ready = true;
    pthread_cond_broadcast(&sub->cv);
    pthread_mutex_unlock(&sub->mu);
}

const eb_host eb__host = {
    .abi_major = EB_TRANSPORT_ABI_MAJOR,
    .abi_minor = EB_TRANSPORT_ABI_MINOR,
    .struct_size = sizeof(eb_host),
    .log = host_log,
    .now_ns = host_now_ns,
    .config_get = host_config_get,
    .event = host_event,
    .deliver = host_deliver,
    .revoke = host_revoke,
    .ready = host_ready,
    .nearest_key = eb__nearest_key,
    .config_foreach = host_config_foreach,
    .delivered = eb__delivered,
    .revoke_until = host_revoke_until,
};
