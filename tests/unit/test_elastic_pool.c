/*
 * test_elastic_pool.c — the default pool grows for handlers that wait
 * (here: sleep, as a handler waiting on I/O does), never for handlers that
 * use the CPU, never past dispatch.workers.max, shrinks back to one worker
 * per CPU once idle, stays fixed when dispatch.workers is set, and leaves
 * no thread behind. Sizes come from eb_bus_stats().
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eventbus/eventbus.h"
#include "proc_threads.h"
#include "test_bus.h"
#include "test_wait.h"

enum { MESSAGES = 600, KEYS = 200 };

static atomic_int handled;

/** Waits 2 ms off the CPU, as a handler writing to a database would. */
static eb_result waits_on_io(const eb_msg *msg, void *opaque)
{
    (void)msg, (void)opaque;
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL); /* the handler's simulated I/O, not a wait for a condition */
    atomic_fetch_add(&handled, 1);
    return EB_ACK;
}

/** Waits 0.5 ms off the CPU: shares of the unkeyed queue are taken more
 *  often than the pool's watcher ticks (1 ms). */
static eb_result waits_half_a_ms(const eb_msg *msg, void *opaque)
{
    (void)msg, (void)opaque;
    struct timespec ts = {0, 500000};
    nanosleep(&ts, NULL); /* the handler's simulated I/O, not a wait for a condition */
    atomic_fetch_add(&handled, 1);
    return EB_ACK;
}

/** Uses the CPU for 2 ms. */
static eb_result uses_cpu(const eb_msg *msg, void *opaque)
{
    (void)msg, (void)opaque;
    struct timespec start, now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
    volatile unsigned spin = 0;
    do {
        for (int i = 0; i < 1000; i++)
            spin += (unsigned)i;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    } while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) <
             2000000);
    atomic_fetch_add(&handled, 1);
    return EB_ACK;
}

static void publish_keyed(eb_bus *bus, const char *topic, int n)
{
    for (int i = 0; i < n; i++) {
        char key[16];
        int len = snprintf(key, sizeof key, "k%d", i % KEYS);
        eb_outgoing m = {.topic = topic, .key = key, .key_len = (size_t)len,
                         .payload = "x", .payload_len = 1};
        cr_assert_eq(eb_publish(bus, &m, NULL, NULL), 0);
    }
}

static void wait_handled(int n, int timeout_ms)
{
    int64_t deadline = test_now_ms() + timeout_ms;
    while (atomic_load(&handled) < n && test_now_ms() < deadline)
        test_next_look();
    cr_assert_eq(atomic_load(&handled), n, "%d of %d handled", atomic_load(&handled), n);
}

static long cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n;
}

Test(elastic_pool, grows_for_handlers_that_wait_up_to_its_max_and_shrinks_when_idle)
{
    atomic_store(&handled, 0);
    const char *const kv[][2] = {{"memory.name", "elastic-io"},
                                 {"dispatch.workers.max", "8"},
                                 {"dispatch.workers.idle.ms", "200"}};
    eb_bus *bus = test_open_with(kv, 3, NULL);
    test_subscribe_ready(bus, "io", waits_on_io);
    cr_expect_eq(test_stat_required(bus, "workers"), cpus(), "starts at one per CPU");
    cr_expect_eq(test_stat_required(bus, "workers_max"), 8);
    publish_keyed(bus, "io", MESSAGES);
    wait_handled(MESSAGES, 30000);
    long long peak = test_stat_required(bus, "workers_peak");
    /* 600 handlers of 2 ms: more work than 8 workers finish before the
     * pool reaches them, so it fills its bound, and goes no further. */
    cr_expect_eq(peak, 8, "the pool should grow for waiting handlers to exactly "
                          "dispatch.workers.max (8), peak %lld", peak);
    cr_expect_gt(test_stat_required(bus, "waited_for_worker_ms"), 0);
    /* Idle for 200 ms: back to one per CPU, and the threads joined (a
     * retired worker's thread ends a moment after the stats count it out). */
    int64_t deadline = test_now_ms() + 10000;
    while ((test_stat_required(bus, "workers") > cpus() ||
            proc_threads_named("eb-worker") > cpus()) &&
           test_now_ms() < deadline)
        test_next_look();
    cr_expect_eq(test_stat_required(bus, "workers"), cpus(), "idle workers did not retire");
    cr_expect_eq(proc_threads_named("eb-worker"), cpus(), "retired workers were not joined");
    /* And it grows again. */
    publish_keyed(bus, "io", MESSAGES);
    wait_handled(2 * MESSAGES, 30000);
    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    cr_expect_eq(proc_threads_named("eb-worker"), 0, "workers left after close");
    cr_expect_eq(proc_threads_named("eb-pool"), 0, "the pool watcher left after close");
    eb_bus_destroy(bus);
}

static void publish_unkeyed(eb_bus *bus, const char *topic, int n)
{
    for (int i = 0; i < n; i++) {
        eb_outgoing m = {.topic = topic, .payload = "x", .payload_len = 1};
        cr_assert_eq(eb_publish(bus, &m, NULL, NULL), 0);
    }
}

static bool pool_at_8(void *bus) { return test_stat_required(bus, "workers") == 8; }

/* Unkeyed messages wait in one shared queue that workers take shares of;
 * it must look as old as its messages (it once looked new at every share,
 * and the pool never grew: eventbus bench --keys 0 --work-us 1000 handled
 * 2,084 msgs/s). */
Test(elastic_pool, grows_for_unkeyed_messages_whose_handlers_wait)
{
    atomic_store(&handled, 0);
    const char *const kv[][2] = {{"memory.name", "elastic-unkeyed"},
                                 {"dispatch.workers.max", "8"},
                                 {"dispatch.workers.idle.ms", "200"}};
    eb_bus *bus = test_open_with(kv, 3, NULL);
    test_subscribe_ready(bus, "io", waits_half_a_ms);
    /* A first round teaches the dispatcher the handlers' 0.5 ms (batches then
     * shrink to a message or two); the pool shrinks back once idle. */
    publish_unkeyed(bus, "io", MESSAGES);
    wait_handled(MESSAGES, 30000);
    int64_t deadline = test_now_ms() + 10000;
    while (test_stat_required(bus, "workers") > cpus() && test_now_ms() < deadline)
        test_next_look();
    cr_assert_eq(test_stat_required(bus, "workers"), cpus(), "idle workers did not retire");
    publish_unkeyed(bus, "io", 16 * MESSAGES); /* 2.4 s for two workers */
    bool grew = test_wait_for(pool_at_8, bus, 20000);
    wait_handled(17 * MESSAGES, 30000);
    cr_expect(grew, "unkeyed waiting handlers: the pool never reached dispatch.workers.max "
                    "(8) again, it had %lld workers",
              test_stat_required(bus, "workers"));
    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    eb_bus_destroy(bus);
}

Test(elastic_pool, does_not_grow_for_handlers_that_use_the_cpu)
{
    atomic_store(&handled, 0);
    const char *const kv[][2] = {{"memory.name", "elastic-cpu"}};
    eb_bus *bus = test_open_with(kv, 1, NULL);
    test_subscribe_ready(bus, "cpu", uses_cpu);
    publish_keyed(bus, "cpu", MESSAGES);
    wait_handled(MESSAGES, 60000);
    long long peak = test_stat_required(bus, "workers_peak");
    cr_expect_eq(peak, cpus(), "the pool grew to %lld for handlers that use the CPU", peak);
    cr_expect_gt(test_stat_required(bus, "waited_for_worker_ms"), 0,
                 "messages waited for a worker, and the stats should say so");
    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    eb_bus_destroy(bus);
}

Test(elastic_pool, a_fixed_pool_stays_at_its_size)
{
    atomic_store(&handled, 0);
    const char *const kv[][2] = {{"memory.name", "fixed-io"}, {"dispatch.workers", "2"}};
    eb_bus *bus = test_open_with(kv, 2, NULL);
    test_subscribe_ready(bus, "io", waits_on_io);
    publish_keyed(bus, "io", MESSAGES / 4);
    wait_handled(MESSAGES / 4, 30000);
    cr_expect_eq(test_stat_required(bus, "workers_peak"), 2);
    cr_expect_eq(test_stat_required(bus, "workers_max"), 2);
    cr_expect_gt(test_stat_required(bus, "waited_for_worker_ms"), 0);
    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    eb_bus_destroy(bus);
}

Test(elastic_pool, bad_sizes_are_refused)
{
    eb_config *cfg = eb_config_new();
    char err[256];
    cr_expect_eq(eb_config_set(cfg, "dispatch.workers.max", "0", err, sizeof err), EB_ERR_CONFIG);
    cr_expect(strstr(err, "dispatch.workers.max") != NULL, "%s", err);
    cr_expect_eq(eb_config_set(cfg, "dispatch.workers.max", "1025", err, sizeof err),
                 EB_ERR_CONFIG);
    cr_expect_eq(eb_config_set(cfg, "dispatch.workers.idle.ms", "0", err, sizeof err),
                 EB_ERR_CONFIG);
    eb_config_destroy(cfg);
}
