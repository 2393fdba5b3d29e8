/*
 * lease.h — the keyed group mode's protocol, part two: who owns a
 * partition of a group. A lease is the key
 * "eventbus:<topic>:<group>:lease:<p>" whose value is its owner's token
 * (the member's consumer name, "/", and 16 hex digits new in each
 * process: a restarted member owns nothing its earlier self held). It is
 * taken only when free (as SET NX PX would), renewed only by its owner
 * (compare-and-PEXPIRE), released only by its owner (compare-and-DEL):
 * one script for all three, over every lease of a member at once.
 */
#ifndef EB_REDIS_LEASE_H
#define EB_REDIS_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"

typedef enum rd_lease_op {
    RD_LEASE_TAKE,    /* free: take it; ours already: renew it */
    RD_LEASE_RENEW,   /* ours: renew it */
    RD_LEASE_RELEASE  /* ours: delete it */
} rd_lease_op;

/** "eventbus:<topic>:<group>:lease:<p>". @returns 0, or -1 when it does
 *  not fit. */
int rd_lease_key(char *out, size_t size, const char *topic, const char *group, unsigned p);

/**
 * Applies `op` to each of keys[0..n) for `token` (lease_ms for take and
 * renew). ours[i] says whether key i is this token's afterwards (take,
 * renew) or was until now (release). @returns 0, or -1 with a sentence (a
 * connection error closes the connection).
 */
int rd_lease_apply(rd_conn *c, rd_lease_op op, const char *const *keys, size_t n,
                   const char *token, int64_t lease_ms, unsigned char *ours, char *err,
                   size_t err_size);

/**
 * Leases expire, and a server that evicts keys (volatile-* policies pick
 * expiring keys first) could drop one and let two members own a
 * partition: reads maxmemory-policy. @returns 0 for noeviction;
 * EB_ERR_CONFIG with a sentence for any other; 1 with a sentence when it
 * cannot be read (CONFIG refused to this user: the caller warns).
 */
int rd_lease_check_eviction(rd_conn *c, char *err, size_t err_size);

#endif
