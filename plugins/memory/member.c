/*
 * member.c — one subscription of the memory transport: a thread that keeps
 * the member's assignment in step with its group (revoke what it lost,
 * take what it gained once the old owner let go), fetches records into each
 * lane's in-flight FIFO, and hands them to the core; acks mark FIFO entries
 * done and advance the group's committed positions contiguously.
 *
 * Assignment: member i of n (in join order) owns the partitions p with
 * p % n == i. A partition changes hands only after its old owner revoked
 * it and committed what finished, so a key is never handled by two members
 * at once.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory.h"

enum { FETCH_BATCH = 256 };

typedef struct lane {
    bool owned;
    uint64_t generation;
    uint64_t fetch;        /* next offset to deliver */
    eb_lane_fifo fifo;
} lane;

struct mem_member {
    mem_bus *mb;
    mem_broker *b;
    mem_topic *t;
    mem_group *g;
    eb_host_sub *hs;
    const eb_host *host;
    pthread_t thread;
    pthread_cond_t cv;     /* with b->mu */
    bool sleeping;
    lane *lanes;
    unsigned n_lanes;
    unsigned next_lane;    /* fairness of fetching */
    uint64_t seen_generation;
    uint64_t generations;  /* lane generation counter */
    bool stopping;
    bool ready_sent;
    bool paused;           /* deliver refused: wait for resume */
    bool resume_requested;
    mem_msg **pending;     /* refused by deliver, in order */
    size_t n_pending, pending_at;
};

/* ------------------------------------------------------------- helpers */

void mem_member_wake(mem_member *m)
{
    if (m->sleeping) {
        m->sleeping = false;
        pthread_cond_signal(&m->cv);
    }
}

static void sleep_until_woken(mem_member *m)
{
    m->sleeping = true;
    while (m->sleeping)
        pthread_cond_wait(&m->cv, &m->b->mu);
}

static void free_msgs(eb_msg *const *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mem_msg *mm = (mem_msg *)msgs[i];
        mem_block *block = mm->block;
        mem_record_unref(mm->rec);
        if (atomic_fetch_sub(&block->live, 1) == 1)
            free(block);
    }
}

/** Under b->mu: commits what finished in lane `pi`. */
static void commit_lane(mem_member *m, unsigned pi)
{
    uint64_t last;
    if (eb_lane_fifo_pop_done(&m->lanes[pi].fifo, &last)) {
        m->g->committed[pi] = last + 1;
        if (m->b->space_waiters)
            pthread_cond_broadcast(&m->b->space_cv);
    }
}

/* ---------------------------------------------------------------- acks */

void mem_member_ack(mem_member *m, eb_msg *const *msgs, size_t n)
{
    pthread_mutex_lock(&m->b->mu);
    bool was_full = false;
    for (size_t i = 0; i < n; i++) {
        mem_msg *mm = (mem_msg *)msgs[i];
        lane *l = &m->lanes[mm->base.lane];
        if (!l->owned || l->generation != mm->base.lane_generation)
            continue; /* a late ack from before a revoke: discarded */
        was_full |= eb_lane_fifo_full(&l->fifo);
        if (eb_lane_fifo_mark_done(&l->fifo, mm->seq))
            commit_lane(m, mm->base.lane);
    }
    if (was_full)
        mem_member_wake(m);
    pthread_mutex_unlock(&m->b->mu);
    free_msgs(msgs, n);
}

void mem_member_release(mem_member *m, eb_msg *const *msgs, size_t n)
{
    /* A released message stays unfinished in its FIFO: the lane's commit
     * stops before it, so the next owner gets it again. */
    free_msgs(msgs, n);
}

void mem_member_resume(mem_member *m)
{
    pthread_mutex_lock(&m->b->mu);
    m->resume_requested = true;
    mem_member_wake(m);
    pthread_mutex_unlock(&m->b->mu);
}

/* ------------------------------------------------------------- pending */

/** Under b->mu: drops refused messages of lanes no longer owned at their
 *  generation (they never reached the core). */
static void drop_stale_pending(mem_member *m)
{
    size_t keep = 0;
    for (size_t i = m->pending_at; i < m->n_pending; i++) {
        mem_msg *mm = m->pending[i];
        lane *l = &m->lanes[mm->base.lane];
        if (l->owned && l->generation == mm->base.lane_generation)
            m->pending[keep++] = mm;
        else
            free_msgs((eb_msg **)&mm, 1);
    }
    m->pending_at = 0;
    m->n_pending = keep;
}

/** Outside b->mu: hands `msgs` to the core; keeps what it refuses in
 *  `pending` (msgs may be the unsent part of `pending` itself). */
static void deliver(mem_member *m, mem_msg **msgs, size_t n)
{
    size_t k = m->host->deliver(m->hs, (eb_msg **)msgs, n);
    if (msgs == m->pending + m->pending_at) {
        m->pending_at += k;
        if (m->pending_at == m->n_pending)
            m->pending_at = m->n_pending = 0;
    } else if (k < n) {
        memcpy(m->pending, msgs + k, (n - k) * sizeof *msgs);
        m->pending_at = 0;
        m->n_pending = n - k;
    }
    if (k < n)
        m->paused = true;
}

/* ------------------------------------------------------------ rebalance */

static size_t my_index(const mem_member *m)
{
    for (size_t i = 0; i < m->g->n_members; i++)
        if (m->g->members[i] == m)
            return i;
    return SIZE_MAX;
}

static bool wanted(const mem_member *m, unsigned pi)
{
    size_t n = m->g->n_members, i = my_index(m);
    return !m->stopping && i != SIZE_MAX && pi % n == i;
}

/** Under b->mu, returns with it held: revokes the lanes in `refs`. */
static void revoke_lanes(mem_member *m, eb_lane_ref *refs, size_t n)
{
    if (n == 0)
        return;
    pthread_mutex_unlock(&m->b->mu);
    m->host->revoke(m->hs, refs, n);
    pthread_mutex_lock(&m->b->mu);
    for (size_t i = 0; i < n; i++) {
        unsigned pi = refs[i].lane;
        lane *l = &m->lanes[pi];
        commit_lane(m, pi);
        l->owned = false;
        eb_lane_fifo_reset(&l->fifo);
        m->g->owner[pi] = NULL;
    }
    drop_stale_pending(m);
    for (size_t i = 0; i < m->g->n_members; i++)
        if (m->g->members[i] != m)
            mem_member_wake(m->g->members[i]);
}

/** Under b->mu: gives up the lanes no longer wanted. */
static void revoke_unwanted(mem_member *m)
{
    eb_lane_ref refs[m->n_lanes];
    size_t n = 0;
    for (unsigned pi = 0; pi < m->n_lanes; pi++)
        if (m->lanes[pi].owned && !wanted(m, pi))
            refs[n++] = (eb_lane_ref){pi, m->lanes[pi].generation};
    revoke_lanes(m, refs, n);
}

/** Under b->mu: takes wanted lanes nobody holds. @returns true when every
 *  wanted lane is owned; *gained counts the lanes taken now. */
static bool acquire_wanted(mem_member *m, unsigned *gained)
{
    bool complete = true;
    *gained = 0;
    for (unsigned pi = 0; pi < m->n_lanes; pi++) {
        lane *l = &m->lanes[pi];
        if (l->owned || !wanted(m, pi))
            continue;
        if (m->g->owner[pi]) {
            complete = false; /* its old owner is still revoking */
            continue;
        }
        m->g->owner[pi] = m;
        l->owned = true;
        l->generation = ++m->generations;
        l->fetch = m->g->committed[pi];
        eb_lane_fifo_reset(&l->fifo);
        ++*gained;
    }
    return complete;
}

/* --------------------------------------------------------------- fetch */

typedef struct pick {
    mem_record *rec;
    unsigned lane;
    uint64_t generation, seq;
} pick;

/** Under b->mu: takes records from owned lanes into their FIFOs. */
static size_t collect(mem_member *m, pick *picks, size_t cap)
{
    size_t n = 0;
    for (unsigned k = 0; k < m->n_lanes && n < cap; k++) {
        unsigned pi = (m->next_lane + k) % m->n_lanes;
        lane *l = &m->lanes[pi];
        mem_partition *p = &m->t->parts[pi];
        if (!l->owned)
            continue;
        if (l->fetch < p->start_offset)
            l->fetch = p->start_offset; /* cannot happen while we are live */
        uint64_t seq;
        while (n < cap && l->fetch < p->next_offset &&
               eb_lane_fifo_push(&l->fifo, l->fetch, &seq)) {
            mem_record *rec = mem_partition_record(m->t, pi, l->fetch);
            picks[n++] = (pick){rec, pi, l->generation, seq};
            l->fetch++;
        }
    }
    m->next_lane = (m->next_lane + 1) % (m->n_lanes ? m->n_lanes : 1);
    return n;
}

/** Writes "partition@offset" (snprintf costs more than the handler). */
static void format_id(char *out, unsigned partition, uint64_t offset)
{
    char digits[24];
    int n = 0;
    do
        digits[n++] = (char)('0' + partition % 10);
    while ((partition /= 10) > 0);
    while (n > 0)
        *out++ = digits[--n];
    *out++ = '@';
    do
        digits[n++] = (char)('0' + offset % 10);
    while ((offset /= 10) > 0);
    while (n > 0)
        *out++ = digits[--n];
    *out = '\0';
}

static void wrap(mem_member *m, mem_block *block, mem_msg *mm, const pick *pk)
{
    const mem_record *r = pk->rec;
    mm->rec = pk->rec;
    mm->block = block;
    mm->seq = pk->seq;
    format_id(mm->id, pk->lane, r->offset);
    mm->base = (eb_msg){.topic = m->t->name, .key = r->key, .key_len = r->key_len,
                        .payload = r->payload, .payload_len = r->payload_len,
                        .headers = r->headers, .header_count = r->header_count,
                        .id = mm->id, .timestamp_ms = r->timestamp_ms,
                        .delivery_count = 0, .lane = pk->lane,
                        .lane_generation = pk->generation};
}

/**
 * Outside b->mu: one allocation for the whole fetch. The records' references
 * are taken here, not under the lock: a record the group has not committed
 * cannot be dropped by retention, and these commit only after delivery.
 */
static void deliver_picks(mem_member *m, const pick *picks, size_t n)
{
    mem_block *block;
    while (!(block = malloc(sizeof *block + n * sizeof(mem_msg))))
        sched_yield(); /* out of memory: never lose the records */
    atomic_init(&block->live, n);
    mem_msg *msgs[FETCH_BATCH];
    for (size_t i = 0; i < n; i++) {
        atomic_fetch_add_explicit(&picks[i].rec->refs, 1, memory_order_relaxed);
        wrap(m, block, &block->msgs[i], &picks[i]);
        msgs[i] = &block->msgs[i];
    }
    deliver(m, msgs, n);
}

/* --------------------------------------------------------------- thread */

/** Under b->mu: one step of the loop. @returns false to wait. */
static bool step(mem_member *m, pick *picks)
{
    if (m->seen_generation != m->g->generation) {
        m->seen_generation = m->g->generation;
        revoke_unwanted(m);
        return true;
    }
    unsigned gained;
    bool complete = acquire_wanted(m, &gained);
    if (gained) {
        char detail[64];
        snprintf(detail, sizeof detail, "%u partition(s) assigned", gained);
        pthread_mutex_unlock(&m->b->mu);
        m->host->event(m->mb->hb, EB_EVENT_ASSIGNED, m->t->name, m->g->name, 0, detail);
        pthread_mutex_lock(&m->b->mu);
        return true; /* look again: a wake-up may have come while unlocked */
    }
    if (complete && !m->ready_sent) {
        m->ready_sent = true;
        pthread_mutex_unlock(&m->b->mu);
        m->host->ready(m->hs);
        pthread_mutex_lock(&m->b->mu);
        return true; /* look again: a wake-up may have come while unlocked */
    }
    if (m->paused) {
        if (!m->resume_requested)
            return false;
        m->resume_requested = false;
        m->paused = false;
        drop_stale_pending(m);
        pthread_mutex_unlock(&m->b->mu);
        deliver(m, m->pending + m->pending_at, m->n_pending - m->pending_at);
        pthread_mutex_lock(&m->b->mu);
        return true;
    }
    size_t n = collect(m, picks, FETCH_BATCH);
    if (n == 0)
        return false;
    pthread_mutex_unlock(&m->b->mu);
    deliver_picks(m, picks, n);
    pthread_mutex_lock(&m->b->mu);
    return true;
}

/** Under b->mu: revokes and commits every lane, then leaves the group
 *  (which frees an anonymous group). */
static void leave_group(mem_member *m)
{
    eb_lane_ref refs[m->n_lanes];
    size_t n = 0;
    for (unsigned pi = 0; pi < m->n_lanes; pi++)
        if (m->lanes[pi].owned)
            refs[n++] = (eb_lane_ref){pi, m->lanes[pi].generation};
    revoke_lanes(m, refs, n);
    mem_group_leave(m->b, m->t, m->g, m);
    m->g = NULL;
}

static void *member_main(void *arg)
{
    mem_member *m = arg;
    pthread_setname_np(pthread_self(), "eb-mem-member");
    pick picks[FETCH_BATCH];
    pthread_mutex_lock(&m->b->mu);
    while (!m->stopping)
        if (!step(m, picks) && !m->stopping)
            sleep_until_woken(m);
    leave_group(m);
    pthread_mutex_unlock(&m->b->mu);
    return NULL;
}

/* ------------------------------------------------------------ lifecycle */

void mem_member_free(mem_member *m)
{
    if (!m)
        return;
    for (size_t i = m->pending_at; i < m->n_pending; i++)
        free_msgs((eb_msg **)&m->pending[i], 1);
    for (unsigned i = 0; m->lanes && i < m->n_lanes; i++)
        eb_lane_fifo_free(&m->lanes[i].fifo);
    free(m->lanes);
    free(m->pending);
    pthread_cond_destroy(&m->cv);
    mem_broker_release(m->b);
    free(m);
}

static int alloc_lanes(mem_member *m, uint32_t inflight)
{
    m->lanes = calloc(m->n_lanes, sizeof *m->lanes);
    m->pending = calloc(FETCH_BATCH, sizeof *m->pending);
    if (!m->lanes || !m->pending)
        return EB_ERR_NOMEM;
    for (unsigned i = 0; i < m->n_lanes; i++)
        if (eb_lane_fifo_init(&m->lanes[i].fifo, inflight) != 0)
            return EB_ERR_NOMEM;
    return 0;
}

static int join(mem_member *m, const eb_sub_params *p)
{
    pthread_mutex_lock(&m->b->mu);
    m->t = mem_topic_get(m->b, p->topic);
    if (m->t) {
        m->n_lanes = m->t->n_parts;
        if (alloc_lanes(m, p->lane_max_inflight) == 0)
            m->g = mem_group_join(m->b, m->t, p->group, p->start, m);
    }
    pthread_mutex_unlock(&m->b->mu);
    return m->g ? 0 : EB_ERR_NOMEM;
}

int mem_member_start(mem_bus *mb, eb_host_sub *hs, const eb_sub_params *p,
                     mem_member **out, char *errstr, size_t errstr_size)
{
    mem_member *m = calloc(1, sizeof *m);
    if (!m)
        return EB_ERR_NOMEM;
    m->mb = mb;
    m->b = mb->broker;
    m->hs = hs;
    m->host = mb->host;
    pthread_cond_init(&m->cv, NULL);
    mem_broker_ref(m->b);
    int rc = join(m, p);
    if (rc == 0 && pthread_create(&m->thread, NULL, member_main, m) != 0) {
        pthread_mutex_lock(&m->b->mu);
        mem_group_leave(m->b, m->t, m->g, m);
        pthread_mutex_unlock(&m->b->mu);
        rc = EB_ERR_NOMEM;
    }
    if (rc != 0) {
        snprintf(errstr, errstr_size,
                 "memory transport: cannot subscribe to '%s': out of memory or threads",
                 p->topic);
        mem_member_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void mem_member_stop(mem_member *m)
{
    pthread_mutex_lock(&m->b->mu);
    m->stopping = true;
    mem_member_wake(m);
    pthread_mutex_unlock(&m->b->mu);
    pthread_join(m->thread, NULL);
}
