/*
 * held.h — the entries a subscription holds and has not acknowledged
 * (handed to the core, or refused by it and kept for resume), by stream
 * id: the set refreshed against claims, checked so that a reread of the
 * own pending entries or a claim never hands the core an entry twice, and
 * emptied at once when entries were claimed away (a lost revoke).
 *
 * Intrusive and chained: a node lives in its message; removal is by node,
 * not by id, so an ack of a message from before a reset (whose id may be
 * held again by a newer message) finds nothing and is discarded. Not
 * thread-safe: the subscription's mutex guards it.
 */
#ifndef EB_REDIS_HELD_H
#define EB_REDIS_HELD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rd_held_node {
    struct rd_held_node *next;
    const char *id;          /* the stream id, owned by the message */
    uint32_t hash;
} rd_held_node;

typedef struct rd_held {
    rd_held_node **buckets;
    size_t n_buckets;        /* a power of two, or 0 before the first add */
    size_t count;
} rd_held;

/** Adds a node unless its id is held already (one hash for both).
 *  @returns 0 added; 1 held already (nothing changed); -1 out of memory
 *  (nothing changed). */
int rd_held_add(rd_held *h, rd_held_node *node);

/** Removes `node` if it is held. @returns whether it was. */
bool rd_held_remove(rd_held *h, rd_held_node *node);

/** The node holding `id`, or NULL. */
rd_held_node *rd_held_find(const rd_held *h, const char *id);

/** Forgets every node (their memory is the caller's). */
void rd_held_reset(rd_held *h);

/** Calls fn for each node until it returns non-zero (then returns that). */
int rd_held_each(const rd_held *h, int (*fn)(rd_held_node *node, void *ctx), void *ctx);

void rd_held_free(rd_held *h);

#endif
