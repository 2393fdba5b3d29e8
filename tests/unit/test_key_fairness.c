/*
 * test_key_fairness.c — a key with a long backlog does not keep others
 * waiting: keys (and subscriptions) take turns, a turn being at most one
 * batch (256 messages). One worker; the first message of key "hot" holds
 * it until 5,000 of hot's messages, then one message of key "cold" and one
 * of another subscription, are all in the dispatcher; then it lets go.
 * The cold key and the other subscription must run within one turn of
 * hot's, not after its whole backlog.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "eventbus/eventbus.h"
#include "test_bus.h"
#include "test_wait.h"

enum { HOT = 5000, TURN = 256, WAIT_MS = 20000 };

static atomic_int order;          /* handler calls so far */
static atomic_int cold_at, other_at, hot_done;
static atomic_bool holding, released;

static bool all_queued(void *bus)
{
    /* Hot's first message is running; the rest, cold's and the other
     * subscription's wait in the dispatcher. */
    return test_stat_required(bus, "queued") + test_stat_required(bus, "in_batch") >= HOT + 1;
}

static eb_result main_topic(const eb_msg *msg, void *opaque)
{
    (void)opaque;
    int at = atomic_fetch_add(&order, 1);
    size_t len;
    const char *key = eb_msg_key(msg, &len);
    if (len == 4 && memcmp(key, "cold", 4) == 0) {
        atomic_store(&cold_at, at);
        return EB_ACK;
    }
    if (at == 0) { /* hot's first: hold the only worker until the test lets go */
        atomic_store(&holding, true);
        int64_t deadline = test_now_ms() + 2 * WAIT_MS; /* outlives the test's wait */
        while (!atomic_load(&released) && test_now_ms() < deadline)
            test_next_look();
    }
    atomic_fetch_add(&hot_done, 1);
    return EB_ACK;
}

static eb_result other_topic(const eb_msg *msg, void *opaque)
{
    (void)msg, (void)opaque;
    atomic_store(&other_at, atomic_fetch_add(&order, 1));
    return EB_ACK;
}

static void publish(eb_bus *bus, const char *topic, const char *key)
{
    eb_outgoing m = {.topic = topic, .key = key, .key_len = strlen(key),
                     .payload = "x", .payload_len = 1};
    cr_assert_eq(eb_publish(bus, &m, NULL, NULL), 0);
}

static bool first_holding(void *arg)
{
    (void)arg;
    return atomic_load(&holding);
}

static bool all_handled(void *arg)
{
    (void)arg;
    return atomic_load(&hot_done) == HOT && atomic_load(&cold_at) >= 0 &&
           atomic_load(&other_at) >= 0;
}

Test(key_fairness, a_long_backlog_of_one_key_lets_others_run_within_a_turn)
{
    atomic_store(&cold_at, -1);
    atomic_store(&other_at, -1);
    const char *const kv[][2] = {{"memory.name", "fairness"},
                                 {"memory.partitions", "1"},
                                 {"dispatch.workers", "1"}};
    eb_bus *bus = test_open_with(kv, 3, NULL);
    test_subscribe_ready(bus, "main", main_topic);
    test_subscribe_ready(bus, "other", other_topic);
    /* Hot's first message must be the first to run (the other
     * subscription's member thread could otherwise deliver first). */
    publish(bus, "main", "hot");
    cr_assert(test_wait_for(first_holding, NULL, WAIT_MS), "hot's first message never ran");
    for (int i = 1; i < HOT; i++)
        publish(bus, "main", "hot");
    publish(bus, "main", "cold");
    publish(bus, "other", "any");
    bool queued = test_wait_for(all_queued, bus, WAIT_MS);
    char *stats = NULL;
    if (!queued && eb_bus_stats(bus, &stats) == 0)
        cr_log_error("stats when the wait ended: %s", stats);
    free(stats);
    atomic_store(&released, true);
    cr_assert(queued, "the messages never all reached the dispatcher");
    cr_assert(test_wait_for(all_handled, NULL, WAIT_MS), "not all handled: hot %d, cold at %d",
              atomic_load(&hot_done), atomic_load(&cold_at));
    cr_log_info("cold ran as call %d, the other subscription as call %d", atomic_load(&cold_at),
                atomic_load(&other_at));
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    eb_bus_destroy(bus);
    cr_expect_leq(atomic_load(&cold_at), 1 + TURN,
                  "the cold key ran as handler call %d, behind %d messages of the hot key",
                  atomic_load(&cold_at), atomic_load(&cold_at) - 1);
    cr_expect_leq(atomic_load(&other_at), 2 + TURN,
                  "the other subscription ran as handler call %d", atomic_load(&other_at));
}
