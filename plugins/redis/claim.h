/*
 * claim.h — taking over entries another consumer left pending for longer
 * than redis.claim.idle.ms (a member that died or hangs): XAUTOCLAIM in
 * pages, with each claimed entry's delivery count read from XPENDING
 * (claim replies carry none) so the core's attempt count goes on across
 * crashes and a poison message still ends in the dead-letter topic; and
 * the ids XAUTOCLAIM found deleted from the stream, which are lost.
 */
#ifndef EB_REDIS_CLAIM_H
#define EB_REDIS_CLAIM_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"

typedef struct rd_claimed {
    redisReply *reply;               /* owns everything below */
    const redisReply *entries;       /* [id, fields] each, as XREADGROUP's */
    uint32_t *deliveries;            /* per entry: its delivery count (malloc'd) */
    const redisReply *deleted;       /* ids pending but gone from the stream */
    char next[64];                   /* the cursor for the next page; "0-0": done */
} rd_claimed;

/**
 * Claims for `consumer` up to `count` entries of (stream, group) idle for
 * at least min_idle_ms, from `cursor` ("0-0" to start).
 * @returns 0 (free *out with rd_claimed_free), or -1 with a sentence.
 */
int rd_claim_idle(rd_conn *c, const char *stream, const char *group, const char *consumer,
                  int64_t min_idle_ms, const char *cursor, size_t count, rd_claimed *out,
                  char *err, size_t err_size);

void rd_claimed_free(rd_claimed *cl);

/**
 * The delivery count of each entry of `entries` ([id, fields] each, as
 * XREADGROUP and XAUTOCLAIM give them) into out[], by one `XPENDING stream
 * group id id 1` per entry, pipelined (a range could stop short at other
 * pending entries in between); 0 where none is listed (acknowledged
 * meanwhile): unknown. @returns 0, or -1 with a sentence (a connection
 * error closes the connection).
 */
int rd_pending_deliveries(rd_conn *c, const char *stream, const char *group,
                          const redisReply *entries, uint32_t *out, char *err,
                          size_t err_size);

#endif
