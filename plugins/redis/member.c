/*
 * member.c — one subscription of the Redis transport (see member.h), read
 * by two threads with a connection each.
 *
 *  - The reader (eb-redis-read), in shared mode, reads the topic's stream
 *    as lane 0: this consumer's own pending entries first (at start and
 *    after every reconnect), then new ones with a bounded BLOCK, and every
 *    second a page of entries any consumer left idle longer than
 *    redis.claim.idle.ms (XAUTOCLAIM). In keyed mode it runs keyed.c's
 *    step instead. It keeps what the core refuses until resume(), and
 *    never holds more than dispatch.lane.max.inflight entries of a lane.
 *  - The keeper (eb-redis-keep) acknowledges finished ids in batches
 *    (XACK per lane), in shared mode refreshes the idle time of every
 *    entry held every third of the claim idle time (only those still
 *    pending under this consumer: refresh.c), reads the groups' lag,
 *    prunes dead consumers, and ends the reader's blocked read (CLIENT
 *    UNBLOCK) when it must stop, rewind or look at news.
 *
 * Shared mode: an entry claimed away by another member while held here
 * (this member's refreshes did not reach the server in time) revokes the
 * lane with the lost flag: what it held is forgotten, the lane's
 * generation goes up, and the reader reads the own pending entries again.
 *
 * An anonymous member (NULL group) reads every lane with plain XREAD from
 * the last entry at subscribe time (or the first, for EARLIEST); it
 * acknowledges nothing and leaves nothing.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "claim.h"
#include "consumers.h"
#include "fields.h"
#include "json_out.h"
#include "lease.h"
#include "member.h"
#include "refresh.h"

enum {
    ERR_SIZE = RD_URL_MAX + RD_NAME_MAX + 512,
    CLAIM_EVERY_MS = 1000,   /* a claim page at most this often once caught up */
    TICK_MS = 1000,          /* the keeper's lag reading */
    ACKS_PER_XACK = 1000,
    UNBLOCK_TRIES = 100,
};

struct rd_batch {
    atomic_size_t live;      /* messages not yet returned */
    redisReply *reply;       /* the strings the messages point into */
    rd_msg msgs[];
};

/* --------------------------------------------------------------- helpers */

int64_t rd_member_now_ns(const rd_sub *s) { return s->host->now_ns(); }

static int64_t now_ns(const rd_sub *s) { return s->host->now_ns(); }

static struct timespec abs_time(int64_t ns)
{
    return (struct timespec){.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
}

void rd_member_wait(rd_sub *s, pthread_cond_t *cv, int64_t deadline_ns)
{
    struct timespec ts = abs_time(deadline_ns);
    pthread_cond_timedwait(cv, &s->mu, &ts);
}

static void wait_until(rd_sub *s, pthread_cond_t *cv, int64_t deadline_ns)
{
    rd_member_wait(s, cv, deadline_ns);
}

static bool id_list_push(rd_id_list *l, const char *id)
{
    size_t n = strlen(id) + 1;
    if (l->len + n > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4096;
        while (cap < l->len + n)
            cap *= 2;
        char *buf = realloc(l->buf, cap);
        if (!buf)
            return false;
        l->buf = buf;
        l->cap = cap;
    }
    memcpy(l->buf + l->len, id, n);
    l->len += n;
    l->n++;
    return true;
}

static bool id_list_has(const rd_id_list *l, const char *id)
{
    for (size_t at = 0; at < l->len; at += strlen(l->buf + at) + 1)
        if (strcmp(l->buf + at, id) == 0)
            return true;
    return false;
}

/** Moves every id of `from` to the end of `to` (from is left empty). */
static void id_list_move(rd_id_list *to, rd_id_list *from)
{
    if (to->n == 0) {
        rd_id_list t = *to;
        *to = *from;
        *from = t;
    } else {
        for (size_t at = 0; at < from->len; at += strlen(from->buf + at) + 1)
            if (!id_list_push(to, from->buf + at))
                break; /* out of memory: those ids are redelivered later */
    }
    from->len = from->n = 0;
}

static void free_msgs(eb_msg *const *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rd_msg *m = (rd_msg *)msgs[i];
        rd_batch *b = m->batch;
        free(m->headers);
        if (atomic_fetch_sub(&b->live, 1) == 1) {
            freeReplyObject(b->reply);
            free(b);
        }
    }
}

static void set_link(rd_sub *s, int *link, int up, const char *why)
{
    rd_health_link(&s->rb->health, link, up, why);
}

/** Under mu: forgets m if it is held. @returns whether it was; wakes a
 *  reader waiting for room in its lane. */
static bool unhold(rd_sub *s, rd_msg *m)
{
    if (!rd_held_remove(&s->held, &m->node))
        return false;
    rd_lane *ln = &s->lanes[m->base.lane];
    if (ln->held-- == s->inflight_max && s->reader_blocking && s->n_lanes > 1) {
        s->unblock_wanted = true; /* the BLOCK is on the other lanes: read this one */
        pthread_cond_signal(&s->keeper_cv);
    }
    if (s->reader_waiting)
        pthread_cond_signal(&s->reader_cv);
    return true;
}

static bool has_revoke_until(const eb_host *h)
{
    return h->struct_size >= offsetof(eb_host, revoke_until) + sizeof h->revoke_until &&
           h->revoke_until;
}

/* ------------------------------------------------------ the core's calls */

void rd_sub_ack(rd_sub *s, eb_msg *const *msgs, size_t n)
{
    pthread_mutex_lock(&s->mu);
    size_t acked = 0;
    for (size_t i = 0; i < n; i++) {
        rd_msg *m = (rd_msg *)msgs[i];
        if (!unhold(s, m))
            continue; /* from before a lost revoke: its entry is read again */
        acked++;
        if (s->group && !id_list_push(&s->lanes[m->base.lane].acks, m->sid))
            atomic_fetch_add(&s->ack_failures, 1); /* redelivered later: never lost */
    }
    if (acked && s->group)
        pthread_cond_signal(&s->keeper_cv);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->acked, acked);
    free_msgs(msgs, n);
}

void rd_sub_release(rd_sub *s, eb_msg *const *msgs, size_t n)
{
    /* The entries stay pending under this consumer: read again after a
     * rewind, handed over at leave, claimed after the idle time, or (keyed
     * mode) claimed by the partition's next owner. */
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < n; i++)
        unhold(s, (rd_msg *)msgs[i]);
    pthread_mutex_unlock(&s->mu);
    free_msgs(msgs, n);
}

void rd_sub_resume(rd_sub *s)
{
    pthread_mutex_lock(&s->mu);
    s->resume_requested = true;
    pthread_cond_signal(&s->reader_cv);
    pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------- delivery */

/** Hands msgs to the core; keeps what it refuses and pauses. `msgs` may
 *  be the unsent part of the refused list itself. */
static void deliver(rd_sub *s, rd_msg **msgs, size_t n)
{
    size_t k = s->host->deliver(s->hs, (eb_msg **)msgs, n);
    if (msgs == s->refused + s->refused_at) {
        s->refused_at += k;
    } else if (k < n) {
        /* Nothing was refused before (paused readers do not read). */
        memcpy(s->refused, msgs + k, (n - k) * sizeof *msgs);
        s->refused_at = 0;
        s->n_refused = n - k;
    }
    if (s->refused_at == s->n_refused)
        s->refused_at = s->n_refused = 0;
    if (k < n)
        s->paused = true;
}

/** Resumed: hands over the refused messages still of their lane's
 *  generation (a revoke drops its lane's; this is the safety net). */
static void deliver_refused(rd_sub *s)
{
    size_t keep = s->refused_at;
    pthread_mutex_lock(&s->mu);
    for (size_t i = s->refused_at; i < s->n_refused; i++) {
        rd_msg *m = s->refused[i];
        if (m->base.lane_generation == s->lanes[m->base.lane].generation) {
            s->refused[keep++] = m;
        } else {
            unhold(s, m);
            free_msgs((eb_msg **)&m, 1);
        }
    }
    pthread_mutex_unlock(&s->mu);
    s->n_refused = keep;
    if (s->refused_at < s->n_refused)
        deliver(s, s->refused + s->refused_at, s->n_refused - s->refused_at);
    else
        s->refused_at = s->n_refused = 0;
}

/** Drops the refused messages of `lane` (every lane: UINT32_MAX),
 *  unheld: their entries stay pending. */
static void drop_refused(rd_sub *s, uint32_t lane)
{
    size_t keep = s->refused_at;
    pthread_mutex_lock(&s->mu);
    for (size_t i = s->refused_at; i < s->n_refused; i++) {
        rd_msg *m = s->refused[i];
        if (lane == UINT32_MAX || m->base.lane == lane) {
            unhold(s, m);
            free_msgs((eb_msg **)&m, 1);
        } else {
            s->refused[keep++] = m;
        }
    }
    pthread_mutex_unlock(&s->mu);
    s->n_refused = keep;
    if (s->refused_at == s->n_refused) {
        s->refused_at = s->n_refused = 0;
        s->paused = false;
    }
}

static int64_t id_millis(const char *id) { return strtoll(id, NULL, 10); }

void rd_member_deliver_entries(rd_sub *s, unsigned lane, redisReply *reply,
                               const redisReply *entries, const uint32_t *counts,
                               uint32_t count, bool pending)
{
    /*
     * Each entry not held already, with its delivery count (counts[i], or
     * `count` for all). A pending id whose entry was deleted (trimmed) is
     * acknowledged and counted lost: nobody can handle it.
     *
     * `pending`: the entries were pending already (a reread of the own
     * ones, a claim), so some may have been handled and acknowledged since
     * the server replied, their XACK not sent or not answered yet: those
     * are skipped too (a linear search, on these rare reads only).
     */
    rd_lane *ln = &s->lanes[lane];
    size_t n = entries->elements;
    rd_batch *b = n ? malloc(sizeof *b + n * sizeof(rd_msg)) : NULL;
    if (!b) { /* nothing read, or out of memory: the entries are read again */
        freeReplyObject(reply);
        return;
    }
    char err[256];
    size_t k = 0;
    rd_id_list gone = {0};
    for (size_t i = 0; i < n; i++) {
        rd_entry e;
        int rc = rd_entry_read(entries->element[i], &e, err, sizeof err);
        if (rc == EB_ERR_NOT_FOUND) {
            id_list_push(&gone, entries->element[i]->element[0]->str);
            continue;
        }
        rd_msg *m = &b->msgs[k];
        int len = rc == 0 ? snprintf(m->id, sizeof m->id, "%u@%s", lane, e.id) : 0;
        if (rc != 0 || len < 0 || (size_t)len >= sizeof m->id) {
            s->host->log(s->rb->hb, EB_LOG_WARN, "redis: stream %s: an entry skipped: %s",
                         ln->stream, rc ? err : "id too long");
            if (rc == 0)
                rd_entry_free(&e);
            continue;
        }
        m->sid = strchr(m->id, '@') + 1;
        m->node = (rd_held_node){.id = m->id};
        m->batch = b;
        m->headers = e.headers;
        m->base = (eb_msg){.topic = s->topic,
                           .key = e.has_key ? e.key : NULL,
                           .key_len = e.has_key ? e.key_len : 0,
                           .payload = e.payload,
                           .payload_len = e.payload_len,
                           .headers = e.headers,
                           .header_count = e.header_count,
                           .id = m->id,
                           .timestamp_ms = id_millis(e.id),
                           .delivery_count = counts ? counts[i] : count,
                           .lane = lane};
        s->scratch[k++] = m;
    }
    size_t kept = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t j = 0; j < k; j++) {
        rd_msg *m = s->scratch[j];
        if ((pending && (id_list_has(&ln->acks, m->sid) || id_list_has(&ln->acking, m->sid))) ||
            rd_held_add(&s->held, &m->node) != 0) {
            free(m->headers); /* ours already (a reread or a claim of our own) */
            continue;
        }
        ln->held++;
        m->base.lane_generation = ln->generation;
        s->scratch[kept++] = m;
    }
    if (gone.n) {
        atomic_fetch_add(&s->lost_entries, gone.n);
        id_list_move(&ln->acks, &gone);
        pthread_cond_signal(&s->keeper_cv);
    }
    pthread_mutex_unlock(&s->mu);
    free(gone.buf);
    if (kept == 0) {
        freeReplyObject(reply);
        free(b);
        return;
    }
    atomic_init(&b->live, kept);
    b->reply = reply;
    atomic_fetch_add(&s->delivered, kept);
    deliver(s, s->scratch, kept);
}

void rd_member_count_deleted(rd_sub *s, unsigned lane, const redisReply *deleted)
{
    /* A deleted id a reread already counted (its XACK not yet done) is
     * reported again by a claim: count it once. */
    size_t newly_lost = 0;
    rd_lane *ln = &s->lanes[lane];
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; deleted && i < deleted->elements; i++) {
        const char *id = deleted->element[i]->str;
        newly_lost += id && !id_list_has(&ln->acks, id) && !id_list_has(&ln->acking, id);
    }
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->lost_entries, newly_lost);
}

typedef struct unheld {
    rd_sub *s;
    unsigned lane;
    rd_held_node **nodes;
    size_t n;
} unheld;

static int collect_lane(rd_held_node *node, void *ctx)
{
    unheld *u = ctx;
    rd_msg *m = (rd_msg *)((char *)node - offsetof(rd_msg, node));
    if (m->base.lane == u->lane)
        u->nodes[u->n++] = node;
    return 0;
}

void rd_member_revoke(rd_sub *s, unsigned lane, unsigned flags, int64_t deadline_ns)
{
    pthread_mutex_lock(&s->mu);
    eb_lane_ref ref = {lane, s->lanes[lane].generation};
    pthread_mutex_unlock(&s->mu);
    drop_refused(s, lane);
    if (has_revoke_until(s->host))
        s->host->revoke_until(s->hs, &ref, 1, deadline_ns, flags);
    else
        s->host->revoke(s->hs, &ref, 1);
    pthread_mutex_lock(&s->mu);
    rd_lane *ln = &s->lanes[lane];
    ln->generation++;
    if (ln->held) { /* lost: the core waited for nothing; acks of these are discarded */
        unheld u = {s, lane, malloc(ln->held * sizeof *u.nodes), 0};
        if (u.nodes) {
            rd_held_each(&s->held, collect_lane, &u);
            for (size_t i = 0; i < u.n; i++)
                rd_held_remove(&s->held, u.nodes[i]);
            ln->held -= u.n;
        } else if (s->n_lanes == 1) { /* out of memory: one lane is everything */
            rd_held_reset(&s->held);
            ln->held = 0;
        }
        free(u.nodes);
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---------------------------------------------------------------- reads */

/** Shared mode, XREADGROUP: own pending entries (with their delivery
 *  counts), or new ones. @returns 0, or -1 with a sentence (the
 *  connection is dropped). */
static int read_group(rd_sub *s, size_t room, bool block, char *err, size_t err_size)
{
    rd_lane *ln = &s->lanes[0];
    bool pending = strcmp(ln->grp.cursor, ">") != 0;
    redisReply *reply;
    const redisReply *entries;
    if (rd_group_read(&ln->grp, room, block ? s->set->block_ms : 0, &reply, &entries, err,
                      err_size) != 0)
        return -1;
    atomic_store(&s->recreated, ln->grp.recreated);
    uint32_t *counts = NULL;
    if (pending && entries->elements) {
        counts = calloc(entries->elements, sizeof *counts);
        if (!counts || rd_pending_deliveries(&s->rconn, ln->stream, s->group, entries, counts,
                                             err, err_size) != 0) {
            if (!counts)
                snprintf(err, err_size, "redis: out of memory");
            free(counts);
            freeReplyObject(reply);
            rd_group_rewind(&ln->grp);
            return -1;
        }
    }
    rd_member_deliver_entries(s, 0, reply, entries, counts, 1, pending);
    free(counts);
    return 0;
}

/** Shared mode: one XAUTOCLAIM page of entries idle past the claim idle
 *  time. */
static int claim_page(rd_sub *s, size_t room, char *err, size_t err_size)
{
    rd_lane *ln = &s->lanes[0];
    rd_claimed cl;
    if (rd_claim_idle(&s->rconn, ln->stream, s->group, s->rb->settings.consumer,
                      s->set->claim_idle_ms, s->claim_cursor, room, &cl, err, err_size) != 0) {
        if (!s->rconn.ctx || !strstr(err, "NOGROUP"))
            return -1;
        /* The group went away: reading makes it again and counts it. */
        snprintf(s->claim_cursor, sizeof s->claim_cursor, "0-0");
        s->next_claim_ns = now_ns(s) + (int64_t)CLAIM_EVERY_MS * 1000000;
        return 0;
    }
    rd_member_count_deleted(s, 0, cl.deleted);
    atomic_fetch_add(&s->claimed, cl.entries->elements);
    if (strcmp(cl.next, "0-0") == 0)
        s->next_claim_ns = now_ns(s) + (int64_t)CLAIM_EVERY_MS * 1000000;
    snprintf(s->claim_cursor, sizeof s->claim_cursor, "%s", cl.next);
    redisReply *reply = cl.reply;
    const redisReply *entries = cl.entries;
    uint32_t *counts = cl.deliveries;
    cl.reply = NULL;
    cl.deliveries = NULL;
    rd_claimed_free(&cl);
    rd_member_deliver_entries(s, 0, reply, entries, counts, 0, true);
    free(counts);
    return 0;
}

/** The lane of a stream named in a reply, or -1. */
static int lane_of_stream(const rd_sub *s, const char *stream)
{
    for (unsigned i = 0; i < s->n_lanes; i++)
        if (strcmp(s->lanes[i].stream, stream) == 0)
            return (int)i;
    return -1;
}

/** One plain XREAD BLOCK (COUNT 1) of the lanes marked in `which` from
 *  their `last` ids: the lanes with new entries become RD_LANE_NEW (what
 *  is new is then read by the lane's own read). @returns 0, or -1 with a
 *  sentence (the connection is closed). */
static int wait_new(rd_sub *s, const unsigned char *which, char *err, size_t err_size)
{
    size_t n = 0;
    for (unsigned i = 0; i < s->n_lanes; i++)
        n += which[i] != 0;
    if (n == 0)
        return 0;
    const char **argv = malloc((6 + 2 * n) * sizeof *argv);
    if (!argv) {
        snprintf(err, err_size, "redis: out of memory");
        return -1;
    }
    char block_s[24];
    snprintf(block_s, sizeof block_s, "%d", s->set->block_ms);
    int argc = 0;
    argv[argc++] = "XREAD";
    argv[argc++] = "COUNT";
    argv[argc++] = "1";
    argv[argc++] = "BLOCK";
    argv[argc++] = block_s;
    argv[argc++] = "STREAMS";
    for (unsigned i = 0; i < s->n_lanes; i++)
        if (which[i])
            argv[argc++] = s->lanes[i].stream;
    for (unsigned i = 0; i < s->n_lanes; i++)
        if (which[i])
            argv[argc++] = s->lanes[i].last;
    redisReply *r = rd_conn_command(&s->rconn, argc, argv, NULL, err, err_size);
    free(argv);
    if (!r)
        return -1;
    bool shape = r->type == REDIS_REPLY_NIL || r->type == REDIS_REPLY_ARRAY;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && shape && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        shape = e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
                e->element[0]->type == REDIS_REPLY_STRING;
    }
    if (!shape) {
        snprintf(err, err_size, "redis %s: XREAD: %s", s->set->url.display,
                 r->type == REDIS_REPLY_ERROR ? r->str : "a reply in an unexpected shape");
        freeReplyObject(r);
        rd_conn_close(&s->rconn);
        return -1;
    }
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        int lane = lane_of_stream(s, r->element[i]->element[0]->str);
        if (lane >= 0)
            s->lanes[lane].phase = RD_LANE_NEW;
    }
    freeReplyObject(r);
    return 0;
}

/** An anonymous member's read of one lane's new entries (no BLOCK). */
static int read_anon_lane(rd_sub *s, unsigned lane, size_t room, char *err, size_t err_size)
{
    rd_lane *ln = &s->lanes[lane];
    char count[24];
    snprintf(count, sizeof count, "%zu", room);
    const char *argv[] = {"XREAD", "COUNT", count, "STREAMS", ln->stream, ln->last};
    redisReply *r = rd_conn_command(&s->rconn, 6, argv, NULL, err, err_size);
    if (!r)
        return -1;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        ln->phase = RD_LANE_WAIT;
        return 0;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
        r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements != 2 ||
        r->element[0]->element[1]->type != REDIS_REPLY_ARRAY) {
        snprintf(err, err_size, "redis %s: XREAD %s: %s", s->set->url.display, ln->stream,
                 r->type == REDIS_REPLY_ERROR ? r->str : "a reply in an unexpected shape");
        freeReplyObject(r);
        rd_conn_close(&s->rconn);
        return -1;
    }
    const redisReply *entries = r->element[0]->element[1];
    if (entries->elements)
        snprintf(ln->last, sizeof ln->last, "%s",
                 entries->element[entries->elements - 1]->element[0]->str);
    if (entries->elements < room)
        ln->phase = RD_LANE_WAIT;
    rd_member_deliver_entries(s, lane, r, entries, NULL, 1, false);
    return 0;
}

/** The id of the lane's stream's last entry ("0-0" when empty or
 *  missing). */
static int last_entry_id(rd_sub *s, rd_lane *ln, char *err, size_t err_size)
{
    const char *argv[] = {"XREVRANGE", ln->stream, "+", "-", "COUNT", "1"};
    redisReply *r = rd_conn_command(&s->rconn, 6, argv, NULL, err, err_size);
    if (!r)
        return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 0)
        snprintf(ln->last, sizeof ln->last, "0-0");
    else if (r->type == REDIS_REPLY_ARRAY && r->element[0]->type == REDIS_REPLY_ARRAY &&
             r->element[0]->elements == 2)
        snprintf(ln->last, sizeof ln->last, "%s", r->element[0]->element[0]->str);
    else {
        snprintf(err, err_size, "redis %s: XREVRANGE %s: %s", s->set->url.display, ln->stream,
                 r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
        rc = -1;
    }
    freeReplyObject(r);
    return rc;
}

/* --------------------------------------------------------------- reader */

/** Connects the reader: its client id for CLIENT UNBLOCK; in shared mode
 *  the group (made at the start position the first time), own pending
 *  entries first; in keyed mode the topic record, and the owned lanes'
 *  pending entries first; an anonymous member's start positions. */
static int reader_connect(rd_sub *s, char *err, size_t err_size)
{
    if (rd_conn_open(&s->rconn, &s->set->url, s->set->timeouts, err, err_size) != 0)
        return -1;
    long long id = rd_conn_client_id(&s->rconn, err, err_size);
    int rc = id < 0 ? -1 : 0;
    if (rc == 0 && s->set->keyed) {
        rc = rd_meta_check(&s->rconn, s->topic, s->set->partitions, err, err_size);
        rc = rc == 0 ? 0 : -1; /* a refusal is retried: its sentence shows in the health */
    }
    rd_lane *ln0 = &s->lanes[0];
    if (rc == 0 && s->group && !s->keyed) {
        rc = rd_group_ensure(&ln0->grp, err, err_size);
        if (rc == 0 && !ln0->group_made) {
            ln0->group_made = true;
            ln0->grp.start_id = "0"; /* made again after a deletion: read all there is */
        }
        rd_group_rewind(&ln0->grp);
    } else if (rc == 0 && s->keyed) {
        /* A read the server answered before the connection died left its
         * entries pending under this consumer, unseen: each owned lane
         * claims again from the start, as when it was gained (what is
         * held here already is skipped by the delivery). */
        pthread_mutex_lock(&s->mu);
        for (unsigned i = 0; i < s->n_lanes; i++) {
            rd_lane *ln = &s->lanes[i];
            if (!ln->owned)
                continue;
            ln->phase = RD_LANE_CLAIM;
            snprintf(ln->cursor, sizeof ln->cursor, "0-0");
        }
        pthread_mutex_unlock(&s->mu);
    } else if (rc == 0 && !s->group) {
        for (unsigned i = 0; rc == 0 && i < s->n_lanes; i++) {
            rd_lane *ln = &s->lanes[i];
            if (ln->last[0])
                continue;
            if (s->start == EB_START_EARLIEST)
                snprintf(ln->last, sizeof ln->last, "0-0");
            else
                rc = last_entry_id(s, ln, err, err_size);
            ln->phase = RD_LANE_NEW;
        }
    }
    if (rc != 0) {
        rd_conn_close(&s->rconn);
        return -1;
    }
    pthread_mutex_lock(&s->mu);
    s->reader_client_id = id;
    pthread_mutex_unlock(&s->mu);
    char up[RD_URL_MAX + 64];
    snprintf(up, sizeof up, "redis %s: reader of %s connected", s->set->url.display, s->topic);
    set_link(s, &s->reader_link, RD_LINK_UP, up);
    if (!s->ready_sent && !s->keyed) { /* keyed: once the leaser settled */
        s->ready_sent = true;
        char detail[RD_NAME_MAX + 320];
        if (s->n_lanes == 1)
            snprintf(detail, sizeof detail, "stream %s as consumer %s", ln0->stream,
                     s->rb->settings.consumer);
        else
            snprintf(detail, sizeof detail, "%u partition streams of %s, read anonymously",
                     s->n_lanes, s->topic);
        s->host->event(s->rb->hb, EB_EVENT_ASSIGNED, s->topic, s->group, 0, detail);
        s->host->ready(s->hs);
    }
    return 0;
}

/** Shared mode: entries held here were claimed by another member: revoke
 *  the lane (lost: the core waits for nothing), then read the own pending
 *  entries again under a new generation. */
static void revoke_lost(rd_sub *s)
{
    rd_member_revoke(s, 0, EB_REVOKE_LOST, 0);
    rd_group_rewind(&s->lanes[0].grp);
    s->host->log(s->rb->hb, EB_LOG_WARN,
                 "redis: stream %s: entries held by consumer %s were claimed by another "
                 "member; reading its own pending entries again",
                 s->lanes[0].stream, s->rb->settings.consumer);
}

/** Under mu, then unlocked: the room of `lane` for one read. */
static size_t room_of(const rd_sub *s, const rd_lane *ln)
{
    size_t room = s->inflight_max - ln->held;
    return room > (size_t)s->set->count ? (size_t)s->set->count : room;
}

/** Shared mode's read: own pending entries, claims, new entries. Called
 *  under mu; returns unlocked. */
static int shared_step(rd_sub *s, char *err, size_t err_size)
{
    rd_lane *ln = &s->lanes[0];
    if (ln->held >= s->inflight_max) {
        s->reader_waiting = true;
        wait_until(s, &s->reader_cv, now_ns(s) + (int64_t)TICK_MS * 1000000);
        s->reader_waiting = false;
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    size_t room = room_of(s, ln);
    /* Claims wait until the own pending entries were read (after a
     * restart under the same name they are this member's to finish). */
    bool caught_up = strcmp(ln->grp.cursor, ">") == 0;
    bool claim = now_ns(s) >= s->next_claim_ns && caught_up;
    bool block = !claim && caught_up;
    s->reader_blocking = block;
    /* Entries read while pending may be acknowledged meanwhile: no XACK
     * completes until they were checked against the acks (see
     * rd_member_deliver_entries), or an entry could be handed over twice. */
    s->rereading = !block;
    pthread_mutex_unlock(&s->mu);
    int rc = claim ? claim_page(s, room, err, err_size) : read_group(s, room, block, err, err_size);
    pthread_mutex_lock(&s->mu);
    s->reader_blocking = false;
    if (s->rereading) {
        s->rereading = false;
        pthread_cond_signal(&s->keeper_cv);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/** The lanes' reads (keyed mode, anonymous members): lanes take turns; an
 *  owned lane with room that is not caught up is read once (claims
 *  first), else the caught-up ones are waited on with one XREAD BLOCK.
 *  Called under mu; returns unlocked. */
static int lanes_step(rd_sub *s, char *err, size_t err_size)
{
    unsigned n = s->n_lanes;
    unsigned char waiting[RD_PARTITIONS_MAX];
    bool any_wait = false;
    int pick = -1;
    for (unsigned i = 0; i < n; i++) {
        unsigned p = (s->next_lane + i) % n;
        const rd_lane *ln = &s->lanes[p];
        waiting[p] = 0;
        if (!ln->owned || ln->held >= s->inflight_max)
            continue;
        if (ln->phase == RD_LANE_WAIT) {
            waiting[p] = 1;
            any_wait = true;
        } else if (pick < 0) {
            pick = (int)p;
        }
    }
    if (pick >= 0) {
        rd_lane *ln = &s->lanes[pick];
        size_t room = room_of(s, ln);
        s->next_lane = (unsigned)pick + 1;
        s->rereading = s->group && ln->phase == RD_LANE_CLAIM; /* pending entries */
        pthread_mutex_unlock(&s->mu);
        int rc = s->group ? rd_keyed_read_lane(s, (unsigned)pick, room, err, err_size)
                          : read_anon_lane(s, (unsigned)pick, room, err, err_size);
        pthread_mutex_lock(&s->mu);
        if (s->rereading) {
            s->rereading = false;
            pthread_cond_signal(&s->keeper_cv);
        }
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    if (!any_wait || s->leases_changed) { /* nothing to read: room, news or stop wake it */
        s->reader_waiting = true;
        if (!s->leases_changed && !s->reader_stop)
            wait_until(s, &s->reader_cv,
                       now_ns(s) + (int64_t)(s->set->block_ms < TICK_MS ? s->set->block_ms
                                                                        : TICK_MS) *
                                       1000000);
        s->reader_waiting = false;
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    s->reader_blocking = true; /* news, room in a full lane and stop unblock it */
    pthread_mutex_unlock(&s->mu);
    int rc = wait_new(s, waiting, err, err_size);
    pthread_mutex_lock(&s->mu);
    s->reader_blocking = false;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/** One turn of the reader. @returns 0, or -1 with a sentence when its
 *  connection failed. */
static int reader_step(rd_sub *s, char *err, size_t err_size)
{
    if (s->keyed)
        rd_keyed_apply_leases(s); /* lost leases first, even while paused */
    pthread_mutex_lock(&s->mu);
    if (s->reader_stop) {
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    if (s->lost) {
        s->lost = false;
        pthread_mutex_unlock(&s->mu);
        revoke_lost(s);
        return 0;
    }
    if (s->paused) {
        bool go = s->resume_requested;
        s->resume_requested = false;
        if (!go && !s->leases_changed)
            wait_until(s, &s->reader_cv, now_ns(s) + (int64_t)TICK_MS * 1000000);
        pthread_mutex_unlock(&s->mu);
        if (go) {
            s->paused = false;
            deliver_refused(s);
        }
        return 0;
    }
    return s->group && !s->keyed ? shared_step(s, err, err_size)
                                 : lanes_step(s, err, err_size);
}

/** Sleeps ms, or until stop. */
static void reader_nap(rd_sub *s, int ms)
{
    pthread_mutex_lock(&s->mu);
    if (!s->reader_stop)
        wait_until(s, &s->reader_cv, now_ns(s) + (int64_t)ms * 1000000);
    pthread_mutex_unlock(&s->mu);
}

static bool reader_stopping(rd_sub *s)
{
    pthread_mutex_lock(&s->mu);
    bool stop = s->reader_stop;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

/** Leaving: every owned lane is revoked at once (handlers get until the
 *  leave deadline; the core returns what it holds). */
static void revoke_all(rd_sub *s)
{
    drop_refused(s, UINT32_MAX);
    eb_lane_ref refs[RD_PARTITIONS_MAX];
    size_t n = 0;
    pthread_mutex_lock(&s->mu);
    for (unsigned i = 0; i < s->n_lanes; i++)
        if (s->lanes[i].owned)
            refs[n++] = (eb_lane_ref){i, s->lanes[i].generation};
    int64_t deadline = s->leave_deadline_ns;
    pthread_mutex_unlock(&s->mu);
    if (n && has_revoke_until(s->host))
        s->host->revoke_until(s->hs, refs, n, deadline, 0);
    else if (n)
        s->host->revoke(s->hs, refs, n);
    pthread_mutex_lock(&s->mu);
    for (unsigned i = 0; i < s->n_lanes; i++)
        s->lanes[i].owned = false;
    pthread_mutex_unlock(&s->mu);
}

static void *reader_main(void *arg)
{
    rd_sub *s = arg;
    pthread_setname_np(pthread_self(), "eb-redis-read");
    int backoff = s->set->backoff_min_ms;
    char err[ERR_SIZE];
    while (!reader_stopping(s)) {
        int rc = s->rconn.ctx ? reader_step(s, err, sizeof err)
                              : reader_connect(s, err, sizeof err);
        if (rc == 0) {
            if (s->rconn.ctx)
                backoff = s->set->backoff_min_ms;
            continue;
        }
        if (s->rconn.ctx) /* a refused command: start over on a new connection */
            rd_conn_close(&s->rconn);
        atomic_fetch_add(&s->reconnects, 1);
        set_link(s, &s->reader_link, RD_LINK_DOWN, err);
        if (s->keyed) /* leases may be lost while the server is away */
            rd_keyed_apply_leases(s);
        reader_nap(s, backoff);
        backoff = backoff * 2 > s->set->backoff_max_ms ? s->set->backoff_max_ms : backoff * 2;
    }
    if (s->ready_sent)
        revoke_all(s);
    else
        drop_refused(s, UINT32_MAX);
    rd_conn_close(&s->rconn);
    rd_health_link_gone(&s->rb->health, &s->reader_link);
    return NULL;
}

/* --------------------------------------------------------------- keeper */

/** Ends the reader's blocking read, retrying while it has not reached
 *  the server yet (CLIENT UNBLOCK then answers 0). */
static void unblock_reader(rd_sub *s)
{
    char err[ERR_SIZE];
    for (int tries = 0; tries < UNBLOCK_TRIES; tries++) {
        pthread_mutex_lock(&s->mu);
        bool blocking = s->reader_blocking;
        long long id = s->reader_client_id;
        pthread_mutex_unlock(&s->mu);
        if (!blocking || id <= 0)
            return;
        int rc = rd_conn_unblock(&s->kconn, id, err, sizeof err);
        if (rc != 0)
            return; /* unblocked, or the connection failed (the read ends by its BLOCK) */
        sched_yield();
    }
}

/** XACK of `l` (ids of `ln`'s stream) in batches. @returns 0; -1 when
 *  the connection failed (send them all again: XACK of an id acknowledged
 *  already is a no-op). A refused XACK drops its ids (they are
 *  redelivered). */
static int send_acks(rd_sub *s, rd_lane *ln, const rd_id_list *l)
{
    char err[ERR_SIZE];
    const char *ids[ACKS_PER_XACK];
    size_t n = 0, at = 0;
    while (at < l->len) {
        ids[n++] = l->buf + at;
        at += strlen(l->buf + at) + 1;
        if (n < ACKS_PER_XACK && at < l->len)
            continue;
        if (rd_group_ack(&ln->kgrp, ids, n, err, sizeof err) < 0) {
            if (!s->kconn.ctx) {
                set_link(s, &s->keeper_link, RD_LINK_DOWN, err);
                return -1;
            }
            atomic_fetch_add(&s->ack_failures, n);
            s->host->log(s->rb->hb, EB_LOG_WARN, "%s", err);
        }
        n = 0;
    }
    return 0;
}

typedef struct held_ids {
    char *buf;
    const char **ids;
    size_t n;
} held_ids;

static int collect_id(rd_held_node *node, void *ctx)
{
    held_ids *h = ctx;
    char *slot = h->buf + h->n * RD_ID_MAX;
    snprintf(slot, RD_ID_MAX, "%s", node->id + 2); /* "0@": shared mode's one lane */
    h->ids[h->n++] = slot;
    return 0;
}

/** Shared mode: resets the idle time of every entry held; entries claimed
 *  away meanwhile make the reader revoke the lane. @returns 0 or -1
 *  (connection). */
static int refresh_held(rd_sub *s)
{
    char err[ERR_SIZE];
    pthread_mutex_lock(&s->mu);
    size_t n = s->held.count;
    held_ids h = {malloc(n * RD_ID_MAX + 1), malloc((n + 1) * sizeof(char *)), 0};
    const char **lost = malloc((n + 1) * sizeof *lost);
    if (h.buf && h.ids && lost)
        rd_held_each(&s->held, collect_id, &h);
    pthread_mutex_unlock(&s->mu);
    int rc = 0;
    size_t n_lost = 0;
    if (h.n && rd_refresh(&s->kconn, s->lanes[0].stream, s->group, s->rb->settings.consumer, h.ids,
                          h.n, lost, &n_lost, err, sizeof err) != 0) {
        if (!s->kconn.ctx) {
            set_link(s, &s->keeper_link, RD_LINK_DOWN, err);
            rc = -1;
        } else {
            s->host->log(s->rb->hb, EB_LOG_WARN, "%s", err);
        }
        n_lost = 0;
    }
    if (n_lost) {
        size_t still = 0;
        pthread_mutex_lock(&s->mu);
        for (size_t i = 0; i < n_lost; i++) {
            char id[RD_ID_MAX];
            snprintf(id, sizeof id, "0@%s", lost[i]);
            still += rd_held_find(&s->held, id) != NULL; /* not acked meanwhile */
        }
        if (still) {
            s->lost = true;
            s->unblock_wanted = true;
            pthread_cond_signal(&s->reader_cv);
        }
        pthread_mutex_unlock(&s->mu);
        atomic_fetch_add(&s->claimed_away, still);
    }
    free(h.buf);
    free(h.ids);
    free(lost);
    return rc;
}

/** The group's lag and pending count on one stream (XINFO GROUPS), added
 *  to *lag and *pending (-1 stays when the stream or group is missing). */
static void read_lag(rd_sub *s, const rd_lane *ln, long long *lag_sum, long long *pending_sum)
{
    char err[ERR_SIZE];
    const char *argv[] = {"XINFO", "GROUPS", ln->stream};
    redisReply *r = rd_conn_command(&s->kconn, 3, argv, NULL, err, sizeof err);
    if (!r)
        return;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *g = r->element[i];
        if (g->type != REDIS_REPLY_ARRAY)
            continue;
        bool ours = false;
        long long lag = -1, pending = -1;
        for (size_t j = 0; j + 1 < g->elements; j += 2) {
            const char *f = g->element[j]->str;
            const redisReply *v = g->element[j + 1];
            if (!f)
                continue;
            if (strcmp(f, "name") == 0 && v->str)
                ours = strcmp(v->str, s->group) == 0;
            else if (strcmp(f, "lag") == 0 && v->type == REDIS_REPLY_INTEGER)
                lag = v->integer;
            else if (strcmp(f, "pending") == 0 && v->type == REDIS_REPLY_INTEGER)
                pending = v->integer;
        }
        if (ours && lag >= 0)
            *lag_sum = (*lag_sum < 0 ? 0 : *lag_sum) + lag;
        if (ours && pending >= 0)
            *pending_sum = (*pending_sum < 0 ? 0 : *pending_sum) + pending;
    }
    freeReplyObject(r);
}

static int keeper_connect(rd_sub *s)
{
    char err[ERR_SIZE];
    if (rd_conn_open(&s->kconn, &s->set->url, s->set->timeouts, err, sizeof err) != 0) {
        set_link(s, &s->keeper_link, RD_LINK_DOWN, err);
        return -1;
    }
    char up[RD_URL_MAX + 64];
    snprintf(up, sizeof up, "redis %s: keeper of %s connected", s->set->url.display, s->topic);
    set_link(s, &s->keeper_link, RD_LINK_UP, up);
    return 0;
}

/** Closing: acknowledged what finished; hands the rest over and leaves. */
static void keeper_leave(rd_sub *s)
{
    char err[ERR_SIZE];
    if (!s->group)
        return;
    /* Keyed: every partition this member read (the reader has ended); the
     * next owner claims what is left anyway. */
    for (unsigned i = 0; i < s->n_lanes && s->kconn.ctx; i++) {
        rd_lane *ln = &s->lanes[i];
        if (s->keyed && !ln->group_made)
            continue;
        long long handed = rd_consumer_leave(&s->kconn, ln->stream, s->group,
                                             s->rb->settings.consumer, err, sizeof err);
        if (handed < 0)
            s->host->log(s->rb->hb, EB_LOG_WARN, "%s", err);
        else if (handed > 0)
            s->host->log(s->rb->hb, EB_LOG_INFO,
                         "redis: stream %s: %lld unfinished entries of consumer %s handed to "
                         "the group's other members",
                         ln->stream, handed, s->rb->settings.consumer);
    }
}

/** Under mu: are acks waiting or being sent, on any lane? */
static bool acks_waiting(const rd_sub *s)
{
    for (unsigned i = 0; i < s->n_lanes; i++)
        if (s->lanes[i].acks.n || s->lanes[i].acking.n)
            return true;
    return false;
}

/** Sends every lane's `acking` list. @returns 0, or -1 when the
 *  connection failed (the lists stay: all again on the next one). */
static int send_all_acks(rd_sub *s)
{
    for (unsigned i = 0; i < s->n_lanes; i++) {
        rd_lane *ln = &s->lanes[i];
        if (ln->acking.n && send_acks(s, ln, &ln->acking) != 0)
            return -1;
    }
    pthread_mutex_lock(&s->mu);
    while (s->rereading) /* it may have read them as pending: they stay known */
        pthread_cond_wait(&s->keeper_cv, &s->mu);
    for (unsigned i = 0; i < s->n_lanes; i++)
        s->lanes[i].acking.len = s->lanes[i].acking.n = 0;
    pthread_cond_broadcast(&s->reader_cv); /* a lane given up waits for its acks */
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/** Once a second: refreshes (shared mode), the lag, prunes. */
static void keeper_tick(rd_sub *s, int64_t now, int64_t *next_refresh, int64_t refresh_every,
                        int64_t *next_prune)
{
    char err[ERR_SIZE];
    if (!s->keyed && now >= *next_refresh && refresh_held(s) == 0)
        *next_refresh = now + refresh_every;
    bool prune = now >= *next_prune;
    if (prune)
        *next_prune = now + s->set->prune_idle_ms / 2 * 1000000;
    long long lag = -1, pending = -1;
    for (unsigned i = 0; i < s->n_lanes && s->kconn.ctx; i++) {
        const rd_lane *ln = &s->lanes[i];
        pthread_mutex_lock(&s->mu);
        bool owned = ln->owned;
        pthread_mutex_unlock(&s->mu);
        if (!owned && s->keyed)
            continue;
        long long lane_lag = -1, lane_pending = -1;
        read_lag(s, ln, &lane_lag, &lane_pending);
        atomic_store(&s->lanes[i].lag, lane_lag);
        atomic_store(&s->lanes[i].pending, lane_pending);
        if (lane_lag >= 0)
            lag = (lag < 0 ? 0 : lag) + lane_lag;
        if (lane_pending >= 0)
            pending = (pending < 0 ? 0 : pending) + lane_pending;
        if (prune && s->kconn.ctx &&
            rd_consumers_prune(&s->kconn, ln->stream, s->group, s->rb->settings.consumer,
                               s->set->prune_idle_ms, err, sizeof err) < 0 &&
            !strstr(err, "NOGROUP") && !strstr(err, "no such key"))
            s->host->log(s->rb->hb, EB_LOG_WARN, "%s", err);
    }
    atomic_store(&s->lag, lag);
    atomic_store(&s->pending, pending);
    if (!s->kconn.ctx)
        set_link(s, &s->keeper_link, RD_LINK_DOWN, "redis: the keeper's connection failed");
}

static void *keeper_main(void *arg)
{
    rd_sub *s = arg;
    pthread_setname_np(pthread_self(), "eb-redis-keep");
    int backoff = s->set->backoff_min_ms;
    int64_t refresh_every = s->set->claim_idle_ms / 3 * 1000000;
    /* The first prune waits for the reader to make the group. */
    int64_t next_tick = 0, next_refresh = now_ns(s) + refresh_every,
            next_prune = now_ns(s) + refresh_every;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->keeper_stop && !acks_waiting(s) && !s->unblock_wanted &&
               now_ns(s) < next_tick)
            wait_until(s, &s->keeper_cv, next_tick);
        bool stopping = s->keeper_stop;
        int64_t deadline = s->leave_deadline_ns;
        bool unblock = s->unblock_wanted;
        s->unblock_wanted = false;
        bool acking = false;
        for (unsigned i = 0; i < s->n_lanes; i++) {
            rd_lane *ln = &s->lanes[i];
            if (!s->rereading)
                id_list_move(&ln->acking, &ln->acks);
            acking |= ln->acking.n > 0;
        }
        pthread_mutex_unlock(&s->mu);
        int64_t now = now_ns(s);
        if (stopping && now >= deadline) {
            pthread_mutex_lock(&s->mu);
            if (acks_waiting(s))
                s->leave_rc = EB_ERR_TIMEOUT;
            pthread_mutex_unlock(&s->mu);
            break;
        }
        if (!s->kconn.ctx && keeper_connect(s) != 0) {
            pthread_mutex_lock(&s->mu);
            s->unblock_wanted |= unblock;
            int64_t until = now + (int64_t)backoff * 1000000;
            if (stopping && until > deadline)
                until = deadline;
            while (now_ns(s) < until && s->keeper_stop == stopping) /* acks do not cut it */
                wait_until(s, &s->keeper_cv, until);
            pthread_mutex_unlock(&s->mu);
            backoff = backoff * 2 > s->set->backoff_max_ms ? s->set->backoff_max_ms : backoff * 2;
            continue;
        }
        backoff = s->set->backoff_min_ms;
        if (unblock)
            unblock_reader(s);
        if (acking && send_all_acks(s) != 0)
            continue; /* all again on the next connection */
        if (stopping) {
            pthread_mutex_lock(&s->mu);
            bool more = acks_waiting(s);
            pthread_mutex_unlock(&s->mu);
            if (more)
                continue;
            keeper_leave(s);
            break;
        }
        if (now >= next_tick) {
            next_tick = now + (int64_t)TICK_MS * 1000000;
            if (s->group)
                keeper_tick(s, now, &next_refresh, refresh_every, &next_prune);
        }
    }
    rd_conn_close(&s->kconn);
    rd_health_link_gone(&s->rb->health, &s->keeper_link);
    return NULL;
}

/* ------------------------------------------------------------ lifecycle */

void rd_sub_free(rd_sub *s)
{
    if (!s)
        return;
    rd_bus *rb = s->rb;
    pthread_mutex_lock(&rb->mu);
    for (rd_sub **at = &rb->subs; *at; at = &(*at)->next)
        if (*at == s) {
            *at = s->next;
            break;
        }
    pthread_mutex_unlock(&rb->mu);
    for (size_t i = s->refused_at; i < s->n_refused; i++)
        free_msgs((eb_msg **)&s->refused[i], 1);
    rd_held_free(&s->held);
    for (unsigned i = 0; s->lanes && i < s->n_lanes; i++) {
        free(s->lanes[i].acks.buf);
        free(s->lanes[i].acking.buf);
    }
    free(s->lanes);
    free(s->view_mem);
    free(s->refused);
    free(s->scratch);
    free(s->topic);
    free(s->group);
    pthread_cond_destroy(&s->reader_cv);
    pthread_cond_destroy(&s->keeper_cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
    rd_bus_unref(rb);
}

/** Names and starts the lanes: one per partition (keyed mode, or an
 *  anonymous member of a partitioned topic), else the topic's stream. */
static int make_lanes(rd_sub *s, unsigned partitions)
{
    s->n_lanes = partitions;
    s->lanes = calloc(partitions, sizeof *s->lanes);
    if (!s->lanes)
        return EB_ERR_NOMEM;
    const char *start = s->start == EB_START_LATEST ? "$" : "0";
    for (unsigned i = 0; i < partitions; i++) {
        rd_lane *ln = &s->lanes[i];
        if (rd_partition_stream(ln->stream, sizeof ln->stream, s->topic, partitions, i) != 0 ||
            (s->keyed && rd_lease_key(ln->lease_key, sizeof ln->lease_key, s->topic,
                                      s->group, i) != 0))
            return EB_ERR_INVALID;
        ln->generation = 1;
        atomic_init(&ln->lag, -1);
        atomic_init(&ln->pending, -1);
        ln->owned = !s->keyed; /* keyed: while its lease is held */
        ln->phase = RD_LANE_CLAIM;
        snprintf(ln->cursor, sizeof ln->cursor, "0-0");
        rd_group_init(&ln->grp, &s->rconn, ln->stream, s->group, s->rb->settings.consumer,
                      start);
        rd_group_init(&ln->kgrp, &s->kconn, ln->stream, s->group, s->rb->settings.consumer,
                      "0");
    }
    return 0;
}

/** Keyed mode at subscribe: the topic's record in Redis must agree with
 *  redis.partitions (a server that does not answer is asked again by the
 *  reader, which waits until the record agrees). */
static int check_meta(rd_sub *s, char *errstr, size_t errstr_size)
{
    rd_conn c = {0};
    char err[ERR_SIZE];
    if (rd_conn_open(&c, &s->set->url, s->set->timeouts, err, sizeof err) != 0)
        return 0;
    int rc = rd_meta_check(&c, s->topic, s->set->partitions, errstr, errstr_size);
    rd_conn_close(&c);
    return rc == EB_ERR_CONFIG ? EB_ERR_CONFIG : 0;
}

int rd_sub_start(rd_bus *rb, eb_host_sub *hs, const eb_sub_params *p, rd_sub **out,
                 char *errstr, size_t errstr_size)
{
    rd_sub *s = calloc(1, sizeof *s);
    if (!s)
        return EB_ERR_NOMEM;
    s->rb = rb;
    s->set = &rb->settings;
    s->host = rb->host;
    s->hs = hs;
    s->inflight_max = p->lane_max_inflight ? p->lane_max_inflight : 1;
    s->start = p->start;
    s->keyed = rb->settings.keyed && p->group;
    s->reader_link = s->keeper_link = RD_LINK_UNKNOWN;
    atomic_init(&s->lag, -1);
    atomic_init(&s->pending, -1);
    snprintf(s->claim_cursor, sizeof s->claim_cursor, "0-0");
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->reader_cv, &attr);
    pthread_cond_init(&s->keeper_cv, &attr);
    pthread_condattr_destroy(&attr);
    s->topic = strdup(p->topic);
    s->group = p->group ? strdup(p->group) : NULL;
    size_t scratch = (size_t)rb->settings.count;
    s->refused = calloc(scratch, sizeof *s->refused);
    s->scratch = calloc(scratch, sizeof *s->scratch);
    pthread_mutex_lock(&rb->mu);
    s->next = rb->subs;
    rb->subs = s;
    rb->refs++;
    pthread_mutex_unlock(&rb->mu);
    int rc = !s->topic || (p->group && !s->group) || !s->refused || !s->scratch
                 ? EB_ERR_NOMEM
                 : make_lanes(s, rb->settings.keyed ? rb->settings.partitions : 1);
    if (rc == EB_ERR_INVALID)
        snprintf(errstr, errstr_size, "redis transport: topic '%s' makes a key name too long",
                 p->topic);
    if (rc == 0 && rb->settings.keyed)
        rc = check_meta(s, errstr, errstr_size);
    if (rc == 0 && s->keyed)
        rc = rd_keyed_start(s, errstr, errstr_size);
    if (rc != 0) {
        rd_sub_free(s);
        return rc;
    }
    if (pthread_create(&s->keeper, NULL, keeper_main, s) != 0) {
        rd_keyed_stop(s);
        rd_sub_free(s);
        snprintf(errstr, errstr_size, "redis transport: cannot subscribe to '%s': no threads",
                 p->topic);
        return EB_ERR_NOMEM;
    }
    if (pthread_create(&s->reader, NULL, reader_main, s) != 0) {
        pthread_mutex_lock(&s->mu);
        s->keeper_stop = true;
        s->leave_deadline_ns = now_ns(s);
        pthread_cond_signal(&s->keeper_cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->keeper, NULL);
        rd_keyed_stop(s);
        rd_sub_free(s);
        snprintf(errstr, errstr_size, "redis transport: cannot subscribe to '%s': no threads",
                 p->topic);
        return EB_ERR_NOMEM;
    }
    *out = s;
    return 0;
}

int rd_sub_stop(rd_sub *s, int64_t deadline_ns)
{
    if (deadline_ns == 0)
        deadline_ns = now_ns(s) + (int64_t)s->set->timeouts.command_ms * 1000000;
    pthread_mutex_lock(&s->mu);
    s->reader_stop = true;
    s->leave_deadline_ns = deadline_ns;
    s->unblock_wanted = true;
    pthread_cond_signal(&s->reader_cv);
    pthread_cond_signal(&s->keeper_cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->reader, NULL);
    pthread_mutex_lock(&s->mu);
    s->keeper_stop = true;
    pthread_cond_signal(&s->keeper_cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->keeper, NULL);
    rd_keyed_stop(s); /* releases the leases once the acks went out */
    return s->leave_rc;
}

static void sub_stats(rd_sub *s, eb_json_out *out)
{
    eb_json_out o = *out;
    pthread_mutex_lock(&s->mu);
    size_t held = s->held.count;
    pthread_mutex_unlock(&s->mu);
    eb_json_printf(&o, "{\"stream\":");
    eb_json_string(&o, s->lanes[0].stream);
    eb_json_printf(&o, ",\"group\":");
    if (s->group)
        eb_json_string(&o, s->group);
    else
        eb_json_printf(&o, "null");
    eb_json_printf(&o, ",\"consumer\":");
    eb_json_string(&o, s->rb->settings.consumer);
    eb_json_printf(&o,
                   ",\"held\":%zu,\"delivered\":%llu,\"acked\":%llu,\"claimed\":%llu,"
                   "\"claimed_away\":%llu,\"lost\":%llu,\"group_recreated\":%llu,"
                   "\"reconnects\":%llu,\"ack_failures\":%llu,\"lag\":%lld,\"pending\":%lld",
                   held, (unsigned long long)atomic_load(&s->delivered),
                   (unsigned long long)atomic_load(&s->acked),
                   (unsigned long long)atomic_load(&s->claimed),
                   (unsigned long long)atomic_load(&s->claimed_away),
                   (unsigned long long)atomic_load(&s->lost_entries),
                   (unsigned long long)atomic_load(&s->recreated),
                   (unsigned long long)atomic_load(&s->reconnects),
                   (unsigned long long)atomic_load(&s->ack_failures),
                   atomic_load(&s->lag), atomic_load(&s->pending));
    if (s->keyed)
        rd_keyed_stats(s, &o);
    eb_json_printf(&o, "}");
    *out = o;
}

void rd_subs_stats(rd_bus *rb, eb_json_out *o)
{
    eb_json_printf(o, "[");
    pthread_mutex_lock(&rb->mu);
    for (rd_sub *s = rb->subs; s; s = s->next) {
        sub_stats(s, o);
        if (s->next)
            eb_json_printf(o, ",");
    }
    pthread_mutex_unlock(&rb->mu);
    eb_json_printf(o, "]");
}
