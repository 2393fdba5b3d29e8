/*
 * fenced.h — the keyed group mode's reads of a partition, each only while
 * this member holds the partition's lease: the lease is checked and the
 * entries read in one atomic step, so a member whose lease expired (a
 * pause, a lost connection) and was taken over reads nothing more from
 * the partition even before it notices. Claims and pending reads go
 * through one script; new entries, the hot path, under WATCH of the lease
 * key (GET it, then MULTI/XREADGROUP/EXEC: EXEC does nothing if the key
 * changed), which costs the server half what a script's entries cost.
 * Neither can BLOCK: a member waits for new entries with a plain XREAD
 * BLOCK from the stream's last id, which every fenced read of new entries
 * returns, then reads them fenced.
 *
 *   claim    XAUTOCLAIM ... 0 <cursor>: the partition's pending entries of
 *            any consumer, in id order (a new owner finishes what earlier
 *            owners left before anything newer: per-key order holds
 *            across hand-overs and crashes)
 *   pending  XREADGROUP ... <cursor>: this consumer's own pending entries
 *   new      XREADGROUP ... >: new entries (under WATCH)
 */
#ifndef EB_REDIS_FENCED_H
#define EB_REDIS_FENCED_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"

typedef enum rd_fenced_mode { RD_FENCED_CLAIM, RD_FENCED_PENDING, RD_FENCED_NEW } rd_fenced_mode;

enum { RD_NOT_OWNER = 1 };

typedef struct rd_fenced {
    redisReply *reply;         /* owns everything below */
    const redisReply *entries; /* [id, fields] each (fields nil: deleted); never NULL */
    const redisReply *deleted; /* claim: ids found deleted from the stream */
    char next[64];             /* claim: the next cursor ("0-0": done) */
    char last[64];             /* new: the stream's last id ("0-0": empty) */
} rd_fenced;

/**
 * One read of `stream` for (group, consumer) in `mode` from `cursor`
 * (claim: "0-0" to start; pending: "0" or the last id read; new: unused),
 * at most `count` entries, if `lease_key` holds `token`.
 * @returns 0 (free *out with rd_fenced_free); RD_NOT_OWNER when the lease
 * is not this member's; -1 with a sentence (NOGROUP among them: the
 * caller makes the group and reads again; a connection error closes it).
 */
int rd_fenced_read(rd_conn *c, rd_fenced_mode mode, const char *stream, const char *lease_key,
                   const char *token, const char *group, const char *consumer,
                   const char *cursor, size_t count, rd_fenced *out, char *err,
                   size_t err_size);

void rd_fenced_free(rd_fenced *f);

#endif
