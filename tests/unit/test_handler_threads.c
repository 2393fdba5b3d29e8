/*
 * test_handler_threads.c — a bus starts its handler threads (the dispatch
 * workers, the pool's watcher and the retry timer) with its first subscription, never for
 * publishing alone, and none is left after close. Threads are told apart
 * by their names in /proc/self/task/<tid>/comm.
 */
#include <criterion/criterion.h>

#include "eventbus/eventbus.h"
#include "proc_threads.h"
#include "test_wait.h"

/** Threads name themselves once running: looks until `want` carry `name`
 *  or 10 s passed. @returns the last count. */
static int wait_threads_named(const char *name, int want)
{
    int64_t deadline = test_now_ms() + 10000;
    int n;
    while ((n = proc_threads_named(name)) != want && test_now_ms() < deadline)
        test_next_look();
    return n;
}

static eb_result ack(const eb_msg *m, void *opaque) { return EB_ACK; }
static void delivered(int status, const char *id, void *opaque) { }

Test(handler_threads, start_with_the_first_subscription_and_end_at_close)
{
    char err[512];
    eb_config *cfg = eb_config_new();
    cr_assert_eq(eb_config_set(cfg, "dispatch.workers", "3", err, sizeof err), 0, "%s", err);
    eb_bus *bus = NULL;
    cr_assert_eq(eb_bus_open(cfg, &bus, err, sizeof err), 0, "%s", err);
    eb_config_destroy(cfg);

    eb_outgoing m = {.topic = "threads", .payload = "x", .payload_len = 1};
    cr_assert_eq(eb_publish(bus, &m, delivered, NULL), 0);
    cr_assert_eq(eb_flush(bus, 10000), 0);
    cr_expect_eq(proc_threads_named("eb-worker"), 0, "workers of a bus that only publishes");
    cr_expect_eq(proc_threads_named("eb-timer"), 0, "a timer of a bus that only publishes");
    cr_expect_eq(proc_threads_named("eb-pool"), 0, "a pool watcher of a bus that only publishes");

    eb_sub *sub = NULL;
    cr_assert_eq(eb_subscribe(bus, "threads", "g", ack, NULL, NULL, &sub, err, sizeof err), 0,
                 "%s", err);
    cr_expect_eq(wait_threads_named("eb-worker", 3), 3);
    cr_expect_eq(wait_threads_named("eb-timer", 1), 1);
    cr_expect_eq(wait_threads_named("eb-pool", 1), 1);
    eb_sub *second = NULL;
    cr_assert_eq(eb_subscribe(bus, "threads-2", "g", ack, NULL, NULL, &second, err,
                              sizeof err), 0, "%s", err);
    cr_expect_eq(proc_threads_named("eb-worker"), 3, "a second subscription starts no more");

    cr_assert_eq(eb_bus_close(bus, 5000), 0);
    cr_expect_eq(proc_threads_named("eb-worker"), 0);
    cr_expect_eq(proc_threads_named("eb-timer"), 0);
    cr_expect_eq(proc_threads_named("eb-pool"), 0);
    eb_bus_destroy(bus);
}
