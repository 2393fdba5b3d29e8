/*
 * dispatch.c — the worker pool: shards of keys go to any free worker, and
 * a key held up goes out of its shard, so that it holds nothing else.
 *
 * Divisions, in order:
 *   structures   shards, held keys, workers, the pool and its counters
 *   staleness    revoked lanes and abandon
 *   acks         per-worker ack batches, flushed to the transport
 *   held keys    holding a key out of its shard, and letting it go back
 *   intake       deliver(), pause and resume
 *   workers      the worker loop: take a shard's batch, run it, give it
 *                back; take over the batch of a worker that is held up
 *   revoke/close stale messages, abandon, waiting for running handlers
 *   start/stop
 *
 * A keyed message goes to shard hash(key) % n_shards, an unkeyed one to
 * the shared unkeyed queue. A shard with messages is in the ready list (a
 * FIFO, the unkeyed queue with them); a free worker takes the first ready
 * shard, runs a batch of its messages in order and gives it back to the
 * tail; a shard runs on one worker at a time, so a key's messages run in
 * order, never two at once, on whichever worker. Unkeyed batches are
 * shared out between workers. A key held up no longer holds its shard:
 *   - a retry or a dead letter: the worker puts the key in the held table
 *     (by subscription and key bytes: that key alone, whatever shares
 *     its hash or its shard) with the key's later messages,
 *     from its batch and from the shard; later arrivals go there too. The
 *     head back from the timer, or its dead letter done, puts them back
 *     at the front of the shard.
 *   - a handler that runs long: a worker with nothing to do that sees no
 *     handler of another worker return for ESCAPE_AFTER_NS takes over the
 *     rest of its batch and its shard, holding only the running message's
 *     key (its later messages wait in the held table until that handler
 *     returns; the key's bytes are copied while its worker cannot finish
 *     the message, see held_for_last). So a blocked handler holds its own
 *     key only.
 * Fast path: no key held, a message costs a shard push and its share of
 * a batch. Three things keep that as cheap as the fixed worker per key it
 * replaced (the memory benchmark's keyed throughput was 25-35% lower
 * without them):
 *   - batch size: as many messages as run in BATCH_TARGET_NS (a moving
 *     average of handler time): many when handlers are fast, so that a
 *     lock and a wake-up are shared by many; one or two when they are
 *     slow, so that other workers can run the rest in parallel;
 *   - wake-ups: one idle worker is woken for ready shards, and it wakes
 *     the next if more are ready once it took its batch (waking one per
 *     newly ready shard woke workers that found nothing, and slept);
 *   - cold messages: a shard's messages are scattered in memory, so under
 *     d->mu a batch takes whole shard lists without reading a message;
 *     the worker copies them into its batch outside the lock. Staleness
 *     is checked at intake instead (each message is stamped with the
 *     revoke_seq it was checked at) and again before its handler only
 *     when a revoke came since.
 *
 * dispatch.queue.max bounds the messages in shards and the unkeyed queue
 * plus those in workers' batches; messages of a held key count only
 * against their lane's bound (dispatch.lane.max.inflight, which the
 * transport keeps), so a held key fills its own lane and nothing else.
 *
 * One mutex (d->mu) guards the shards, the held table and the counters.
 * A batch's messages are claimed one at a time by its worker (a
 * compare-and-swap on `cursor`) and the rest at once by a worker taking it
 * over (an exchange), so each message runs once. A revoke that happens
 * after a message's intake is caught before its handler starts: the
 * worker publishes `current` (under its ack_mu) then reads `revoke_seq`
 * and compares it with the message's stamp; revoke bumps `revoke_seq`
 * then reads every `current`, so one of them always sees the other.
 */
#include "dispatch.h"

#include <sched.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "key_table.h"
#include "msgq.h"
#include "outcome.h"
#include "sync.h"
#include "thread_probe.h"
#include "timers.h"

enum { BATCH = 256, ACK_BATCH = 64 };
/* Shards: four per worker the pool may have (a power of two, 64 to 4096):
 * keys that share a shard run one after another (unless one is held up
 * and leaves it), so a pool of many workers needs many more shards than
 * workers; 256 shards held an elastic pool with 1 ms handlers and 1,000
 * keys to 151 workers and 0.66x the throughput of 256 fixed ones. */
enum { SHARDS_PER_WORKER = 4, SHARDS_MIN = 64, SHARDS_MAX = 4096 };
/* A worker none of whose handlers returned for this long is held up:
 * idle workers take over the rest of its batch and its shard. */
#define ESCAPE_AFTER_NS 2000000
#define ESCAPE_AFTER_MAX_NS 20000000
/* The handler time per message the moving average takes from one batch
 * at most (see end_batch). */
#define NS_PER_MSG_MAX 10000000
#define CURSOR_TAKEN SIZE_MAX

/* ------------------------------------------------------------ structures */

/* Keyed messages of one hash class, or (shared) the unkeyed ones. */
typedef struct shard {
    msgq queue;
    struct shard *ready_next;
    uint32_t index;
    bool shared;             /* the unkeyed queue: several batches at once */
    bool ready;              /* in the ready list */
    bool running;            /* a worker's batch came from it (not shared) */
    uint64_t ready_seq;      /* when it became ready, in d->ready_count
                                terms (0: it waited before, at the front) */
} shard;

/* What a worker is running, as fields rather than the message: once its
 * handler returned, the message may be freed by another thread. */
typedef struct running {
    bool busy;
    const eb_sub *sub;
    uint32_t lane;
    uint64_t generation;
} running;

/* A worker slot: allocated once, never moved (its cv and ack_mu are
 * waited on, revoke reads its `current`), its thread started again when
 * the pool grows into it after it retired. */
enum worker_state { SLOT_FREE, SLOT_RUNNING, SLOT_RETIRED /* to join */ };

typedef struct worker {
    eb_dispatch *d;
    pthread_t thread;
    int state;               /* enum worker_state, under d->mu */
    eb_thread_probe probe;   /* opened by the thread, closed once joined */
    int64_t idle_since_ns;   /* under d->mu: when it last went idle */
    pthread_cond_t cv;
    bool waiting;            /* under d->mu: on the idle stack */
    bool woken;              /* under d->mu: signalled, counted in d->waking */
    struct worker *idle_next;
    /* The batch, taken under d->mu (a message is not to be read once its
     * handler returned: another thread may have freed it). */
    eb_msg *batch[BATCH];
    size_t n;                /* under d->mu */
    int64_t batch_start_ns;
    size_t n_counted;        /* of n, still counted in d->in_batch */
    atomic_size_t cursor;    /* next message to claim; CURSOR_TAKEN: no more */
    bool in_batch;           /* under d->mu: between take_batch and end_batch */
    /* The shards the batch came from (keyed ones are the worker's until
     * the batch ends or is taken over; the unkeyed queue is shared), and
     * what it took from each: whole lists, taken under d->mu without
     * reading a message, and copied into `batch` outside it. */
    shard *from[BATCH];
    msgq lists[BATCH + 1];
    size_t n_from, n_lists;
    atomic_bool filled;      /* `batch` is copied: it may be taken over */
    bool returned;           /* under d->mu: the rest went back (retry,
                                dead letter, or a take-over) */
    bool taken_over;         /* under d->mu: its shard is no longer its */
    eb_keyq *held;           /* under d->mu: the key a take-over held for it */
    pthread_mutex_t ack_mu;  /* acks, current and started */
    running current;
    /* Messages of the batch whose handler started (start_running), set
     * by this worker under ack_mu (reset under d->mu), read under both:
     * a take-over tells by it whether the last message claimed is still
     * to run or running (alive), or done (maybe freed). */
    size_t started;
    eb_msg *acks[ACK_BATCH];
    size_t n_acks;
    /* Written by this worker only (a shared counter would bounce between
     * cores once per message); summed by eb__dispatch_counts, and read by
     * take_over_held at most every ESCAPE_AFTER_NS / 2. */
    alignas(64) atomic_uint_fast64_t handled;
} worker;

/* What idle workers saw of a worker (take_over_held), kept apart from
 * the worker so that looking does not write its cache lines. */
typedef struct worker_seen {
    uint_fast64_t handled;   /* `handled` when last looked at */
    int64_t since_ns;        /* since when it has not moved; 0: not seen */
} worker_seen;

struct eb_dispatch {
    eb_bus *bus;
    pthread_mutex_t mu;
    pthread_cond_t idle_cv;  /* revoke, drain and leave wait here */
    shard *shards;           /* n_shards keyed, then the unkeyed one */
    uint32_t n_shards;       /* a power of two */
    shard *ready_head, *ready_tail;
    eb_key_table held;       /* held keys, by (sub, key bytes) */
    /* The pool: slots 0..n_slots-1 allocated (never freed before stop),
     * running_workers of them running. Elastic between min_workers and
     * max_workers (fixed when equal); see "pool" below. */
    worker **workers;
    atomic_uint n_slots;     /* written under mu, after the slot */
    unsigned min_workers, max_workers;
    unsigned running_workers, peak_workers; /* under mu */
    int64_t idle_retire_ns;
    pthread_t pool_thread;
    bool pool_thread_started;
    pthread_cond_t pool_cv;  /* the pool watcher waits here */
    bool pool_watching;      /* it ticks: ready work and no idle worker */
    uint64_t ready_count;    /* shards made ready at the tail, ever */
    uint64_t ready_count_at_tick;
    uint64_t waited_ms;      /* ticks in which ready work waited for a worker */
    unsigned probe_next;     /* round robin of sampled workers */
    uint8_t *blocked_looks;  /* per slot: looks in a row that saw it blocked */
    worker *idle;            /* waiting workers, a stack */
    unsigned n_idle;         /* on the idle stack */
    unsigned waking;         /* signalled, not yet looked at the ready list */
    unsigned batches_out;    /* workers in a batch that could be taken over */
    worker_seen *seen;       /* per worker, under mu */
    int64_t next_look_ns;    /* take_over_held looks again from then */
    /* Messages: in shards and the unkeyed queue; in workers' batches;
     * waiting for a held key, by why it is held. */
    size_t queued, in_batch, held_running, held_retry, held_dead_letter;
    size_t batch_max;
    /* Handler time per message, a moving average of whole batches (wall
     * time over messages): how many messages make a batch worth its
     * hand-over (see batch_size). */
    int64_t ns_per_msg;
    size_t queue_max, low_watermark;
    eb_sub *paused_subs;
    size_t resuming;         /* resume() calls in progress */
    bool stopping;
    /* Read without d->mu on every message (revoke_seq before each handler,
     * waiters after each ack): a cache line of their own, away from the
     * counters every batch writes. */
    alignas(64) atomic_uint revoke_seq;
    atomic_int waiters;      /* threads waiting on idle_cv */
    atomic_bool abandon;
};

/* ------------------------------------------------------------ staleness */

/** Under d->mu. */
static bool is_stale_lane(const eb_dispatch *d, const eb_sub *sub, uint32_t lane,
                          uint64_t generation)
{
    if (atomic_load(&d->abandon) || sub->leaving)
        return true;
    return lane < sub->revoked_cap && generation <= sub->revoked_gen[lane];
}

static bool is_stale(const eb_dispatch *d, const eb_msg *m)
{
    return is_stale_lane(d, m->core.sub, m->lane, m->lane_generation);
}

bool eb__dispatch_is_stale(eb_dispatch *d, const eb_msg *m)
{
    pthread_mutex_lock(&d->mu);
    bool stale = is_stale(d, m);
    pthread_mutex_unlock(&d->mu);
    return stale;
}

static void notify_waiters(eb_dispatch *d)
{
    if (atomic_load(&d->waiters) == 0)
        return;
    pthread_mutex_lock(&d->mu);
    pthread_cond_broadcast(&d->idle_cv);
    pthread_mutex_unlock(&d->mu);
}

/* ----------------------------------------------------------------- acks */

/** Hands runs of same-subscription messages to `give`. */
static void give_back(eb_msg **msgs, size_t n,
                      void (*give)(eb_sub *, eb_msg *const *, size_t))
{
    size_t start = 0;
    for (size_t i = 1; i <= n; i++) {
        if (i == n || msgs[i]->core.sub != msgs[start]->core.sub) {
            give(msgs[start]->core.sub, msgs + start, i - start);
            start = i;
        }
    }
}

static void acks_flush_locked(worker *w)
{
    give_back(w->acks, w->n_acks, eb__sub_ack);
    w->n_acks = 0;
}

static void acks_flush(worker *w)
{
    pthread_mutex_lock(&w->ack_mu);
    acks_flush_locked(w);
    pthread_mutex_unlock(&w->ack_mu);
}

/** Queues the ack and ends the running state in one step, so a revoke
 *  that sees the handler finished also finds its ack to flush. */
static void ack_add_and_finish(worker *w, eb_msg *m)
{
    pthread_mutex_lock(&w->ack_mu);
    w->acks[w->n_acks++] = m;
    w->current.busy = false;
    if (w->n_acks == ACK_BATCH)
        acks_flush_locked(w);
    pthread_mutex_unlock(&w->ack_mu);
    notify_waiters(w->d);
}

static unsigned slot_count(eb_dispatch *d)
{
    return atomic_load_explicit(&d->n_slots, memory_order_acquire);
}

static void flush_all_acks(eb_dispatch *d)
{
    unsigned n = slot_count(d);
    for (unsigned i = 0; i < n; i++)
        acks_flush(d->workers[i]);
}

static void release_one(eb_msg *m) { eb__sub_release(m->core.sub, &m, 1); }

static void release_queue(msgq *q)
{
    eb_msg *batch[64];
    while (q->head) {
        size_t n = 0;
        while (n < 64 && q->head)
            batch[n++] = q_pop(q);
        give_back(batch, n, eb__sub_release);
    }
}

/* ------------------------------------------------------------ held keys */

/** Under d->mu: the held entry of keyed m's key, or NULL. */
static eb_keyq *held_find(eb_dispatch *d, const eb_msg *m)
{
    return d->held.count ? eb__keys_find(&d->held, m->core.sub, m->core.key_hash, m->key,
                                         m->key_len)
                         : NULL;
}

/** Under d->mu: finds or makes the held entry of keyed m's key (its
 *  bytes are copied). NULL when out of memory. */
static eb_keyq *held_get(eb_dispatch *d, const eb_msg *m)
{
    return eb__keys_get(&d->held, m->core.sub, m->core.key_hash, m->key, m->key_len);
}

/** Under d->mu: the count of messages waiting for h, by why it is held. */
static size_t *held_count(eb_dispatch *d, const eb_keyq *h)
{
    return h->state == EB_KEY_RETRYING        ? &d->held_retry
           : h->state == EB_KEY_DEAD_LETTERING ? &d->held_dead_letter
                                               : &d->held_running;
}

/** Messages behind a retry or a dead letter are parked: a graceful
 *  unsubscribe does not wait for them. */
static bool parks(const eb_keyq *h)
{
    return h->state == EB_KEY_RETRYING || h->state == EB_KEY_DEAD_LETTERING;
}

/** Under d->mu: m now waits behind a blocked key. */
static void park(eb_msg *m)
{
    m->core.flags |= EB_MSGF_PARKED;
    eb__sub_parked(m->core.sub, 1);
}

/** Under d->mu: the messages of q are no longer parked. */
static void unpark(msgq *q)
{
    for (eb_msg *m = q->head; m; m = m->core.next) {
        if (m->core.flags & EB_MSGF_PARKED) {
            m->core.flags &= ~(uint32_t)EB_MSGF_PARKED;
            eb__sub_parked(m->core.sub, -1);
        }
    }
}

/** Under d->mu: queues s in the ready list (at the front for messages
 *  that waited) unless it is there, empty, or a worker's. */
static void shard_make_ready(eb_dispatch *d, shard *s, bool front)
{
    if (s->ready || s->running || !s->queue.head)
        return;
    s->ready = true;
    s->ready_seq = front ? 0 : ++d->ready_count;
    if (front) {
        s->ready_next = d->ready_head;
        d->ready_head = s;
        if (!d->ready_tail)
            d->ready_tail = s;
        return;
    }
    s->ready_next = NULL;
    if (d->ready_tail)
        d->ready_tail->ready_next = s;
    else
        d->ready_head = s;
    d->ready_tail = s;
}

/** Under d->mu: the first ready shard with messages, left in the list
 *  (shards a hold emptied are dropped from it). */
static shard *ready_peek(eb_dispatch *d)
{
    shard *s;
    while ((s = d->ready_head) && !s->queue.head) {
        d->ready_head = s->ready_next;
        if (!d->ready_head)
            d->ready_tail = NULL;
        s->ready = false;
    }
    return s;
}

/** Under d->mu: takes the first ready shard (ready_peek's) off the list. */
static shard *ready_pop(eb_dispatch *d)
{
    shard *s = ready_peek(d);
    if (s) {
        d->ready_head = s->ready_next;
        if (!d->ready_head)
            d->ready_tail = NULL;
        s->ready = false;
    }
    return s;
}

static shard *keyed_shard(eb_dispatch *d, uint32_t hash)
{
    return &d->shards[(hash ^ (hash >> 16)) & (d->n_shards - 1)];
}

static shard *shard_of(eb_dispatch *d, const eb_msg *m)
{
    if (!(m->core.flags & EB_MSGF_KEYED))
        return &d->shards[d->n_shards];
    return keyed_shard(d, m->core.key_hash);
}

/** Is m of h's key (same subscription, same key bytes)? */
static bool of_key(const eb_msg *m, const eb_keyq *h)
{
    return (m->core.flags & EB_MSGF_KEYED) && m->core.sub == h->sub &&
           m->core.key_hash == h->hash && m->key_len == h->key_len &&
           (m->key_len == 0 || memcmp(m->key, h->key, m->key_len) == 0);
}

/** Under d->mu: m waits for its held key h. */
static void held_add(eb_dispatch *d, eb_keyq *h, eb_msg *m)
{
    q_push(&h->queue, m);
    (*held_count(d, h))++;
    if (parks(h))
        park(m);
}

/**
 * Under d->mu: holds h's key out of its shard, in `state`. `first` (its
 * messages from a batch's rest, which come before the shard's) go to it,
 * then those in the shard's queue. An entry held already (a take-over
 * held it while its handler ran) changes state.
 */
static void hold_key(eb_dispatch *d, eb_keyq *h, enum eb_key_state state, msgq *first)
{
    shard *s = keyed_shard(d, h->hash);
    if (h->state == EB_KEY_IDLE) {
        h->home = s->index;
        h->state = (uint8_t)state;
    } else if (h->state != state) {
        *held_count(d, h) -= h->queue.len;
        h->state = (uint8_t)state;
        *held_count(d, h) += h->queue.len;
        if (parks(h))
            for (eb_msg *m = h->queue.head; m; m = m->core.next)
                if (!(m->core.flags & EB_MSGF_PARKED))
                    park(m);
    }
    for (eb_msg *m; (m = q_pop(first));)
        held_add(d, h, m);
    msgq keep = {0};
    for (eb_msg *m; (m = q_pop(&s->queue));) {
        if (of_key(m, h)) {
            d->queued--;
            held_add(d, h, m);
        } else {
            q_push(&keep, m);
        }
    }
    s->queue = keep;
}

/** Under d->mu: h's head is finished or back: what waited for it goes
 *  back to the front of its shard, and h goes. */
static void release_key(eb_dispatch *d, eb_keyq *h)
{
    shard *s = &d->shards[h->home];
    *held_count(d, h) -= h->queue.len;
    unpark(&h->queue);
    d->queued += h->queue.len;
    q_prepend(&s->queue, &h->queue);
    eb__keys_remove(&d->held, h);
    shard_make_ready(d, s, true);
}

/**
 * Under d->mu: the messages of w's batch from `from` on (claimed by no
 * one: alive) go back: those of h's key to `mine` (when h is given), the
 * others to the front of their shard. The batch counts them no more.
 */
static void return_rest(eb_dispatch *d, worker *w, size_t from, const eb_keyq *h,
                        msgq *mine)
{
    for (size_t j = from; j < w->n; j++)
        if (h && of_key(w->batch[j], h))
            q_push(mine, w->batch[j]);
    for (size_t j = w->n; j-- > from;) { /* backwards: each to its shard's front */
        if (h && of_key(w->batch[j], h))
            continue;
        msgq one = {0};
        q_push(&one, w->batch[j]);
        shard *home = shard_of(d, w->batch[j]);
        q_prepend(&home->queue, &one);
        d->queued++;
        shard_make_ready(d, home, true); /* unless a worker's (this one's) */
    }
    size_t n_rest = w->n > from ? w->n - from : 0;
    d->in_batch -= n_rest;
    w->n_counted -= n_rest;
    w->returned = true;
}

/* --------------------------------------------------------------- intake */

/** Under d->mu: what dispatch.queue.max bounds and the low watermark is
 *  measured against: messages in shards or in a worker's batch, not
 *  those waiting for a held key. */
static size_t pool_load(const eb_dispatch *d)
{
    return d->queued + d->in_batch;
}

/** Under d->mu. @returns true when the sub was not paused before. */
static bool owe_resume(eb_dispatch *d, eb_sub *sub)
{
    if (sub->paused || sub->leaving || sub->draining)
        return false;
    sub->paused = true;
    sub->paused_next = d->paused_subs;
    d->paused_subs = sub;
    atomic_fetch_add(&sub->bus->count.paused, 1);
    return true;
}

/* Workers to signal once d->mu is released: a worker signalled under the
 * lock would wake only to block on it while the deliverer fills the rest
 * of the batch (two context switches instead of one). */
enum { WAKE_LATER_MAX = 64 };
typedef struct wake_later {
    worker *w[WAKE_LATER_MAX];
    unsigned n;
} wake_later;

/** Under d->mu: wakes up to n idle workers. `later` NULL (or full):
 *  signals at once. */
static void wake_idle(eb_dispatch *d, unsigned n, wake_later *later)
{
    for (; n > 0 && d->idle; n--) {
        worker *w = d->idle;
        d->idle = w->idle_next;
        d->n_idle--;
        w->waiting = false;
        w->woken = true;
        d->waking++;
        if (later && later->n < WAKE_LATER_MAX)
            later->w[later->n++] = w;
        else
            pthread_cond_signal(&w->cv);
    }
}

/** After d->mu is released. A worker that woke on its own meanwhile only
 *  gets a stray signal, which its wait loop ignores. */
static void signal_later(wake_later *later)
{
    for (unsigned i = 0; i < later->n; i++)
        pthread_cond_signal(&later->w[i]->cv);
}

/** Under d->mu: one more worker for the ready list, unless one already
 *  woken will look at it (a worker woken for each newly ready shard would
 *  mostly find the first one took them all, and sleep again). */
static void wake_for_ready(eb_dispatch *d, wake_later *later)
{
    if (d->ready_head && d->waking == 0)
        wake_idle(d, 1, later);
}

/** Under d->mu: ready work and no worker idle or coming: the pool watcher
 *  starts to tick (see "pool"). */
static void watch_pool(eb_dispatch *d)
{
    if (!d->pool_watching && d->pool_thread_started && d->ready_head && !d->idle &&
        d->waking == 0) {
        d->pool_watching = true;
        pthread_cond_signal(&d->pool_cv);
    }
}

/** Outside d->mu: what enqueueing needs, computed before taking the lock. */
static void prepare(eb_sub *sub, eb_msg *m)
{
    m->core.sub = sub;
    m->core.next = NULL;
    if (m->key) {
        m->core.key_hash = eb__key_hash(m->key, m->key_len);
        m->core.flags |= EB_MSGF_KEYED;
    }
}

size_t eb__dispatch_deliver(eb_dispatch *d, eb_sub *sub, eb_msg **msgs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        prepare(sub, msgs[i]);
    pthread_mutex_lock(&d->mu);
    bool intake = sub->started && !sub->leaving && !sub->draining &&
                  atomic_load(&sub->bus->lifecycle) == EB_BUS_OPEN;
    size_t k = 0;
    int64_t seq = (int64_t)atomic_load(&d->revoke_seq);
    for (; intake && k < n; k++) {
        eb_msg *m = msgs[k];
        /* Not stale as of this revoke_seq, so start_running need not look
         * again unless a revoke came since; one of a lane revoked already
         * goes its way unstamped, to be let go by the worker (releasing it
         * here would call the transport back from its own deliver). */
        m->core.due_ns = is_stale(d, m) ? -1 : seq;
        eb_keyq *h = (m->core.flags & EB_MSGF_KEYED) ? held_find(d, m) : NULL;
        if (h) { /* its key is held: it waits there, against its lane only */
            held_add(d, h, m);
            continue;
        }
        if (pool_load(d) >= d->queue_max)
            break;
        shard *s = shard_of(d, m);
        q_push(&s->queue, m);
        d->queued++;
        if (!s->ready)
            shard_make_ready(d, s, false);
    }
    bool paused = k < n && intake && owe_resume(d, sub);
    if (k < n && !sub->started)
        owe_resume(d, sub); /* resumed once subscribe() returned */
    wake_later later = {.n = 0};
    wake_for_ready(d, &later);
    watch_pool(d);
    if (k)
        atomic_fetch_add(&sub->outstanding, (long)k);
    pthread_mutex_unlock(&d->mu);
    signal_later(&later);
    atomic_fetch_add(&sub->bus->count.delivered, k);
    if (paused)
        eb__bus_event(sub->bus, EB_EVENT_PAUSED, sub->topic, sub->group, 0,
                      "the dispatch pool is full: intake paused");
    return k;
}

enum { RESUME_MAX = 32 };

/** Subs owed a resume, copied out under d->mu so that the list itself is
 *  never read without the lock. */
typedef struct resumable {
    eb_sub *subs[RESUME_MAX];
    size_t n;
} resumable;

/** Outside d->mu: resume() for each; revoke waits while this runs. */
static void resume_subs(eb_dispatch *d, const resumable *r)
{
    for (size_t i = 0; i < r->n; i++) {
        eb_sub *sub = r->subs[i];
        sub->bus->tp->resume(sub->state);
        eb__bus_event(sub->bus, EB_EVENT_RESUMED, sub->topic, sub->group, 0,
                      "the dispatch pool drained below its low watermark: intake resumed");
    }
    pthread_mutex_lock(&d->mu);
    d->resuming--;
    pthread_cond_broadcast(&d->idle_cv);
    pthread_mutex_unlock(&d->mu);
}

/** Under d->mu: takes the started subs owed a resume once the pool is at
 *  or below its low watermark (subs still subscribing stay owed). */
static bool take_resumable(eb_dispatch *d, resumable *r)
{
    r->n = 0;
    if (!d->paused_subs || pool_load(d) > d->low_watermark)
        return false;
    eb_sub **pp = &d->paused_subs;
    while (*pp && r->n < RESUME_MAX) {
        eb_sub *sub = *pp;
        if (!sub->started) {
            pp = &sub->paused_next;
            continue;
        }
        *pp = sub->paused_next;
        sub->paused = false;
        sub->paused_next = NULL;
        r->subs[r->n++] = sub;
    }
    if (r->n)
        d->resuming++;
    return r->n > 0;
}

/** Under d->mu: a purge may leave the pool empty with subs still owed a
 *  resume and no turn to prompt it: wake a worker to look. */
static void prompt_resume(eb_dispatch *d)
{
    if (d->paused_subs && pool_load(d) <= d->low_watermark)
        wake_idle(d, 1, NULL);
}

/** Under d->mu: removes `sub` from the list of subs owed a resume. */
static void forget_paused(eb_dispatch *d, eb_sub *sub)
{
    eb_sub **pp = &d->paused_subs;
    while (*pp && *pp != sub)
        pp = &(*pp)->paused_next;
    if (*pp)
        *pp = sub->paused_next;
    sub->paused = false;
    sub->paused_next = NULL;
}

void eb__dispatch_sub_forget(eb_dispatch *d, eb_sub *sub)
{
    pthread_mutex_lock(&d->mu);
    forget_paused(d, sub);
    pthread_mutex_unlock(&d->mu);
}

void eb__dispatch_stop_intake(eb_dispatch *d, eb_sub *sub)
{
    pthread_mutex_lock(&d->mu);
    sub->draining = true;
    forget_paused(d, sub);
    pthread_mutex_unlock(&d->mu);
}

void eb__dispatch_sub_started(eb_dispatch *d, eb_sub *sub)
{
    pthread_mutex_lock(&d->mu);
    sub->started = true;
    bool owed = sub->paused;
    if (owed)
        forget_paused(d, sub);
    pthread_mutex_unlock(&d->mu);
    if (owed)
        sub->bus->tp->resume(sub->state);
}

/* -------------------------------------------------------------- workers */

/** Under d->mu: the shards of w's batch go back to the ready list (at
 *  the front after a take-over: their messages waited). */
static void free_shards(eb_dispatch *d, worker *w, bool front)
{
    for (size_t i = 0; i < w->n_from; i++) {
        shard *s = w->from[i];
        s->running = false;
        shard_make_ready(d, s, front);
    }
    w->n_from = 0;
}

/* Messages reach a worker cold (another thread wrote them), and a
 * shard's are spread in memory, unlike a queue in arrival order, where
 * the hardware prefetcher would see them coming: take_batch loads the
 * heads of the next ready shards while it takes this one's, and
 * run_batch the next message while a handler runs. */
enum { PREFETCH_SHARDS = 16 };

static inline void prefetch_msg(const eb_msg *m)
{
    if (m) {
        __builtin_prefetch(m);
        __builtin_prefetch((const char *)m + 64);
    }
}

/* A batch runs about this long: a batch costs a lock and a wake-up or two,
 * which fast handlers (a few microseconds) must share between many
 * messages to be cheap, while slow ones (a millisecond of I/O) must not
 * keep messages in one worker's hands that other workers could run. */
#define BATCH_TARGET_NS 200000

/**
 * Under d->mu: how many messages the next batch takes: as many as run in
 * BATCH_TARGET_NS at the handlers' average time per message, at least
 * one, at most batch_max. (A fair share of the queue instead: the memory
 * benchmark's keyed throughput 30% lower with fast handlers; with slow
 * ones, a worker taking all of a queue that only other workers could
 * have run in parallel.)
 */
static size_t batch_size(const eb_dispatch *d)
{
    int64_t per = d->ns_per_msg > 0 ? d->ns_per_msg : 1;
    size_t want = (size_t)(BATCH_TARGET_NS / per);
    want = want < 1 ? 1 : want;
    return want < d->batch_max ? want : d->batch_max;
}

/**
 * Under d->mu: a batch for w, from the first ready shards in turn: each
 * keyed shard's whole list (the shard is w's until the batch ends), or a
 * share of the unkeyed ones (their queue stays ready for other workers);
 * as many as batch_size(). Only shards are read here: the messages, cold
 * and scattered, are read by fill_batch outside the lock. @returns false
 * when nothing is ready.
 */
static bool take_batch(eb_dispatch *d, worker *w)
{
    size_t want = batch_size(d);
    size_t n = 0;
    w->n_from = w->n_lists = 0;
    shard *s;
    /* Whole keyed shards: one taken in part would be this worker's with
     * messages no other worker may take meanwhile. */
    while (n < want && (s = ready_peek(d)) &&
           (n == 0 || s->shared || n + s->queue.len <= want)) {
        ready_pop(d);
        msgq *list = &w->lists[w->n_lists++];
        if (!s->shared) {
            s->running = true;
            w->from[w->n_from++] = s;
        }
        if (s->shared || s->queue.len > want - n) {
            /* A share of the unkeyed queue, or the first part of a keyed
             * shard longer than a batch (few keys: their messages come
             * in arrival order, cheap to walk). */
            *list = (msgq){0};
            for (eb_msg *m; n < want && (m = q_pop(&s->queue)); n++)
                q_push(list, m);
            if (s->shared) {
                /* Back at the tail, but its messages keep their age: the
                 * pool's watcher grows the pool when the head of the
                 * ready list waited a tick, and a queue made ready anew
                 * at every share (slow handlers: shares of one) would
                 * never look older than a tick. */
                uint64_t since = s->ready_seq;
                shard_make_ready(d, s, false);
                s->ready_seq = since;
            }
        } else {
            *list = s->queue;
            s->queue = (msgq){0};
            n += list->len;
        }
    }
    if (n == 0 && w->n_from == 0)
        return false;
    d->queued -= n;
    d->in_batch += n;
    w->n = w->n_counted = n;
    w->returned = w->taken_over = false;
    w->held = NULL;
    w->in_batch = true;
    w->started = 0;
    w->batch_start_ns = eb__now_ns();
    atomic_store_explicit(&w->cursor, 0, memory_order_relaxed);
    d->batches_out++;
    return true;
}

/** Outside d->mu, by w: copies the lists take_batch took into `batch`,
 *  and lets other workers see it. The lists' heads are loaded together,
 *  then walked. */
static void fill_batch(worker *w)
{
    for (size_t l = 0; l < w->n_lists; l++)
        prefetch_msg(w->lists[l].head);
    size_t n = 0;
    for (size_t l = 0; l < w->n_lists; l++)
        for (eb_msg *m = w->lists[l].head; m; m = m->core.next)
            w->batch[n++] = m;
    atomic_store_explicit(&w->filled, true, memory_order_release);
}

/** Under d->mu: the batch is over: its shards go back to the ready list's
 *  tail (unless taken over), and a key held for it while its handler ran
 *  goes back too. */
static void end_batch(eb_dispatch *d, worker *w)
{
    if (!w->in_batch)
        return;
    d->in_batch -= w->n_counted;
    w->n_counted = 0;
    if (w->n > 0 && !w->returned) {
        /* Clipped: one handler blocked for seconds would otherwise make
         * handlers look slow for dozens of batches (escape_after). */
        int64_t per = (eb__now_ns() - w->batch_start_ns) / (int64_t)w->n;
        per = per < NS_PER_MSG_MAX ? per : NS_PER_MSG_MAX;
        d->ns_per_msg += (per - d->ns_per_msg) / 8;
    }
    if (!w->taken_over)
        free_shards(d, w, false);
    if (w->held && w->held->state == EB_KEY_RUNNING)
        release_key(d, w->held);
    w->held = NULL;
    w->in_batch = false;
    atomic_store_explicit(&w->filled, false, memory_order_relaxed);
    w->n = 0;
    d->batches_out--;
}

/** Under d->mu: how long a worker may go without a handler returning
 *  before it counts as held up: ESCAPE_AFTER_NS, or 8 handlers' time when
 *  handlers are slow (1 ms of I/O each: a busy machine often delays one
 *  past 2 ms, and taking over workers that are not held up only churns),
 *  at most ESCAPE_AFTER_MAX_NS. */
static int64_t escape_after(const eb_dispatch *d)
{
    int64_t t = d->ns_per_msg * 8;
    return t < ESCAPE_AFTER_NS ? ESCAPE_AFTER_NS : t > ESCAPE_AFTER_MAX_NS ? ESCAPE_AFTER_MAX_NS : t;
}

/**
 * Under d->mu, for a take-over of w whose message `last` is the last it
 * claimed: *h = the held entry of its key, made if need be, when it is
 * keyed and still to run or running; NULL when it is done (acked or let
 * go: its key's later messages may run). Its bytes are read under
 * w->ack_mu, while w cannot finish it (and an ack could free it).
 * @returns false when out of memory.
 */
static bool held_for_last(eb_dispatch *d, worker *w, size_t last, eb_keyq **h)
{
    *h = NULL;
    pthread_mutex_lock(&w->ack_mu);
    bool done = w->started > last && !w->current.busy;
    eb_msg *m = w->batch[last];
    bool ok = done || !(m->core.flags & EB_MSGF_KEYED) || (*h = held_get(d, m));
    pthread_mutex_unlock(&w->ack_mu);
    return ok;
}

/**
 * Under d->mu, by a worker with nothing to run: takes over the batch of
 * every worker none of whose handlers returned for ESCAPE_AFTER_NS (one
 * runs long, or what follows it does: a dead letter's publish). The rest
 * of its batch goes back to its shard, which is no longer its; the key of
 * the message it runs is held until that handler returns. The workers
 * taken over go to `flush` (their acks are flushed outside the lock).
 * @returns how many.
 */
static unsigned take_over_held(eb_dispatch *d, worker *self, worker **flush, unsigned max)
{
    if (d->batches_out == 0)
        return 0;
    int64_t now = eb__now_ns();
    if (now < d->next_look_ns)
        return 0;
    d->next_look_ns = now + ESCAPE_AFTER_NS / 2;
    unsigned n_flush = 0;
    unsigned n_slots = slot_count(d);
    for (unsigned i = 0; i < n_slots && n_flush < max; i++) {
        worker *w = d->workers[i];
        if (w == self || !w->in_batch || w->returned ||
            !atomic_load_explicit(&w->filled, memory_order_acquire))
            continue;
        worker_seen *seen = &d->seen[i];
        uint_fast64_t handled = atomic_load_explicit(&w->handled, memory_order_relaxed);
        if (handled != seen->handled || seen->since_ns == 0) {
            seen->handled = handled;
            seen->since_ns = now;
            continue;
        }
        if (now - seen->since_ns < escape_after(d))
            continue;
        size_t r = atomic_exchange(&w->cursor, CURSOR_TAKEN);
        if (r == CURSOR_TAKEN)
            continue;
        eb_keyq *h = NULL;
        if (r > 0 && !held_for_last(d, w, r - 1, &h)) { /* out of memory */
            atomic_store(&w->cursor, r); /* try again at the next look */
            continue;
        }
        msgq mine = {0};
        return_rest(d, w, r, h, &mine);
        if (h)
            hold_key(d, h, EB_KEY_RUNNING, &mine);
        w->held = h;
        w->taken_over = true;
        free_shards(d, w, true);
        seen->since_ns = 0;
        flush[n_flush++] = w;
    }
    return n_flush;
}

/**
 * Message `at` of w's batch (keyed) retries or goes to a dead letter: its
 * key is held in `state` until it is back, with the key's later messages
 * from the batch and the shard; the rest of the batch goes back to the
 * shard's front, and the batch ends.
 */
static void hold_for_outcome(worker *w, size_t at, enum eb_key_state state)
{
    eb_dispatch *d = w->d;
    eb_msg *m = w->batch[at];
    pthread_mutex_lock(&d->mu);
    m->core.flags |= EB_MSGF_BLOCKING; /* under d->mu: a take-over reads them */
    eb_keyq *h;
    while (!(h = held_get(d, m))) {
        pthread_mutex_unlock(&d->mu); /* out of memory: order matters more */
        sched_yield();
        pthread_mutex_lock(&d->mu);
    }
    size_t r = atomic_exchange(&w->cursor, CURSOR_TAKEN);
    msgq mine = {0};
    if (r != CURSOR_TAKEN) /* else a take-over returned it and held the key */
        return_rest(d, w, r, h, &mine);
    hold_key(d, h, state, &mine);
    pthread_mutex_unlock(&d->mu);
}

/** Publishes what the worker runs, then checks staleness; see the top
 *  comment. A message checked at intake (stamped with revoke_seq) is
 *  checked again only when a revoke happened since. */
static bool start_running(worker *w, eb_msg *m)
{
    eb_dispatch *d = w->d;
    pthread_mutex_lock(&w->ack_mu);
    w->current = (running){true, m->core.sub, m->lane, m->lane_generation};
    w->started++;
    pthread_mutex_unlock(&w->ack_mu);
    if ((int64_t)atomic_load(&d->revoke_seq) == m->core.due_ns)
        return true;
    pthread_mutex_lock(&d->mu);
    bool stale = is_stale(d, m);
    pthread_mutex_unlock(&d->mu);
    return !stale;
}

static void finish_running(worker *w)
{
    pthread_mutex_lock(&w->ack_mu);
    w->current.busy = false;
    pthread_mutex_unlock(&w->ack_mu);
    notify_waiters(w->d);
}

/** Runs the batch's messages in order, each claimed first (a take-over
 *  may have claimed the rest); a retry or dead letter of a keyed message
 *  ends it (its key is held for it). */
static void run_batch(worker *w)
{
    eb_bus *bus = w->d->bus;
    for (size_t i = 0; i < w->n; i++) {
        size_t expect = i;
        if (!atomic_compare_exchange_strong(&w->cursor, &expect, i + 1))
            return; /* taken over */
        eb_msg *m = w->batch[i];
        if (i + 2 < w->n) /* its header now, its payload next turn */
            prefetch_msg(w->batch[i + 2]);
        if (i + 1 < w->n)
            __builtin_prefetch(w->batch[i + 1]->payload);
        if (!start_running(w, m)) {
            finish_running(w);
            release_one(m);
            continue;
        }
        eb_sub *sub = m->core.sub;
        m->core.attempts++;
        eb_result r = sub->handler(m, sub->opaque);
        atomic_store_explicit(&w->handled,
                              atomic_load_explicit(&w->handled, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        if (r == EB_ACK) {
            ack_add_and_finish(w, m);
            continue;
        }
        bool retry = r == EB_RETRY && eb__outcome_may_retry(bus, m);
        if (retry && eb__dispatch_is_stale(w->d, m)) {
            /* Revoked or abandoned while it ran: its next attempt belongs
             * to the lane's next owner. */
            finish_running(w);
            release_one(m);
            continue;
        }
        bool keyed = (m->core.flags & EB_MSGF_KEYED) != 0;
        if (keyed) /* before the timer or the publish can give it back */
            hold_for_outcome(w, i, retry ? EB_KEY_RETRYING : EB_KEY_DEAD_LETTERING);
        finish_running(w);
        if (retry)
            eb__outcome_schedule_retry(bus, m);
        else /* a dead letter; the head comes back via dead_letter_done */
            eb__outcome_dead_letter(bus, m, r == EB_RETRY ? 0 : EB_MSGF_REJECTED);
        if (keyed)
            return;
    }
}

enum { FLUSH_MAX = 8 };

static void retire(eb_dispatch *d, worker *w);

static void *worker_main(void *arg)
{
    worker *w = arg;
    eb_dispatch *d = w->d;
    eb__tls_callback_bus = d->bus;
    pthread_setname_np(pthread_self(), "eb-worker");
    worker *flush[FLUSH_MAX];
    bool idle = false;       /* nothing run since it last went idle */
    pthread_mutex_lock(&d->mu);
    eb__thread_probe_open(&w->probe);
    for (;;) {
        end_batch(d, w);
        if (w->woken) {
            w->woken = false;
            d->waking--;
        }
        resumable owed;
        bool resume = take_resumable(d, &owed);
        unsigned n_flush = 0;
        if (!d->ready_head) /* what it returns is ready for this worker and others */
            n_flush = take_over_held(d, w, flush, FLUSH_MAX);
        bool got = take_batch(d, w);
        if (got) {
            wake_for_ready(d, NULL); /* more ready shards: pass the word on */
            watch_pool(d);
        }
        if (!got && !resume && !n_flush) {
            if (d->stopping)
                break;
            int64_t now = eb__now_ns();
            if (!idle)
                w->idle_since_ns = now;
            idle = true;
            if (d->running_workers > d->min_workers &&
                now - w->idle_since_ns >= d->idle_retire_ns) {
                retire(d, w);
                return NULL;
            }
            w->waiting = true;
            w->idle_next = d->idle;
            d->idle = w;
            d->n_idle++;
            pthread_cond_broadcast(&d->idle_cv);
            /* Batches out: look again soon, to take over one held up; an
             * extra worker of an elastic pool: to retire once idle long. */
            int64_t until = d->batches_out ? now + ESCAPE_AFTER_NS : INT64_MAX;
            if (d->running_workers > d->min_workers &&
                w->idle_since_ns + d->idle_retire_ns < until)
                until = w->idle_since_ns + d->idle_retire_ns;
            while (w->waiting && !d->stopping && eb__cond_wait_until(&w->cv, &d->mu, until))
                ;
            if (w->waiting) { /* stopping, or looking again: off the idle stack */
                worker **pp = &d->idle;
                while (*pp != w)
                    pp = &(*pp)->idle_next;
                *pp = w->idle_next;
                d->n_idle--;
                w->waiting = false;
            }
            continue;
        }
        idle = false;
        pthread_mutex_unlock(&d->mu);
        for (unsigned i = 0; i < n_flush; i++) /* their handled ones may fill lanes */
            acks_flush(flush[i]);
        if (resume)
            resume_subs(d, &owed);
        if (got) {
            fill_batch(w);
            run_batch(w);
        }
        acks_flush(w);
        pthread_mutex_lock(&d->mu);
        if (atomic_load(&d->waiters))
            pthread_cond_broadcast(&d->idle_cv);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

static bool stale_in_timer(const eb_msg *m, void *arg)
{
    eb_dispatch *d = arg;
    pthread_mutex_lock(&d->mu);
    bool stale = is_stale(d, m);
    pthread_mutex_unlock(&d->mu);
    return stale;
}

/** Under d->mu: is any worker running a stale message? */
static bool stale_running_locked(eb_dispatch *d)
{
    bool stale = false;
    unsigned n_slots = slot_count(d);
    for (unsigned i = 0; i < n_slots && !stale; i++) {
        worker *w = d->workers[i];
        pthread_mutex_lock(&w->ack_mu);
        running cur = w->current;
        pthread_mutex_unlock(&w->ack_mu);
        stale = cur.busy && is_stale_lane(d, cur.sub, cur.lane, cur.generation);
    }
    return stale;
}

static bool wait_locked(eb_dispatch *d, bool (*busy)(eb_dispatch *),
                        int64_t deadline_ns)
{
    atomic_fetch_add(&d->waiters, 1);
    bool ok = true;
    while (busy(d) && (ok = eb__cond_wait_until(&d->idle_cv, &d->mu, deadline_ns)))
        ;
    ok = !busy(d);
    atomic_fetch_sub(&d->waiters, 1);
    return ok;
}

/** Under d->mu: marks lanes revoked. @returns false when out of memory. */
static bool mark_revoked(eb_sub *sub, const eb_lane_ref *lanes, size_t n, bool all)
{
    if (all) {
        sub->leaving = true;
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t lane = lanes[i].lane;
        if (lane >= sub->revoked_cap) {
            size_t cap = lane + 16;
            uint64_t *gen = realloc(sub->revoked_gen, cap * sizeof *gen);
            if (!gen) {
                sub->leaving = true; /* fall back to refusing everything */
                return false;
            }
            memset(gen + sub->revoked_cap, 0, (cap - sub->revoked_cap) * sizeof *gen);
            sub->revoked_gen = gen;
            sub->revoked_cap = cap;
        }
        if (lanes[i].generation > sub->revoked_gen[lane])
            sub->revoked_gen[lane] = lanes[i].generation;
    }
    return true;
}

static bool not_resuming_or_stale(eb_dispatch *d)
{
    return d->resuming > 0 || stale_running_locked(d);
}

/* --------------------------------------------------------- revoke/close */

typedef struct purge {
    eb_dispatch *d;
    msgq *out;
} purge;

/** Under d->mu: moves q's stale messages to `out`. @returns how many. */
static size_t purge_queue(eb_dispatch *d, msgq *q, msgq *out)
{
    msgq keep = {0}, gone = {0};
    for (eb_msg *m; (m = q_pop(q));)
        q_push(is_stale(d, m) ? &gone : &keep, m);
    *q = keep;
    size_t n = gone.len;
    unpark(&gone);
    q_prepend(out, &gone);
    return n;
}

static void purge_held(eb_keyq *h, void *arg)
{
    purge *p = arg;
    *held_count(p->d, h) -= purge_queue(p->d, &h->queue, p->out);
}

/** Under d->mu: removes stale messages from every queue into `out`. */
static void purge_stale_locked(eb_dispatch *d, msgq *out)
{
    for (uint32_t i = 0; i <= d->n_shards; i++)
        d->queued -= purge_queue(d, &d->shards[i].queue, out);
    purge p = {d, out};
    eb__keys_each(&d->held, purge_held, &p);
}

bool eb__dispatch_revoke(eb_dispatch *d, eb_sub *sub, const eb_lane_ref *lanes,
                         size_t n, bool all, int64_t deadline_ns)
{
    msgq stale = {0};
    pthread_mutex_lock(&d->mu);
    mark_revoked(sub, lanes, n, all);
    if (all && sub->paused) /* leaving: owe nothing */
        forget_paused(d, sub);
    atomic_fetch_add(&d->revoke_seq, 1);
    purge_stale_locked(d, &stale);
    prompt_resume(d);
    pthread_mutex_unlock(&d->mu);

    release_queue(&stale);
    eb__timers_expedite(d->bus->timers, stale_in_timer, d);

    pthread_mutex_lock(&d->mu);
    bool finished = wait_locked(d, not_resuming_or_stale, deadline_ns);
    pthread_mutex_unlock(&d->mu);
    flush_all_acks(d);
    return finished;
}

void eb__dispatch_requeue(eb_dispatch *d, eb_msg *m)
{
    pthread_mutex_lock(&d->mu);
    m->core.flags &= ~(uint32_t)EB_MSGF_BLOCKING;
    m->core.due_ns = -1; /* no stamp: checked before it runs again */
    eb_keyq *h = (m->core.flags & EB_MSGF_KEYED) ? held_find(d, m) : NULL;
    msgq one = {0};
    q_push(&one, m);
    if (h && h->state == EB_KEY_RETRYING) { /* its key waited for it: all go back */
        q_prepend(&h->queue, &one);
        (*held_count(d, h))++;
        release_key(d, h);
    } else { /* unkeyed: back in front of the unkeyed queue */
        shard *s = shard_of(d, m);
        q_prepend(&s->queue, &one);
        d->queued++;
        shard_make_ready(d, s, true);
    }
    wake_for_ready(d, NULL);
    pthread_mutex_unlock(&d->mu);
}

void eb__dispatch_dead_letter_done(eb_dispatch *d, eb_msg *m, bool published)
{
    if (m->core.flags & EB_MSGF_BLOCKING) {
        m->core.flags &= ~(uint32_t)EB_MSGF_BLOCKING;
        pthread_mutex_lock(&d->mu);
        eb_keyq *h = held_find(d, m);
        if (h && h->state == EB_KEY_DEAD_LETTERING) {
            release_key(d, h);
            wake_for_ready(d, NULL);
        }
        pthread_mutex_unlock(&d->mu);
    }
    if (published)
        eb__sub_ack(m->core.sub, &m, 1);
    else
        release_one(m);
}

bool eb__dispatch_abandoning(eb_dispatch *d) { return atomic_load(&d->abandon); }

/** Under d->mu: messages the pool still holds, those behind dead letters
 *  being published left out when `but_dead_letters`. */
static size_t left_locked(const eb_dispatch *d, bool but_dead_letters)
{
    return d->queued + d->in_batch + d->held_running + d->held_retry +
           (but_dead_letters ? 0 : d->held_dead_letter);
}

/** Waits until nothing is queued, running, held or on the timer (messages
 *  behind dead letters left out when `but_dead_letters`), or the deadline
 *  (0: none). The timer count is read without d->mu (the timer lock is
 *  taken before d->mu elsewhere); a message moving between the timer and
 *  the queues is counted on one side or the other at every moment.
 *  @returns true when nothing is left. */
static bool wait_until_done(eb_dispatch *d, bool but_dead_letters, int64_t deadline_ns)
{
    for (;;) {
        size_t timers = eb__timers_pending(d->bus->timers);
        pthread_mutex_lock(&d->mu);
        bool busy = timers > 0 || left_locked(d, but_dead_letters) > 0;
        int64_t now = eb__now_ns();
        bool late = deadline_ns && now >= deadline_ns;
        if (busy && !late) {
            int64_t soon = now + 1000000; /* the timer does not signal idle_cv */
            atomic_fetch_add(&d->waiters, 1);
            eb__cond_wait_until(&d->idle_cv, &d->mu,
                                deadline_ns && deadline_ns < soon ? deadline_ns : soon);
            atomic_fetch_sub(&d->waiters, 1);
        }
        pthread_mutex_unlock(&d->mu);
        if (!busy || late)
            return !busy;
    }
}

int eb__dispatch_drain(eb_dispatch *d, int64_t deadline_ns)
{
    msgq abandoned = {0};
    bool drained = wait_until_done(d, false, deadline_ns > 0 ? deadline_ns : 1);
    pthread_mutex_lock(&d->mu);
    atomic_store(&d->abandon, true);
    atomic_fetch_add(&d->revoke_seq, 1);
    purge_stale_locked(d, &abandoned);
    pthread_mutex_unlock(&d->mu);

    release_queue(&abandoned);
    /* Retries still waiting are abandoned: they come back through their
     * keys and are released with the messages behind them. So are retries
     * scheduled from now on (a handler that returns RETRY as this runs):
     * none may hold close for its backoff. Messages behind a dead letter
     * being published go back with their head (a publish may take the
     * transport's whole delivery timeout; the transport's close ends it). */
    eb__timers_abandon(d->bus->timers);
    wait_until_done(d, true, 0);
    flush_all_acks(d);
    return drained ? 0 : EB_ERR_TIMEOUT;
}

void eb__dispatch_counts(eb_dispatch *d, size_t *queued, size_t *in_batch,
                         size_t *held, size_t *held_keys, uint64_t *handled)
{
    *handled = 0;
    unsigned n_slots = slot_count(d);
    for (unsigned i = 0; i < n_slots; i++)
        *handled += atomic_load_explicit(&d->workers[i]->handled, memory_order_relaxed);
    pthread_mutex_lock(&d->mu);
    *queued = d->queued + d->held_running;
    *in_batch = d->in_batch;
    *held = d->held_retry + d->held_dead_letter;
    *held_keys = d->held.count;
    pthread_mutex_unlock(&d->mu);
}

/* ---------------------------------------------------------- start/stop */

/* ------------------------------------------------------------------ pool */

/*
 * dispatch.workers > 0: that many workers, always. 0 (the default): an
 * elastic pool, from one worker per CPU (at most dispatch.workers.max) to
 * dispatch.workers.max. A watcher thread sleeps until ready work finds no
 * worker idle, then ticks every POOL_TICK_NS while that lasts. At a tick
 * where ready work has waited since the last one (the ready list's head
 * is older than the tick), it counts the tick in `waited_ms`, and the
 * pool grows by half (at least one worker) when three workers in four are
 * inside a handler and those it looks at were blocked (neither running nor
 * waiting for a CPU: sleeping, waiting on I/O or a lock) at this tick and
 * the one before (thread_probe.h). Handlers that use CPUs never grow it: more
 * threads would only queue for the same CPUs. A worker idle for
 * dispatch.workers.idle.ms retires, down to the minimum; the watcher
 * joins it, and its slot (never freed before stop: revoke reads it) is
 * used again when the pool grows.
 */
#define POOL_TICK_NS 1000000
enum { POOL_SAMPLES = 8 };

/** Under d->mu: the batches of held workers count in the pool's load until
 *  they end or are taken over: all of them together must stay within the
 *  low watermark, or a few held handlers would keep intake paused while
 *  the other workers sleep. */
static void set_batch_max(eb_dispatch *d)
{
    size_t share = d->low_watermark / (d->running_workers ? d->running_workers : 1);
    d->batch_max = share < 1 ? 1 : share < BATCH ? share : BATCH;
}

/** Zeroed memory for n objects of `size` bytes aligned to `align` (their
 *  cache-line fields rely on it). NULL when out of memory. */
static void *zalloc_aligned(size_t align, size_t n, size_t size)
{
    size_t bytes = n * size;
    bytes = (bytes + align - 1) / align * align;
    void *p = aligned_alloc(align, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

/** Under d->mu: a free slot, or a new one; NULL at the maximum or when out
 *  of memory. */
static worker *free_slot(eb_dispatch *d)
{
    unsigned n = slot_count(d);
    for (unsigned i = 0; i < n; i++)
        if (d->workers[i]->state == SLOT_FREE)
            return d->workers[i];
    if (n >= d->max_workers)
        return NULL;
    worker *w = zalloc_aligned(alignof(worker), 1, sizeof *w);
    if (!w)
        return NULL;
    w->d = d;
    w->probe.fd = -1;
    eb__cond_init(&w->cv); /* timed waits: see worker_main */
    pthread_mutex_init(&w->ack_mu, NULL);
    d->workers[n] = w;
    atomic_store_explicit(&d->n_slots, n + 1, memory_order_release);
    return w;
}

/** Under d->mu: one more worker. @returns false when it could not start. */
static bool start_worker(eb_dispatch *d)
{
    worker *w = free_slot(d);
    if (!w || pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return false;
    unsigned i = 0;
    while (d->workers[i] != w)
        i++;
    d->seen[i] = (worker_seen){0};
    d->blocked_looks[i] = 0;
    w->state = SLOT_RUNNING;
    d->running_workers++;
    if (d->running_workers > d->peak_workers)
        d->peak_workers = d->running_workers;
    set_batch_max(d);
    return true;
}

/** Under d->mu, by w: it ends (worker_main returns); the watcher joins it.
 *  Its acks were flushed after its last batch. */
static void retire(eb_dispatch *d, worker *w)
{
    w->state = SLOT_RETIRED;
    d->running_workers--;
    set_batch_max(d);
    pthread_cond_signal(&d->pool_cv);
    pthread_mutex_unlock(&d->mu);
    acks_flush(w); /* a take-over's flush may have raced its last one: none left */
}

/** Under d->mu (released while joining): joins retired workers and frees
 *  their slots. */
static void join_retired(eb_dispatch *d)
{
    unsigned n = slot_count(d);
    for (unsigned i = 0; i < n; i++) {
        worker *w = d->workers[i];
        if (w->state != SLOT_RETIRED)
            continue;
        pthread_mutex_unlock(&d->mu);
        pthread_join(w->thread, NULL);
        pthread_mutex_lock(&d->mu);
        eb__thread_probe_close(&w->probe);
        w->state = SLOT_FREE;
    }
}

/** By the watcher, outside d->mu (it would hold up every worker meanwhile:
 *  ack_mu and /proc are slow next to a batch): are three of the n
 *  workers in four inside a handler, and were those of them it looks at
 *  (the first POOL_SAMPLES) blocked at this tick and the one before?
 *  (Every worker at one instant is too much to ask of a large pool: some
 *  are always between two handlers.) Slots are never freed before stop,
 *  and only the watcher closes probes, so `ws` stays valid. */
static bool workers_blocked(eb_dispatch *d, worker **ws, const unsigned *slot, unsigned n)
{
    unsigned busy = 0, looked = 0;
    bool blocked = true;
    for (unsigned k = 0; k < n; k++) {
        worker *w = ws[k];
        pthread_mutex_lock(&w->ack_mu);
        bool in_handler = w->current.busy;
        pthread_mutex_unlock(&w->ack_mu);
        uint8_t *looks = &d->blocked_looks[slot[k]];
        if (!in_handler) {
            *looks = 0;
            continue;
        }
        busy++;
        if (looked == POOL_SAMPLES)
            continue;
        looked++;
        if (eb__thread_probe_blocked(&w->probe, 2 * POOL_TICK_NS))
            *looks = *looks < UINT8_MAX ? *looks + 1 : *looks;
        else
            *looks = 0;
        blocked &= *looks >= 2;
    }
    return blocked && looked > 0 && busy * 4 >= n * 3;
}

/** Under d->mu (released while it looks at the workers): one tick of the
 *  watcher. `ws` and `slot` have room for max_workers. */
static void pool_tick(eb_dispatch *d, worker **ws, unsigned *slot)
{
    shard *head = ready_peek(d);
    bool waited = head && head->ready_seq <= d->ready_count_at_tick && !d->idle &&
                  d->waking == 0;
    d->ready_count_at_tick = d->ready_count;
    if (!waited)
        return;
    d->waited_ms += POOL_TICK_NS / 1000000;
    if (d->running_workers >= d->max_workers)
        return;
    unsigned n = 0, n_slots = slot_count(d);
    for (unsigned i = 0; i < n_slots; i++) {
        if (d->workers[i]->state == SLOT_RUNNING) {
            ws[n] = d->workers[i];
            slot[n++] = i;
        }
    }
    pthread_mutex_unlock(&d->mu);
    bool grow = workers_blocked(d, ws, slot, n);
    pthread_mutex_lock(&d->mu);
    if (!grow || d->stopping)
        return;
    unsigned more = d->running_workers / 2 ? d->running_workers / 2 : 1;
    while (more-- > 0 && d->running_workers < d->max_workers && start_worker(d))
        ;
}

static void *pool_main(void *arg)
{
    eb_dispatch *d = arg;
    pthread_setname_np(pthread_self(), "eb-pool");
    worker **ws = malloc(d->max_workers * sizeof *ws);
    unsigned *slot = malloc(d->max_workers * sizeof *slot);
    pthread_mutex_lock(&d->mu);
    while (!d->stopping) {
        join_retired(d);
        if (d->stopping)
            break;
        shard *head = ready_peek(d);
        if (!head || d->idle || d->waking) {
            d->pool_watching = false;
            pthread_cond_wait(&d->pool_cv, &d->mu); /* watch_pool, retire, stop */
            d->ready_count_at_tick = d->ready_count;
            continue;
        }
        int64_t tick = eb__now_ns() + POOL_TICK_NS;
        while (!d->stopping && eb__cond_wait_until(&d->pool_cv, &d->mu, tick))
            ; /* a retire's signal: joined at the next turn */
        if (!d->stopping && ws && slot) /* out of memory: it only counts no waits */
            pool_tick(d, ws, slot);
    }
    pthread_mutex_unlock(&d->mu);
    free(ws);
    free(slot);
    return NULL;
}

void eb__dispatch_pool(eb_dispatch *d, unsigned *workers, unsigned *peak, unsigned *max,
                       uint64_t *waited_ms)
{
    pthread_mutex_lock(&d->mu);
    *workers = d->running_workers;
    *peak = d->peak_workers;
    *max = d->max_workers;
    *waited_ms = d->waited_ms;
    pthread_mutex_unlock(&d->mu);
}

/* ---------------------------------------------------------- start/stop */

static void free_dispatch(eb_dispatch *d)
{
    unsigned n = slot_count(d);
    for (unsigned i = 0; i < n; i++) {
        pthread_cond_destroy(&d->workers[i]->cv);
        pthread_mutex_destroy(&d->workers[i]->ack_mu);
        free(d->workers[i]);
    }
    free(d->workers);
    free(d->seen);
    free(d->blocked_looks);
    free(d->shards);
    eb__keys_free(&d->held);
    pthread_cond_destroy(&d->pool_cv);
    pthread_cond_destroy(&d->idle_cv);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

static void stop_workers(eb_dispatch *d)
{
    pthread_mutex_lock(&d->mu);
    d->stopping = true;
    pthread_cond_signal(&d->pool_cv);
    bool watcher = d->pool_thread_started;
    pthread_mutex_unlock(&d->mu);
    if (watcher)
        pthread_join(d->pool_thread, NULL);
    pthread_mutex_lock(&d->mu);
    unsigned n = slot_count(d);
    for (unsigned i = 0; i < n; i++)
        pthread_cond_signal(&d->workers[i]->cv);
    pthread_mutex_unlock(&d->mu);
    for (unsigned i = 0; i < n; i++) { /* no worker starts or retires now */
        worker *w = d->workers[i];
        if (w->state != SLOT_FREE)
            pthread_join(w->thread, NULL);
        eb__thread_probe_close(&w->probe);
        w->state = SLOT_FREE;
    }
}

int eb__dispatch_run(eb_dispatch *d)
{
    pthread_mutex_lock(&d->mu); /* each subscribe: what failed before is tried again */
    while (d->running_workers < d->min_workers && start_worker(d))
        ;
    if (!d->pool_thread_started)
        d->pool_thread_started = pthread_create(&d->pool_thread, NULL, pool_main, d) == 0;
    int rc = d->running_workers >= d->min_workers && d->pool_thread_started ? 0 : EB_ERR_NOMEM;
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int eb__dispatch_new(eb_bus *bus, eb_dispatch **out)
{
    eb_dispatch *d = zalloc_aligned(alignof(eb_dispatch), 1, sizeof *d);
    if (!d)
        return EB_ERR_NOMEM;
    d->bus = bus;
    if (bus->set.workers > 0) {
        d->min_workers = d->max_workers = (unsigned)bus->set.workers;
    } else {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        d->max_workers = (unsigned)bus->set.workers_max;
        d->min_workers = cpus < 1 ? 1 : (unsigned)cpus < d->max_workers ? (unsigned)cpus
                                                                         : d->max_workers;
    }
    d->idle_retire_ns = bus->set.workers_idle_ms * 1000000;
    d->queue_max = (size_t)bus->set.queue_max;
    d->low_watermark = bus->set.queue_low_watermark > 0
                           ? (size_t)bus->set.queue_low_watermark
                           : d->queue_max / 2;
    /* batch_max: set as workers start (start_worker); none runs before. */
    d->ns_per_msg = BATCH_TARGET_NS; /* slow until measured: batches of one */
    d->n_shards = SHARDS_MIN;
    while (d->n_shards < SHARDS_MAX && d->n_shards < SHARDS_PER_WORKER * d->max_workers)
        d->n_shards *= 2;
    pthread_mutex_init(&d->mu, NULL);
    eb__cond_init(&d->idle_cv);
    eb__cond_init(&d->pool_cv);
    d->workers = calloc(d->max_workers, sizeof *d->workers);
    d->shards = calloc(d->n_shards + 1, sizeof *d->shards);
    d->seen = calloc(d->max_workers, sizeof *d->seen);
    d->blocked_looks = calloc(d->max_workers, sizeof *d->blocked_looks);
    if (!d->workers || !d->shards || !d->seen || !d->blocked_looks) {
        free_dispatch(d);
        return EB_ERR_NOMEM;
    }
    for (uint32_t i = 0; i <= d->n_shards; i++)
        d->shards[i].index = i;
    d->shards[d->n_shards].shared = true;
    *out = d;
    return 0;
}

void eb__dispatch_stop(eb_dispatch *d)
{
    if (!d)
        return;
    stop_workers(d);
    free_dispatch(d);
}
