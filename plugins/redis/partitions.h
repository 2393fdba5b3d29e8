/*
 * partitions.h — the keyed group mode's protocol between processes
 * (version RD_PROTOCOL_VERSION), part one: which stream a message goes to
 * and what Redis records about a topic.
 *
 *   streams    a topic of 1 partition is the stream named as the topic
 *              (so other programs' entries are read, and the shared mode
 *              reads the same stream); of N > 1, the streams
 *              "<topic>:0" ... "<topic>:<N-1>"
 *   keys       a keyed message goes to partition FNV-1a-32(key bytes) % N
 *              (offset basis 2166136261, prime 16777619, over the key's
 *              bytes); an unkeyed one to each partition in turn
 *   meta       the hash "eventbus:<topic>:meta" holds `protocol` (the
 *              version) and `partitions` (N), written by the first
 *              publisher or member that uses the topic; one configured
 *              otherwise, or speaking another version, is refused with a
 *              sentence, so no message goes to a stream nobody reads
 */
#ifndef EB_REDIS_PARTITIONS_H
#define EB_REDIS_PARTITIONS_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"

enum { RD_PROTOCOL_VERSION = 1, RD_PARTITIONS_MAX = 1024, RD_NAME_MAX = 512 };

/** The stream of partition p of `topic` (of `partitions`). @returns 0, or
 *  -1 when it does not fit `size`. */
int rd_partition_stream(char *out, size_t size, const char *topic, unsigned partitions,
                        unsigned p);

/** The partition of a key (its bytes, possibly empty). */
unsigned rd_partition_of_key(const void *key, size_t len, unsigned partitions);

/** "eventbus:<topic>:meta". @returns 0, or -1 when it does not fit. */
int rd_meta_key(char *out, size_t size, const char *topic);

/**
 * Records the topic's protocol version and partition count when Redis has
 * none, and compares what it has with ours. @returns 0 when they agree;
 * EB_ERR_CONFIG with a sentence when not; -1 with a sentence when the
 * server did not answer (a connection error closes the connection).
 */
int rd_meta_check(rd_conn *c, const char *topic, unsigned partitions, char *err,
                  size_t err_size);

#endif
