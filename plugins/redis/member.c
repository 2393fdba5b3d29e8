/*
 * member.c — one subscription of the Redis transport in shared group mode:
 * the group's consumer `redis.consumer` on the topic's stream, read by two
 * threads with a connection each.
 *
 *  - The reader (eb-redis-read) reads: this consumer's own pending entries
 *    first (at start and after every reconnect), then new ones with a
 *    bounded BLOCK, and every second a page of entries any consumer left
 *    idle longer than redis.claim.idle.ms (XAUTOCLAIM). It hands them to
 *    the core as lane 0, keeps what the core refuses until resume(), and
 *    never holds more than dispatch.lane.max.inflight entries.
 *  - The keeper (eb-redis-keep) acknowledges finished ids in batches
 *    (XACK), refreshes the idle time of every entry held every third of
 *    the claim idle time (only those still pending under this consumer:
 *    refresh.c), reads the group's lag, prunes dead consumers, and ends the
 *    reader's blocked read (CLIENT UNBLOCK) when it must stop or rewind.
 *
 * An entry claimed away by another member while held here (this member's
 * refreshes did not reach the server in time) revokes the lane with the
 * lost flag: the held set is emptied, the lane's generation goes up, and
 * the reader reads the own pending entries again.
 *
 * An anonymous member (NULL group) reads with plain XREAD from the last
 * entry at subscribe time; it acknowledges nothing and leaves nothing.
 *
 * Locking: s->mu guards everything marked so; ack/release/resume take it
 * briefly and never call Redis. The reader calls the core (deliver,
 * revoke, ready) holding no lock.
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "claim.h"
#include "consumers.h"
#include "fields.h"
#include "group.h"
#include "held.h"
#include "json_out.h"
#include "redis.h"
#include "refresh.h"

enum {
    ERR_SIZE = RD_URL_MAX + 512,
    ID_MAX = 48,             /* "0@" + a stream id (at most 41) + NUL */
    CLAIM_EVERY_MS = 1000,   /* a claim page at most this often once caught up */
    TICK_MS = 1000,          /* the keeper's lag reading */
    ACKS_PER_XACK = 1000,
    UNBLOCK_TRIES = 100,
};

typedef struct rd_batch rd_batch;

/** A message handed to the core; the ones of one read share a batch. */
typedef struct rd_msg {
    eb_msg base;
    rd_held_node node;       /* node.id points at id + 2 */
    rd_batch *batch;
    eb_header *headers;      /* malloc'd by rd_entry_read */
    char id[ID_MAX];         /* "0@<stream id>" */
} rd_msg;

struct rd_batch {
    atomic_size_t live;      /* messages not yet returned */
    redisReply *reply;       /* the strings the messages point into */
    rd_msg msgs[];
};

/** Stream ids, NUL-separated in one buffer. */
typedef struct id_list {
    char *buf;
    size_t len, cap, n;
} id_list;

struct rd_sub {
    rd_sub *next;            /* the bus's list, under rb->mu */
    rd_bus *rb;
    const rd_settings *set;
    const eb_host *host;
    eb_host_sub *hs;
    char *topic, *group, *stream;
    uint32_t inflight_max;
    eb_start_position start;
    pthread_t reader, keeper;

    pthread_mutex_t mu;
    pthread_cond_t reader_cv; /* room, resume, stop */
    pthread_cond_t keeper_cv; /* acks, unblock requests, stop */
    /* under mu */
    rd_held held;
    uint64_t generation;     /* of lane 0 */
    id_list acks;            /* finished, for the keeper's next XACK */
    id_list acking;          /* in the keeper's XACK now (it reads it unlocked) */
    bool rereading;          /* the reader reads pending entries: XACKs wait */
    bool reader_stop, keeper_stop;
    bool resume_requested;
    bool lost;               /* the keeper found held entries claimed away */
    bool reader_waiting;     /* on reader_cv for room */
    bool reader_blocking;    /* in a blocking read */
    bool unblock_wanted;
    long long reader_client_id;
    int64_t leave_deadline_ns;
    int leave_rc;

    /* the reader's */
    rd_conn rconn;
    rd_group grp;
    int reader_link;
    bool ready_sent, group_made, paused;
    rd_msg **refused;        /* deliver() refused these, in order */
    size_t n_refused, refused_at;
    rd_msg **scratch;        /* one read's messages */
    char claim_cursor[64];
    int64_t next_claim_ns;
    char anon_last[64];      /* XREAD position of an anonymous member */

    /* the keeper's */
    rd_conn kconn;
    rd_group kgrp;
    int keeper_link;

    /* stats */
    _Atomic uint64_t delivered, acked, claimed, claimed_away, lost_entries, recreated,
        reconnects, ack_failures;
    _Atomic long long lag, pending;
};

/* --------------------------------------------------------------- helpers */

static int64_t now_ns(const rd_sub *s) { return s->host->now_ns(); }

static struct timespec abs_time(int64_t ns)
{
    return (struct timespec){.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
}

/** Under mu: waits on cv until woken or deadline_ns. */
static void wait_until(rd_sub *s, pthread_cond_t *cv, int64_t deadline_ns)
{
    struct timespec ts = abs_time(deadline_ns);
    pthread_cond_timedwait(cv, &s->mu, &ts);
}

static bool id_list_push(id_list *l, const char *id)
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

static bool id_list_has(const id_list *l, const char *id)
{
    for (size_t at = 0; at < l->len; at += strlen(l->buf + at) + 1)
        if (strcmp(l->buf + at, id) == 0)
            return true;
    return false;
}

/** Moves every id of `from` to the end of `to` (from is left empty). */
static void id_list_move(id_list *to, id_list *from)
{
    if (to->n == 0) {
        id_list t = *to;
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

/* ------------------------------------------------------ the core's calls */

void rd_sub_ack(rd_sub *s, eb_msg *const *msgs, size_t n)
{
    pthread_mutex_lock(&s->mu);
    size_t acked = 0;
    for (size_t i = 0; i < n; i++) {
        rd_msg *m = (rd_msg *)msgs[i];
        if (!rd_held_remove(&s->held, &m->node))
            continue; /* from before a lost revoke: its entry is read again */
        acked++;
        if (s->group && !id_list_push(&s->acks, m->node.id))
            atomic_fetch_add(&s->ack_failures, 1); /* redelivered later: never lost */
    }
    if (acked && s->group)
        pthread_cond_signal(&s->keeper_cv);
    if (acked && s->reader_waiting)
        pthread_cond_signal(&s->reader_cv);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->acked, acked);
    free_msgs(msgs, n);
}

void rd_sub_release(rd_sub *s, eb_msg *const *msgs, size_t n)
{
    /* The entries stay pending under this consumer: read again after a
     * rewind, handed over at leave, or claimed after the idle time. */
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < n; i++)
        rd_held_remove(&s->held, &((rd_msg *)msgs[i])->node);
    if (s->reader_waiting)
        pthread_cond_signal(&s->reader_cv);
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

/** Resumed: hands over the refused messages still of this generation. */
static void deliver_refused(rd_sub *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t gen = s->generation;
    pthread_mutex_unlock(&s->mu);
    size_t keep = s->refused_at;
    for (size_t i = s->refused_at; i < s->n_refused; i++) {
        if (s->refused[i]->base.lane_generation == gen)
            s->refused[keep++] = s->refused[i];
        else
            free_msgs((eb_msg **)&s->refused[i], 1);
    }
    s->n_refused = keep;
    if (s->refused_at < s->n_refused)
        deliver(s, s->refused + s->refused_at, s->n_refused - s->refused_at);
    else
        s->refused_at = s->n_refused = 0;
}

/** Drops every refused message (unheld: their entries stay pending). */
static void drop_refused(rd_sub *s)
{
    pthread_mutex_lock(&s->mu);
    for (size_t i = s->refused_at; i < s->n_refused; i++)
        rd_held_remove(&s->held, &s->refused[i]->node);
    pthread_mutex_unlock(&s->mu);
    for (size_t i = s->refused_at; i < s->n_refused; i++)
        free_msgs((eb_msg **)&s->refused[i], 1);
    s->refused_at = s->n_refused = 0;
    s->paused = false;
}

static int64_t id_millis(const char *id) { return strtoll(id, NULL, 10); }

/**
 * Hands the entries of one read to the core (taking `reply`): each one
 * not held already, with its delivery count (counts[i], or `count` for
 * all). A pending id whose entry was deleted (trimmed) is acknowledged
 * and counted lost: nobody can handle it.
 *
 * `pending`: the entries were pending already (a reread of the own ones,
 * a claim), so some may have been handled and acknowledged since the
 * server replied, their XACK not sent or not answered yet: those are
 * skipped too (a linear search, on these rare reads only).
 */
static void deliver_entries(rd_sub *s, redisReply *reply, const redisReply *entries,
                            const uint32_t *counts, uint32_t count, bool pending)
{
    size_t n = entries->elements;
    rd_batch *b = n ? malloc(sizeof *b + n * sizeof(rd_msg)) : NULL;
    if (!b) { /* nothing read, or out of memory: the entries are read again */
        freeReplyObject(reply);
        return;
    }
    char err[256];
    size_t k = 0;
    id_list gone = {0};
    for (size_t i = 0; i < n; i++) {
        rd_entry e;
        int rc = rd_entry_read(entries->element[i], &e, err, sizeof err);
        if (rc == EB_ERR_NOT_FOUND) {
            id_list_push(&gone, entries->element[i]->element[0]->str);
            continue;
        }
        if (rc != 0 || strlen(e.id) + 3 > ID_MAX) {
            s->host->log(s->rb->hb, EB_LOG_WARN, "redis: stream %s: an entry skipped: %s",
                         s->stream, rc ? err : "id too long");
            if (rc == 0)
                rd_entry_free(&e);
            continue;
        }
        rd_msg *m = &b->msgs[k];
        snprintf(m->id, sizeof m->id, "0@%s", e.id);
        m->node = (rd_held_node){.id = m->id + 2};
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
                           .lane = 0};
        s->scratch[k++] = m;
    }
    size_t kept = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t j = 0; j < k; j++) {
        rd_msg *m = s->scratch[j];
        if ((pending && (id_list_has(&s->acks, m->node.id) ||
                         id_list_has(&s->acking, m->node.id))) ||
            rd_held_add(&s->held, &m->node) != 0) {
            free(m->headers); /* ours already (a reread or a claim of our own) */
            continue;
        }
        m->base.lane_generation = s->generation;
        s->scratch[kept++] = m;
    }
    if (gone.n) {
        atomic_fetch_add(&s->lost_entries, gone.n);
        id_list_move(&s->acks, &gone);
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

/* ---------------------------------------------------------------- reads */

/** XREADGROUP: own pending entries (with their delivery counts), or new
 *  ones. @returns 0, or -1 with a sentence (the connection is dropped). */
static int read_group(rd_sub *s, size_t room, bool block, char *err, size_t err_size)
{
    bool pending = strcmp(s->grp.cursor, ">") != 0;
    redisReply *reply;
    const redisReply *entries;
    if (rd_group_read(&s->grp, room, block ? s->set->block_ms : 0, &reply, &entries, err,
                      err_size) != 0)
        return -1;
    atomic_store(&s->recreated, s->grp.recreated);
    uint32_t *counts = NULL;
    if (pending && entries->elements) {
        counts = calloc(entries->elements, sizeof *counts);
        if (!counts || rd_pending_deliveries(&s->rconn, s->stream, s->group, entries, counts,
                                             err, err_size) != 0) {
            if (!counts)
                snprintf(err, err_size, "redis: out of memory");
            free(counts);
            freeReplyObject(reply);
            rd_group_rewind(&s->grp);
            return -1;
        }
    }
    deliver_entries(s, reply, entries, counts, 1, pending);
    free(counts);
    return 0;
}

/** One XAUTOCLAIM page of entries idle past the claim idle time. */
static int claim_page(rd_sub *s, size_t room, char *err, size_t err_size)
{
    rd_claimed cl;
    if (rd_claim_idle(&s->rconn, s->stream, s->group, s->rb->settings.consumer,
                      s->set->claim_idle_ms, s->claim_cursor, room, &cl, err, err_size) != 0) {
        if (!s->rconn.ctx || !strstr(err, "NOGROUP"))
            return -1;
        /* The group went away: reading makes it again and counts it. */
        snprintf(s->claim_cursor, sizeof s->claim_cursor, "0-0");
        s->next_claim_ns = now_ns(s) + (int64_t)CLAIM_EVERY_MS * 1000000;
        return 0;
    }
    /* A deleted id a reread already counted (its XACK not yet done) is
     * reported again here: count it once. */
    size_t newly_lost = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < cl.deleted->elements; i++) {
        const char *id = cl.deleted->element[i]->str;
        newly_lost += id && !id_list_has(&s->acks, id) && !id_list_has(&s->acking, id);
    }
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->lost_entries, newly_lost);
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
    deliver_entries(s, reply, entries, counts, 0, true);
    free(counts);
    return 0;
}

/** XREAD of an anonymous member from its last position. */
static int read_anon(rd_sub *s, size_t room, char *err, size_t err_size)
{
    char count[24], block[24];
    snprintf(count, sizeof count, "%zu", room);
    snprintf(block, sizeof block, "%d", s->set->block_ms);
    const char *argv[] = {"XREAD", "COUNT", count, "BLOCK", block, "STREAMS", s->stream,
                          s->anon_last};
    redisReply *r = rd_conn_command(&s->rconn, 8, argv, NULL, err, err_size);
    if (!r)
        return -1;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return 0;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
        r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements != 2 ||
        r->element[0]->element[1]->type != REDIS_REPLY_ARRAY) {
        snprintf(err, err_size, "redis %s: XREAD %s: %s", s->set->url.display, s->stream,
                 r->type == REDIS_REPLY_ERROR ? r->str : "a reply in an unexpected shape");
        freeReplyObject(r);
        rd_conn_close(&s->rconn);
        return -1;
    }
    const redisReply *entries = r->element[0]->element[1];
    if (entries->elements)
        snprintf(s->anon_last, sizeof s->anon_last, "%s",
                 entries->element[entries->elements - 1]->element[0]->str);
    deliver_entries(s, r, entries, NULL, 1, false);
    return 0;
}

/** The id of the stream's last entry ("0-0" when empty or missing). */
static int last_entry_id(rd_sub *s, char *out, size_t size, char *err, size_t err_size)
{
    const char *argv[] = {"XREVRANGE", s->stream, "+", "-", "COUNT", "1"};
    redisReply *r = rd_conn_command(&s->rconn, 6, argv, NULL, err, err_size);
    if (!r)
        return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 0)
        snprintf(out, size, "0-0");
    else if (r->type == REDIS_REPLY_ARRAY && r->element[0]->type == REDIS_REPLY_ARRAY &&
             r->element[0]->elements == 2)
        snprintf(out, size, "%s", r->element[0]->element[0]->str);
    else {
        snprintf(err, err_size, "redis %s: XREVRANGE %s: %s", s->set->url.display, s->stream,
                 r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
        rc = -1;
    }
    freeReplyObject(r);
    return rc;
}

/* --------------------------------------------------------------- reader */

/** Connects the reader: its client id for CLIENT UNBLOCK, the group (made
 *  at the start position the first time), own pending entries first. */
static int reader_connect(rd_sub *s, char *err, size_t err_size)
{
    if (rd_conn_open(&s->rconn, &s->set->url, s->set->timeouts, err, err_size) != 0)
        return -1;
    long long id = rd_conn_client_id(&s->rconn, err, err_size);
    int rc = id < 0 ? -1 : 0;
    if (rc == 0 && s->group) {
        rc = rd_group_ensure(&s->grp, err, err_size);
        if (rc == 0 && !s->group_made) {
            s->group_made = true;
            s->grp.start_id = "0"; /* made again after a deletion: read all there is */
        }
        rd_group_rewind(&s->grp);
    } else if (rc == 0 && !s->anon_last[0]) {
        if (s->start == EB_START_EARLIEST)
            snprintf(s->anon_last, sizeof s->anon_last, "0-0");
        else
            rc = last_entry_id(s, s->anon_last, sizeof s->anon_last, err, err_size);
    }
    if (rc != 0) {
        rd_conn_close(&s->rconn);
        return -1;
    }
    pthread_mutex_lock(&s->mu);
    s->reader_client_id = id;
    pthread_mutex_unlock(&s->mu);
    char up[RD_URL_MAX + 64];
    snprintf(up, sizeof up, "redis %s: reader of %s connected", s->set->url.display,
             s->stream);
    set_link(s, &s->reader_link, RD_LINK_UP, up);
    if (!s->ready_sent) {
        s->ready_sent = true;
        char detail[320];
        snprintf(detail, sizeof detail, "stream %s as consumer %s", s->stream,
                 s->rb->settings.consumer);
        s->host->event(s->rb->hb, EB_EVENT_ASSIGNED, s->topic, s->group, 0, detail);
        s->host->ready(s->hs);
    }
    return 0;
}

/** Entries held here were claimed by another member: revoke the lane
 *  (lost: the core waits for nothing), then read the own pending entries
 *  again under a new generation. */
static void revoke_lost(rd_sub *s)
{
    pthread_mutex_lock(&s->mu);
    eb_lane_ref lane = {0, s->generation};
    pthread_mutex_unlock(&s->mu);
    drop_refused(s);
    if (s->host->struct_size >= offsetof(eb_host, revoke_until) + sizeof s->host->revoke_until &&
        s->host->revoke_until)
        s->host->revoke_until(s->hs, &lane, 1, 0, EB_REVOKE_LOST);
    else
        s->host->revoke(s->hs, &lane, 1);
    pthread_mutex_lock(&s->mu);
    s->generation++;
    rd_held_reset(&s->held);
    pthread_mutex_unlock(&s->mu);
    if (s->group)
        rd_group_rewind(&s->grp);
    s->host->log(s->rb->hb, EB_LOG_WARN,
                 "redis: stream %s: entries held by consumer %s were claimed by another "
                 "member; reading its own pending entries again",
                 s->stream, s->rb->settings.consumer);
}

/** One turn of the reader. @returns 0, or -1 with a sentence when its
 *  connection failed. */
static int reader_step(rd_sub *s, char *err, size_t err_size)
{
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
        if (!go)
            wait_until(s, &s->reader_cv, now_ns(s) + (int64_t)TICK_MS * 1000000);
        pthread_mutex_unlock(&s->mu);
        if (go) {
            s->paused = false;
            deliver_refused(s);
        }
        return 0;
    }
    if (s->held.count >= s->inflight_max) {
        s->reader_waiting = true;
        wait_until(s, &s->reader_cv, now_ns(s) + (int64_t)TICK_MS * 1000000);
        s->reader_waiting = false;
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    size_t room = s->inflight_max - s->held.count;
    if (room > (size_t)s->set->count)
        room = (size_t)s->set->count;
    /* Claims wait until the own pending entries were read (after a
     * restart under the same name they are this member's to finish). */
    bool claim = s->group && now_ns(s) >= s->next_claim_ns && strcmp(s->grp.cursor, ">") == 0;
    bool block = !claim && (!s->group || strcmp(s->grp.cursor, ">") == 0);
    s->reader_blocking = block;
    /* Entries read while pending may be acknowledged meanwhile: no XACK
     * completes until they were checked against the acks (see
     * deliver_entries), or an entry could be handed over twice. */
    s->rereading = s->group && !block;
    pthread_mutex_unlock(&s->mu);
    int rc = claim ? claim_page(s, room, err, err_size)
             : s->group ? read_group(s, room, block, err, err_size)
                        : read_anon(s, room, err, err_size);
    pthread_mutex_lock(&s->mu);
    s->reader_blocking = false;
    if (s->rereading) {
        s->rereading = false;
        pthread_cond_signal(&s->keeper_cv);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
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
        if (s->rconn.ctx) { /* a refused command: start over on a new connection */
            rd_conn_close(&s->rconn);
        }
        atomic_fetch_add(&s->reconnects, 1);
        set_link(s, &s->reader_link, RD_LINK_DOWN, err);
        reader_nap(s, backoff);
        backoff = backoff * 2 > s->set->backoff_max_ms ? s->set->backoff_max_ms : backoff * 2;
    }
    /* Leaving: the core's handlers finished; it returns what it holds. */
    drop_refused(s);
    if (s->ready_sent) {
        pthread_mutex_lock(&s->mu);
        eb_lane_ref lane = {0, s->generation};
        int64_t deadline = s->leave_deadline_ns;
        pthread_mutex_unlock(&s->mu);
        if (s->host->struct_size >=
                offsetof(eb_host, revoke_until) + sizeof s->host->revoke_until &&
            s->host->revoke_until)
            s->host->revoke_until(s->hs, &lane, 1, deadline, 0);
        else
            s->host->revoke(s->hs, &lane, 1);
    }
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

/** XACK of `l` in batches. @returns 0; -1 when the connection failed
 *  (send them all again: XACK of an id acknowledged already is a no-op).
 *  A refused XACK drops its ids (they are redelivered). */
static int send_acks(rd_sub *s, const id_list *l)
{
    char err[ERR_SIZE];
    const char *ids[ACKS_PER_XACK];
    size_t n = 0, at = 0;
    while (at < l->len) {
        ids[n++] = l->buf + at;
        at += strlen(l->buf + at) + 1;
        if (n < ACKS_PER_XACK && at < l->len)
            continue;
        if (rd_group_ack(&s->kgrp, ids, n, err, sizeof err) < 0) {
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
    char *slot = h->buf + h->n * ID_MAX;
    snprintf(slot, ID_MAX, "%s", node->id);
    h->ids[h->n++] = slot;
    return 0;
}

/** Resets the idle time of every entry held; entries claimed away meanwhile
 *  make the reader revoke the lane. @returns 0 or -1 (connection). */
static int refresh_held(rd_sub *s)
{
    char err[ERR_SIZE];
    pthread_mutex_lock(&s->mu);
    size_t n = s->held.count;
    held_ids h = {malloc(n * ID_MAX + 1), malloc((n + 1) * sizeof(char *)), 0};
    const char **lost = malloc((n + 1) * sizeof *lost);
    if (h.buf && h.ids && lost)
        rd_held_each(&s->held, collect_id, &h);
    pthread_mutex_unlock(&s->mu);
    int rc = 0;
    size_t n_lost = 0;
    if (h.n && rd_refresh(&s->kconn, s->stream, s->group, s->rb->settings.consumer, h.ids,
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
        for (size_t i = 0; i < n_lost; i++)
            still += rd_held_find(&s->held, lost[i]) != NULL; /* not acked meanwhile */
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

/** The group's lag and pending count (XINFO GROUPS), for the stats. */
static void read_lag(rd_sub *s)
{
    char err[ERR_SIZE];
    const char *argv[] = {"XINFO", "GROUPS", s->stream};
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
        if (ours) {
            atomic_store(&s->lag, lag);
            atomic_store(&s->pending, pending);
        }
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
    snprintf(up, sizeof up, "redis %s: keeper of %s connected", s->set->url.display, s->stream);
    set_link(s, &s->keeper_link, RD_LINK_UP, up);
    return 0;
}

/** Closing: acknowledged what finished; hands the rest over and leaves. */
static void keeper_leave(rd_sub *s)
{
    char err[ERR_SIZE];
    if (!s->group)
        return;
    long long handed = rd_consumer_leave(&s->kconn, s->stream, s->group,
                                         s->rb->settings.consumer, err, sizeof err);
    if (handed < 0)
        s->host->log(s->rb->hb, EB_LOG_WARN, "%s", err);
    else if (handed > 0)
        s->host->log(s->rb->hb, EB_LOG_INFO,
                     "redis: stream %s: %lld unfinished entries of consumer %s handed to the "
                     "group's other members",
                     s->stream, handed, s->rb->settings.consumer);
}

static void *keeper_main(void *arg)
{
    rd_sub *s = arg;
    pthread_setname_np(pthread_self(), "eb-redis-keep");
    char err[ERR_SIZE];
    int backoff = s->set->backoff_min_ms;
    int64_t refresh_every = s->set->claim_idle_ms / 3 * 1000000;
    /* The first prune waits for the reader to make the group. */
    int64_t next_tick = 0, next_refresh = now_ns(s) + refresh_every,
            next_prune = now_ns(s) + refresh_every;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->keeper_stop && s->acks.n == 0 && s->acking.n == 0 && !s->unblock_wanted &&
               now_ns(s) < next_tick)
            wait_until(s, &s->keeper_cv, next_tick);
        bool stopping = s->keeper_stop;
        int64_t deadline = s->leave_deadline_ns;
        bool unblock = s->unblock_wanted;
        s->unblock_wanted = false;
        if (!s->rereading)
            id_list_move(&s->acking, &s->acks);
        bool acking = s->acking.n > 0;
        pthread_mutex_unlock(&s->mu);
        int64_t now = now_ns(s);
        if (stopping && now >= deadline) {
            pthread_mutex_lock(&s->mu);
            if (s->acks.n || s->acking.n)
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
        if (acking) {
            if (send_acks(s, &s->acking) != 0)
                continue; /* all again on the next connection */
            pthread_mutex_lock(&s->mu);
            while (s->rereading) /* it may have read them as pending: they stay known */
                pthread_cond_wait(&s->keeper_cv, &s->mu);
            s->acking.len = s->acking.n = 0;
            pthread_mutex_unlock(&s->mu);
        }
        if (stopping) {
            pthread_mutex_lock(&s->mu);
            bool more = s->acks.n > 0;
            pthread_mutex_unlock(&s->mu);
            if (more)
                continue;
            keeper_leave(s);
            break;
        }
        if (s->group && now >= next_tick) {
            next_tick = now + (int64_t)TICK_MS * 1000000;
            if (now >= next_refresh && refresh_held(s) == 0)
                next_refresh = now + refresh_every;
            if (s->kconn.ctx)
                read_lag(s);
            if (s->kconn.ctx && now >= next_prune) {
                next_prune = now + s->set->prune_idle_ms / 2 * 1000000;
                if (rd_consumers_prune(&s->kconn, s->stream, s->group, s->rb->settings.consumer,
                                       s->set->prune_idle_ms, err, sizeof err) < 0 &&
                    !strstr(err, "NOGROUP") && !strstr(err, "no such key"))
                    s->host->log(s->rb->hb, EB_LOG_WARN, "%s", err);
            }
            if (!s->kconn.ctx)
                set_link(s, &s->keeper_link, RD_LINK_DOWN,
                         "redis: the keeper's connection failed");
        } else if (now >= next_tick) {
            next_tick = now + (int64_t)TICK_MS * 1000000;
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
    free(s->acks.buf);
    free(s->acking.buf);
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
    s->generation = 1;
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
    s->stream = s->topic; /* shared mode: the topic's one stream, named as the topic */
    size_t scratch = (size_t)rb->settings.count;
    s->refused = calloc(scratch, sizeof *s->refused);
    s->scratch = calloc(scratch, sizeof *s->scratch);
    pthread_mutex_lock(&rb->mu);
    s->next = rb->subs;
    rb->subs = s;
    rb->refs++;
    pthread_mutex_unlock(&rb->mu);
    if (!s->topic || (p->group && !s->group) || !s->refused || !s->scratch) {
        rd_sub_free(s);
        return EB_ERR_NOMEM;
    }
    rd_group_init(&s->grp, &s->rconn, s->stream, s->group, rb->settings.consumer,
                  p->start == EB_START_LATEST ? "$" : "0");
    rd_group_init(&s->kgrp, &s->kconn, s->stream, s->group, rb->settings.consumer, "0");
    if (pthread_create(&s->keeper, NULL, keeper_main, s) != 0) {
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
    return s->leave_rc;
}

static void sub_stats(rd_sub *s, eb_json_out *out)
{
    eb_json_out o = *out;
    pthread_mutex_lock(&s->mu);
    size_t held = s->held.count;
    pthread_mutex_unlock(&s->mu);
    eb_json_printf(&o, "{\"stream\":");
    eb_json_string(&o, s->stream);
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
                   "\"reconnects\":%llu,\"ack_failures\":%llu,\"lag\":%lld,\"pending\":%lld}",
                   held, (unsigned long long)atomic_load(&s->delivered),
                   (unsigned long long)atomic_load(&s->acked),
                   (unsigned long long)atomic_load(&s->claimed),
                   (unsigned long long)atomic_load(&s->claimed_away),
                   (unsigned long long)atomic_load(&s->lost_entries),
                   (unsigned long long)atomic_load(&s->recreated),
                   (unsigned long long)atomic_load(&s->reconnects),
                   (unsigned long long)atomic_load(&s->ack_failures),
                   atomic_load(&s->lag), atomic_load(&s->pending));
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
