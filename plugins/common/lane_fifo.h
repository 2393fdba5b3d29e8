/*
 * lane_fifo.h — the in-flight FIFO of one lane (a partition, a stream):
 * messages in delivery order, acknowledged in any order, popped from the
 * head only while finished, so the position a transport commits never
 * passes an unfinished message. Offsets are stored, never computed: Kafka
 * offsets have gaps.
 *
 * Not thread-safe: the transport's own thread owns each FIFO.
 */
#ifndef EB_LANE_FIFO_H
#define EB_LANE_FIFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct eb_lane_fifo {
    uint64_t *offsets;
    bool *done;
    uint32_t cap;
    uint64_t head_seq; /* sequence number of the oldest entry */
    uint64_t tail_seq; /* sequence number the next push gets */
} eb_lane_fifo;

/** @returns 0, or -1 when out of memory. */
int eb_lane_fifo_init(eb_lane_fifo *f, uint32_t cap);
void eb_lane_fifo_free(eb_lane_fifo *f);
/** Forgets every entry (the lane was revoked or assigned again). */
void eb_lane_fifo_reset(eb_lane_fifo *f);

static inline bool eb_lane_fifo_full(const eb_lane_fifo *f)
{
    return f->tail_seq - f->head_seq >= f->cap;
}

static inline size_t eb_lane_fifo_len(const eb_lane_fifo *f)
{
    return (size_t)(f->tail_seq - f->head_seq);
}

/**
 * Appends `offset` and stores its sequence in *seq. @returns false, and
 * changes nothing, when the FIFO is full: the caller must then keep the
 * message out of the lane (pause it, rewind its fetch position). A ring
 * that wrapped over unfinished entries let the committed position pass
 * them (issue 7, defect 1), so there is no unchecked push.
 */
__attribute__((warn_unused_result))
bool eb_lane_fifo_push(eb_lane_fifo *f, uint64_t offset, uint64_t *seq);

/** The offset of the oldest entry (the FIFO must not be empty). */
static inline uint64_t eb_lane_fifo_head_offset(const eb_lane_fifo *f)
{
    return f->offsets[f->head_seq % f->cap];
}

/** Marks entry `seq` finished. @returns false if seq is not in the FIFO
 *  (already popped, or from before a reset). */
bool eb_lane_fifo_mark_done(eb_lane_fifo *f, uint64_t seq);

/** Pops finished entries from the head. @returns true and the offset of
 *  the last one popped in *last_offset when anything was popped. */
bool eb_lane_fifo_pop_done(eb_lane_fifo *f, uint64_t *last_offset);

#endif
