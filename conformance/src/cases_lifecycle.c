/*
 * cases_lifecycle.c — closing: mid-stream without losing or wrongly
 * acknowledging anything, under a deadline that a slow handler overruns,
 * and refused (EB_ERR_BUSY) from inside a handler or a callback.
 */
#include "eventbus/conformance.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------- close_during_stream */

#define CS_KEYS 32
#define CS_BEFORE_CLOSE 2000 /* handled by bus 1 before it closes */
#define CS_LEAD 2000         /* the publisher stays this far ahead of bus 1 at most */
#define CS_AFTER_CLOSE 2000  /* published after bus 1 closed */
/* The publisher stops here at the latest: bus 1 handles what it queued
 * during its close, so the lead may be taken twice before it is closed. */
#define CS_CAP (CS_BEFORE_CLOSE + 3 * CS_LEAD + CS_AFTER_CLOSE)
#define CS_PER_KEY (CS_CAP / CS_KEYS)

struct cs_state {
    eb_bus *pub;
    const char *topic;
    eb_conf_deliveries *d;
    eb_conf_recorder *h1, *h2;
    eb_conf_sink *s1, *s2;
    pthread_t thread;
    int started, joined;
    atomic_int stop;
    atomic_int bus1_closed;   /* then publish up to final_count, unpaced */
    atomic_uint final_count;
    atomic_uint published; /* accepted publishes: message i has key i % CS_KEYS */
    atomic_int finished;
    atomic_int error;      /* first unexpected eb_publish code */
};

/*
 * The publisher thread: as fast as the transport takes them, but never
 * more than CS_LEAD ahead of what bus 1 handled while bus 1 is open (so
 * bus 1 closes with work queued and the topic holds a bounded backlog:
 * what a transport must keep while no member is open stays small, see
 * "Retention" in conformance.h), then exactly up to final_count.
 */
static void *cs_publisher(void *arg)
{
    struct cs_state *st = arg;
    unsigned i = 0;
    while (i < CS_CAP && !atomic_load(&st->stop)) {
        int closed = atomic_load(&st->bus1_closed);
        unsigned limit = closed ? atomic_load(&st->final_count)
                                : (unsigned)eb_conf_recorder_unique(st->h1) + CS_LEAD;
        if (i >= limit) {
            if (closed)
                break;
            /* Wait for bus 1 to handle more; wake up now and then to see
             * stop and bus1_closed. */
            eb_conf_recorder_wait(st->h1, i + 1 - CS_LEAD, 20);
            continue;
        }
        int rc = eb_conf_try_publish_seq(st->pub, st->topic, i % CS_KEYS,
                                         i / CS_KEYS, st->d, i);
        if (rc == 0) {
            atomic_store(&st->published, ++i);
        } else if (rc == EB_ERR_FULL) {
            eb_flush(st->pub, 10); /* let the transport drain */
        } else {
            atomic_store(&st->error, rc);
            break;
        }
    }
    atomic_store(&st->finished, 1);
    return NULL;
}

static void cs_stop(void *arg)
{
    struct cs_state *st = arg;
    atomic_store(&st->stop, 1);
    if (st->started && !st->joined) {
        pthread_join(st->thread, NULL);
        st->joined = 1;
    }
}

struct cs_progress {
    struct cs_state *st;
    unsigned target;
};

static int cs_published_enough(void *arg)
{
    struct cs_progress *p = arg;
    return atomic_load(&p->st->published) >= p->target ||
           atomic_load(&p->st->finished);
}

static unsigned cs_handled(struct cs_state *st, unsigned i)
{
    return eb_conf_recorder_count(st->h1, i % CS_KEYS, i / CS_KEYS) +
           eb_conf_recorder_count(st->h2, i % CS_KEYS, i / CS_KEYS);
}

static int cs_all_confirmed_handled(void *arg)
{
    struct cs_state *st = arg;
    unsigned n = atomic_load(&st->published);
    for (unsigned i = 0; i < n; i++)
        if (eb_conf_deliveries_ok(st->d, i) && cs_handled(st, i) == 0)
            return 0;
    return 1;
}

void eb_case_close_during_stream(eb_conf_ctx *ctx)
{
    struct cs_state *st = eb_conf_alloc(ctx, sizeof *st);
    st->topic = eb_conf_name(ctx, "t");
    const char *group = eb_conf_name(ctx, "g");
    st->d = eb_conf_deliveries_new(ctx, CS_CAP);
    st->h1 = eb_conf_recorder_new(ctx, CS_KEYS, CS_PER_KEY);
    st->h2 = eb_conf_recorder_new(ctx, CS_KEYS, CS_PER_KEY);
    st->s1 = eb_conf_sink_new(ctx, st->h1, NULL);
    st->s2 = eb_conf_sink_new(ctx, st->h2, NULL);
    st->s1->spin_us = 20; /* bus 1 falls behind: it closes with work queued */

    /* The publisher's bus stays open until bus 2 is open: the memory
     * transport's broker lives while some bus names it. */
    eb_config *cfg = eb_conf_config(ctx);
    st->pub = eb_conf_open(ctx, cfg);
    eb_bus *bus1 = eb_conf_open(ctx, cfg);
    eb_conf_subscribe(ctx, bus1, st->topic, group, eb_conf_sink_handler, st->s1);
    unsigned long revokes = eb_conf_event_count(ctx, EB_EVENT_REVOKED);

    eb_conf_on_teardown(ctx, cs_stop, st);
    EB_CHECK(pthread_create(&st->thread, NULL, cs_publisher, st) == 0,
             "pthread_create failed");
    st->started = 1;

    EB_CHECK(eb_conf_recorder_wait(st->h1, CS_BEFORE_CLOSE, EB_CONF_WAIT_MS) == 0,
             "bus 1 handled only %lu messages", eb_conf_recorder_unique(st->h1));
    double t0 = eb_conf_now_ms();
    EB_CHECK_OK(eb_bus_close(bus1, EB_CONF_CLOSE_MS));
    double close_ms = eb_conf_now_ms() - t0;
    unsigned long handled1 = eb_conf_recorder_unique(st->h1);
    unsigned at_close = atomic_load(&st->published);
    atomic_store(&st->final_count, at_close + CS_AFTER_CLOSE);
    atomic_store(&st->bus1_closed, 1);

    struct cs_progress more = {st, at_close + CS_AFTER_CLOSE};
    EB_CHECK(eb_conf_wait(cs_published_enough, &more, EB_CONF_WAIT_MS) == 0,
             "the publisher stalled at %u messages", atomic_load(&st->published));
    cs_stop(st);
    EB_CHECK(atomic_load(&st->error) == 0, "eb_publish from the publisher thread: %s",
             eb_err_name(atomic_load(&st->error)));

    eb_bus *bus2 = eb_conf_open(ctx, cfg);
    eb_conf_subscribe(ctx, bus2, st->topic, group, eb_conf_sink_handler, st->s2);
    /* Closing flushes: every accepted publish gets its callback. */
    EB_CHECK_OK(eb_bus_close(st->pub, EB_CONF_CLOSE_MS));
    unsigned published = atomic_load(&st->published);
    EB_CHECK(eb_conf_deliveries_callbacks(st->d) +
                     eb_conf_deliveries_double_callbacks(st->d) ==
                 (long)published,
             "after the publisher's bus closed, %ld of %u publishes had a "
             "delivery callback", eb_conf_deliveries_callbacks(st->d), published);
    EB_CHECK_EQ(eb_conf_deliveries_double_callbacks(st->d), 0);
    long confirmed = eb_conf_deliveries_confirmed(st->d);
    EB_CHECK(confirmed == (long)published,
             "%ld of %u publishes failed although close flushed within its deadline",
             (long)published - confirmed, published);

    /* Bus 2 gets what bus 1 did not acknowledge. */
    if (eb_conf_wait(cs_all_confirmed_handled, st, EB_CONF_WAIT_MS) != 0) {
        unsigned lost = 0, first = 0;
        for (unsigned i = 0; i < published; i++)
            if (eb_conf_deliveries_ok(st->d, i) && cs_handled(st, i) == 0 && lost++ == 0)
                first = i;
        EB_FAIL("%u confirmed message(s) handled by nobody (first: #%u, key %u seq %u): "
                "bus 1 acknowledged them without handling, or they were lost "
                "(bus 1 handled %lu before closing, bus 2 %lu)",
                lost, first, first % CS_KEYS, first / CS_KEYS, handled1,
                eb_conf_recorder_unique(st->h2));
    }
    unsigned long revoked = eb_conf_revokes_since(ctx, revokes);
    EB_CHECK_OK(eb_bus_close(bus2, EB_CONF_CLOSE_MS));

    unsigned long both = 0;
    for (unsigned i = 0; i < published; i++)
        if (eb_conf_recorder_count(st->h1, i % CS_KEYS, i / CS_KEYS) &&
            eb_conf_recorder_count(st->h2, i % CS_KEYS, i / CS_KEYS))
            both++;
    unsigned long dups = both + eb_conf_recorder_duplicates(st->h1) +
                         eb_conf_recorder_duplicates(st->h2);
    eb_conf_note(ctx, "published %u (%u when bus 1 closed in %.0f ms); bus 1 handled "
                 "%lu, bus 2 %lu; %lu handled by both; %lu revoke(s)",
                 published, at_close, close_ms, handled1,
                 eb_conf_recorder_unique(st->h2), both, revoked);
    EB_CHECK(eb_conf_recorder_unique(st->h2) > 0,
             "bus 2 handled nothing: the stream did not continue past bus 1's close");
    EB_CHECK_EQ(atomic_load(&st->s1->unparsable) + atomic_load(&st->s2->unparsable), 0);
    eb_conf_check_duplicates(ctx, dups, revoked, "close during stream");
    eb_conf_expect_order(ctx, st->h2, 1, "bus 2");
}

/* --------------------------------------------- close_slow_handler_timeout */

#define SH_MESSAGES 20
#define SH_HANDLER_MS 300
#define SH_CLOSE_MS 500
#define SH_SLACK_MS 400.0   /* scheduling, sanitizers */
#define SH_START_SLACK_MS 100.0

struct sh_state {
    pthread_mutex_t lock;
    double starts[SH_MESSAGES + 4];
    unsigned nstarts;
    eb_conf_counter *started;
};

/* Runs on a dispatch worker. */
static eb_result sh_handler(const eb_msg *msg, void *opaque)
{
    struct sh_state *st = opaque;
    (void)msg;
    pthread_mutex_lock(&st->lock);
    if (st->nstarts < sizeof st->starts / sizeof st->starts[0])
        st->starts[st->nstarts] = eb_conf_now_ms();
    st->nstarts++;
    pthread_mutex_unlock(&st->lock);
    eb_conf_counter_add(st->started, 1);
    /* Slow work is the point of this case: the handler must outlast the
     * close deadline, so it sleeps instead of waiting for anything. */
    struct timespec ts = {0, SH_HANDLER_MS * 1000L * 1000L};
    nanosleep(&ts, NULL);
    return EB_ACK;
}

/** The bus's "delivered" counter: messages the transport handed to the
 *  dispatch pool (-1 if the stats cannot be read). */
static long sh_delivered(eb_bus *bus)
{
    char *json = NULL;
    if (eb_bus_stats(bus, &json) != 0)
        return -1;
    const char *at = strstr(json, "\"delivered\":");
    long n = at ? atol(at + strlen("\"delivered\":")) : -1;
    eb_free(json);
    return n;
}

static int sh_all_delivered(void *arg)
{
    return sh_delivered(arg) >= SH_MESSAGES;
}

void eb_case_close_slow_handler_timeout(eb_conf_ctx *ctx)
{
    struct sh_state *st = eb_conf_alloc(ctx, sizeof *st);
    pthread_mutex_init(&st->lock, NULL);
    st->started = eb_conf_counter_new(ctx);
    const char *topic = eb_conf_name(ctx, "t");
    eb_bus *bus = eb_conf_open(ctx, eb_conf_config(ctx));
    eb_conf_subscribe(ctx, bus, topic,
                      eb_conf_group_or_anon(ctx, eb_conf_name(ctx, "g")),
                      sh_handler, st);
    eb_conf_deliveries *d = eb_conf_deliveries_new(ctx, SH_MESSAGES);
    for (unsigned seq = 0; seq < SH_MESSAGES; seq++)
        eb_conf_publish_seq(ctx, bus, topic, 0, seq, d, seq); /* one key */
    eb_conf_flush_confirmed(ctx, bus, d);
    EB_CHECK(eb_conf_counter_wait(st->started, 1, EB_CONF_WAIT_MS) == 0,
             "no handler started");
    /* Close must find them all queued: messages still in the transport are
     * not the pool's to wait for (close refuses them, the transport keeps
     * them unacknowledged) and would let close finish in time. */
    EB_CHECK(eb_conf_wait(sh_all_delivered, bus, EB_CONF_WAIT_MS) == 0,
             "only %ld of %d messages reached the dispatch pool", sh_delivered(bus),
             SH_MESSAGES);

    double t0 = eb_conf_now_ms();
    int rc = eb_bus_close(bus, SH_CLOSE_MS);
    double t1 = eb_conf_now_ms();
    pthread_mutex_lock(&st->lock);
    unsigned at_close = st->nstarts;
    pthread_mutex_unlock(&st->lock);
    eb_conf_destroy_bus(ctx, bus);

    char starts[256] = "";
    size_t used = 0;
    for (unsigned i = 0; i < st->nstarts && i < SH_MESSAGES && used < sizeof starts; i++)
        used += (size_t)snprintf(starts + used, sizeof starts - used, " %+.0f",
                                 st->starts[i] - t0);
    eb_conf_note(ctx, "close returned %s after %.0f ms; %u handler(s) started, at "
                 "(ms from close):%s", eb_err_name(rc), t1 - t0, st->nstarts, starts);
    EB_CHECK(rc == EB_ERR_TIMEOUT,
             "eb_bus_close(%d ms) with %d queued %d-ms handlers returned %s, "
             "expected EB_ERR_TIMEOUT", SH_CLOSE_MS, SH_MESSAGES, SH_HANDLER_MS,
             eb_err_name(rc));
    EB_CHECK(t1 - t0 <= SH_CLOSE_MS + SH_HANDLER_MS + SH_SLACK_MS,
             "eb_bus_close(%d ms) took %.0f ms (deadline + one handler = %d ms)",
             SH_CLOSE_MS, t1 - t0, SH_CLOSE_MS + SH_HANDLER_MS);
    EB_CHECK(st->nstarts == at_close,
             "%u handler(s) started after eb_bus_close returned",
             st->nstarts - at_close);
    EB_CHECK(st->nstarts < SH_MESSAGES,
             "all %u handlers ran: close did not abandon the queue", st->nstarts);
    for (unsigned i = 0; i < st->nstarts && i < SH_MESSAGES; i++) {
        EB_CHECK(st->starts[i] <= t1,
                 "handler %u started %.0f ms after eb_bus_close returned", i,
                 st->starts[i] - t1);
        EB_CHECK(st->starts[i] <= t0 + SH_CLOSE_MS + SH_START_SLACK_MS,
                 "handler %u started %.0f ms after the close deadline", i,
                 st->starts[i] - (t0 + SH_CLOSE_MS));
    }
}

/* ------------------------------------------------ close_from_handler_busy */

struct cb_state {
    eb_bus *bus;
    _Atomic(eb_sub *) sub;
    atomic_int first;
    atomic_int close_rc, unsub_rc, cb_close_rc;
    eb_conf_counter *handled, *callbacks;
};

/* Runs on a dispatch worker: closing or leaving from here must be refused. */
static eb_result cb_handler(const eb_msg *msg, void *opaque)
{
    struct cb_state *st = opaque;
    (void)msg;
    if (atomic_exchange(&st->first, 1) == 0) {
        atomic_store(&st->close_rc, eb_bus_close(st->bus, 1000));
        atomic_store(&st->unsub_rc, eb_unsubscribe(atomic_load(&st->sub)));
    }
    eb_conf_counter_add(st->handled, 1);
    return EB_ACK;
}

/* Runs on a transport thread. */
static void cb_delivery(int status, const char *id, void *opaque)
{
    struct cb_state *st = opaque;
    (void)status;
    (void)id;
    if (eb_conf_counter_get(st->callbacks) == 0)
        atomic_store(&st->cb_close_rc, eb_bus_close(st->bus, 0));
    eb_conf_counter_add(st->callbacks, 1);
}

void eb_case_close_from_handler_busy(eb_conf_ctx *ctx)
{
    struct cb_state *st = eb_conf_alloc(ctx, sizeof *st);
    st->handled = eb_conf_counter_new(ctx);
    st->callbacks = eb_conf_counter_new(ctx);
    atomic_store(&st->close_rc, 1);
    atomic_store(&st->unsub_rc, 1);
    atomic_store(&st->cb_close_rc, 1);
    const char *topic = eb_conf_name(ctx, "t");
    st->bus = eb_conf_open(ctx, eb_conf_config(ctx));
    eb_sub *sub = eb_conf_subscribe(ctx, st->bus, topic,
                                    eb_conf_group_or_anon(ctx, eb_conf_name(ctx, "g")),
                                    cb_handler, st);
    atomic_store(&st->sub, sub);

    eb_outgoing out = {.topic = topic, .key = "k", .key_len = 1,
                       .payload = "first", .payload_len = 5};
    eb_conf_publish(ctx, st->bus, &out, cb_delivery, st);
    EB_CHECK(eb_conf_counter_wait(st->callbacks, 1, EB_CONF_WAIT_MS) == 0,
             "no delivery callback");
    EB_CHECK(eb_conf_counter_wait(st->handled, 1, EB_CONF_WAIT_MS) == 0,
             "the message was not handled");
    EB_CHECK_ERR(atomic_load(&st->close_rc), EB_ERR_BUSY);
    EB_CHECK_ERR(atomic_load(&st->unsub_rc), EB_ERR_BUSY);
    EB_CHECK_ERR(atomic_load(&st->cb_close_rc), EB_ERR_BUSY);

    /* The refused calls changed nothing: the bus and the subscription work. */
    out.payload = "second";
    out.payload_len = 6;
    eb_conf_publish(ctx, st->bus, &out, cb_delivery, st);
    EB_CHECK(eb_conf_counter_wait(st->handled, 2, EB_CONF_WAIT_MS) == 0,
             "after the refused close and unsubscribe, a new message was not handled");
    EB_CHECK_OK(eb_unsubscribe(sub));
    EB_CHECK_OK(eb_bus_close(st->bus, EB_CONF_CLOSE_MS));
}
