/*
 * dead_letter.h — publishing a message to its dead-letter topic, and what a
 * failed dead-letter publish leads to (eventbus.h, "Dead letters"): a stub
 * when the copy is too large; a stopped lane, and health DEGRADED, while
 * the topic cannot take it; a capped backoff for every retry.
 */
#ifndef EB_DEAD_LETTER_H
#define EB_DEAD_LETTER_H

#include "bus.h"

/** Publishes `m` (flagged EB_MSGF_DLQ) to its subscription's dead-letter
 *  topic: its first attempt, or a retry the timer fired. The message goes
 *  back to dispatch (eb__dispatch_dead_letter_done) once the dead letter is
 *  confirmed, or given up because close abandoned it or its lane was
 *  revoked; until then it is retried. Runs on a worker, the timer thread or
 *  a transport's delivery thread; never waits. */
void eb__dead_letter_send(eb_bus *bus, eb_msg *m);

/** Turns a transport's OK into DEGRADED while dead letters are stopped. */
void eb__dead_letter_health(eb_bus *bus, eb_health *out);

#endif
