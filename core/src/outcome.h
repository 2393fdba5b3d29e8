/*
 * outcome.h — what happens to a message after its handler: a retry on the
 * timer queue with exponential backoff, or a dead letter published through
 * the same transport and acknowledged only once that publish is confirmed.
 */
#ifndef EB_OUTCOME_H
#define EB_OUTCOME_H

#include <stdbool.h>
#include <stdint.h>

#include "bus.h"

/** True when another attempt is allowed (retry.max.attempts). */
bool eb__outcome_may_retry(eb_bus *bus, eb_msg *m);

/** Queues `m` on the timer for its next attempt. */
void eb__outcome_schedule_retry(eb_bus *bus, eb_msg *m);

/** Publishes `m` to its dead-letter topic (dead_letter.c); it is acked
 *  when confirmed, retried until then. `reason_flag` is EB_MSGF_REJECTED
 *  or 0 (max attempts). */
void eb__outcome_dead_letter(eb_bus *bus, eb_msg *m, uint32_t reason_flag);

/** The timer thread's callback: a retry or a dead-letter retry is due. */
void eb__outcome_timer_fired(void *bus, eb_msg *m);

#endif
