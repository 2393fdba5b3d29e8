/*
 * redis.h — the Redis transport's parts, shared by its files:
 *   redis_transport.c  the descriptor and the slots of the plugin ABI
 *   settings.c         the redis.* keys: checks, defaults, the settings
 *   member.c           one subscription: its reader and keeper threads
 *   held.c             the entries a subscription holds, by stream id
 *   health.c           the bus's connection state from its links
 *   url.c conn.c       redis.url; blocking connections with deadlines
 *   fields.c           the stream entry layout of a message
 *   writer.c           the publish side: pipelined XADDs
 *   group.c refresh.c claim.c   a consumer group's reads and acks, the
 *                      idle-time refresh, claims of idle entries
 *
 * hiredis 0.14.1 traps (DESIGN.md): blocking contexts only, one per
 * thread, each rebuilt after any error or timeout; BLOCK below the command
 * timeout; delivery counts only from XPENDING.
 */
#ifndef EB_REDIS_H
#define EB_REDIS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "eventbus/transport.h"
#include "health.h"
#include "json_out.h"
#include "url.h"
#include "writer.h"

/** The least redis.claim.idle.ms: an entry's idle time is refreshed every
 *  third of it, and a refresh must fit in well before a claim. */
enum { RD_CLAIM_IDLE_MIN_MS = 3000 };

typedef struct rd_settings {
    rd_url url;
    char consumer[256];          /* redis.consumer, or a unique name */
    rd_timeouts timeouts;
    int block_ms;                /* XREADGROUP BLOCK */
    int count;                   /* XREADGROUP COUNT */
    int backoff_min_ms, backoff_max_ms;
    int64_t claim_idle_ms;
    int64_t prune_idle_ms;       /* consumers idle longer, nothing pending: deleted */
    char maxlen[24];             /* "0": no trimming */
    size_t publish_queue_max;
    int64_t delivery_timeout_ms;
    bool keyed;                  /* redis.group.mode = keyed */
    unsigned partitions;         /* redis.partitions */
    int64_t lease_ms;            /* redis.lease.ms, 0 resolved to its least */
    int64_t revoke_ms;           /* dispatch.revoke.timeout.ms */
} rd_settings;

typedef struct rd_sub rd_sub;

/** A bus's view of the transport. */
typedef struct rd_bus {
    const eb_host *host;
    eb_host_bus *hb;
    rd_settings settings;
    rd_health health;
    rd_writer *writer;
    pthread_mutex_t mu;          /* subs, refs */
    rd_sub *subs;
    int refs;                    /* the bus and each subscription */
    atomic_uint next_unkeyed;    /* keyed mode: unkeyed messages take turns */
} rd_bus;

/** Subscriptions keep the bus's state alive (each takes a reference when
 *  it starts): release() and sub_destroy() may come after close(). */
void rd_bus_unref(rd_bus *rb);

/* -------------------------------------------------------------- settings */

/** Checks one redis.* key. 0 or EB_ERR_CONFIG with a sentence. */
int rd_settings_check_key(const eb_host *host, const char *key, const char *value,
                          char *errstr, size_t errstr_size);

/** Reads every redis.* setting of the bus (each key was checked) and
 *  checks how they fit together. 0 or EB_ERR_CONFIG with a sentence. */
int rd_settings_load(const eb_host *host, eb_host_bus *hb, rd_settings *out, char *errstr,
                     size_t errstr_size);

/* ---------------------------------------------------------------- member */

int rd_sub_start(rd_bus *rb, eb_host_sub *hs, const eb_sub_params *p, rd_sub **out,
                 char *errstr, size_t errstr_size);
/** Stops reading, revokes, acknowledges what finished and leaves, by
 *  deadline_ns (0: the command timeout from now). 0 or EB_ERR_TIMEOUT. */
int rd_sub_stop(rd_sub *s, int64_t deadline_ns);
void rd_sub_free(rd_sub *s);
void rd_sub_ack(rd_sub *s, eb_msg *const *msgs, size_t n);
void rd_sub_release(rd_sub *s, eb_msg *const *msgs, size_t n);
void rd_sub_resume(rd_sub *s);
/** Appends the bus's subscriptions' stats (a JSON array). */
void rd_subs_stats(rd_bus *rb, eb_json_out *o);

#endif
