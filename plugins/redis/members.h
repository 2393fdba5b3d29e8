/*
 * members.h — the keyed group mode's protocol, part three: who is in a
 * group, and which partitions each member should own.
 *
 *   members    the hash "eventbus:<topic>:<group>:members": field = a
 *              member's lease token, value = the server time (ms) its
 *              announcement expires; each member announces itself every
 *              renewal interval for one lease time, and expired fields
 *              are deleted by whoever announces next
 *   assignment with the live members sorted by token (bytewise), member i
 *              of n should own the partitions p with p % n == i; it takes
 *              the free ones of its share and gives up the others, so
 *              every member computes the same target from the same list
 */
#ifndef EB_REDIS_MEMBERS_H
#define EB_REDIS_MEMBERS_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"

/** "eventbus:<topic>:<group>:members". @returns 0, or -1 when it does not
 *  fit. */
int rd_members_key(char *out, size_t size, const char *topic, const char *group);

/**
 * Announces `me` alive for ttl_ms (server clock), deletes expired
 * announcements, and returns the live members sorted (`me` among them) as
 * an array reply in *live (free it with freeReplyObject).
 * @returns 0, or -1 with a sentence (a connection error closes it).
 */
int rd_members_announce(rd_conn *c, const char *key, const char *me, int64_t ttl_ms,
                        redisReply **live, char *err, size_t err_size);

/** Deletes `me`'s announcement (leaving). 0, or -1 with a sentence. */
int rd_members_leave(rd_conn *c, const char *key, const char *me, char *err, size_t err_size);

/**
 * The partitions `me` should own among `live` (sorted): wanted[p] = 1 or
 * 0 for each of `partitions`. @returns me's index, or -1 (and nothing
 * wanted) when it is not among them.
 */
int rd_assign(const redisReply *live, const char *me, unsigned partitions,
              unsigned char *wanted);

#endif
