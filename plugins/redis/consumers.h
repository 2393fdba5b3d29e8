/*
 * consumers.h — a consumer's place in its group: leaving it (hand the
 * entries still pending under the consumer to the other members at once,
 * and delete the consumer when nothing is pending under it), and pruning
 * the consumers of dead members (nothing pending, idle for long). Each is
 * one script, so the check and the delete see the same state: XGROUP
 * DELCONSUMER drops whatever is still pending under the consumer.
 */
#ifndef EB_REDIS_CONSUMERS_H
#define EB_REDIS_CONSUMERS_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"

/**
 * Sets the idle time of every entry pending under `consumer` to far more
 * than any claim idle time (JUSTID: delivery counts stay), so the other
 * members claim them at their next claim pass instead of after their claim
 * idle time; deletes the consumer when nothing is pending under it.
 * @returns the entries handed over, or -1 with a sentence.
 */
long long rd_consumer_leave(rd_conn *c, const char *stream, const char *group,
                            const char *consumer, char *err, size_t err_size);

/**
 * Deletes the consumers of (stream, group) other than `self` that have
 * nothing pending and were idle longer than idle_ms.
 * @returns how many, or -1 with a sentence.
 */
long long rd_consumers_prune(rd_conn *c, const char *stream, const char *group,
                             const char *self, int64_t idle_ms, char *err, size_t err_size);

#endif
