/*
 * outcome.c — retries, and the way into dead letters.
 *
 * A retry puts the message on the timer queue (no worker sleeps) and later
 * back in front of its worker. A dead letter is published by
 * dead_letter.c; the timer also fires its retries.
 */
#include "outcome.h"

#include "clock.h"
#include "dead_letter.h"
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

void eb__outcome_dead_letter(eb_bus *bus, eb_msg *m, uint32_t reason_flag)
{
    m->core.flags |= EB_MSGF_DLQ | reason_flag;
    eb__dead_letter_send(bus, m);
}

void eb__outcome_timer_fired(void *ctx, eb_msg *m)
{
    eb_bus *bus = ctx;
    eb__tls_callback_bus = bus; /* the timer thread never waits to publish */
    if (m->core.flags & EB_MSGF_DLQ)
        eb__dead_letter_send(bus, m);
    else
        eb__dispatch_requeue(bus->dispatch, m);
}
