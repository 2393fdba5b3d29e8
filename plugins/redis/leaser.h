/*
 * leaser.h — the keyed group mode's ownership of partitions for one
 * subscription: a thread with a connection of its own (never behind a
 * revoke or a read) that, every renewal interval R = L / 3 (L the lease
 * time, or sooner: turn_ms):
 *   - announces the member (members.c) and computes the partitions it
 *     should own from the live members;
 *   - renews the leases it holds (one script for all), and takes the free
 *     ones it should own;
 *   - reports a lease answered "not yours" as lost at once, and so does a
 *     lease it could not renew in time: on CLOCK_BOOTTIME (which counts a
 *     suspended machine too) from the send time of its last successful
 *     renewal, a lease is given up once L - revoke_ms - margin_ms have
 *     passed, so that the revoke (handlers get revoke_ms) ends before the
 *     lease can expire on the server. With L >= 3 * (revoke_ms +
 *     margin_ms) that leaves two renewals that may fail first;
 *   - after reconnecting to a server whose run_id changed (a restart that
 *     may have lost every lease), takes no lease for one lease time, so
 *     an owner that still believes in its lease has given it up first;
 *   - releases (compare-and-delete) a lease once the member says it gave
 *     the partition up (revoked, acknowledged what finished).
 * The member learns of every change through `changed` and reads the
 * state with rd_leaser_view().
 */
#ifndef EB_REDIS_LEASER_H
#define EB_REDIS_LEASER_H

#include <stdint.h>

#include "conn.h"
#include "eventbus/transport.h"
#include "health.h"

typedef struct rd_leaser rd_leaser;

typedef struct rd_leaser_config {
    const rd_url *url;         /* must outlive the leaser */
    rd_timeouts timeouts;
    int backoff_min_ms, backoff_max_ms;
    const char *topic, *group; /* copied */
    const char *token;         /* the member's lease token; copied */
    unsigned partitions;
    int64_t lease_ms;          /* L */
    int64_t revoke_ms;         /* how long giving a partition up may take */
    int64_t margin_ms;         /* a renewal's time on the wire (the command timeout) */
    int64_t turn_ms;           /* turns come every min(L / 3, turn_ms) (0: L / 3), so
                                  joins and leaves are seen sooner than renewals need */
    void (*changed)(void *ctx); /* from the leaser's thread, holding no lock */
    void *ctx;
    rd_health *health;         /* NULL: none */
} rd_leaser_config;

/** The partitions' state, one byte each (rd_leaser_view). */
typedef struct rd_lease_view {
    unsigned char *held;       /* ours: read it */
    unsigned char *lost;       /* was ours and is not (or may not be) any more: revoke
                                  at once, as lost; cleared by the view */
    unsigned char *unwanted;   /* ours, but another member should own it: give it up,
                                  then rd_leaser_release */
    bool settled;              /* once a turn ended with the member holding exactly
                                  the partitions it should (sticky) */
} rd_lease_view;

/** Starts the thread (connecting happens there). NULL when out of memory. */
rd_leaser *rd_leaser_start(const eb_host *host, eb_host_bus *hb, const rd_leaser_config *cfg);

/** Copies the state into v (arrays of `partitions` bytes) and clears the
 *  lost marks it reports. Leases whose local deadline passed are lost as
 *  of this call (the thread may be blocked in a call for a command
 *  timeout), so a member that looks at least every BLOCK gives them up in
 *  time. */
void rd_leaser_view(rd_leaser *l, rd_lease_view *v);

/** The member gave partition p up (revoked it, acknowledged what
 *  finished): it is not held from now on, and its lease is released at
 *  the next turn, which this wakes. */
void rd_leaser_release(rd_leaser *l, unsigned p);

/** The server answered a fenced read of partition p "not yours": the
 *  member revoked it; it is not held from now on (taken again only by a
 *  later turn, when free), and the thread looks at once. */
void rd_leaser_lost(rd_leaser *l, unsigned p);

/** Releases every lease held, withdraws the announcement, joins, frees. */
void rd_leaser_stop(rd_leaser *l);

/** Leases taken, lost and released so far (stats). */
void rd_leaser_counts(rd_leaser *l, uint64_t *taken, uint64_t *lost, uint64_t *released);

#endif
