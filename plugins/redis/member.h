/*
 * member.h — one subscription of the Redis transport, shared by the files
 * that run it:
 *   member.c  its lanes, the messages it hands to the core, the reader
 *             thread (shared mode and anonymous reads), the keeper thread
 *             (XACKs, refreshes, lag), start and stop
 *   keyed.c   keyed group mode: the partitions the leaser gives it become
 *             lanes (gained, given up, lost) and are read through fenced
 *             reads (fenced.c)
 *
 * A lane is one stream: shared mode has one (the topic's stream, lane 0,
 * always owned); keyed mode has one per partition, owned while this
 * member holds its lease; an anonymous member owns every lane.
 *
 * Locking: s->mu guards what is marked so; ack/release/resume take it
 * briefly and never call Redis. The reader calls the core (deliver,
 * revoke, ready) holding no lock.
 */
#ifndef EB_REDIS_MEMBER_H
#define EB_REDIS_MEMBER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "group.h"
#include "held.h"
#include "leaser.h"
#include "partitions.h"
#include "redis.h"

enum { RD_ID_MAX = 48 }; /* "<partition>@" + a stream id (at most 41) + NUL */

typedef struct rd_batch rd_batch;

/** A message handed to the core; the ones of one read share a batch. */
typedef struct rd_msg {
    eb_msg base;
    rd_held_node node;       /* node.id is id: unique across the lanes */
    rd_batch *batch;
    eb_header *headers;      /* malloc'd by rd_entry_read */
    const char *sid;         /* the stream id, inside id */
    char id[RD_ID_MAX];      /* "<lane>@<stream id>" */
} rd_msg;

/** Stream ids, NUL-separated in one buffer. */
typedef struct rd_id_list {
    char *buf;
    size_t len, cap, n;
} rd_id_list;

/** Where a keyed lane's reads are. */
typedef enum rd_lane_phase {
    RD_LANE_CLAIM,           /* finishing what earlier owners left (XAUTOCLAIM) */
    RD_LANE_NEW,             /* reading new entries through the fenced script */
    RD_LANE_WAIT,            /* caught up: a plain XREAD BLOCK from `last` */
} rd_lane_phase;

typedef struct rd_lane {
    char stream[RD_NAME_MAX];
    char lease_key[RD_NAME_MAX]; /* keyed mode */
    rd_group grp;            /* the reader's: the group on this stream */
    rd_group kgrp;           /* the keeper's: XACKs */
    /* under mu (written by the reader only) */
    bool owned;
    uint64_t generation;
    /* under mu */
    size_t held;             /* entries of this lane held */
    rd_id_list acks;         /* finished, for the keeper's next XACK */
    rd_id_list acking;       /* in the keeper's XACK now (it reads it unlocked) */
    _Atomic long long lag, pending; /* the keeper's reading (-1: none) */
    /* the reader's (the keeper reads group_made once the reader ended) */
    bool group_made;
    rd_lane_phase phase;
    char cursor[64];         /* keyed: the claim cursor */
    char last[64];           /* keyed and anonymous reads: new entries after this id */
} rd_lane;

struct rd_sub {
    rd_sub *next;            /* the bus's list, under rb->mu */
    rd_bus *rb;
    const rd_settings *set;
    const eb_host *host;
    eb_host_sub *hs;
    char *topic, *group;
    bool keyed;              /* keyed group mode, with a group */
    uint32_t inflight_max;   /* per lane */
    eb_start_position start;
    unsigned n_lanes;
    rd_lane *lanes;
    pthread_t reader, keeper;

    pthread_mutex_t mu;
    pthread_cond_t reader_cv; /* room, resume, stop, leases, acks sent */
    pthread_cond_t keeper_cv; /* acks, unblock requests, stop */
    /* under mu */
    rd_held held;
    bool rereading;          /* the reader reads pending entries: XACKs wait */
    bool reader_stop, keeper_stop;
    bool resume_requested;
    bool lost;               /* shared: the keeper found held entries claimed away */
    bool leases_changed;     /* keyed: the leaser has news */
    bool reader_waiting;     /* on reader_cv for room or news */
    bool reader_blocking;    /* in a blocking read */
    bool unblock_wanted;
    long long reader_client_id;
    int64_t leave_deadline_ns;
    int leave_rc;

    /* the reader's */
    rd_conn rconn;
    int reader_link;
    bool ready_sent, paused;
    rd_msg **refused;        /* deliver() refused these, in order */
    size_t n_refused, refused_at;
    rd_msg **scratch;        /* one read's messages */
    char claim_cursor[64];   /* shared mode */
    int64_t next_claim_ns;
    unsigned next_lane;      /* keyed: lanes take turns */
    rd_leaser *leaser;       /* keyed */
    char token[320];         /* keyed: this member's lease token */
    unsigned char *view_mem; /* keyed: the leaser view's arrays */
    rd_lease_view view;

    /* the keeper's */
    rd_conn kconn;
    int keeper_link;

    /* stats */
    _Atomic uint64_t delivered, acked, claimed, claimed_away, lost_entries, recreated,
        reconnects, ack_failures, not_owner;
    _Atomic long long lag, pending;
};

/* member.c, for keyed.c */

int64_t rd_member_now_ns(const rd_sub *s);
/** Under mu: waits on cv until woken or deadline_ns. */
void rd_member_wait(rd_sub *s, pthread_cond_t *cv, int64_t deadline_ns);
/** Hands the entries of one read of `lane` to the core (takes `reply`);
 *  see member.c. */
void rd_member_deliver_entries(rd_sub *s, unsigned lane, redisReply *reply,
                               const redisReply *entries, const uint32_t *counts,
                               uint32_t count, bool pending);
/** Counts the ids a claim found deleted from the stream as lost, once. */
void rd_member_count_deleted(rd_sub *s, unsigned lane, const redisReply *deleted);
/** Revokes `lane` (EB_REVOKE_LOST: at once; else waiting for its handlers
 *  until deadline_ns); forgets what it held and its refused messages. */
void rd_member_revoke(rd_sub *s, unsigned lane, unsigned flags, int64_t deadline_ns);
/* keyed.c */

/** Starts the leaser. 0, or EB_ERR_NOMEM with a sentence. */
int rd_keyed_start(rd_sub *s, char *errstr, size_t errstr_size);
/** The reader applies the leaser's news: lanes lost (revoked at once),
 *  given up (revoked, their XACKs sent, then released), gained (a claim
 *  of what earlier owners left comes first); ready() once the member
 *  holds its share. */
void rd_keyed_apply_leases(rd_sub *s);
/** One fenced read of an owned lane with `room` (its phase: CLAIM or
 *  NEW). @returns 0, or -1 with a sentence when the reader's connection
 *  failed. */
int rd_keyed_read_lane(rd_sub *s, unsigned lane, size_t room, char *err, size_t err_size);
/** Releases every lease and withdraws the member (after the lanes were
 *  revoked and their XACKs sent). */
void rd_keyed_stop(rd_sub *s);
/** Appends to the sub's stats ",\"partitions\":[...]" (the owned ones,
 *  each with its stream, held, lag and pending) and ",\"leases\":{...}". */
void rd_keyed_stats(rd_sub *s, eb_json_out *o);

#endif
