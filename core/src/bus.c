/*
 * bus.c — a bus's lifecycle: open (settings, plugin, transport, dispatch,
 * timers), close (drain under one deadline, unsubscribe, flush, close the
 * transport, join every thread), destroy; plus features, health and events.
 */
#include "bus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "dead_letter.h"
#include "dispatch.h"
#include "loader.h"
#include "outcome.h"
#include "subscription.h"
#include "sync.h"
#include "timers.h"

__thread eb_bus *eb__tls_callback_bus;

static void set_error(char *errstr, size_t size, const char *fmt, const char *a,
                      const char *b)
{
    if (errstr && size)
        snprintf(errstr, size, fmt, a, b);
}

void eb__bus_event(eb_bus *bus, eb_event_type type, const char *topic,
                   const char *group, int error, const char *detail)
{
    if (!bus->event_cb)
        return;
    eb_event ev = {.type = type, .topic = topic, .group = group,
                   .error = error, .detail = detail ? detail : ""};
    eb_bus *outer = eb__tls_callback_bus;
    eb__tls_callback_bus = bus;
    bus->event_cb(bus, &ev, bus->event_opaque);
    eb__tls_callback_bus = outer;
}

static int log_level_of(const char *name)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, names[i]) == 0)
            return i;
    return EB_LOG_WARN;
}

static void read_settings(eb_bus *bus)
{
    const eb_config *c = bus->cfg;
    eb_settings *s = &bus->set;
    s->publish_timeout_ms = eb__config_int(c, "publish.timeout.ms");
    s->close_timeout_ms = eb__config_int(c, "close.timeout.ms");
    s->revoke_timeout_ms = eb__config_int(c, "dispatch.revoke.timeout.ms");
    s->message_max_bytes = eb__config_int(c, "message.max.bytes");
    s->retry_max_attempts = eb__config_int(c, "retry.max.attempts");
    s->retry_backoff_ms = eb__config_int(c, "retry.backoff.ms");
    s->retry_backoff_max_ms = eb__config_int(c, "retry.backoff.max.ms");
    s->lane_max_inflight = eb__config_int(c, "dispatch.lane.max.inflight");
    s->queue_max = eb__config_int(c, "dispatch.queue.max");
    s->queue_low_watermark = eb__config_int(c, "dispatch.queue.low.watermark");
    s->workers = eb__config_int(c, "dispatch.workers");
    s->workers_max = eb__config_int(c, "dispatch.workers.max");
    s->workers_idle_ms = eb__config_int(c, "dispatch.workers.idle.ms");
    s->log_level = log_level_of(eb__config_value(c, "log.level"));
}

/** Keys across settings that each look fine alone. */
static int check_settings(const eb_settings *s, char *errstr, size_t size)
{
    if (s->queue_low_watermark >= s->queue_max) {
        set_error(errstr, size, "%s must be below %s",
                  "dispatch.queue.low.watermark", "dispatch.queue.max");
        return EB_ERR_CONFIG;
    }
    if (s->retry_backoff_ms > s->retry_backoff_max_ms) {
        set_error(errstr, size, "%s must not exceed %s", "retry.backoff.ms",
                  "retry.backoff.max.ms");
        return EB_ERR_CONFIG;
    }
    return 0;
}

typedef struct key_check_ctx {
    eb_bus *bus;
    char *errstr;
    size_t size;
} key_check_ctx;

static int check_one_transport_key(const char *key, const char *value,
                                   const char *origin, void *arg)
{
    key_check_ctx *ctx = arg;
    char why[512] = "";
    int rc = ctx->bus->tp->config_check(&eb__host, key, value, why, sizeof why);
    char where[512];
    if (rc != 0 && ctx->errstr && ctx->size)
        snprintf(ctx->errstr, ctx->size, "%s%s: %s", eb__origin_prefix(origin, where, sizeof where),
                 key, why[0] ? why : eb_strerror(rc));
    return rc;
}

static int check_transport_keys(eb_bus *bus, char *errstr, size_t size)
{
    int rc = eb__config_check_namespaces(bus->cfg, bus->tp->name, errstr, size);
    if (rc != 0)
        return rc;
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s.", bus->tp->name);
    key_check_ctx ctx = {bus, errstr, size};
    return eb__config_foreach(bus->cfg, prefix, check_one_transport_key, &ctx);
}

/** Frees what open built; safe on a half-built bus. */
static void bus_free(eb_bus *bus)
{
    eb__dispatch_stop(bus->dispatch);
    eb__timers_stop(bus->timers);
    eb__plugin_unload(bus->plugin);
    eb_config_destroy(bus->cfg);
    pthread_cond_destroy(&bus->cv);
    pthread_mutex_destroy(&bus->mu);
    pthread_mutex_destroy(&bus->tokens.mu);
    pthread_mutex_destroy(&bus->dlq_stopped.mu);
    free(bus);
}

/** A bus with its locks made and nothing else (bus_free undoes it). */
static eb_bus *bus_new(void)
{
    eb_bus *bus = calloc(1, sizeof *bus);
    if (!bus)
        return NULL;
    pthread_mutex_init(&bus->mu, NULL);
    pthread_mutex_init(&bus->tokens.mu, NULL);
    pthread_mutex_init(&bus->dlq_stopped.mu, NULL);
    eb__cond_init(&bus->cv);
    return bus;
}

/** What open checks before it starts anything: the settings, the plugin
 *  and each transport key. */
static int check_parts(eb_bus *bus, const eb_config *cfg, char *errstr, size_t size)
{
    if (!(bus->cfg = eb__config_clone(cfg)))
        return EB_ERR_NOMEM;
    read_settings(bus);
    int rc = check_settings(&bus->set, errstr, size);
    if (rc == 0)
        rc = eb__plugin_load(eb__config_value(bus->cfg, "transport"),
                             eb__config_value(bus->cfg, "plugin.path"), &bus->plugin, errstr,
                             size);
    if (rc != 0)
        return rc;
    bus->tp = eb__plugin_transport(bus->plugin);
    return check_transport_keys(bus, errstr, size);
}

int eb_config_check(const eb_config *cfg, char *errstr, size_t errstr_size)
{
    if (errstr && errstr_size)
        errstr[0] = '\0';
    if (!cfg)
        return EB_ERR_INVALID;
    eb_bus *bus = bus_new();
    if (!bus)
        return EB_ERR_NOMEM;
    int rc = check_parts(bus, cfg, errstr, errstr_size);
    if (rc != 0 && errstr && errstr_size && !errstr[0])
        set_error(errstr, errstr_size, "%s%s", eb_strerror(rc), "");
    bus_free(bus);
    return rc;
}

static int open_parts(eb_bus *bus, const eb_config *cfg, char *errstr, size_t size)
{
    int rc = check_parts(bus, cfg, errstr, size);
    if (rc != 0)
        return rc;
    eb__config_event_cb(bus->cfg, &bus->event_cb, &bus->event_opaque);
    if ((rc = eb__timers_new(eb__outcome_timer_fired, bus, &bus->timers)) != 0 ||
        (rc = eb__dispatch_new(bus, &bus->dispatch)) != 0)
        return rc;
    rc = bus->tp->open(&eb__host, (eb_host_bus *)bus, &bus->state, errstr, size);
    if (rc == 0)
        bus->features = EB_TRANSPORT_HAS(bus->tp, bus_features)
                            ? bus->tp->bus_features(bus->state)
                            : bus->tp->features;
    return rc;
}

int eb_bus_open(const eb_config *cfg, eb_bus **out, char *errstr, size_t errstr_size)
{
    if (errstr && errstr_size)
        errstr[0] = '\0';
    if (!cfg || !out) {
        set_error(errstr, errstr_size, "%s%s", "eb_bus_open: config and out are required", "");
        return EB_ERR_INVALID;
    }
    eb_bus *bus = bus_new();
    if (!bus)
        return EB_ERR_NOMEM;
    int rc = open_parts(bus, cfg, errstr, errstr_size);
    if (rc != 0) {
        if (errstr && errstr_size && !errstr[0])
            set_error(errstr, errstr_size, "%s%s", eb_strerror(rc), "");
        bus_free(bus);
        return rc;
    }
    *out = bus;
    return 0;
}

/* ------------------------------------------------------------------ close */

bool eb__bus_enter(eb_bus *bus)
{
    atomic_fetch_add(&bus->in_calls, 1);
    int state = atomic_load(&bus->lifecycle);
    /* While closing, only the bus's own threads (handlers draining, dead
     * letters) still reach the transport. */
    if (state == EB_BUS_OPEN || (state == EB_BUS_CLOSING && eb__tls_callback_bus == bus))
        return true;
    eb__bus_leave(bus);
    return false;
}

void eb__bus_leave(eb_bus *bus)
{
    if (atomic_fetch_sub(&bus->in_calls, 1) == 1 &&
        atomic_load(&bus->lifecycle) != EB_BUS_OPEN) {
        pthread_mutex_lock(&bus->mu);
        pthread_cond_broadcast(&bus->cv);
        pthread_mutex_unlock(&bus->mu);
    }
}

/** Waits for API calls still inside the transport. */
static void wait_calls(eb_bus *bus)
{
    pthread_mutex_lock(&bus->mu);
    while (atomic_load(&bus->in_calls) > 0)
        pthread_cond_wait(&bus->cv, &bus->mu);
    pthread_mutex_unlock(&bus->mu);
}

static bool begin_close(eb_bus *bus)
{
    int expected = EB_BUS_OPEN;
    return atomic_compare_exchange_strong(&bus->lifecycle, &expected, EB_BUS_CLOSING);
}

int eb_bus_close(eb_bus *bus, int timeout_ms)
{
    if (!bus)
        return EB_ERR_INVALID;
    if (eb__tls_callback_bus == bus)
        return EB_ERR_BUSY;
    if (!begin_close(bus))
        return EB_ERR_CLOSED;
    int64_t deadline = eb__deadline_after_ms(timeout_ms);
    /* Publishers waiting for room would hold wait_calls() below for their
     * publish.timeout.ms: the transport wakes them with EB_ERR_CLOSED. */
    if (EB_TRANSPORT_HAS(bus->tp, begin_close))
        bus->tp->begin_close(bus->state);
    int rc = eb__dispatch_drain(bus->dispatch, deadline);
    wait_calls(bus); /* publishes, subscribes and unsubscribes in progress */
    /* Leaving (the final commits) and the flush get until the deadline,
     * and at least EB_LEAVE_MIN_MS once the handlers finished: close
     * returns by max(deadline, end of the handlers running at it) plus
     * that (issue 7, defect 14). */
    int64_t least = eb__deadline_after_ms(EB_LEAVE_MIN_MS);
    int64_t leave_by = deadline > least ? deadline : least;
    int left = eb__subs_close_all(bus, leave_by);
    int flushed = bus->tp->flush(bus->state, leave_by);
    if (rc == 0 && (left != 0 || flushed != 0))
        rc = EB_ERR_TIMEOUT;
    bus->tp->close(bus->state);
    bus->state = NULL;
    eb__subs_free_transport_all(bus);
    eb__dispatch_stop(bus->dispatch);
    bus->dispatch = NULL;
    eb__timers_stop(bus->timers);
    bus->timers = NULL;
    pthread_mutex_lock(&bus->mu);
    atomic_store(&bus->lifecycle, EB_BUS_CLOSED);
    pthread_cond_broadcast(&bus->cv);
    pthread_mutex_unlock(&bus->mu);
    return rc;
}

void eb__bus_wait_closed(eb_bus *bus)
{
    pthread_mutex_lock(&bus->mu);
    while (atomic_load(&bus->lifecycle) != EB_BUS_CLOSED)
        pthread_cond_wait(&bus->cv, &bus->mu);
    pthread_mutex_unlock(&bus->mu);
}

void eb_bus_destroy(eb_bus *bus)
{
    if (!bus)
        return;
    if (eb__tls_callback_bus == bus) {
        /* It would join the very thread calling it. */
        eb__bus_log(bus, EB_LOG_ERROR, "eb_bus_destroy called from a handler or "
                    "callback of its bus: refused (the bus stays)");
        return;
    }
    if (atomic_load(&bus->lifecycle) == EB_BUS_OPEN)
        eb_bus_close(bus, (int)bus->set.close_timeout_ms);
    eb__subs_destroy_all(bus);
    bus_free(bus);
}

/* ------------------------------------------------------------- queries */

uint64_t eb_bus_features(const eb_bus *bus) { return bus ? bus->features : 0; }

const char *eb_bus_transport(const eb_bus *bus) { return bus ? bus->tp->name : ""; }

int eb_bus_health(eb_bus *bus, eb_health *out)
{
    if (!bus || !out)
        return EB_ERR_INVALID;
    if (!eb__bus_enter(bus)) {
        out->state = EB_HEALTH_CLOSED;
        snprintf(out->detail, sizeof out->detail, "the bus is closed");
        return 0;
    }
    int rc = bus->tp->health(bus->state, out);
    eb__bus_leave(bus);
    if (rc == 0)
        eb__dead_letter_health(bus, out);
    return rc;
}
