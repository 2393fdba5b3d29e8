/*
 * test_lane_fifo.c — the in-flight FIFO every transport keeps per lane
 * (plugins/common/lane_fifo.c): acknowledged in any order, popped only
 * from a finished head, and never pushed past its bound (a ring that
 * wrapped over unfinished entries let Kafka commit past them: issue 7,
 * defect 1).
 */
#include <criterion/criterion.h>

#include "lane_fifo.h"

Test(lane_fifo, a_full_fifo_refuses_a_push_and_keeps_its_entries)
{
    eb_lane_fifo f;
    cr_assert_eq(eb_lane_fifo_init(&f, 4), 0);
    uint64_t seq[4], extra = 12345;
    for (int i = 0; i < 4; i++)
        cr_assert(eb_lane_fifo_push(&f, 100 + (uint64_t)i, &seq[i]));
    cr_assert(eb_lane_fifo_full(&f));
    cr_expect_not(eb_lane_fifo_push(&f, 104, &extra), "a full FIFO took a push");
    cr_expect_eq(extra, 12345, "a refused push wrote a sequence");
    cr_expect_eq(eb_lane_fifo_len(&f), 4);
    cr_expect_eq(eb_lane_fifo_head_offset(&f), 100, "the head was overwritten");

    /* Everything but the head finishes: nothing pops, nothing is freed. */
    uint64_t last = 0;
    for (int i = 1; i < 4; i++)
        cr_assert(eb_lane_fifo_mark_done(&f, seq[i]));
    cr_expect_not(eb_lane_fifo_pop_done(&f, &last), "popped past an unfinished head");
    cr_expect_not(eb_lane_fifo_push(&f, 104, &extra));

    /* The head finishes: all four pop, the last offset is the newest. */
    cr_assert(eb_lane_fifo_mark_done(&f, seq[0]));
    cr_expect(eb_lane_fifo_pop_done(&f, &last));
    cr_expect_eq(last, 103);
    cr_expect(eb_lane_fifo_push(&f, 104, &extra));
    eb_lane_fifo_free(&f);
}

Test(lane_fifo, an_ack_from_before_a_reset_finishes_nothing)
{
    eb_lane_fifo f;
    cr_assert_eq(eb_lane_fifo_init(&f, 2), 0);
    uint64_t old, fresh, last;
    cr_assert(eb_lane_fifo_push(&f, 7, &old));
    eb_lane_fifo_reset(&f);
    cr_assert(eb_lane_fifo_push(&f, 7, &fresh));
    cr_expect_not(eb_lane_fifo_mark_done(&f, old), "a stale sequence matched a new entry");
    cr_expect_not(eb_lane_fifo_pop_done(&f, &last));
    cr_expect(eb_lane_fifo_mark_done(&f, fresh));
    cr_expect(eb_lane_fifo_pop_done(&f, &last));
    cr_expect_eq(last, 7);
    eb_lane_fifo_free(&f);
}
