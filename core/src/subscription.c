/*
 * subscription.c — the life of an eb_sub: subscribe (checks, the
 * EB_ERR_EXISTS rule, the transport's subscribe), readiness, unsubscribe
 * (revoke every lane under the revoke timeout, leave the group), destroy
 * (wait until the core holds none of its messages, free the transport's
 * state), and ack/release towards the transport.
 */
#include "subscription.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "dispatch.h"
#include "loader.h"
#include "timers.h"
#include "sync.h"

enum { TOPIC_MAX = 249 };

static void set_error(char *errstr, size_t size, const char *fmt, const char *arg)
{
    if (errstr && size)
        snprintf(errstr, size, fmt, arg);
}

/* Under sub->mu: free_transport_state may free the sub the moment it sees
 * zero, so the count must not reach zero before this thread is done with
 * the mutex. finish_held waits for it to reach the parked count. */
static void outstanding_sub(eb_sub *sub, size_t n)
{
    pthread_mutex_lock(&sub->mu);
    long left = atomic_fetch_sub(&sub->outstanding, (long)n) - (long)n;
    if (left <= atomic_load(&sub->parked))
        pthread_cond_broadcast(&sub->cv);
    pthread_mutex_unlock(&sub->mu);
}

void eb__sub_parked(eb_sub *sub, long n)
{
    pthread_mutex_lock(&sub->mu);
    long parked = atomic_fetch_add(&sub->parked, n) + n;
    if (n > 0 && atomic_load(&sub->outstanding) <= parked)
        pthread_cond_broadcast(&sub->cv);
    pthread_mutex_unlock(&sub->mu);
}

void eb__sub_ack(eb_sub *sub, eb_msg *const *msgs, size_t n)
{
    sub->bus->tp->ack(sub->state, msgs, n);
    atomic_fetch_add(&sub->bus->count.acked, n);
    outstanding_sub(sub, n);
}

void eb__sub_release(eb_sub *sub, eb_msg *const *msgs, size_t n)
{
    sub->bus->tp->release(sub->state, msgs, n);
    atomic_fetch_add(&sub->bus->count.released, n);
    outstanding_sub(sub, n);
}

/* ------------------------------------------------------------ subscribe */

static bool same_group(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/** Under bus->mu: an active subscription of (topic, group)? Anonymous
 *  subscriptions never clash. */
static bool exists_locked(eb_bus *bus, const char *topic, const char *group)
{
    for (eb_sub *s = bus->subs; s; s = s->next)
        if (!s->unsubscribed && same_group(s->group, group) &&
            strcmp(s->topic, topic) == 0)
            return true;
    return false;
}

static char *dlq_topic_for(const eb_bus *bus, const char *topic,
                           const eb_sub_options *opts)
{
    if (opts && opts->struct_size >= sizeof *opts && opts->dlq_topic && opts->dlq_topic[0])
        return strdup(opts->dlq_topic);
    const char *configured = eb__config_value(bus->cfg, "dlq.topic");
    if (configured && configured[0])
        return strdup(configured);
    char *name = malloc(strlen(topic) + sizeof ".dlq");
    if (name)
        sprintf(name, "%s.dlq", topic);
    return name;
}

static void sub_free(eb_sub *sub)
{
    if (sub->opaque_free)
        sub->opaque_free(sub->opaque);
    free(sub->topic);
    free(sub->group);
    free(sub->dlq_topic);
    free(sub->revoked_gen);
    pthread_cond_destroy(&sub->cv);
    pthread_mutex_destroy(&sub->mu);
    free(sub);
}

static eb_sub *sub_new(eb_bus *bus, const char *topic, const char *group,
                       eb_handler handler, void *opaque, const eb_sub_options *opts)
{
    eb_sub *sub = calloc(1, sizeof *sub);
    if (!sub)
        return NULL;
    pthread_mutex_init(&sub->mu, NULL);
    eb__cond_init(&sub->cv);
    sub->bus = bus;
    sub->handler = handler;
    sub->opaque = opaque;
    bool has_opts = opts && opts->struct_size >= sizeof *opts;
    sub->topic = strdup(topic);
    sub->group = group ? strdup(group) : NULL;
    sub->dlq_topic = dlq_topic_for(bus, topic, opts);
    if (!sub->topic || (group && !sub->group) || !sub->dlq_topic) {
        sub_free(sub);
        return NULL;
    }
    sub->opaque_free = has_opts ? opts->opaque_free : NULL;
    return sub;
}

static int check_subscribe_args(eb_bus *bus, const char *topic, const char *group,
                                eb_handler handler, const eb_sub_options *opts,
                                eb_sub **out, char *errstr, size_t size)
{
    if (!bus || !topic || !handler || !out) {
        set_error(errstr, size, "%s", "eb_subscribe: bus, topic, handler and out are required");
        return EB_ERR_INVALID;
    }
    size_t len = strlen(topic);
    if (len == 0 || len > TOPIC_MAX) {
        set_error(errstr, size, "topic must be 1 to 249 characters long, not %s",
                  len ? "longer" : "empty");
        return EB_ERR_INVALID;
    }
    if (group && !group[0]) {
        set_error(errstr, size, "%s", "group must be NULL (anonymous) or non-empty");
        return EB_ERR_INVALID;
    }
    if (opts && opts->struct_size > sizeof *opts) {
        set_error(errstr, size, "%s", "eb_sub_options.struct_size is larger than this eventbus knows");
        return EB_ERR_INVALID;
    }
    if (eb__tls_callback_bus == bus) {
        set_error(errstr, size, "%s", "cannot subscribe from a handler or callback of this bus");
        return EB_ERR_BUSY;
    }
    return 0;
}

static void unlink_sub(eb_bus *bus, eb_sub *sub)
{
    pthread_mutex_lock(&bus->mu);
    eb_sub **pp = &bus->subs;
    while (*pp && *pp != sub)
        pp = &(*pp)->next;
    if (*pp)
        *pp = sub->next;
    pthread_mutex_unlock(&bus->mu);
}

static int register_sub(eb_bus *bus, eb_sub *sub, char *errstr, size_t size)
{
    pthread_mutex_lock(&bus->mu);
    int rc = 0;
    if (atomic_load(&bus->lifecycle) != EB_BUS_OPEN) {
        rc = EB_ERR_CLOSED;
        set_error(errstr, size, "%s", "the bus is closed");
    } else if (exists_locked(bus, sub->topic, sub->group)) {
        rc = EB_ERR_EXISTS;
        set_error(errstr, size, "this bus already subscribes group '%s' to the topic",
                  sub->group);
    } else {
        sub->next = bus->subs;
        bus->subs = sub;
    }
    pthread_mutex_unlock(&bus->mu);
    return rc;
}

static int subscribe_entered(eb_bus *bus, const char *topic, const char *group,
                             eb_handler handler, void *opaque,
                             const eb_sub_options *opts, eb_sub **out, char *errstr,
                             size_t errstr_size);

int eb_subscribe(eb_bus *bus, const char *topic, const char *group,
                 eb_handler handler, void *opaque, const eb_sub_options *opts,
                 eb_sub **out, char *errstr, size_t errstr_size)
{
    int rc = check_subscribe_args(bus, topic, group, handler, opts, out, errstr,
                                  errstr_size);
    if (rc != 0)
        return rc;
    if (!eb__bus_enter(bus)) { /* close waits for subscribes in progress */
        set_error(errstr, errstr_size, "%s", "the bus is closed");
        return EB_ERR_CLOSED;
    }
    rc = subscribe_entered(bus, topic, group, handler, opaque, opts, out, errstr,
                           errstr_size);
    eb__bus_leave(bus);
    return rc;
}

static int subscribe_entered(eb_bus *bus, const char *topic, const char *group,
                             eb_handler handler, void *opaque,
                             const eb_sub_options *opts, eb_sub **out, char *errstr,
                             size_t errstr_size)
{
    /* The handler threads start with the bus's first subscription: a bus
     * that only publishes never has them. */
    if (eb__timers_run(bus->timers) != 0 || eb__dispatch_run(bus->dispatch) != 0) {
        set_error(errstr, errstr_size, "%s", "cannot start the handler threads");
        return EB_ERR_NOMEM;
    }
    eb_sub *sub = sub_new(bus, topic, group, handler, opaque, opts);
    if (!sub)
        return EB_ERR_NOMEM;
    int rc = register_sub(bus, sub, errstr, errstr_size);
    if (rc != 0) {
        sub->opaque_free = NULL; /* not ours to free on failure */
        sub_free(sub);
        return rc;
    }
    eb_sub_params p = {.topic = sub->topic, .group = sub->group,
                       .start = opts && opts->struct_size >= sizeof *opts
                                    ? opts->start : EB_START_DEFAULT,
                       .lane_max_inflight = (uint32_t)bus->set.lane_max_inflight,
                       .dlq_topic = sub->dlq_topic};
    rc = bus->tp->subscribe(bus->state, (eb_host_sub *)sub, &p, &sub->state,
                            errstr, errstr_size);
    if (rc != 0) {
        /* The transport may have delivered (and been refused) already. */
        eb__dispatch_sub_forget(bus->dispatch, sub);
        unlink_sub(bus, sub);
        sub->opaque_free = NULL;
        sub_free(sub);
        return rc;
    }
    eb__dispatch_sub_started(bus->dispatch, sub);
    *out = sub;
    return 0;
}

int eb_sub_wait_ready(eb_sub *sub, int timeout_ms)
{
    if (!sub)
        return EB_ERR_INVALID;
    int64_t deadline = eb__deadline_after_ms(timeout_ms);
    pthread_mutex_lock(&sub->mu);
    while (!sub->ready && !sub->unsubscribed &&
           eb__cond_wait_until(&sub->cv, &sub->mu, deadline))
        ;
    int rc = sub->ready && !sub->unsubscribed ? 0
             : sub->unsubscribed ? EB_ERR_CLOSED : EB_ERR_TIMEOUT;
    pthread_mutex_unlock(&sub->mu);
    return rc;
}

/* ---------------------------------------------------------- unsubscribe */

/** Marks the sub unsubscribed; false if it already was. */
static bool claim_unsubscribe(eb_sub *sub)
{
    pthread_mutex_lock(&sub->mu);
    bool first = !sub->unsubscribed;
    sub->unsubscribed = true;
    pthread_cond_broadcast(&sub->cv);
    pthread_mutex_unlock(&sub->mu);
    return first;
}

/** Leaves the group: the transport revokes its lanes, commits and leaves
 *  by `deadline_ns` (when it can be told: ABI 1.1); whatever the core
 *  still holds is made stale. @returns 0, or EB_ERR_TIMEOUT when the
 *  transport's leave was cut short. */
static int leave(eb_sub *sub, int64_t deadline_ns)
{
    eb_bus *bus = sub->bus;
    int rc = 0;
    if (EB_TRANSPORT_HAS(bus->tp, unsubscribe_until))
        rc = bus->tp->unsubscribe_until(sub->state, deadline_ns);
    else
        bus->tp->unsubscribe(sub->state);
    eb__dispatch_revoke(bus->dispatch, sub, NULL, 0, true, deadline_ns);
    return rc;
}

/** The later of `deadline_ns` and EB_LEAVE_MIN_MS from now: leaving
 *  (the final commit) always gets a moment. */
static int64_t leave_deadline(int64_t deadline_ns)
{
    int64_t least = eb__deadline_after_ms(EB_LEAVE_MIN_MS);
    return deadline_ns > least ? deadline_ns : least;
}

/**
 * Unsubscribing on purpose: intake stops, the messages the core already
 * holds for the sub are handled (until `deadline_ns`), and only then do
 * its lanes go, so what it handled is committed and its lanes' next owner
 * repeats nothing (issue 7, defect 16: abandoning them made the commit
 * stop at the first, and everything handled after it ran again). Messages
 * waiting for a retry (and those behind them) are not waited for: they go
 * back unacknowledged, to be retried by the lanes' next owner.
 */
static void finish_held(eb_sub *sub, int64_t deadline_ns)
{
    eb__dispatch_stop_intake(sub->bus->dispatch, sub);
    pthread_mutex_lock(&sub->mu);
    while (atomic_load(&sub->outstanding) > atomic_load(&sub->parked) &&
           eb__cond_wait_until(&sub->cv, &sub->mu, deadline_ns))
        ;
    pthread_mutex_unlock(&sub->mu);
}

int eb_unsubscribe(eb_sub *sub)
{
    if (!sub)
        return EB_ERR_INVALID;
    eb_bus *bus = sub->bus;
    if (eb__tls_callback_bus == bus)
        return EB_ERR_BUSY;
    if (!eb__bus_enter(bus)) /* close waits for unsubscribes in progress */
        return EB_ERR_CLOSED;
    int rc = claim_unsubscribe(sub) ? 0 : EB_ERR_CLOSED;
    if (rc == 0) {
        /* One revoke timeout for the whole leave: finishing what is held,
         * the transport's revoke and commit, and the core's revoke. */
        int64_t deadline = eb__deadline_after_ms(bus->set.revoke_timeout_ms);
        finish_held(sub, deadline);
        leave(sub, leave_deadline(deadline));
    }
    eb__bus_leave(bus);
    return rc;
}

/** Waits until the core holds none of the sub's messages, then frees the
 *  transport's state. */
static void free_transport_state(eb_sub *sub)
{
    pthread_mutex_lock(&sub->mu);
    while (atomic_load(&sub->outstanding) > 0)
        pthread_cond_wait(&sub->cv, &sub->mu);
    bool free_it = !sub->transport_freed;
    sub->transport_freed = true;
    pthread_mutex_unlock(&sub->mu);
    if (free_it)
        sub->bus->tp->sub_destroy(sub->state);
}

void eb_sub_destroy(eb_sub *sub)
{
    if (!sub)
        return;
    eb_bus *bus = sub->bus;
    if (eb__tls_callback_bus == bus) {
        /* It would wait for the very handler calling it. */
        eb__bus_log(bus, EB_LOG_ERROR, "eb_sub_destroy called from a handler or "
                    "callback of its bus: refused (the subscription stays)");
        return;
    }
    if (eb__bus_enter(bus)) {
        if (claim_unsubscribe(sub)) {
            int64_t deadline = eb__deadline_after_ms(bus->set.revoke_timeout_ms);
            finish_held(sub, deadline);
            leave(sub, leave_deadline(deadline));
        }
        free_transport_state(sub);
        eb__bus_leave(bus);
    } else {
        /* Closing (or closed): close frees the transport's state. */
        eb__bus_wait_closed(bus);
    }
    unlink_sub(bus, sub);
    sub_free(sub);
}

int eb__subs_close_all(eb_bus *bus, int64_t deadline_ns)
{
    int rc = 0;
    pthread_mutex_lock(&bus->mu);
    for (eb_sub *sub = bus->subs; sub; sub = sub->next) {
        if (!claim_unsubscribe(sub))
            continue;
        pthread_mutex_unlock(&bus->mu);
        if (leave(sub, deadline_ns) != 0)
            rc = EB_ERR_TIMEOUT;
        pthread_mutex_lock(&bus->mu);
    }
    pthread_mutex_unlock(&bus->mu);
    return rc;
}

void eb__subs_free_transport_all(eb_bus *bus)
{
    pthread_mutex_lock(&bus->mu);
    for (eb_sub *sub = bus->subs; sub; sub = sub->next)
        free_transport_state(sub);
    pthread_mutex_unlock(&bus->mu);
}

void eb__subs_destroy_all(eb_bus *bus)
{
    pthread_mutex_lock(&bus->mu);
    eb_sub *sub = bus->subs;
    bus->subs = NULL;
    pthread_mutex_unlock(&bus->mu);
    for (eb_sub *next; sub; sub = next) {
        next = sub->next;
        sub_free(sub);
    }
}
