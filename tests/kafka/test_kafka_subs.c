/*
 * test_kafka_subs.c — subscriptions of one group member (one consumer,
 * one poll thread) coming and going while their handlers still run, on a
 * real broker (EB_KAFKA_BOOTSTRAP; skipped without one).
 *
 * Issue 7, defect 3: destroying one subscription while its handler
 * outlived the revoke timeout let the poll thread read the freed
 * subscription while serving that handler's late ack (AddressSanitizer:
 * heap-use-after-free). The window is a few microseconds wide, so the case
 * runs several rounds with many late acks each; every round also checks
 * that the other subscription keeps flowing.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kafka_helpers.h"
#include "test_wait.h"

enum { ROUNDS = 6, HELD = 200, WORKERS = 16 };

typedef struct gate {
    kt_gate gate;
    atomic_int waiting;
} gate;

/** Held until the gate opens (30 s at most), then ACK. */
static eb_result held(const eb_msg *msg, void *opaque)
{
    (void)msg;
    gate *g = opaque;
    atomic_fetch_add(&g->waiting, 1);
    kt_gate_wait(&g->gate, 30);
    return EB_ACK;
}

typedef struct destroyer {
    eb_sub *sub;
    pthread_t thread;
} destroyer;

static bool all_workers_held(void *arg)
{
    return atomic_load(&((gate *)arg)->waiting) >= WORKERS;
}

static void *destroy_sub(void *arg)
{
    eb_sub_destroy(((destroyer *)arg)->sub); /* waits for the held handlers */
    return NULL;
}

Test(kafka_subs, destroying_a_sub_whose_handlers_outlive_the_revoke_timeout, .timeout = 240)
{
    const char *bootstrap = kt_real_broker();
    if (!bootstrap)
        cr_skip_test("EB_KAFKA_BOOTSTRAP is not set");
    char workers[16];
    snprintf(workers, sizeof workers, "%d", WORKERS);
    const kt_setting s[] = {{"kafka.topic.partitions", "2"},
                            {"dispatch.workers", workers},
                            {"dispatch.revoke.timeout.ms", "200"},
                            {NULL, NULL}};
    char stay_topic[96], group[96];
    kt_unique(stay_topic, sizeof stay_topic, "subs-stay");
    kt_unique(group, sizeof group, "subs-g");
    eb_bus *bus = kt_open(bootstrap, s, NULL, NULL);
    kt_tracker *stay = kt_tracker_new(ROUNDS);
    kt_subscribe_ready(bus, stay_topic, group, kt_handle, stay, 30000);

    for (int round = 0; round < ROUNDS; round++) {
        char topic[96];
        kt_unique(topic, sizeof topic, "subs-go");
        gate g = {.gate = KT_GATE_INIT};
        kt_tracker *t = kt_tracker_new(HELD);
        eb_sub *sub = kt_subscribe_ready(bus, topic, group, held, &g, 30000);
        for (size_t i = 0; i < HELD; i++) {
            char key[16];
            snprintf(key, sizeof key, "k%zu", i);
            cr_assert_eq(kt_publish(bus, t, topic, i, key), 0);
        }
        test_wait_for(all_workers_held, &g, 20000);
        cr_assert_eq(atomic_load(&g.waiting), WORKERS, "round %d: %d handlers held", round,
                     atomic_load(&g.waiting));
        /* The handlers outlive the revoke timeout: unsubscribe returns with
         * them still running; destroy waits for them, and their acks reach
         * the poll thread as the sub is freed. */
        cr_assert_eq(eb_unsubscribe(sub), 0);
        destroyer d = {.sub = sub};
        cr_assert_eq(pthread_create(&d.thread, NULL, destroy_sub, &d), 0);
        kt_gate_open(&g.gate);
        pthread_join(d.thread, NULL);
        kt_tracker_free(t);

        /* The member's other subscription still flows. */
        cr_assert_eq(kt_publish(bus, stay, stay_topic, (size_t)round, NULL), 0);
        size_t want = (size_t)round + 1;
        cr_expect(kt_wait(stay, kt_handled_at_least, &want, 20000),
                  "round %d: the staying subscription stopped", round);
    }
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    eb_bus_destroy(bus);
    kt_tracker_free(stay);
}
