/*
 * lane_fifo.c — a ring of (offset, done) indexed by sequence number.
 */
#include "lane_fifo.h"

#include <stdlib.h>

int eb_lane_fifo_init(eb_lane_fifo *f, uint32_t cap)
{
    *f = (eb_lane_fifo){.cap = cap ? cap : 1};
    f->offsets = malloc(f->cap * sizeof *f->offsets);
    f->done = calloc(f->cap, sizeof *f->done);
    if (!f->offsets || !f->done) {
        eb_lane_fifo_free(f);
        return -1;
    }
    return 0;
}

void eb_lane_fifo_free(eb_lane_fifo *f)
{
    free(f->offsets);
    free(f->done);
    f->offsets = NULL;
    f->done = NULL;
}

void eb_lane_fifo_reset(eb_lane_fifo *f)
{
    /* Sequences keep growing so an entry from before the reset never
     * matches one after it. */
    f->head_seq = f->tail_seq;
}

bool eb_lane_fifo_push(eb_lane_fifo *f, uint64_t offset, uint64_t *seq)
{
    if (eb_lane_fifo_full(f))
        return false;
    *seq = f->tail_seq++;
    f->offsets[*seq % f->cap] = offset;
    f->done[*seq % f->cap] = false;
    return true;
}

bool eb_lane_fifo_mark_done(eb_lane_fifo *f, uint64_t seq)
{
    if (seq < f->head_seq || seq >= f->tail_seq)
        return false;
    f->done[seq % f->cap] = true;
    return true;
}

bool eb_lane_fifo_pop_done(eb_lane_fifo *f, uint64_t *last_offset)
{
    bool popped = false;
    while (f->head_seq < f->tail_seq && f->done[f->head_seq % f->cap]) {
        *last_offset = f->offsets[f->head_seq % f->cap];
        f->head_seq++;
        popped = true;
    }
    return popped;
}
