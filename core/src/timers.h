/*
 * timers.h — the core's timer queue: one thread, a min-heap of messages by
 * due time (retries and dead-letter retries). Nothing in the core sleeps to
 * wait for a retry; a message waits here instead.
 */
#ifndef EB_TIMERS_H
#define EB_TIMERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eventbus/transport.h"

typedef struct eb_timers eb_timers;

/** Runs on the timer thread, outside the timer lock, once per due message. */
typedef void (*eb_timer_fire_fn)(void *ctx, eb_msg *m);
typedef bool (*eb_timer_match_fn)(const eb_msg *m, void *arg);

/** A timer queue without its thread: buses that never subscribe (only
 *  subscriptions retry) never start one. */
int eb__timers_new(eb_timer_fire_fn fire, void *ctx, eb_timers **out);
/** Starts the thread unless it runs. @returns 0 or EB_ERR_NOMEM. */
int eb__timers_run(eb_timers *t);
/** Queues `m` to fire at `due_ns` (monotonic). */
void eb__timers_add(eb_timers *t, eb_msg *m, int64_t due_ns);
/** Makes the messages queued now that `match` accepts due now. */
void eb__timers_expedite(eb_timers *t, eb_timer_match_fn match, void *arg);
/** Close abandoned the queue: every message fires at once from now on,
 *  those queued and those added later (a handler's RETRY or a failed dead
 *  letter settled while close abandoned), so none holds close for its
 *  backoff. */
void eb__timers_abandon(eb_timers *t);
/** Messages queued or being fired. */
size_t eb__timers_pending(eb_timers *t);
/** Joins the thread and frees; the queue must be empty. NULL is allowed. */
void eb__timers_stop(eb_timers *t);

#endif
