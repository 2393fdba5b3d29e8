/*
 * helpers.c — what conformance cases share: a config with the suite's
 * settings (settings.c) and the case's event counter, unique names,
 * buses and subscriptions torn down with the case, waits with deadlines
 * (never bare sleeps), a thread-safe recorder of handled (key, seq) pairs
 * and a tracker of delivery callbacks.
 */
#include "eventbus/conformance.h"
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Checks in helpers report the caller's file and line. */
#define CHECK_AT(cond, ...)                                                   \
    do {                                                                      \
        if (!(cond))                                                          \
            eb_conf_fail_at(file, line, __VA_ARGS__);                         \
    } while (0)
#define FAIL_AT(...) eb_conf_fail_at(file, line, __VA_ARGS__)

/* ----------------------------------------------------------- time, memory */

double eb_conf_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void eb_conf_spin_us(unsigned us)
{
    double end = eb_conf_now_ms() + us / 1e3;
    while (eb_conf_now_ms() < end)
        ;
}

static void *conf_grow(void *array, size_t *cap, size_t elem)
{
    size_t ncap = *cap ? *cap * 2 : 16;
    void *p = realloc(array, ncap * elem);
    if (!p) {
        fprintf(stderr, "conformance: out of memory\n");
        abort();
    }
    *cap = ncap;
    return p;
}

void eb_conf_defer_free(eb_conf_ctx *ctx, void (*fn)(void *), void *ptr)
{
    if (ctx->nfrees == ctx->cap_frees)
        ctx->frees = conf_grow(ctx->frees, &ctx->cap_frees, sizeof *ctx->frees);
    ctx->frees[ctx->nfrees++] = (struct eb_conf_free){fn, ptr};
}

void *eb_conf_alloc(eb_conf_ctx *ctx, size_t size)
{
    void *p = calloc(1, size ? size : 1);
    EB_CHECK(p != NULL, "out of memory allocating %zu bytes", size);
    eb_conf_defer_free(ctx, free, p);
    return p;
}

void eb_conf_on_teardown(eb_conf_ctx *ctx, void (*fn)(void *), void *arg)
{
    if (ctx->nhooks == ctx->cap_hooks)
        ctx->hooks = conf_grow(ctx->hooks, &ctx->cap_hooks, sizeof *ctx->hooks);
    ctx->hooks[ctx->nhooks++] = (struct eb_conf_hook){fn, arg};
}

/* ----------------------------------------------------------------- config */

static const char *conf_event_name(eb_event_type t)
{
    switch (t) {
    case EB_EVENT_CONNECTED: return "connected";
    case EB_EVENT_DISCONNECTED: return "disconnected";
    case EB_EVENT_ASSIGNED: return "assigned";
    case EB_EVENT_REVOKED: return "revoked";
    case EB_EVENT_PAUSED: return "paused";
    case EB_EVENT_RESUMED: return "resumed";
    case EB_EVENT_DLQ_FAILED: return "dlq-failed";
    case EB_EVENT_ERROR: return "error";
    }
    return "unknown";
}

/* Runs on a bus thread: counts, and prints what a person should see. */
static void conf_event_cb(eb_bus *bus, const eb_event *ev, void *opaque)
{
    eb_conf_ctx *ctx = opaque;
    (void)bus;
    if ((unsigned)ev->type < EB_CONF_MAX_EVENT)
        atomic_fetch_add(&ctx->events[ev->type], 1);
    int loud = ev->type == EB_EVENT_DLQ_FAILED || ev->type == EB_EVENT_ERROR ||
               ev->type == EB_EVENT_DISCONNECTED;
    if (loud || getenv("EB_CONFORMANCE_VERBOSE"))
        fprintf(stderr, "  [%s] event %s topic=%s group=%s error=%s: %s\n",
                ctx->c->name, conf_event_name(ev->type),
                ev->topic ? ev->topic : "-", ev->group ? ev->group : "-",
                ev->error ? eb_err_name(ev->error) : "0",
                ev->detail ? ev->detail : "");
}

static void conf_config_free(void *p) { eb_config_destroy(p); }

eb_config *eb_conf_config_at(const char *file, int line, eb_conf_ctx *ctx)
{
    eb_config *cfg = eb_config_new();
    CHECK_AT(cfg != NULL, "eb_config_new returned NULL");
    eb_conf_defer_free(ctx, conf_config_free, cfg);
    char err[1024] = "";
    int rc = eb__conf_apply_settings(cfg, err, sizeof err);
    CHECK_AT(rc == 0, "the suite's settings: %s: %s", eb_err_name(rc), err);
    int cb_rc = eb_config_set_event_cb(cfg, conf_event_cb, ctx);
    CHECK_AT(cb_rc == 0, "eb_config_set_event_cb: %s", eb_err_name(cb_rc));
    return cfg;
}

void eb_conf_set_at(const char *file, int line, eb_conf_ctx *ctx,
                    eb_config *cfg, const char *key, const char *value)
{
    char err[512] = "";
    int rc = eb_config_set(cfg, key, value, err, sizeof err);
    (void)ctx;
    CHECK_AT(rc == 0, "eb_config_set(%s, %s): %s: %s", key, value,
             eb_err_name(rc), err);
}

const char *eb_conf_name(eb_conf_ctx *ctx, const char *what)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned n = atomic_fetch_add(&ctx->name_counter, 1);
    char *name = eb_conf_alloc(ctx, 200);
    int len = snprintf(name, 200, "ebconf-%s-%s-%ld-%lld%03ld-%u", ctx->c->name,
                       what, (long)getpid(), (long long)ts.tv_sec,
                       ts.tv_nsec / 1000000, n);
    /* Kafka warns about topics mixing '.' and '_': use '-' only. */
    for (int i = 0; i < len && i < 200; i++)
        if (name[i] == '_' || name[i] == '.')
            name[i] = '-';
    return name;
}

/* ------------------------------------------------------------ buses, subs */

eb_bus *eb_conf_open_at(const char *file, int line, eb_conf_ctx *ctx,
                        const eb_config *cfg)
{
    char err[512] = "";
    eb_bus *bus = NULL;
    int rc = eb_bus_open(cfg, &bus, err, sizeof err);
    CHECK_AT(rc == 0 && bus != NULL, "eb_bus_open: %s: %s", eb_err_name(rc), err);
    if (ctx->nbuses == ctx->cap_buses)
        ctx->buses = conf_grow(ctx->buses, &ctx->cap_buses, sizeof *ctx->buses);
    ctx->buses[ctx->nbuses++] = bus;
    return bus;
}

void eb_conf_destroy_bus(eb_conf_ctx *ctx, eb_bus *bus)
{
    for (size_t i = 0; i < ctx->nbuses; i++) {
        if (ctx->buses[i] == bus) {
            memmove(&ctx->buses[i], &ctx->buses[i + 1],
                    (ctx->nbuses - i - 1) * sizeof *ctx->buses);
            ctx->nbuses--;
            break;
        }
    }
    eb_bus_destroy(bus);
}

eb_sub *eb_conf_subscribe_at(const char *file, int line, eb_conf_ctx *ctx,
                             eb_bus *bus, const char *topic, const char *group,
                             eb_handler handler, void *opaque)
{
    char err[512] = "";
    eb_sub *sub = NULL;
    (void)ctx;
    int rc = eb_subscribe(bus, topic, group, handler, opaque, NULL, &sub, err,
                          sizeof err);
    CHECK_AT(rc == 0 && sub != NULL, "eb_subscribe(%s, %s): %s: %s", topic,
             group ? group : "(anonymous)", eb_err_name(rc), err);
    rc = eb_sub_wait_ready(sub, EB_CONF_READY_MS);
    CHECK_AT(rc == 0, "eb_sub_wait_ready(%s, %s, %d ms): %s", topic,
             group ? group : "(anonymous)", EB_CONF_READY_MS, eb_err_name(rc));
    return sub;
}

const char *eb_conf_group_or_anon(eb_conf_ctx *ctx, const char *name)
{
    uint64_t groups = EB_FEATURE_GROUPS | EB_FEATURE_FAILOVER_GROUPS;
    return eb_conf_features(ctx) & groups ? name : NULL;
}

/* ------------------------------------------------------------------ waits */

int eb_conf_wait(int (*pred)(void *), void *arg, int timeout_ms)
{
    double end = eb_conf_now_ms() + timeout_ms;
    for (;;) {
        if (pred(arg))
            return 0;
        if (eb_conf_now_ms() >= end)
            return -1;
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void conf_deadline(struct timespec *ts, int timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void conf_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

struct eb_conf_counter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    long value;
};

eb_conf_counter *eb_conf_counter_new(eb_conf_ctx *ctx)
{
    eb_conf_counter *c = eb_conf_alloc(ctx, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    conf_cond_init(&c->cond);
    return c;
}

void eb_conf_counter_add(eb_conf_counter *c, long n)
{
    pthread_mutex_lock(&c->lock);
    c->value += n;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

long eb_conf_counter_get(eb_conf_counter *c)
{
    pthread_mutex_lock(&c->lock);
    long v = c->value;
    pthread_mutex_unlock(&c->lock);
    return v;
}

int eb_conf_counter_wait(eb_conf_counter *c, long target, int timeout_ms)
{
    struct timespec dl;
    conf_deadline(&dl, timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&c->lock);
    while (c->value < target) {
        if (pthread_cond_timedwait(&c->cond, &c->lock, &dl) == ETIMEDOUT) {
            rc = c->value >= target ? 0 : -1;
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* --------------------------------------------------------------- recorder */

struct eb_conf_recorder {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned nkeys, per_key;
    unsigned short *counts; /* nkeys * per_key, saturating */
    long *max_seq;          /* per key, -1 before the first */
    unsigned long unique, total, duplicates, violations, out_of_range;
    unsigned *history; /* per key, the last CONF_HISTORY seqs handled */
    char first_violation[512];
};

#define CONF_HISTORY 12

eb_conf_recorder *eb_conf_recorder_new(eb_conf_ctx *ctx, unsigned nkeys,
                                       unsigned per_key)
{
    eb_conf_recorder *r = eb_conf_alloc(ctx, sizeof *r);
    r->nkeys = nkeys;
    r->per_key = per_key;
    r->counts = eb_conf_alloc(ctx, (size_t)nkeys * per_key * sizeof *r->counts);
    r->max_seq = eb_conf_alloc(ctx, (size_t)nkeys * sizeof *r->max_seq);
    r->history = eb_conf_alloc(ctx, (size_t)nkeys * CONF_HISTORY * sizeof *r->history);
    for (unsigned k = 0; k < nkeys; k++)
        r->max_seq[k] = -1;
    pthread_mutex_init(&r->lock, NULL);
    conf_cond_init(&r->cond);
    return r;
}

int eb_conf_recorder_add(eb_conf_recorder *r, unsigned key, unsigned seq)
{
    pthread_mutex_lock(&r->lock);
    r->total++;
    if (key >= r->nkeys || seq >= r->per_key) {
        r->out_of_range++;
        pthread_mutex_unlock(&r->lock);
        return -1;
    }
    unsigned short *slot = &r->counts[(size_t)key * r->per_key + seq];
    int before = *slot;
    if (*slot < 0xffff)
        (*slot)++;
    unsigned *hist = &r->history[(size_t)key * CONF_HISTORY];
    if (before == 0) {
        r->unique++;
        if ((long)seq < r->max_seq[key]) {
            if (r->violations++ == 0) {
                /* Evidence: what this key handled just before. */
                int n = snprintf(r->first_violation, sizeof r->first_violation,
                                 "key %u: seq %u handled (first time) after seq "
                                 "%ld; the key's last seqs before it:",
                                 key, seq, r->max_seq[key]);
                for (unsigned h = 0; h < CONF_HISTORY && n > 0 &&
                                     (size_t)n < sizeof r->first_violation; h++)
                    if (hist[h])
                        n += snprintf(r->first_violation + n,
                                      sizeof r->first_violation - (size_t)n,
                                      " %u", hist[h] - 1);
            }
        } else {
            r->max_seq[key] = seq;
        }
        pthread_cond_broadcast(&r->cond);
    } else {
        r->duplicates++;
    }
    memmove(hist, hist + 1, (CONF_HISTORY - 1) * sizeof *hist);
    hist[CONF_HISTORY - 1] = seq + 1; /* 0: empty */
    pthread_mutex_unlock(&r->lock);
    return before;
}

unsigned eb_conf_recorder_count(eb_conf_recorder *r, unsigned key, unsigned seq)
{
    if (key >= r->nkeys || seq >= r->per_key)
        return 0;
    pthread_mutex_lock(&r->lock);
    unsigned c = r->counts[(size_t)key * r->per_key + seq];
    pthread_mutex_unlock(&r->lock);
    return c;
}

#define CONF_RECORDER_GETTER(field)                                           \
    unsigned long eb_conf_recorder_##field(eb_conf_recorder *r)               \
    {                                                                         \
        pthread_mutex_lock(&r->lock);                                         \
        unsigned long v = r->field;                                           \
        pthread_mutex_unlock(&r->lock);                                       \
        return v;                                                             \
    }
CONF_RECORDER_GETTER(unique)
CONF_RECORDER_GETTER(total)
CONF_RECORDER_GETTER(duplicates)
CONF_RECORDER_GETTER(out_of_range)
#undef CONF_RECORDER_GETTER

unsigned long eb_conf_recorder_order_violations(eb_conf_recorder *r)
{
    pthread_mutex_lock(&r->lock);
    unsigned long v = r->violations;
    pthread_mutex_unlock(&r->lock);
    return v;
}

const char *eb_conf_recorder_first_violation(eb_conf_recorder *r)
{
    /* Written once, under the lock, before violations became non-zero. */
    pthread_mutex_lock(&r->lock);
    const char *s = r->first_violation;
    pthread_mutex_unlock(&r->lock);
    return s;
}

int eb_conf_recorder_wait(eb_conf_recorder *r, unsigned long unique,
                          int timeout_ms)
{
    struct timespec dl;
    conf_deadline(&dl, timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&r->lock);
    while (r->unique < unique) {
        if (pthread_cond_timedwait(&r->cond, &r->lock, &dl) == ETIMEDOUT) {
            rc = r->unique >= unique ? 0 : -1;
            break;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

unsigned long eb_conf_recorder_missing(eb_conf_recorder *r, unsigned nkeys,
                                       unsigned per_key, char *buf, size_t size)
{
    unsigned long missing = 0;
    size_t used = 0;
    if (size)
        buf[0] = '\0';
    pthread_mutex_lock(&r->lock);
    for (unsigned k = 0; k < nkeys && k < r->nkeys; k++) {
        for (unsigned s = 0; s < per_key && s < r->per_key; s++) {
            if (r->counts[(size_t)k * r->per_key + s])
                continue;
            if (missing++ < 8 && used < size) {
                int n = snprintf(buf + used, size - used, "%s%u:%u",
                                 used ? " " : "", k, s);
                if (n > 0)
                    used += (size_t)n < size - used ? (size_t)n : size - used;
            }
        }
    }
    pthread_mutex_unlock(&r->lock);
    return missing;
}

/* ------------------------------------------------------- delivery tracker */

struct conf_slot {
    eb_conf_deliveries *d;
    atomic_int status; /* 1 until the callback ran */
};

struct eb_conf_deliveries {
    size_t capacity;
    struct conf_slot *slots;
    atomic_long accepted, callbacks, confirmed, doubles;
};

eb_conf_deliveries *eb_conf_deliveries_new(eb_conf_ctx *ctx, size_t capacity)
{
    eb_conf_deliveries *d = eb_conf_alloc(ctx, sizeof *d);
    d->capacity = capacity;
    d->slots = eb_conf_alloc(ctx, capacity * sizeof *d->slots);
    for (size_t i = 0; i < capacity; i++) {
        d->slots[i].d = d;
        atomic_init(&d->slots[i].status, 1);
    }
    return d;
}

/* Set while this thread is inside eb_publish: a delivery callback must
 * never run there. */
static _Thread_local int conf_in_publish;

/* Runs on a transport thread. */
static void conf_delivery_cb(int status, const char *id, void *opaque)
{
    struct conf_slot *slot = opaque;
    eb_conf_deliveries *d = slot->d;
    EB_CHECK(!conf_in_publish, "a delivery callback ran inside eb_publish");
    int prev = atomic_exchange(&slot->status, status);
    if (prev != 1) {
        atomic_fetch_add(&d->doubles, 1);
        return;
    }
    if (status == 0) {
        EB_CHECK(id != NULL && id[0] != '\0',
                 "delivery callback: status 0 without an id");
        atomic_fetch_add(&d->confirmed, 1);
    } else {
        EB_CHECK(id == NULL, "delivery callback: status %s with id '%s'",
                 eb_err_name(status), id);
    }
    atomic_fetch_add(&d->callbacks, 1);
}

eb_delivery_cb eb_conf_deliveries_cb(void) { return conf_delivery_cb; }

void *eb_conf_deliveries_slot(eb_conf_deliveries *d, size_t seq)
{
    EB_CHECK(seq < d->capacity, "delivery slot %zu beyond capacity %zu", seq,
             d->capacity);
    return &d->slots[seq];
}

void eb_conf_deliveries_accepted(eb_conf_deliveries *d)
{
    atomic_fetch_add(&d->accepted, 1);
}

long eb_conf_deliveries_accepted_count(eb_conf_deliveries *d)
{
    return atomic_load(&d->accepted);
}

long eb_conf_deliveries_callbacks(eb_conf_deliveries *d)
{
    return atomic_load(&d->callbacks);
}

long eb_conf_deliveries_confirmed(eb_conf_deliveries *d)
{
    return atomic_load(&d->confirmed);
}

long eb_conf_deliveries_double_callbacks(eb_conf_deliveries *d)
{
    return atomic_load(&d->doubles);
}

int eb_conf_deliveries_ok(eb_conf_deliveries *d, size_t seq)
{
    return seq < d->capacity && atomic_load(&d->slots[seq].status) == 0;
}

int eb_conf_deliveries_status(eb_conf_deliveries *d, size_t seq)
{
    return seq < d->capacity ? atomic_load(&d->slots[seq].status) : 1;
}

static int conf_deliveries_done(void *arg)
{
    eb_conf_deliveries *d = arg;
    return atomic_load(&d->callbacks) + atomic_load(&d->doubles) >=
           atomic_load(&d->accepted);
}

int eb_conf_deliveries_wait(eb_conf_deliveries *d, int timeout_ms)
{
    return eb_conf_wait(conf_deliveries_done, d, timeout_ms);
}

/* ----------------------------------------------------- sequenced messages */

int eb_conf_try_publish_seq(eb_bus *bus, const char *topic, unsigned key,
                            unsigned seq, eb_conf_deliveries *d, size_t slot)
{
    char keybuf[32], payload[48];
    int klen = snprintf(keybuf, sizeof keybuf, "key-%u", key);
    int plen = snprintf(payload, sizeof payload, "%u:%u", key, seq);
    eb_outgoing out = {
        .topic = topic,
        .key = key == EB_CONF_NO_KEY ? NULL : keybuf,
        .key_len = key == EB_CONF_NO_KEY ? 0 : (size_t)klen,
        .payload = payload,
        .payload_len = (size_t)plen,
    };
    if (d && slot >= d->capacity)
        return EB_ERR_INVALID;
    conf_in_publish = 1;
    int rc = eb_publish(bus, &out, d ? conf_delivery_cb : NULL,
                        d ? (void *)&d->slots[slot] : NULL);
    conf_in_publish = 0;
    if (rc == 0 && d)
        eb_conf_deliveries_accepted(d);
    return rc;
}

void eb_conf_publish_at(const char *file, int line, eb_conf_ctx *ctx,
                        eb_bus *bus, const eb_outgoing *msg, eb_delivery_cb cb,
                        void *opaque)
{
    double end = eb_conf_now_ms() + EB_CONF_WAIT_MS;
    int rc;
    (void)ctx;
    for (;;) {
        conf_in_publish = 1;
        rc = eb_publish(bus, msg, cb, opaque);
        conf_in_publish = 0;
        if (rc != EB_ERR_FULL || eb_conf_now_ms() >= end)
            break;
        eb_flush(bus, 10); /* let the transport drain, then try again */
    }
    CHECK_AT(rc == 0, "eb_publish(%s): %s", msg->topic, eb_err_name(rc));
}

void eb_conf_publish_seq_at(const char *file, int line, eb_conf_ctx *ctx,
                            eb_bus *bus, const char *topic, unsigned key,
                            unsigned seq, eb_conf_deliveries *d, size_t slot)
{
    char keybuf[32], payload[48];
    int klen = snprintf(keybuf, sizeof keybuf, "key-%u", key);
    int plen = snprintf(payload, sizeof payload, "%u:%u", key, seq);
    eb_outgoing out = {
        .topic = topic,
        .key = key == EB_CONF_NO_KEY ? NULL : keybuf,
        .key_len = key == EB_CONF_NO_KEY ? 0 : (size_t)klen,
        .payload = payload,
        .payload_len = (size_t)plen,
    };
    eb_conf_publish_at(file, line, ctx, bus, &out, d ? conf_delivery_cb : NULL,
                    d ? eb_conf_deliveries_slot(d, slot) : NULL);
    if (d)
        eb_conf_deliveries_accepted(d);
}

int eb_conf_msg_seq(const eb_msg *msg, unsigned *key, unsigned *seq)
{
    size_t len = 0;
    const char *p = eb_msg_payload(msg, &len);
    char buf[48];
    if (!p || len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    int used = 0;
    if (sscanf(buf, "%u:%u%n", key, seq, &used) != 2 || (size_t)used != len)
        return -1;
    return 0;
}

void eb_conf_flush_confirmed_at(const char *file, int line, eb_conf_ctx *ctx,
                                eb_bus *bus, eb_conf_deliveries *d)
{
    (void)ctx;
    int flush_rc = eb_flush(bus, EB_CONF_WAIT_MS);
    CHECK_AT(flush_rc == 0, "eb_flush(%d ms): %s", EB_CONF_WAIT_MS, eb_err_name(flush_rc));
    if (!d)
        return;
    CHECK_AT(eb_conf_deliveries_wait(d, EB_CONF_WAIT_MS) == 0,
             "after eb_flush returned 0, only %ld of %ld delivery callbacks ran",
             eb_conf_deliveries_callbacks(d), eb_conf_deliveries_accepted_count(d));
    CHECK_AT(eb_conf_deliveries_double_callbacks(d) == 0,
             "%ld publish(es) had more than one delivery callback",
             eb_conf_deliveries_double_callbacks(d));
    CHECK_AT(eb_conf_deliveries_confirmed(d) == eb_conf_deliveries_accepted_count(d),
             "%ld of %ld publishes failed (delivery callback status not 0)",
             eb_conf_deliveries_accepted_count(d) - eb_conf_deliveries_confirmed(d),
             eb_conf_deliveries_accepted_count(d));
}

void eb_conf_check_duplicates_at(const char *file, int line, eb_conf_ctx *ctx,
                                 unsigned long duplicates,
                                 unsigned long revokes, const char *what)
{
    if (duplicates && revokes)
        eb_conf_note(ctx, "%s: %lu duplicate(s) after %lu revoke(s): allowed",
                     what, duplicates, revokes);
    CHECK_AT(duplicates == 0 || revokes > 0,
             "%s: %lu duplicate(s) although no lane was revoked", what,
             duplicates);
}

unsigned long eb_conf_revokes_since(eb_conf_ctx *ctx, unsigned long before)
{
    return eb_conf_event_count(ctx, EB_EVENT_REVOKED) - before;
}

/* ------------------------------------------------------------------ sinks */

eb_conf_sink *eb_conf_sink_new(eb_conf_ctx *ctx, eb_conf_recorder *shared,
                               eb_conf_recorder *own)
{
    eb_conf_sink *s = eb_conf_alloc(ctx, sizeof *s);
    s->shared = shared;
    s->own = own;
    return s;
}

/* Runs on a dispatch worker. */
eb_result eb_conf_sink_handler(const eb_msg *msg, void *opaque)
{
    eb_conf_sink *s = opaque;
    unsigned key, seq;
    atomic_fetch_add(&s->handled, 1);
    if (eb_conf_msg_seq(msg, &key, &seq) != 0) {
        atomic_fetch_add(&s->unparsable, 1);
        return EB_ACK;
    }
    if (s->shared)
        eb_conf_recorder_add(s->shared, key, seq);
    if (s->own)
        eb_conf_recorder_add(s->own, key, seq);
    if (s->spin_us)
        eb_conf_spin_us(s->spin_us);
    return EB_ACK;
}

void eb_conf_expect_all_at(const char *file, int line, eb_conf_ctx *ctx,
                           eb_conf_recorder *r, unsigned nkeys,
                           unsigned per_key, const char *what)
{
    unsigned long want = (unsigned long)nkeys * per_key;
    (void)ctx;
    if (eb_conf_recorder_wait(r, want, EB_CONF_WAIT_MS) == 0)
        return;
    char missing[200];
    unsigned long n = eb_conf_recorder_missing(r, nkeys, per_key, missing,
                                               sizeof missing);
    FAIL_AT("%s: %lu of %lu messages not handled within %d ms (key:seq %s%s)",
            what, n, want, EB_CONF_WAIT_MS, missing, n > 8 ? " ..." : "");
}

void eb_conf_expect_order_at(const char *file, int line, eb_conf_ctx *ctx,
                             eb_conf_recorder *r, int single_member,
                             const char *what)
{
    int promised = eb_conf_has(ctx, EB_FEATURE_KEY_ORDER) ||
                   (single_member &&
                    eb_conf_has(ctx, EB_FEATURE_KEY_ORDER_SINGLE_MEMBER));
    if (!promised)
        return;
    CHECK_AT(eb_conf_recorder_order_violations(r) == 0,
             "%s: %lu per-key order violation(s); first: %s", what,
             eb_conf_recorder_order_violations(r),
             eb_conf_recorder_first_violation(r));
}
