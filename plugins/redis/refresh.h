/*
 * refresh.h — keeping the entries this consumer holds from being claimed
 * by another member while their handlers run: their idle time is reset
 * (every redis.claim.idle.ms / 3), but only for ids XPENDING still lists
 * under this consumer. Plain `XCLAIM <self> 0 ... JUSTID` would steal back
 * an entry another member has meanwhile claimed; the script touches only
 * this consumer's and returns the others (claimed away, acknowledged or
 * deleted), which the caller treats as no longer its own (revoked).
 *
 * The script goes with every call (EVAL, about 400 bytes, once every few
 * seconds): nothing to reload after a server restart or SCRIPT FLUSH.
 */
#ifndef EB_REDIS_REFRESH_H
#define EB_REDIS_REFRESH_H

#include <stddef.h>

#include "conn.h"

/**
 * Refreshes `ids` (n of them) of `consumer` in (stream, group). Fills
 * lost[] (room for n; pointers into ids[]) with those that are not this
 * consumer's any more, and sets *n_lost.
 * @returns 0, or -1 with a sentence (connection errors close it).
 */
int rd_refresh(rd_conn *c, const char *stream, const char *group, const char *consumer,
               const char *const *ids, size_t n, const char **lost, size_t *n_lost,
               char *err, size_t err_size);

#endif
