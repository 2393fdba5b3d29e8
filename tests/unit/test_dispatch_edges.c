/*
 * test_dispatch_edges.c — regression tests for the dispatch edge cases a
 * review found: a retry waiting on the timer at close or unsubscribe, a
 * subscription owed a resume when a revoke empties the pool, and
 * subscribe/unsubscribe racing close.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eventbus/eventbus.h"
#include "test_bus.h"
#include "test_wait.h"

static char err[512];

static void wait_for(atomic_int *counter, int want)
{
    int64_t deadline = test_now_ms() + 10000;
    while (atomic_load(counter) < want && test_now_ms() < deadline)
        test_next_look();
    cr_assert_geq(atomic_load(counter), want, "waited 10 s for %d, have %d", want,
                  atomic_load(counter));
}

static void publish(eb_bus *bus, const char *topic, const char *key)
{
    eb_outgoing m = {.topic = topic, .key = key, .key_len = key ? strlen(key) : 0,
                     .payload = "x", .payload_len = 1};
    cr_assert_eq(eb_publish(bus, &m, NULL, NULL), 0);
}

/* ------------------------------------------------- retries at the edges */

static atomic_int calls, calls_after_stop;
static atomic_int stopping;

static eb_result always_retry(const eb_msg *msg, void *opaque)
{
    atomic_fetch_add(&calls, 1);
    if (atomic_load(&stopping))
        atomic_fetch_add(&calls_after_stop, 1);
    return EB_RETRY;
}

static const char *const slow_retry[][2] = {
    {"memory.name", "edges"}, {"retry.max.attempts", "5"},
    {"retry.backoff.ms", "1000"}, {"retry.backoff.max.ms", "1000"}};

Test(dispatch_edges, close_with_a_retry_waiting_times_out_and_runs_nothing_more)
{
    eb_bus *bus = test_open_with(slow_retry, 4, NULL);
    test_subscribe_ready(bus, "t", always_retry);
    publish(bus, "t", "k");
    wait_for(&calls, 1);
    atomic_store(&stopping, 1);
    int64_t start = test_now_ms();
    cr_expect_eq(eb_bus_close(bus, 200), EB_ERR_TIMEOUT,
                 "a retry still waiting at the deadline was abandoned");
    cr_expect_lt(test_now_ms() - start, 900, "close waited for the retry's backoff");
    cr_expect_eq(atomic_load(&calls_after_stop), 0, "a handler ran after close began");
    eb_bus_destroy(bus);
}

Test(dispatch_edges, unsubscribe_with_a_retry_waiting_runs_nothing_more)
{
    eb_bus *bus = test_open_with(slow_retry, 4, NULL);
    eb_sub *sub = test_subscribe_ready(bus, "t", always_retry);
    publish(bus, "t", "k");
    wait_for(&calls, 1);
    atomic_store(&stopping, 1);
    int64_t start = test_now_ms();
    cr_expect_eq(eb_unsubscribe(sub), 0);
    eb_sub_destroy(sub);
    cr_expect_lt(test_now_ms() - start, 900, "unsubscribe or destroy waited for the backoff");
    cr_expect_eq(atomic_load(&calls_after_stop), 0, "a handler ran after unsubscribe");
    cr_expect_eq(eb_bus_close(bus, 1000), 0);
    eb_bus_destroy(bus);
}

/* --------------------------------------------------- resume after purge */

static atomic_int gate, a_calls, b_calls, revoked;

static eb_result gated_a(const eb_msg *msg, void *opaque)
{
    atomic_fetch_add(&a_calls, 1);
    while (!atomic_load(&gate))
        test_next_look(); /* stuck until the test opens the gate: the point of it */
    return EB_ACK;
}

static eb_result count_b(const eb_msg *msg, void *opaque)
{
    atomic_fetch_add(&b_calls, 1);
    return EB_ACK;
}

static void on_event(eb_bus *bus, const eb_event *ev, void *opaque)
{
    if (ev->type == EB_EVENT_REVOKED) {
        atomic_fetch_add(&revoked, 1);
        atomic_store(&gate, 1);
    }
}

static void *unsubscribe_thread(void *sub)
{
    eb_unsubscribe(sub);
    return NULL;
}

/* A fills the one-worker pool and sticks; B is refused and owed a resume.
 * Unsubscribing A purges the pool to nothing: B must still be resumed. */
Test(dispatch_edges, subscription_owed_a_resume_resumes_after_a_purge)
{
    const char *const kv[][2] = {
        {"memory.name", "purge"}, {"dispatch.workers", "1"}, {"dispatch.queue.max", "100"},
        {"dispatch.queue.low.watermark", "50"}, {"dispatch.revoke.timeout.ms", "100"}};
    eb_bus *bus = test_open_with(kv, 5, on_event);
    eb_sub *a = test_subscribe_ready(bus, "a", gated_a);
    test_subscribe_ready(bus, "b", count_b);
    for (int i = 0; i < 400; i++)
        publish(bus, "a", NULL);
    wait_for(&a_calls, 1);
    publish(bus, "b", NULL);
    pthread_t t;
    pthread_create(&t, NULL, unsubscribe_thread, a);
    wait_for(&revoked, 1); /* the revoke timed out on A's stuck handler */
    pthread_join(t, NULL);
    wait_for(&b_calls, 1);
    cr_expect_eq(eb_bus_close(bus, 2000), 0);
    eb_bus_destroy(bus);
}

/* ------------------------------------------------------ races with close */

static eb_result ack(const eb_msg *msg, void *opaque) { return EB_ACK; }

typedef struct race {
    eb_bus *bus;
    eb_sub *sub;
    int rc;
} race;

static void *subscribe_thread(void *arg)
{
    race *r = arg;
    r->rc = eb_subscribe(r->bus, "late", "g", ack, NULL, NULL, &r->sub, err, sizeof err);
    return NULL;
}

static void *unsubscribe_race_thread(void *arg)
{
    race *r = arg;
    r->rc = eb_unsubscribe(r->sub);
    return NULL;
}

Test(dispatch_edges, subscribe_and_unsubscribe_racing_close)
{
    const char *const kv[][2] = {{"memory.name", "races"}};
    for (int i = 0; i < 200; i++) {
        eb_bus *bus = test_open_with(kv, 1, NULL);
        race r = {.bus = bus, .sub = NULL};
        bool unsub = i % 2;
        if (unsub)
            r.sub = test_subscribe_ready(bus, "early", ack);
        pthread_t t;
        pthread_create(&t, NULL, unsub ? unsubscribe_race_thread : subscribe_thread, &r);
        int rc = eb_bus_close(bus, 1000);
        pthread_join(t, NULL);
        cr_assert_eq(rc, 0, "close: %s", eb_err_name(rc));
        cr_assert(r.rc == 0 || r.rc == EB_ERR_CLOSED, "racing call: %s", eb_err_name(r.rc));
        eb_sub_destroy(r.sub);
        eb_bus_destroy(bus);
    }
}

/* ------------------------------------- held batches and the watermark */

/* The first message's handler is held until the others are handled:
 * parallel handling must not need it to finish. Held batches used to
 * count against the low watermark whole (up to a quarter of the queue
 * each), so intake stayed paused while three workers slept. */
static atomic_int others_handled, holder_taken;
enum { HB_OTHERS = 400 };

static eb_result hold_first(const eb_msg *msg, void *opaque)
{
    if (atomic_exchange(&holder_taken, 1) == 0) {
        int64_t deadline = test_now_ms() + 10000;
        while (atomic_load(&others_handled) < HB_OTHERS && test_now_ms() < deadline)
            test_next_look();
        return EB_ACK;
    }
    atomic_fetch_add(&others_handled, 1);
    return EB_ACK;
}

static const char *const small_pool[][2] = {
    {"memory.name", "held"}, {"dispatch.workers", "4"},
    {"dispatch.queue.max", "16"}, {"dispatch.queue.low.watermark", "4"}};

Test(dispatch_edges, one_held_handler_does_not_stop_the_others)
{
    eb_bus *bus = test_open_with(small_pool, 4, NULL);
    test_subscribe_ready(bus, "t", hold_first);
    for (int i = 0; i < HB_OTHERS + 1; i++)
        publish(bus, "t", NULL); /* unkeyed: any worker may run any */
    wait_for(&others_handled, HB_OTHERS);
    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    eb_bus_destroy(bus);
}
