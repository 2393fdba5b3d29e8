/*
 * outcome.c — retries and dead letters.
 *
 * A retry puts the message on the timer queue (no worker sleeps) and later
 * back in front of its worker. A dead letter keeps the key, payload and
 * headers and adds EB_DLQ_HEADER_* headers; the original is acknowledged
 * only when the dead-letter publish is confirmed. A failed dead-letter
 * publish raises EB_EVENT_DLQ_FAILED and is tried again after a backoff;
 * nothing is dropped (at close it is released unacknowledged instead).
 */
#include "outcome.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "dispatch.h"
#include "timers.h"

bool eb__outcome_may_retry(eb_bus *bus, eb_msg *m)
{
    return eb__msg_attempt(m) < (uint32_t)bus->set.retry_max_attempts;
}

/** Backoff doubling from retry.backoff.ms up to retry.backoff.max.ms. */
static int64_t backoff_ms(const eb_bus *bus, uint32_t attempts)
{
    int64_t ms = bus->set.retry_backoff_ms;
    for (uint32_t i = 1; i < attempts && ms < bus->set.retry_backoff_max_ms; i++)
        ms *= 2;
    return ms < bus->set.retry_backoff_max_ms ? ms : bus->set.retry_backoff_max_ms;
}

void eb__outcome_schedule_retry(eb_bus *bus, eb_msg *m)
{
    atomic_fetch_add(&bus->count.retried, 1);
    int64_t due = eb__now_ns() + backoff_ms(bus, m->core.attempts) * 1000000;
    eb__timers_add(bus->timers, m, due);
}

/** Gives the message back unacknowledged instead of dead-lettering it:
 *  close abandoned it, or its lane now belongs to another member. */
static bool give_up_if_stale(eb_bus *bus, eb_msg *m)
{
    if (!eb__dispatch_abandoning(bus->dispatch) && !eb__dispatch_is_stale(bus->dispatch, m))
        return false;
    eb__sub_release(m->core.sub, &m, 1);
    return true;
}

/* Dead-letter attempts are at least this far apart, whatever the backoff. */
enum { DLQ_RETRY_MIN_MS = 100 };

static void dlq_retry_later(eb_bus *bus, eb_msg *m, int err)
{
    eb_sub *sub = m->core.sub;
    char detail[256];
    snprintf(detail, sizeof detail,
             "dead-letter publish to '%s' failed (%s); trying again",
             sub->dlq_topic, eb_strerror(err));
    atomic_fetch_add(&bus->count.dlq_failed, 1);
    eb__bus_event(bus, EB_EVENT_DLQ_FAILED, sub->topic, sub->group, err, detail);
    int64_t ms = backoff_ms(bus, 1);
    int64_t due = eb__now_ns() + (ms < DLQ_RETRY_MIN_MS ? DLQ_RETRY_MIN_MS : ms) * 1000000;
    eb__timers_add(bus->timers, m, due);
}

/* Delivery callback of the dead-letter publish; on a transport thread. */
static void dlq_delivered(int status, const char *id, void *opaque)
{
    eb_msg *m = opaque;
    eb_sub *sub = m->core.sub;
    eb_bus *bus = sub->bus;
    if (status == 0) {
        atomic_fetch_add(&bus->count.dead_lettered, 1);
        eb__sub_ack(sub, &m, 1);
    } else if (!give_up_if_stale(bus, m)) {
        dlq_retry_later(bus, m, status);
    }
}

enum { DLQ_EXTRA_HEADERS = 5 };

static int publish_dead_letter(eb_bus *bus, eb_msg *m)
{
    eb_sub *sub = m->core.sub;
    size_t n = m->header_count + DLQ_EXTRA_HEADERS;
    eb_header *h = malloc(n * sizeof *h);
    if (!h)
        return EB_ERR_NOMEM;
    if (m->header_count)
        memcpy(h, m->headers, m->header_count * sizeof *h);
    char attempts[16];
    snprintf(attempts, sizeof attempts, "%" PRIu32, eb__msg_attempt(m));
    const char *reason = (m->core.flags & EB_MSGF_REJECTED) ? "rejected" : "max-attempts";
    const char *group = sub->group ? sub->group : "";
    const char *origin = m->id ? m->id : "";
    eb_header *x = h + m->header_count;
    x[0] = (eb_header){EB_DLQ_HEADER_TOPIC, sub->topic, strlen(sub->topic)};
    x[1] = (eb_header){EB_DLQ_HEADER_GROUP, group, strlen(group)};
    x[2] = (eb_header){EB_DLQ_HEADER_ATTEMPTS, attempts, strlen(attempts)};
    x[3] = (eb_header){EB_DLQ_HEADER_REASON, reason, strlen(reason)};
    x[4] = (eb_header){EB_DLQ_HEADER_ORIGIN_ID, origin, strlen(origin)};
    eb_outgoing out = {.topic = sub->dlq_topic, .key = m->key, .key_len = m->key_len,
                       .payload = m->payload, .payload_len = m->payload_len,
                       .headers = h, .header_count = n};
    void *token = eb__delivery_token_new(dlq_delivered, m);
    int rc = token ? eb__bus_publish_raw(bus, &out, 0, token) : EB_ERR_NOMEM;
    if (rc != 0)
        eb__delivery_token_drop(bus, token);
    free(h);
    return rc;
}

static void send_dead_letter(eb_bus *bus, eb_msg *m)
{
    if (give_up_if_stale(bus, m))
        return;
    int rc = publish_dead_letter(bus, m);
    if (rc != 0)
        dlq_retry_later(bus, m, rc);
}

void eb__outcome_dead_letter(eb_bus *bus, eb_msg *m, uint32_t reason_flag)
{
    m->core.flags |= EB_MSGF_DLQ | reason_flag;
    send_dead_letter(bus, m);
}

void eb__outcome_timer_fired(void *ctx, eb_msg *m)
{
    eb_bus *bus = ctx;
    eb__tls_callback_bus = bus; /* the timer thread never waits to publish */
    if (m->core.flags & EB_MSGF_DLQ)
        send_dead_letter(bus, m);
    else
        eb__dispatch_requeue(bus->dispatch, m);
}
