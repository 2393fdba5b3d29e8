/*
 * member.c — a member's bus and subscriptions, and its handler: parse the
 * message (number, key, and its position from the id), report the call,
 * do the scenario's simulated work (a wait on a condition with a timeout,
 * which the run can cut short), report the outcome and return it.
 */
#include "member.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------- simulated work */

static pthread_once_t work_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t work_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cv;
static bool work_released;

static void work_init(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&work_cv, &attr);
    pthread_condattr_destroy(&attr);
}

void member_release_work(bool released)
{
    pthread_once(&work_once, work_init);
    pthread_mutex_lock(&work_mu);
    work_released = released;
    pthread_cond_broadcast(&work_cv);
    pthread_mutex_unlock(&work_mu);
}

/** The handler's work: ms milliseconds, unless the run releases it. */
static void work(int ms)
{
    pthread_once(&work_once, work_init);
    int64_t end = fault_now_ns() + (int64_t)ms * 1000000;
    struct timespec ts = {.tv_sec = end / 1000000000, .tv_nsec = end % 1000000000};
    pthread_mutex_lock(&work_mu);
    while (!work_released && fault_now_ns() < end)
        pthread_cond_timedwait(&work_cv, &work_mu, &ts);
    pthread_mutex_unlock(&work_mu);
}

/* ---------------------------------------------------------------- handler */

static long parse_number(const void *data, size_t len, char prefix)
{
    char text[32];
    if (!data || len == 0 || len >= sizeof text)
        return -1;
    memcpy(text, data, len);
    text[len] = '\0';
    char *end;
    long n = strtol(text + (prefix ? 1 : 0), &end, 10);
    if ((prefix && text[0] != prefix) || *end != '\0' || n < 0)
        return -1;
    return n;
}

static void fail(member *m, fault_check check, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(member *m, fault_check check, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(text, sizeof text, "member %d: ", m->index);
    vsnprintf(text + n, sizeof text - (size_t)n, fmt, ap);
    va_end(ap);
    m->sink.fail(m->sink.ctx, check, text);
}

static eb_result handle(const eb_msg *msg, void *opaque)
{
    member_topic *mt = opaque;
    member *m = mt->m;
    size_t len, key_len;
    const void *payload = eb_msg_payload(msg, &len);
    const void *key = eb_msg_key(msg, &key_len);
    call_record c = {.topic = mt->topic,
                     .message = parse_number(payload, len, 0),
                     .key = key ? (int)parse_number(key, key_len, 'k') : -1,
                     .attempt = eb_msg_attempt(msg), .start_ns = fault_now_ns()};
    if (!fault_pos_parse(eb_msg_id(msg), &c.pos))
        fail(m, CHECK_SETUP, "message %ld on '%s': an id the driver cannot read: '%s'",
             c.message, eb_msg_topic(msg), eb_msg_id(msg));
    if (c.message < 0)
        fail(m, CHECK_HANDLED, "a message not published by the driver on '%s' (id %s)",
             eb_msg_topic(msg), eb_msg_id(msg));
    long call = m->sink.call_start(m->sink.ctx, &c);
    handler_plan p = {EB_ACK, WORK_NONE, 0};
    if (m->index >= 0 && c.message >= 0)
        p = scenario_handler_plan(m->s, c.message, c.attempt);
    if (p.work_ms > 0)
        work(p.work_ms);
    m->sink.call_end(m->sink.ctx, call, p.result, fault_now_ns());
    return p.result;
}

static void on_event(eb_bus *bus, const eb_event *ev, void *opaque)
{
    (void)bus;
    member *m = opaque;
    if (ev->type == EB_EVENT_REVOKED)
        m->sink.revoked(m->sink.ctx, ev->topic ? env_topic_index(m->env, m->s, ev->topic) : -1);
}

/* ------------------------------------------------------------ lifecycle */

int member_ready_timeout_ms(const scenario *s)
{
    return s->transport == FAULT_MEMORY ? 10000 : 30000;
}

int member_join(member *m)
{
    char err[1024];
    eb_config *cfg = env_bus_config(m->env, m->s, m->workers, m->workers_max,
                                     m->workers_idle_ms, on_event, m);
    if (cfg && m->index >= 0 && !env_member_settings(m->env, cfg)) {
        eb_config_destroy(cfg);
        cfg = NULL;
    }
    if (!cfg) {
        fail(m, CHECK_SETUP, "the bus settings were refused");
        return -1;
    }
    int rc = eb_bus_open(cfg, &m->bus, err, sizeof err);
    eb_config_destroy(cfg);
    if (rc != 0) {
        fail(m, CHECK_SETUP, "eb_bus_open: %s: %s", eb_err_name(rc), err);
        return -1;
    }
    for (int t = 0; t < m->s->n_topics; t++) {
        m->topics[t] = (member_topic){m, t};
        rc = eb_subscribe(m->bus, m->env->topics[t], m->env->group, handle, &m->topics[t],
                          NULL, &m->subs[t], err, sizeof err);
        if (rc != 0) {
            fail(m, CHECK_SETUP, "eb_subscribe(%s): %s: %s", m->env->topics[t],
                 eb_err_name(rc), err);
            return -1;
        }
    }
    int timeout = member_ready_timeout_ms(m->s);
    for (int t = 0; t < m->s->n_topics; t++) {
        rc = eb_sub_wait_ready(m->subs[t], timeout);
        if (rc != 0) {
            fail(m, CHECK_PROGRESS, "subscription to %s not ready within %d ms: %s",
                 m->env->topics[t], timeout, eb_err_name(rc));
            return -1;
        }
    }
    return 0;
}

/** The sum of the numbers after each `field` in `json`. */
static long sum_field(const char *json, const char *field)
{
    long n = 0;
    for (const char *at = json; (at = strstr(at, field));) {
        at += strlen(field);
        n += strtol(at, NULL, 10);
    }
    return n;
}

/** Redis: what was taken from this member while it was alive. Shared
 *  mode: entries it held that another member claimed (its subscriptions'
 *  "claimed_away"). Keyed mode: leases it lost, and reads the server
 *  refused as another member's (each subscription's "leases" object). */
static long taken_away(member *m)
{
    char *json = NULL;
    if (eb_bus_stats(m->bus, &json) != 0)
        return 0;
    long n = 0;
    if (m->s->transport == FAULT_REDIS) {
        n = sum_field(json, "\"claimed_away\":");
    } else {
        for (char *at = json; (at = strstr(at, "\"leases\":{"));) {
            char *end = strchr(at, '}');
            if (!end)
                break;
            *end = '\0';
            n += sum_field(at, "\"lost\":") + sum_field(at, "\"not_owner\":");
            at = end + 1;
        }
    }
    eb_free(json);
    return n;
}

void member_leave(member *m, leave_kind how, int deadline_ms)
{
    if (!m->bus)
        return;
    /* Shared mode: a live member refreshes the idle time of what it holds
     * every third of redis.claim.idle.ms; keyed mode: it renews its leases
     * every second, and gives one up a revoke timeout and a command
     * timeout before it could expire. On a healthy server nothing is
     * taken from a live member. If it were, the lost revoke would excuse
     * the handler running twice at once in check 3: that is the
     * failure. */
    long away = fault_transport_is_redis(m->s->transport) && m->index >= 0 ? taken_away(m)
                                                                           : 0;
    if (away > 0 && m->s->transport == FAULT_REDIS)
        fail(m, CHECK_ORDER, "redis: %ld entries it held were claimed by another member "
             "while it was alive (its idle-time refresh did not keep them within "
             "redis.claim.idle.ms = %d ms): their handlers may have run twice at once",
             away, REDIS_CLAIM_IDLE_MS);
    else if (away > 0)
        fail(m, CHECK_ORDER, "redis keyed: %ld lease(s) lost or reads refused as another "
             "member's while it was alive (its renewals did not keep them within "
             "redis.lease.ms = %d ms): another member may have run a key's handler beside "
             "its own", away, scenario_redis_lease_ms(m->s));
    for (int t = 0; how == LEAVE_UNSUBSCRIBE && t < m->s->n_topics; t++) {
        if (!m->subs[t])
            continue;
        leave_record l = {.is_close = false, .start_ns = fault_now_ns()};
        l.rc = eb_unsubscribe(m->subs[t]);
        l.end_ns = fault_now_ns();
        m->sink.leave(m->sink.ctx, &l);
        if (l.rc != 0)
            fail(m, CHECK_SETUP, "eb_unsubscribe(%s): %s", m->env->topics[t],
                 eb_err_name(l.rc));
    }
    leave_record l = {.is_close = true, .deadline_ms = deadline_ms, .start_ns = fault_now_ns()};
    l.rc = eb_bus_close(m->bus, deadline_ms);
    l.end_ns = fault_now_ns();
    m->sink.leave(m->sink.ctx, &l);
    if (l.rc != 0 && l.rc != EB_ERR_TIMEOUT)
        fail(m, CHECK_SETUP, "eb_bus_close: %s", eb_err_name(l.rc));
}

void member_destroy(member *m)
{
    for (int t = 0; t < FAULT_MAX_TOPICS; t++) {
        eb_sub_destroy(m->subs[t]);
        m->subs[t] = NULL;
    }
    eb_bus_destroy(m->bus);
    m->bus = NULL;
}
