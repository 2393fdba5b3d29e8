/*
 * cases_flow.c — flow control: with every handler held, the dispatch pool
 * fills to dispatch.queue.max and the subscription's intake pauses
 * (EB_EVENT_PAUSED) instead of growing without bound; once the handlers
 * run again it resumes (EB_EVENT_RESUMED, at the low watermark) and every
 * message is handled, in per-key order, none lost.
 */
#include "eventbus/conformance.h"

#define FP_KEYS 4
#define FP_PER_KEY 100
#define FP_TOTAL (FP_KEYS * FP_PER_KEY)

struct fp_state {
    atomic_int open;      /* the handlers may finish */
    eb_conf_sink *sink;
    eb_conf_ctx *ctx;
};

/* Held until the case opens the gate: the messages behind it fill the pool. */
static eb_result fp_handler(const eb_msg *msg, void *opaque)
{
    struct fp_state *st = opaque;
    while (!atomic_load(&st->open))
        eb_conf_spin_us(200);
    return eb_conf_sink_handler(msg, st->sink);
}

/* Teardown: a failed check must not leave a handler held forever. */
static void fp_open(void *arg)
{
    struct fp_state *st = arg;
    atomic_store(&st->open, 1);
}

static int fp_paused(void *arg)
{
    struct fp_state *st = arg;
    return eb_conf_event_count(st->ctx, EB_EVENT_PAUSED) > 0;
}

void eb_case_full_pool_pauses_and_resumes(eb_conf_ctx *ctx)
{
    eb_config *cfg = eb_conf_config(ctx);
    eb_conf_set(ctx, cfg, "dispatch.workers", "1");
    eb_conf_set(ctx, cfg, "dispatch.queue.max", "16");
    eb_conf_set(ctx, cfg, "dispatch.queue.low.watermark", "4");
    eb_bus *bus = eb_conf_open(ctx, cfg);
    const char *topic = eb_conf_name(ctx, "t");
    const char *group = eb_conf_group_or_anon(ctx, eb_conf_name(ctx, "g"));
    eb_conf_recorder *r = eb_conf_recorder_new(ctx, FP_KEYS, FP_PER_KEY);
    struct fp_state *st = eb_conf_alloc(ctx, sizeof *st);
    st->sink = eb_conf_sink_new(ctx, r, NULL);
    st->ctx = ctx;
    eb_conf_on_teardown(ctx, fp_open, st);
    unsigned long revokes = eb_conf_event_count(ctx, EB_EVENT_REVOKED);
    eb_conf_subscribe(ctx, bus, topic, group, fp_handler, st);

    eb_conf_deliveries *d = eb_conf_deliveries_new(ctx, FP_TOTAL);
    for (unsigned i = 0; i < FP_TOTAL; i++)
        eb_conf_publish_seq(ctx, bus, topic, i % FP_KEYS, i / FP_KEYS, d, i);
    eb_conf_flush_confirmed(ctx, bus, d);

    EB_CHECK(eb_conf_wait(fp_paused, st, EB_CONF_WAIT_MS) == 0,
             "%d messages behind held handlers, dispatch.queue.max 16: intake never paused",
             FP_TOTAL);
    EB_CHECK_EQ(eb_conf_event_count(ctx, EB_EVENT_RESUMED), 0);
    EB_CHECK_EQ(eb_conf_recorder_total(r), 0);

    atomic_store(&st->open, 1);
    eb_conf_expect_all(ctx, r, FP_KEYS, FP_PER_KEY, "after the pool drained");
    EB_CHECK_GE(eb_conf_event_count(ctx, EB_EVENT_RESUMED), 1);
    eb_conf_expect_order(ctx, r, 1, "through a pause and a resume");
    eb_conf_check_duplicates(ctx, eb_conf_recorder_duplicates(r),
                             eb_conf_revokes_since(ctx, revokes), "pause and resume");
}
