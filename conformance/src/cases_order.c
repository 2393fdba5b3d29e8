/*
 * cases_order.c — per-key order under a parallel worker pool: handlers of
 * one key never overlap and run in stored order, handlers of different keys
 * do run at the same time.
 */
#include "eventbus/conformance.h"

#include <stdatomic.h>
#include <stdio.h>

#define KO_KEYS 16
#define KO_PER_KEY 1000
#define KO_WORKERS 4

struct ko_state {
    eb_conf_recorder *rec;
    atomic_int running[KO_KEYS]; /* a handler of this key is running */
    atomic_int concurrent;       /* handlers running now, any key */
    atomic_int max_concurrent;
    atomic_ulong overlaps, bad;
};

/* Runs on a dispatch worker. */
static eb_result ko_handler(const eb_msg *msg, void *opaque)
{
    struct ko_state *st = opaque;
    unsigned key, seq;
    if (eb_conf_msg_seq(msg, &key, &seq) != 0 || key >= KO_KEYS) {
        atomic_fetch_add(&st->bad, 1);
        return EB_ACK;
    }
    if (atomic_exchange(&st->running[key], 1) != 0)
        atomic_fetch_add(&st->overlaps, 1);
    int now = atomic_fetch_add(&st->concurrent, 1) + 1;
    int max = atomic_load(&st->max_concurrent);
    while (now > max && !atomic_compare_exchange_weak(&st->max_concurrent, &max, now))
        ;
    eb_conf_recorder_add(st->rec, key, seq);
    /* A little work, so handlers of different keys truly overlap. */
    eb_conf_spin_us(3);
    atomic_fetch_sub(&st->concurrent, 1);
    atomic_store(&st->running[key], 0);
    return EB_ACK;
}

void eb_case_key_order_parallel(eb_conf_ctx *ctx)
{
    struct ko_state *st = eb_conf_alloc(ctx, sizeof *st);
    st->rec = eb_conf_recorder_new(ctx, KO_KEYS, KO_PER_KEY);
    const char *topic = eb_conf_name(ctx, "t");

    eb_config *cfg = eb_conf_config(ctx);
    char workers[16];
    snprintf(workers, sizeof workers, "%d", KO_WORKERS);
    eb_conf_set(ctx, cfg, "dispatch.workers", workers);
    eb_bus *bus = eb_conf_open(ctx, cfg);
    eb_conf_subscribe(ctx, bus, topic,
                      eb_conf_group_or_anon(ctx, eb_conf_name(ctx, "g")),
                      ko_handler, st);
    unsigned long revokes = eb_conf_event_count(ctx, EB_EVENT_REVOKED);

    eb_conf_deliveries *d = eb_conf_deliveries_new(ctx, KO_KEYS * KO_PER_KEY);
    for (unsigned seq = 0; seq < KO_PER_KEY; seq++)
        for (unsigned key = 0; key < KO_KEYS; key++)
            eb_conf_publish_seq(ctx, bus, topic, key, seq, d,
                                (size_t)seq * KO_KEYS + key);
    eb_conf_flush_confirmed(ctx, bus, d);

    if (eb_conf_recorder_wait(st->rec, KO_KEYS * KO_PER_KEY, EB_CONF_WAIT_MS) != 0) {
        char missing[160];
        unsigned long n = eb_conf_recorder_missing(st->rec, KO_KEYS, KO_PER_KEY,
                                                   missing, sizeof missing);
        EB_FAIL("%lu of %d messages not handled within %d ms (key:seq %s ...)",
                n, KO_KEYS * KO_PER_KEY, EB_CONF_WAIT_MS, missing);
    }
    unsigned long revoked = eb_conf_revokes_since(ctx, revokes);
    EB_CHECK_OK(eb_bus_close(bus, EB_CONF_CLOSE_MS));

    EB_CHECK_EQ(atomic_load(&st->bad), 0);
    EB_CHECK_EQ(eb_conf_recorder_out_of_range(st->rec), 0);
    EB_CHECK(eb_conf_recorder_order_violations(st->rec) == 0,
             "%lu per-key order violation(s); first: %s",
             eb_conf_recorder_order_violations(st->rec),
             eb_conf_recorder_first_violation(st->rec));
    EB_CHECK(atomic_load(&st->overlaps) == 0,
             "%lu time(s) a handler started while another of the same key ran",
             atomic_load(&st->overlaps));
    eb_conf_check_duplicates(ctx, eb_conf_recorder_duplicates(st->rec), revoked,
                             "key_order_parallel");
    EB_CHECK(atomic_load(&st->max_concurrent) > 1,
             "with dispatch.workers=%d, handlers of different keys never ran "
             "at the same time (max concurrency %d)",
             KO_WORKERS, atomic_load(&st->max_concurrent));
    eb_conf_note(ctx, "max concurrency %d of %d workers",
                 atomic_load(&st->max_concurrent), KO_WORKERS);
}
