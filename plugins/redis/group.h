/*
 * group.h — one consumer of a consumer group on one stream, over a
 * connection its caller owns (the reader thread's): the group made when
 * missing, this consumer's own pending entries read first (after a
 * restart under the same name, and after every reconnect), then new ones;
 * finished ids acknowledged in batches. A group or stream deleted while
 * it runs (NOGROUP) is made again, and counted, and reading goes on.
 */
#ifndef EB_REDIS_GROUP_H
#define EB_REDIS_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"

typedef struct rd_group {
    rd_conn *conn;
    const char *stream, *group, *consumer;
    const char *start_id;    /* where a group made here starts: "0" or "$" */
    char cursor[64];         /* the last own pending id read, or ">" for new */
    bool made;               /* an ensure succeeded once */
    uint64_t recreated;      /* times the group was made again after that */
} rd_group;

/** Sets g up (nothing is sent) and starts at the own pending entries. */
void rd_group_init(rd_group *g, rd_conn *conn, const char *stream, const char *group,
                   const char *consumer, const char *start_id);

/** XGROUP CREATE ... MKSTREAM (an existing group is fine). Making it
 *  again after it once existed (deleted, or a server that came back
 *  empty) counts in `recreated`. 0, or -1 with a sentence. */
int rd_group_ensure(rd_group *g, char *err, size_t err_size);

/** After a reconnect: read own pending entries again first. */
void rd_group_rewind(rd_group *g);

/**
 * One XREADGROUP of at most `count` entries: own pending ones while there
 * are any (no BLOCK), then new ones (BLOCK block_ms; 0: do not block).
 * @returns the reply's array of entries ([id, fields] each; possibly
 * empty) inside *reply (free it with freeReplyObject), 0; or -1 with a
 * sentence (connection errors close the connection).
 */
int rd_group_read(rd_group *g, size_t count, int block_ms, redisReply **reply,
                  const redisReply **entries, char *err, size_t err_size);

/** XACK of `n` ids. @returns how many Redis acknowledged, or -1. */
long long rd_group_ack(rd_group *g, const char *const *ids, size_t n, char *err,
                       size_t err_size);

#endif
