/*
 * dispatch.h — the worker pool that runs handlers. Keys, not workers, are
 * scheduled: a keyed message waits in the shard of its key's hash, a free
 * worker runs the next ready shard's messages (per-key order, never two
 * of a key at once, whichever worker), a key held up (a blocked handler,
 * a retry, a dead letter) leaves its shard so it holds nothing else, and
 * unkeyed messages run on any free worker. Retries wait
 * on the timer queue, and dead letters for their publish, with later
 * messages of their key waiting behind them; revoke and close drain or
 * abandon what is queued. Outcomes (ack, retry, dead letter) are applied
 * in outcome.c.
 */
#ifndef EB_DISPATCH_H
#define EB_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"

/* Flags in m->core.flags. */
enum {
    EB_MSGF_COPY = 1u << 0,     /* made by eb_msg_copy(): the core frees it */
    EB_MSGF_DLQ = 1u << 1,      /* waiting to be dead-lettered */
    EB_MSGF_REJECTED = 1u << 2, /* dead-lettered because REJECT */
    EB_MSGF_KEYED = 1u << 3,
    EB_MSGF_BLOCKING = 1u << 4, /* a retry or dead-letter head its key
                                   waits for */
    EB_MSGF_DLQ_STUB = 1u << 5,      /* its dead letter is a stub: too large */
    EB_MSGF_DLQ_STOPPED = 1u << 6,   /* its dead letter's topic refuses it */
    EB_MSGF_PARKED = 1u << 7         /* counted in its sub's `parked`: it
                                        waits behind a blocked key */
};

/** The pool of bus->set.workers workers (0: one per CPU), not started. */
int eb__dispatch_new(eb_bus *bus, eb_dispatch **out);
/** Starts the workers' threads unless they run (at the first subscribe).
 *  @returns 0 or EB_ERR_NOMEM (the threads that did start stay). */
int eb__dispatch_run(eb_dispatch *d);

/** host->deliver: accepts a prefix of msgs; owes the sub a resume() when
 *  it refuses some. Never blocks. */
size_t eb__dispatch_deliver(eb_dispatch *d, eb_sub *sub, eb_msg **msgs, size_t n);

/** subscribe() returned: acks may flow; resumes the sub if it was refused. */
void eb__dispatch_sub_started(eb_dispatch *d, eb_sub *sub);

/**
 * Takes lanes (all of them when `all`) from `sub`: stale messages are
 * released, running handlers of those lanes are waited for until
 * `deadline_ns`, and pending acks are flushed to the transport.
 * @returns false when handlers were still running at the deadline.
 */
bool eb__dispatch_revoke(eb_dispatch *d, eb_sub *sub, const eb_lane_ref *lanes,
                         size_t n, bool all, int64_t deadline_ns);

/** Unsubscribing: deliver() refuses the sub from now on (it is owed no
 *  resume); what the core holds of it still runs. */
void eb__dispatch_stop_intake(eb_dispatch *d, eb_sub *sub);

/** Forgets that `sub` is owed a resume (its subscribe failed). */
void eb__dispatch_sub_forget(eb_dispatch *d, eb_sub *sub);

/** Was the message's lane revoked (or the queue abandoned) since it was
 *  delivered? */
bool eb__dispatch_is_stale(eb_dispatch *d, const eb_msg *m);

/** A retry is due: puts the message back at the head of its key, which
 *  may run again. */
void eb__dispatch_requeue(eb_dispatch *d, eb_msg *m);

/** The dead letter of `m` is published (`published`: acknowledge it) or
 *  given up (release it); a key waiting for it may run again. */
void eb__dispatch_dead_letter_done(eb_dispatch *d, eb_msg *m, bool published);

/** True once close abandoned the queues. */
bool eb__dispatch_abandoning(eb_dispatch *d);

/**
 * Close: handles what is queued, held or waiting to be retried until
 * `deadline_ns`, then abandons the rest (released unacknowledged) and waits
 * for running handlers.
 * @returns 0, or EB_ERR_TIMEOUT when the deadline cut the drain.
 */
int eb__dispatch_drain(eb_dispatch *d, int64_t deadline_ns);

/** Joins the workers and frees. NULL is allowed. */
void eb__dispatch_stop(eb_dispatch *d);

/** Snapshot for stats: messages queued, in batches and held behind a
 *  retry or dead letter, keys held up now, and handler calls. */
void eb__dispatch_counts(eb_dispatch *d, size_t *queued, size_t *in_batch,
                         size_t *held, size_t *held_keys, uint64_t *handled);

/** The pool: workers running, the most that ran at once, the most it may
 *  grow to, and the milliseconds in which ready work waited for a worker
 *  with none idle (sampled every millisecond). */
void eb__dispatch_pool(eb_dispatch *d, unsigned *workers, unsigned *peak, unsigned *max,
                       uint64_t *waited_ms);

#endif
