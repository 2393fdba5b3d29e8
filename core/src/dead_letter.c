/*
 * dead_letter.c — dead letters: building the copy or its stub, publishing
 * it, and the policy for a publish that fails (eventbus.h, "Dead letters").
 *
 * Divisions, in order:
 *   sizes      what message.max.bytes counts, without overflow
 *   building   the copy (key, payload, headers and the eb-dlq-* headers) or
 *              the stub (eb-dlq-* headers, original size, the key if it fits)
 *   stopped    dead letters their topic cannot take: the count health reads
 *   failures   stub, stop or retry; the capped backoff; the event, at most
 *              one a second per subscription
 *   sending    the publish and its delivery callback
 *
 * A dead letter belongs to one thread at a time (the worker that settled
 * it, then the transport's delivery thread or the timer thread), handed on
 * through the publish and the timer queue, so its flags need no lock. It
 * goes back to dispatch only when confirmed or given up: until then its
 * lane commits nothing past it and its key waits (dispatch.c).
 */
#include "dead_letter.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "dispatch.h"
#include "timers.h"

/* ------------------------------------------------------------------ sizes */

static size_t add_saturated(size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static size_t headers_size(const eb_header *h, size_t n)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes = add_saturated(add_saturated(bytes, strlen(h[i].name)), h[i].value_len);
    return bytes;
}

/** Key + payload + header names and values, as message.max.bytes counts. */
static size_t message_size(const eb_msg *m)
{
    return add_saturated(add_saturated(m->key_len, m->payload_len),
                         headers_size(m->headers, m->header_count));
}

/** What every transport takes (eventbus.h: EB_DLQ_HEADROOM). */
static size_t dead_letter_limit(const eb_bus *bus)
{
    return add_saturated((size_t)bus->set.message_max_bytes, EB_DLQ_HEADROOM);
}

/* --------------------------------------------------------------- building */

enum { ORIGIN_HEADERS = 5, STUB_HEADERS = 2 };

/** The eb-dlq-* headers of one dead letter and the text they point to. */
typedef struct dlq_headers {
    eb_header h[ORIGIN_HEADERS + STUB_HEADERS];
    size_t n;
    char attempts[16];
    char original_size[24];
} dlq_headers;

static void add_header(dlq_headers *d, const char *name, const char *value)
{
    d->h[d->n++] = (eb_header){name, value, strlen(value)};
}

/** Where the message came from: the headers of every dead letter. */
static void describe_origin(dlq_headers *d, const eb_msg *m)
{
    const eb_sub *sub = m->core.sub;
    snprintf(d->attempts, sizeof d->attempts, "%" PRIu32, eb__msg_attempt(m));
    d->n = 0;
    add_header(d, EB_DLQ_HEADER_TOPIC, sub->topic);
    add_header(d, EB_DLQ_HEADER_GROUP, sub->group ? sub->group : "");
    add_header(d, EB_DLQ_HEADER_ATTEMPTS, d->attempts);
    add_header(d, EB_DLQ_HEADER_REASON,
               (m->core.flags & EB_MSGF_REJECTED) ? "rejected" : "max-attempts");
    add_header(d, EB_DLQ_HEADER_ORIGIN_ID, m->id ? m->id : "");
}

static bool copy_fits(const eb_bus *bus, const eb_msg *m, const dlq_headers *d)
{
    return add_saturated(message_size(m), headers_size(d->h, d->n)) <= dead_letter_limit(bus);
}

/** The stub: no payload and none of the original headers; the key only
 *  when it fits beside the headers (it may be what was too large). */
static void build_stub(const eb_bus *bus, const eb_msg *m, dlq_headers *d, eb_outgoing *out)
{
    static const char without_key[] = "payload,headers", without_any[] = "payload,headers,key";
    snprintf(d->original_size, sizeof d->original_size, "%zu", message_size(m));
    add_header(d, EB_DLQ_HEADER_ORIGINAL_SIZE, d->original_size);
    size_t limit = dead_letter_limit(bus);
    size_t rest = add_saturated(headers_size(d->h, d->n),
                                strlen(EB_DLQ_HEADER_STUB) + strlen(without_any));
    bool keep_key = m->key && rest <= limit && m->key_len <= limit - rest;
    add_header(d, EB_DLQ_HEADER_STUB, keep_key || !m->key ? without_key : without_any);
    *out = (eb_outgoing){.topic = out->topic, .key = keep_key ? m->key : NULL,
                         .key_len = keep_key ? m->key_len : 0,
                         .headers = d->h, .header_count = d->n};
}

/* ---------------------------------------------------------------- stopped */

/** Errors a retry alone will not cure: a person must create the topic,
 *  raise its limit or fix its name. */
static bool stops_lane(int err)
{
    return err == EB_ERR_NOT_FOUND || err == EB_ERR_INVALID || err == EB_ERR_UNSUPPORTED ||
           err == EB_ERR_TOO_LARGE; /* a stub: the copy was tried before */
}

static void mark_stopped(eb_bus *bus, eb_msg *m, int err)
{
    const eb_sub *sub = m->core.sub;
    eb_dlq_stopped *st = &bus->dlq_stopped;
    pthread_mutex_lock(&st->mu);
    snprintf(st->detail, sizeof st->detail, "'%.80s' said %s", sub->dlq_topic,
             eb_err_name(err));
    pthread_mutex_unlock(&st->mu);
    if (!(m->core.flags & EB_MSGF_DLQ_STOPPED)) {
        m->core.flags |= EB_MSGF_DLQ_STOPPED;
        atomic_fetch_add(&st->count, 1);
    }
}

static void unmark_stopped(eb_bus *bus, eb_msg *m)
{
    if (!(m->core.flags & EB_MSGF_DLQ_STOPPED))
        return;
    m->core.flags &= ~(uint32_t)EB_MSGF_DLQ_STOPPED;
    atomic_fetch_sub(&bus->dlq_stopped.count, 1);
}

void eb__dead_letter_health(eb_bus *bus, eb_health *out)
{
    long stopped = atomic_load(&bus->dlq_stopped.count);
    if (stopped <= 0 || out->state != EB_HEALTH_OK)
        return; /* a transport's DEGRADED or DOWN says more */
    out->state = EB_HEALTH_DEGRADED;
    pthread_mutex_lock(&bus->dlq_stopped.mu);
    snprintf(out->detail, sizeof out->detail,
             "%ld dead letter(s) cannot be published (%s); their lanes wait until "
             "the topic takes them", stopped, bus->dlq_stopped.detail);
    pthread_mutex_unlock(&bus->dlq_stopped.mu);
}

/* --------------------------------------------------------------- failures */

/* Dead-letter attempts are at least this far apart, whatever the backoff. */
enum { DLQ_RETRY_MIN_MS = 100 };
#define DLQ_EVENT_INTERVAL_NS 1000000000LL

/** Doubling from retry.backoff.ms to retry.backoff.max.ms, both at least
 *  DLQ_RETRY_MIN_MS: a topic that is missing for an hour costs a publish
 *  every few seconds, not a loop. */
static int64_t retry_delay_ms(const eb_bus *bus, uint32_t failures)
{
    int64_t ms = bus->set.retry_backoff_ms, cap = bus->set.retry_backoff_max_ms;
    ms = ms < DLQ_RETRY_MIN_MS ? DLQ_RETRY_MIN_MS : ms;
    cap = cap < ms ? ms : cap;
    for (uint32_t i = 1; i < failures && ms < cap; i++)
        ms *= 2;
    return ms < cap ? ms : cap;
}

/** EB_EVENT_DLQ_FAILED, at most once a second per subscription: a stopped
 *  lane can hold thousands of dead letters, each retrying. */
static void report_failure(eb_bus *bus, eb_sub *sub, int err, bool stops)
{
    int64_t now = eb__now_ns();
    int_fast64_t last = atomic_load(&sub->dlq_event_ns);
    if ((last != 0 && now - last < DLQ_EVENT_INTERVAL_NS) ||
        !atomic_compare_exchange_strong(&sub->dlq_event_ns, &last, now)) {
        atomic_fetch_add(&sub->dlq_failures_unreported, 1);
        return;
    }
    unsigned unreported = atomic_exchange(&sub->dlq_failures_unreported, 0);
    char more[64] = "";
    if (unreported)
        snprintf(more, sizeof more, " (and %u failure(s) since the last event)", unreported);
    char detail[512];
    snprintf(detail, sizeof detail, "dead-letter publish to '%s' failed (%s)%s; %s",
             sub->dlq_topic, eb_strerror(err), more,
             stops ? "its lane waits until the topic takes it, retrying" : "retrying");
    eb__bus_event(bus, EB_EVENT_DLQ_FAILED, sub->topic, sub->group, err, detail);
}

/** Back to dispatch: acknowledged when published, else released. */
static void finish(eb_bus *bus, eb_msg *m, bool published)
{
    unmark_stopped(bus, m);
    eb__dispatch_dead_letter_done(bus->dispatch, m, published);
}

/** Gives the message back unacknowledged instead of dead-lettering it:
 *  close abandoned it, or its lane now belongs to another member. */
static bool give_up_if_stale(eb_bus *bus, eb_msg *m)
{
    if (!eb__dispatch_abandoning(bus->dispatch) && !eb__dispatch_is_stale(bus->dispatch, m))
        return false;
    finish(bus, m, false);
    return true;
}

static void failed(eb_bus *bus, eb_msg *m, int err)
{
    if (give_up_if_stale(bus, m))
        return;
    if (err == EB_ERR_TOO_LARGE && !(m->core.flags & EB_MSGF_DLQ_STUB)) {
        /* The transport or the topic refused the copy: the stub is small. */
        m->core.flags |= EB_MSGF_DLQ_STUB;
        eb__dead_letter_send(bus, m);
        return;
    }
    bool stops = stops_lane(err);
    if (stops)
        mark_stopped(bus, m, err);
    atomic_fetch_add(&bus->count.dlq_failed, 1);
    report_failure(bus, m->core.sub, err, stops);
    m->core.dlq_failures++;
    int64_t due = eb__now_ns() + retry_delay_ms(bus, m->core.dlq_failures) * 1000000;
    eb__timers_add(bus->timers, m, due);
}

/* ---------------------------------------------------------------- sending */

static void published(eb_bus *bus, eb_msg *m, const char *id)
{
    atomic_fetch_add(&bus->count.dead_lettered, 1);
    if (m->core.flags & EB_MSGF_DLQ_STUB) {
        const eb_sub *sub = m->core.sub;
        atomic_fetch_add(&bus->count.dlq_stubs, 1);
        eb__bus_log(bus, EB_LOG_WARN, "message %s of '%s' (%zu bytes) was too large to "
                    "dead-letter whole: a stub without its payload went to '%s' (%s)",
                    m->id ? m->id : "?", sub->topic, message_size(m), sub->dlq_topic, id);
    }
    finish(bus, m, true);
}

/* Delivery callback of a dead-letter publish; on a transport thread. */
static void dead_letter_delivered(int status, const char *id, void *opaque)
{
    eb_msg *m = opaque;
    eb_bus *bus = ((eb_sub *)m->core.sub)->bus;
    if (status == 0)
        published(bus, m, id);
    else
        failed(bus, m, status);
}

/** One publish of the copy, or of the stub once the copy is too large.
 *  On 0 the message belongs to the delivery callback. */
static int publish(eb_bus *bus, eb_msg *m)
{
    const eb_sub *sub = m->core.sub;
    dlq_headers d;
    describe_origin(&d, m);
    if (!copy_fits(bus, m, &d))
        m->core.flags |= EB_MSGF_DLQ_STUB;
    eb_outgoing out = {.topic = sub->dlq_topic};
    eb_header *all = NULL;
    if (m->core.flags & EB_MSGF_DLQ_STUB) {
        build_stub(bus, m, &d, &out);
    } else {
        if (!(all = malloc((m->header_count + d.n) * sizeof *all)))
            return EB_ERR_NOMEM;
        if (m->header_count)
            memcpy(all, m->headers, m->header_count * sizeof *all);
        memcpy(all + m->header_count, d.h, d.n * sizeof *all);
        out = (eb_outgoing){.topic = sub->dlq_topic, .key = m->key, .key_len = m->key_len,
                            .payload = m->payload, .payload_len = m->payload_len,
                            .headers = all, .header_count = m->header_count + d.n};
    }
    void *token = eb__delivery_token_new(dead_letter_delivered, m);
    int rc = token ? eb__bus_publish_raw(bus, &out, 0, token) : EB_ERR_NOMEM;
    if (rc != 0)
        eb__delivery_token_drop(bus, token);
    free(all);
    return rc;
}

void eb__dead_letter_send(eb_bus *bus, eb_msg *m)
{
    if (give_up_if_stale(bus, m))
        return;
    int rc = publish(bus, m);
    if (rc != 0)
        failed(bus, m, rc);
}
