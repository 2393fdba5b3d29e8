/*
 * dispatch.c — the worker pool.
 *
 * Divisions, in order:
 *   queues       intrusive FIFOs of messages (m->core.next)
 *   blocked keys per worker, the keys waiting behind a retry or a dead letter
 *   acks         per-worker ack batches, flushed to the transport
 *   intake       deliver(), pause and resume
 *   workers      the worker loop: take a batch, run each message
 *   revoke/close stale messages, abandon, waiting for running handlers
 *
 * One mutex (d->mu) guards the queues and counters; a worker takes up to
 * BATCH messages per lock, leaving out stale ones (revoked lane, abandon).
 * A revoke that happens while a batch is in a worker's hands is caught
 * before each handler starts: the worker publishes `current` (under its
 * ack_mu) then reads `revoke_seq`; revoke bumps `revoke_seq` then reads
 * every `current`, so one of them always sees the other.
 */
#include "dispatch.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "outcome.h"
#include "sync.h"
#include "timers.h"

enum { BATCH = 256, ACK_BATCH = 64 };

/* ------------------------------------------------------------------ queues */

typedef struct msgq {
    eb_msg *head, *tail;
    size_t len;
} msgq;

static void q_push(msgq *q, eb_msg *m)
{
    m->core.next = NULL;
    if (q->tail)
        q->tail->core.next = m;
    else
        q->head = m;
    q->tail = m;
    q->len++;
}

/** Puts the whole of `front` before q's messages, keeping its order. */
static void q_prepend(msgq *q, msgq *front)
{
    if (!front->head)
        return;
    front->tail->core.next = q->head;
    if (!q->tail)
        q->tail = front->tail;
    q->head = front->head;
    q->len += front->len;
    *front = (msgq){0};
}

static eb_msg *q_pop(msgq *q)
{
    eb_msg *m = q->head;
    if (!m)
        return NULL;
    q->head = m->core.next;
    if (!q->head)
        q->tail = NULL;
    q->len--;
    m->core.next = NULL;
    return m;
}

/* ------------------------------------------------------------ structures */

/* A key whose head message is retrying, or being dead-lettered; later
 * messages of the key wait in `held`. Private to its worker. */
typedef struct blocked_key {
    struct blocked_key *next;
    eb_msg *head;
    msgq held;
    bool dead_letter;   /* the head is out being dead-lettered */
} blocked_key;

/* What a worker is running, as fields rather than the message: once its
 * handler returned, the message may be freed by another thread. */
typedef struct running {
    bool busy;
    const eb_sub *sub;
    uint32_t lane;
    uint64_t generation;
} running;

typedef struct worker {
    eb_dispatch *d;
    pthread_t thread;
    pthread_cond_t cv;
    msgq queue;          /* under d->mu */
    bool waiting;        /* under d->mu */
    blocked_key *blocked;
    pthread_mutex_t ack_mu; /* acks and current */
    running current;
    eb_msg *acks[ACK_BATCH];
    size_t n_acks;
    /* Written by this worker only (a shared counter would bounce between
     * cores once per message); summed by eb__dispatch_counts. */
    atomic_uint_fast64_t handled;
} worker;

struct eb_dispatch {
    eb_bus *bus;
    pthread_mutex_t mu;
    pthread_cond_t idle_cv; /* revoke, drain and leave wait here */
    msgq shared;            /* unkeyed */
    worker *workers;
    unsigned n_workers;
    unsigned running_workers; /* threads started (eb__dispatch_run), under mu */
    size_t queued;          /* in the queues */
    size_t batch_max;       /* per take: BATCH, or less (see eb__dispatch_new) */
    size_t in_batch;        /* taken by workers, not finished */
    size_t waiting_workers;
    size_t queue_max, low_watermark;
    eb_sub *paused_subs;
    size_t resuming;        /* resume() calls in progress */
    atomic_size_t held;     /* behind retrying keys */
    /* Behind dead letters being published. Close's last wait leaves them
     * out: a publish may take the transport's whole delivery timeout, and
     * they go back with their head, at the transport's close at the
     * latest. */
    atomic_size_t held_by_dead_letters;
    atomic_uint revoke_seq;
    atomic_int waiters;     /* threads waiting on idle_cv */
    atomic_bool abandon;
    bool stopping;
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

static void flush_all_acks(eb_dispatch *d)
{
    for (unsigned i = 0; i < d->n_workers; i++)
        acks_flush(&d->workers[i]);
}

static void release_one(eb_msg *m) { eb__sub_release(m->core.sub, &m, 1); }

/* --------------------------------------------------------- blocked keys */

static bool same_key(const eb_msg *a, const eb_msg *b)
{
    return a->core.sub == b->core.sub && a->core.key_hash == b->core.key_hash &&
           a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0;
}

static blocked_key *find_blocked(worker *w, const eb_msg *m)
{
    for (blocked_key *bk = w->blocked; bk; bk = bk->next)
        if (same_key(bk->head, m))
            return bk;
    return NULL;
}

static void block_key(worker *w, eb_msg *head)
{
    blocked_key *bk;
    while (!(bk = calloc(1, sizeof *bk)))
        sched_yield(); /* out of memory: order matters more than speed */
    bk->head = head;
    head->core.flags |= EB_MSGF_BLOCKING;
    bk->next = w->blocked;
    w->blocked = bk;
}

static atomic_size_t *held_count(eb_dispatch *d, const blocked_key *bk)
{
    return bk->dead_letter ? &d->held_by_dead_letters : &d->held;
}

/** A retry head ran out of attempts or was rejected: its key stays
 *  blocked until its dead letter is published. */
static void block_key_for_dead_letter(worker *w, eb_msg *head, blocked_key *bk)
{
    if (!bk) {
        block_key(w, head);
        w->blocked->dead_letter = true;
        return;
    }
    atomic_fetch_add(&w->d->held_by_dead_letters, bk->held.len);
    atomic_fetch_sub(&w->d->held, bk->held.len);
    bk->dead_letter = true;
}

/** The head is finished: hands back the messages held behind it, which
 *  must run next, before anything else of their key. */
static msgq unblock_key(worker *w, blocked_key *bk)
{
    bk->head->core.flags &= ~(uint32_t)EB_MSGF_BLOCKING;
    blocked_key **pp = &w->blocked;
    while (*pp != bk)
        pp = &(*pp)->next;
    *pp = bk->next;
    msgq held = bk->held;
    atomic_fetch_sub(held_count(w->d, bk), held.len);
    if (held.len)
        eb__sub_parked(bk->head->core.sub, -(long)held.len);
    free(bk);
    return held;
}

/* --------------------------------------------------------------- intake */

static uint32_t key_hash(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/** Under d->mu: what dispatch.queue.max bounds and the low watermark is
 *  measured against: messages queued or in a worker's batch, not finished
 *  (a batch taken whole by a held worker still counts). */
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

/** Under d->mu. `later` NULL (or full): signals at once. */
static void wake_worker(eb_dispatch *d, worker *w, wake_later *later)
{
    if (!w->waiting)
        return;
    w->waiting = false;
    d->waiting_workers--;
    if (later && later->n < WAKE_LATER_MAX)
        later->w[later->n++] = w;
    else
        pthread_cond_signal(&w->cv);
}

/** After d->mu is released. A worker that woke on its own meanwhile only
 *  gets a stray signal, which its wait loop ignores. */
static void signal_later(wake_later *later)
{
    for (unsigned i = 0; i < later->n; i++)
        pthread_cond_signal(&later->w[i]->cv);
}

/** Outside d->mu: what enqueueing needs, computed before taking the lock. */
static void prepare(eb_sub *sub, eb_msg *m)
{
    m->core.sub = sub;
    m->core.next = NULL;
    if (m->key) {
        m->core.key_hash = key_hash(m->key, m->key_len);
        m->core.flags |= EB_MSGF_KEYED;
    }
}

static void enqueue_locked(eb_dispatch *d, eb_msg *m, wake_later *later)
{
    if (m->core.flags & EB_MSGF_KEYED) {
        worker *w = &d->workers[m->core.key_hash % d->n_workers];
        q_push(&w->queue, m);
        wake_worker(d, w, later);
    } else {
        q_push(&d->shared, m);
    }
}

static void wake_for_shared(eb_dispatch *d, wake_later *later)
{
    for (unsigned i = 0; i < d->n_workers && d->waiting_workers > 0 &&
                         d->shared.len > 0; i++)
        wake_worker(d, &d->workers[i], later);
}

size_t eb__dispatch_deliver(eb_dispatch *d, eb_sub *sub, eb_msg **msgs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        prepare(sub, msgs[i]);
    pthread_mutex_lock(&d->mu);
    bool intake = sub->started && !sub->leaving && !sub->draining &&
                  atomic_load(&sub->bus->lifecycle) == EB_BUS_OPEN;
    size_t load = pool_load(d);
    size_t room = d->queue_max > load ? d->queue_max - load : 0;
    size_t k = intake ? (n < room ? n : room) : 0;
    wake_later later = {.n = 0};
    for (size_t i = 0; i < k; i++)
        enqueue_locked(d, msgs[i], &later);
    d->queued += k;
    bool paused = k < n && intake && owe_resume(d, sub);
    if (k < n && !sub->started)
        owe_resume(d, sub); /* resumed once subscribe() returned */
    wake_for_shared(d, &later);
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
 *  resume and no batch to prompt it: wake a worker to look. */
static void prompt_resume(eb_dispatch *d)
{
    if (!d->paused_subs || pool_load(d) > d->low_watermark)
        return;
    for (unsigned i = 0; i < d->n_workers; i++)
        if (d->workers[i].waiting) {
            wake_worker(d, &d->workers[i], NULL);
            return;
        }
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

/** Under d->mu: up to BATCH messages, own queue first, then a fair share
 *  of the unkeyed ones. Stale messages go to `stale` instead, except retry
 *  heads, which their worker must see to free their key. */
static size_t take_batch(eb_dispatch *d, worker *w, eb_msg **batch, msgq *stale)
{
    size_t n = 0, taken = 0;
    size_t share = d->shared.len / d->n_workers + 1;
    while (n < d->batch_max) {
        eb_msg *m = w->queue.head ? q_pop(&w->queue)
                    : share > 0 && d->shared.head ? (share--, q_pop(&d->shared))
                    : NULL;
        if (!m)
            break;
        taken++;
        if (!(m->core.flags & EB_MSGF_BLOCKING) && is_stale(d, m))
            q_push(stale, m);
        else
            batch[n++] = m;
    }
    d->queued -= taken;
    d->in_batch += n;
    return n;
}

/** Publishes what the worker runs, then checks staleness; see the top
 *  comment. Messages of a batch taken before a revoke are all checked. */
static bool start_running(worker *w, eb_msg *m, unsigned batch_seq, bool recheck)
{
    eb_dispatch *d = w->d;
    pthread_mutex_lock(&w->ack_mu);
    w->current = (running){true, m->core.sub, m->lane, m->lane_generation};
    pthread_mutex_unlock(&w->ack_mu);
    /* A retry head came back from the timer: take_batch did not look. */
    recheck |= (m->core.flags & EB_MSGF_BLOCKING) != 0;
    if (!recheck && atomic_load(&d->revoke_seq) == batch_seq)
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

static void run_one(worker *w, eb_msg *m, unsigned batch_seq, bool recheck);
static void drop_stale(worker *w, eb_msg *m);

/** Runs the messages that waited behind a finished retry, in order;
 *  when close abandons, they are released instead. */
static void run_held(worker *w, msgq *held)
{
    eb_msg *m;
    while ((m = q_pop(held))) {
        if (atomic_load(&w->d->abandon))
            release_one(m);
        else
            run_one(w, m, 0, true);
    }
}

/** Applies the handler's decision. The message may be freed by another
 *  thread as soon as it is acked, retried or dead-lettered. */
static void settle(worker *w, eb_msg *m, eb_result r, blocked_key *bk)
{
    eb_bus *bus = w->d->bus;
    if (r == EB_RETRY && eb__outcome_may_retry(bus, m)) {
        if (eb__dispatch_is_stale(w->d, m)) {
            /* Revoked or abandoned while it ran: its next attempt belongs
             * to the lane's next owner. */
            finish_running(w);
            drop_stale(w, m);
            return;
        }
        if (!bk && (m->core.flags & EB_MSGF_KEYED))
            block_key(w, m);
        finish_running(w);
        eb__outcome_schedule_retry(bus, m);
        return;
    }
    if (r != EB_ACK) {
        /* Later messages of the key wait for the dead letter (order); the
         * head comes back through eb__dispatch_dead_letter_done. */
        if (m->core.flags & EB_MSGF_KEYED)
            block_key_for_dead_letter(w, m, bk);
        finish_running(w);
        eb__outcome_dead_letter(bus, m, r == EB_RETRY ? 0 : EB_MSGF_REJECTED);
        return;
    }
    msgq held = bk ? unblock_key(w, bk) : (msgq){0};
    ack_add_and_finish(w, m);
    run_held(w, &held);
}

/** A dead-letter head is back: acknowledged when its dead letter was
 *  published, released when given up; its key is free again. */
static void finish_dead_letter(worker *w, eb_msg *m, blocked_key *bk)
{
    msgq held = bk ? unblock_key(w, bk) : (msgq){0};
    if (m->core.flags & EB_MSGF_DLQ_PUBLISHED)
        eb__sub_ack(m->core.sub, &m, 1);
    else
        release_one(m);
    run_held(w, &held);
}

/** A stale message: give it back; a stale retry head frees its key. */
static void drop_stale(worker *w, eb_msg *m)
{
    blocked_key *bk = (m->core.flags & EB_MSGF_BLOCKING) ? find_blocked(w, m) : NULL;
    msgq held = bk ? unblock_key(w, bk) : (msgq){0};
    release_one(m);
    run_held(w, &held);
}

/** `recheck`: the message was taken before the current batch (it waited
 *  behind a retry), so its staleness is checked under the lock. */
static void run_one(worker *w, eb_msg *m, unsigned batch_seq, bool recheck)
{
    blocked_key *bk = (m->core.flags & EB_MSGF_KEYED) && w->blocked
                          ? find_blocked(w, m) : NULL;
    if (bk && bk->head != m) {
        q_push(&bk->held, m); /* waits behind its key's retry or dead letter */
        atomic_fetch_add(held_count(w->d, bk), 1);
        eb__sub_parked(m->core.sub, 1);
        return;
    }
    if (m->core.flags & EB_MSGF_DLQ) {
        finish_dead_letter(w, m, bk);
        return;
    }
    if (!start_running(w, m, batch_seq, recheck)) {
        finish_running(w);
        drop_stale(w, m);
        return;
    }
    eb_sub *sub = m->core.sub;
    m->core.attempts++;
    eb_result r = sub->handler(m, sub->opaque);
    atomic_store_explicit(&w->handled,
                          atomic_load_explicit(&w->handled, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    settle(w, m, r, bk);
}

static void drop_all_stale(worker *w, msgq *stale)
{
    eb_msg *m;
    while ((m = q_pop(stale)))
        drop_stale(w, m);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    eb_dispatch *d = w->d;
    eb__tls_callback_bus = d->bus;
    pthread_setname_np(pthread_self(), "eb-worker");
    eb_msg *batch[BATCH];
    pthread_mutex_lock(&d->mu);
    for (;;) {
        msgq stale = {0};
        unsigned batch_seq = atomic_load(&d->revoke_seq);
        size_t n = take_batch(d, w, batch, &stale);
        resumable owed;
        bool resume = take_resumable(d, &owed);
        if (n == 0 && !stale.head && !resume) {
            if (d->stopping)
                break;
            w->waiting = true;
            d->waiting_workers++;
            pthread_cond_broadcast(&d->idle_cv);
            while (w->waiting && !d->stopping)
                pthread_cond_wait(&w->cv, &d->mu);
            continue;
        }
        pthread_mutex_unlock(&d->mu);
        drop_all_stale(w, &stale);
        if (resume)
            resume_subs(d, &owed);
        for (size_t i = 0; i < n; i++)
            run_one(w, batch[i], batch_seq, false);
        acks_flush(w);
        pthread_mutex_lock(&d->mu);
        d->in_batch -= n;
        if (atomic_load(&d->waiters))
            pthread_cond_broadcast(&d->idle_cv);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* --------------------------------------------------------- revoke/close */

/** Under d->mu: removes stale messages from every queue into `out`. */
static void purge_stale_locked(eb_dispatch *d, msgq *out)
{
    msgq *queues[d->n_workers + 1];
    for (unsigned i = 0; i < d->n_workers; i++)
        queues[i] = &d->workers[i].queue;
    queues[d->n_workers] = &d->shared;
    for (unsigned i = 0; i <= d->n_workers; i++) {
        msgq keep = {0};
        eb_msg *m;
        while ((m = q_pop(queues[i])))
            q_push(!(m->core.flags & EB_MSGF_BLOCKING) && is_stale(d, m) ? out : &keep, m);
        *queues[i] = keep;
    }
    d->queued -= out->len;
}

static void release_queue(msgq *q)
{
    eb_msg *batch[BATCH];
    while (q->head) {
        size_t n = 0;
        while (n < BATCH && q->head)
            batch[n++] = q_pop(q);
        give_back(batch, n, eb__sub_release);
    }
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
    for (unsigned i = 0; i < d->n_workers && !stale; i++) {
        worker *w = &d->workers[i];
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
    msgq one = {0};
    q_push(&one, m);
    if (m->core.flags & EB_MSGF_KEYED) {
        worker *w = &d->workers[m->core.key_hash % d->n_workers];
        q_prepend(&w->queue, &one);
        wake_worker(d, w, NULL);
    } else {
        q_prepend(&d->shared, &one);
        wake_for_shared(d, NULL);
    }
    d->queued++;
    pthread_mutex_unlock(&d->mu);
}

void eb__dispatch_dead_letter_done(eb_dispatch *d, eb_msg *m, bool published)
{
    if (m->core.flags & EB_MSGF_BLOCKING) {
        if (published)
            m->core.flags |= EB_MSGF_DLQ_PUBLISHED;
        eb__dispatch_requeue(d, m);
    } else if (published) {
        eb__sub_ack(m->core.sub, &m, 1);
    } else {
        release_one(m);
    }
}

bool eb__dispatch_abandoning(eb_dispatch *d) { return atomic_load(&d->abandon); }

/** Waits until nothing is queued, running, held or on the timer. The
 *  timer count is read without d->mu (the timer lock is taken before
 *  d->mu elsewhere); a message moving between the timer and the queues is
 *  counted on one side or the other at every moment. */
static void wait_until_empty(eb_dispatch *d)
{
    for (;;) {
        size_t timers = eb__timers_pending(d->bus->timers);
        pthread_mutex_lock(&d->mu);
        bool left = timers > 0 || d->queued + d->in_batch + atomic_load(&d->held) > 0;
        if (left) {
            atomic_fetch_add(&d->waiters, 1);
            /* The timer thread does not signal idle_cv: look again soon. */
            eb__cond_wait_until(&d->idle_cv, &d->mu, eb__now_ns() + 1000000);
            atomic_fetch_sub(&d->waiters, 1);
        }
        pthread_mutex_unlock(&d->mu);
        if (!left)
            return;
    }
}

/** Waits until nothing is queued, running, held or on the timer, or the
 *  deadline. @returns true when drained. */
static bool drain_until(eb_dispatch *d, int64_t deadline_ns)
{
    for (;;) {
        size_t timers = eb__timers_pending(d->bus->timers); /* see wait_until_empty */
        pthread_mutex_lock(&d->mu);
        bool busy = timers > 0 || d->queued + d->in_batch + atomic_load(&d->held) +
                                      atomic_load(&d->held_by_dead_letters) > 0;
        int64_t now = eb__now_ns();
        if (busy && now < deadline_ns) {
            int64_t soon = now + 1000000; /* the timer does not signal idle_cv */
            atomic_fetch_add(&d->waiters, 1);
            eb__cond_wait_until(&d->idle_cv, &d->mu, soon < deadline_ns ? soon : deadline_ns);
            atomic_fetch_sub(&d->waiters, 1);
        }
        pthread_mutex_unlock(&d->mu);
        if (!busy || now >= deadline_ns)
            return !busy;
    }
}

int eb__dispatch_drain(eb_dispatch *d, int64_t deadline_ns)
{
    msgq abandoned = {0};
    bool drained = drain_until(d, deadline_ns);
    pthread_mutex_lock(&d->mu);
    atomic_store(&d->abandon, true);
    atomic_fetch_add(&d->revoke_seq, 1);
    purge_stale_locked(d, &abandoned);
    pthread_mutex_unlock(&d->mu);

    release_queue(&abandoned);
    /* Retries still waiting are abandoned: they come back through the
     * workers, which release them with the messages held behind them. So
     * are retries scheduled from now on (a handler that returns RETRY as
     * this runs): none may hold close for its backoff. */
    eb__timers_abandon(d->bus->timers);
    wait_until_empty(d);
    flush_all_acks(d);
    return drained ? 0 : EB_ERR_TIMEOUT;
}

void eb__dispatch_counts(eb_dispatch *d, size_t *queued, size_t *in_batch,
                         size_t *held, uint64_t *handled)
{
    *handled = 0;
    for (unsigned i = 0; i < d->n_workers; i++)
        *handled += atomic_load_explicit(&d->workers[i].handled, memory_order_relaxed);
    pthread_mutex_lock(&d->mu);
    *queued = d->queued;
    *in_batch = d->in_batch;
    *held = atomic_load(&d->held) + atomic_load(&d->held_by_dead_letters);
    pthread_mutex_unlock(&d->mu);
}

/* ---------------------------------------------------------- start/stop */

static unsigned worker_count(const eb_bus *bus)
{
    if (bus->set.workers > 0)
        return (unsigned)bus->set.workers;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (unsigned)cpus : 1;
}

static void free_dispatch(eb_dispatch *d)
{
    for (unsigned i = 0; i < d->n_workers; i++) {
        pthread_cond_destroy(&d->workers[i].cv);
        pthread_mutex_destroy(&d->workers[i].ack_mu);
    }
    free(d->workers);
    pthread_cond_destroy(&d->idle_cv);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

static void stop_workers(eb_dispatch *d)
{
    pthread_mutex_lock(&d->mu);
    d->stopping = true;
    for (unsigned i = 0; i < d->n_workers; i++)
        pthread_cond_signal(&d->workers[i].cv);
    unsigned started = d->running_workers;
    pthread_mutex_unlock(&d->mu);
    for (unsigned i = 0; i < started; i++)
        pthread_join(d->workers[i].thread, NULL);
}

int eb__dispatch_run(eb_dispatch *d)
{
    pthread_mutex_lock(&d->mu);
    while (d->running_workers < d->n_workers &&
           pthread_create(&d->workers[d->running_workers].thread, NULL, worker_main,
                          &d->workers[d->running_workers]) == 0)
        d->running_workers++;
    int rc = d->running_workers == d->n_workers ? 0 : EB_ERR_NOMEM;
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int eb__dispatch_new(eb_bus *bus, eb_dispatch **out)
{
    eb_dispatch *d = calloc(1, sizeof *d);
    if (!d)
        return EB_ERR_NOMEM;
    d->bus = bus;
    d->n_workers = worker_count(bus);
    d->queue_max = (size_t)bus->set.queue_max;
    d->low_watermark = bus->set.queue_low_watermark > 0
                           ? (size_t)bus->set.queue_low_watermark
                           : d->queue_max / 2;
    /* The batches of held workers count in the pool's load until they
     * finish: all of them together must stay within the low watermark, or
     * a few held handlers would keep intake paused while the other
     * workers sleep. */
    size_t share = d->low_watermark / d->n_workers;
    d->batch_max = share < 1 ? 1 : share < BATCH ? share : BATCH;
    pthread_mutex_init(&d->mu, NULL);
    eb__cond_init(&d->idle_cv);
    d->workers = calloc(d->n_workers, sizeof *d->workers);
    if (!d->workers) {
        d->n_workers = 0;
        free_dispatch(d);
        return EB_ERR_NOMEM;
    }
    for (unsigned i = 0; i < d->n_workers; i++) {
        d->workers[i].d = d;
        pthread_cond_init(&d->workers[i].cv, NULL);
        pthread_mutex_init(&d->workers[i].ack_mu, NULL);
    }
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
