/*
 * memory.h — the memory transport's structures, shared by its files:
 *   broker.c            the process-wide brokers by name, topics, partition
 *                       logs, retention, groups and their positions
 *   member.c            one subscription: its thread, assignment, lanes,
 *                       delivery, acks and commits
 *   producer.c          a bus's delivery-callback thread
 *   memory_transport.c  the descriptor, config keys and the slots
 *
 * One mutex per broker (broker->mu) guards everything in the broker,
 * including each member's lanes and ack inbox; members wait on their own
 * condvar with it. Records are immutable and reference-counted, so a
 * message outlives retention and its broker while the core holds it.
 */
#ifndef EB_MEMORY_H
#define EB_MEMORY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "eventbus/transport.h"
#include "lane_fifo.h"

typedef struct mem_broker mem_broker;
typedef struct mem_member mem_member;

/** One stored message: one allocation holding headers, key and payload. */
typedef struct mem_record {
    atomic_int refs;
    uint64_t offset;
    size_t bytes;          /* counted against retention */
    int64_t timestamp_ms;
    const void *key;       /* NULL: no key */
    size_t key_len;
    const void *payload;
    size_t payload_len;
    eb_header *headers;
    size_t header_count;
} mem_record;

typedef struct mem_partition {
    mem_record **ring;
    size_t cap, head, len;
    uint64_t start_offset; /* offset of the oldest record kept */
    uint64_t next_offset;
    size_t bytes;
} mem_partition;

typedef struct mem_group {
    struct mem_group *next;
    char *name;            /* NULL: anonymous, private to one member */
    uint64_t *committed;   /* per partition: next offset to handle */
    mem_member **owner;    /* per partition: member holding it, or NULL */
    mem_member **members;  /* live members in join order */
    size_t n_members, cap_members;
    uint64_t generation;   /* bumped when members come or go */
    uint64_t lost;         /* messages retention dropped before handling */
} mem_group;

typedef struct mem_topic {
    struct mem_topic *next;
    char *name;
    mem_partition *parts;
    unsigned n_parts;
    unsigned round_robin;  /* partition for the next unkeyed message */
    mem_group *groups;
} mem_topic;

struct mem_broker {
    mem_broker *next;      /* registry list */
    char *name;
    int refs;              /* buses and members using it; registry lock */
    unsigned partitions;
    size_t retention_messages;
    size_t retention_bytes;
    pthread_mutex_t mu;
    pthread_cond_t space_cv; /* publishers waiting for retention */
    int space_waiters;
    mem_topic *topics;
};

/** A bus's view of the transport. */
typedef struct mem_bus {
    const eb_host *host;
    eb_host_bus *hb;
    mem_broker *broker;
    struct mem_producer *producer;
    bool closing;          /* under broker->mu: begin_close ran, none waits */
} mem_bus;

struct mem_block;

/** A message handed to the core. Messages of one fetch share one
 *  allocation (a mem_block), freed when the last of them is returned. */
typedef struct mem_msg {
    eb_msg base;
    mem_record *rec;
    struct mem_block *block;
    uint64_t seq;          /* in its lane's FIFO */
    char id[32];           /* "partition@offset" */
} mem_msg;

typedef struct mem_block {
    atomic_size_t live;    /* messages not yet returned */
    mem_msg msgs[];
} mem_block;

/* ---------------------------------------------------------------- broker */

/** Finds or creates the broker `name` and takes a reference. */
int mem_broker_acquire(const char *name, unsigned partitions, size_t retention_messages,
                       size_t retention_bytes, mem_broker **out, char *errstr,
                       size_t errstr_size);
/** Drops a reference; the last one frees the broker and its messages. */
void mem_broker_release(mem_broker *b);
/** Takes another reference to a broker already held. */
void mem_broker_ref(mem_broker *b);

/** Under b->mu: the topic, created with the broker's partition count. */
mem_topic *mem_topic_get(mem_broker *b, const char *name);

/** Stores a record (the caller built it) for the bus `mb`; waits for
 *  retention room until timeout_ms (0: not at all) unless the bus is
 *  closing. Fills partition and offset. @returns 0, EB_ERR_FULL, or
 *  EB_ERR_CLOSED when the bus closes while it would wait. */
int mem_broker_append(mem_bus *mb, const char *topic, mem_record *rec,
                      int64_t timeout_ms, unsigned *partition, uint64_t *offset);
/** The bus is closing: wakes its publishers waiting for room (they return
 *  EB_ERR_CLOSED) and lets none of them wait again. */
void mem_broker_close_waits(mem_bus *mb);

/** Builds a record from an outgoing message. @returns 0 and `*out`,
 *  EB_ERR_NOMEM, or EB_ERR_TOO_LARGE when its size does not fit a size_t. */
int mem_record_new(const eb_outgoing *m, int64_t timestamp_ms, mem_record **out);
void mem_record_unref(mem_record *rec);

/** Under b->mu: the group, created at the start position when new. */
mem_group *mem_group_join(mem_broker *b, mem_topic *t, const char *name,
                          eb_start_position start, mem_member *m);
/** Under b->mu: removes the member; frees an anonymous group. */
void mem_group_leave(mem_broker *b, mem_topic *t, mem_group *g, mem_member *m);

/** Under b->mu: the record at `offset` of partition pi, or NULL. */
mem_record *mem_partition_record(mem_topic *t, unsigned pi, uint64_t offset);

/** Under b->mu: wakes members of `t` waiting for records. */
void mem_topic_wake_members(mem_topic *t);

/** Writes the broker's JSON stats like snprintf. */
int mem_broker_stats(mem_broker *b, char *buf, size_t size);

/* ---------------------------------------------------------------- member */

int mem_member_start(mem_bus *mb, eb_host_sub *hs, const eb_sub_params *p,
                     mem_member **out, char *errstr, size_t errstr_size);
void mem_member_stop(mem_member *m);     /* unsubscribe */
void mem_member_free(mem_member *m);     /* sub_destroy */
void mem_member_ack(mem_member *m, eb_msg *const *msgs, size_t n);
void mem_member_release(mem_member *m, eb_msg *const *msgs, size_t n);
void mem_member_resume(mem_member *m);
/** Under b->mu: wakes the member's thread. */
void mem_member_wake(mem_member *m);

/* -------------------------------------------------------------- producer */

int mem_producer_start(const eb_host *host, eb_host_bus *hb, struct mem_producer **out);
/** Queues a delivery callback (status 0: stored at partition@offset). */
void mem_producer_report(struct mem_producer *p, void *token,
                        unsigned partition, uint64_t offset);
int mem_producer_flush(struct mem_producer *p, int64_t deadline_ns,
                       const eb_host *host);
/** Runs every queued callback, joins the thread, frees. */
void mem_producer_stop(struct mem_producer *p);

#endif
