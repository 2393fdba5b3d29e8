/*
 * test_million_keys.c — a key costs memory only while it is held up: a
 * million distinct keys, each retried once (so each passes through the
 * dispatcher's held-key table, thousands at a time), and the heap comes
 * back to where it was before them. Keys that are merely queued cost
 * nothing per key (they wait in shards, by hash).
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "eventbus/eventbus.h"
#include "heap_bytes.h"
#include "test_bus.h"
#include "test_wait.h"

enum { KEYS = 1000000, WARM_KEYS = 20000, WAIT_MS = 100000 };
/* What may stay allocated after the million: the held-key table keeps up
 * to 256 freed entries for reuse (about 23 KB), which the warm-up may not
 * have filled. A key costs about 100 bytes held, so a leak of one key in
 * two thousand shows, as would a retry timer heap kept at its peak size
 * (64 KB at 8,192 retries waiting at once). */
enum { SLACK_BYTES = 40 * 1024 };

static atomic_long handled_twice;

/** Every message asks for one retry: its key is held until it is back. */
static eb_result retry_once(const eb_msg *msg, void *opaque)
{
    (void)opaque;
    if (eb_msg_attempt(msg) == 1)
        return EB_RETRY;
    atomic_fetch_add(&handled_twice, 1);
    return EB_ACK;
}

/** Publishes keys [from, to) ("key-<n>", seven digits: all messages the
 *  same size, so the transport's retained log is too), one message each. */
static void publish_keys(eb_bus *bus, long from, long to)
{
    for (long i = from; i < to; i++) {
        char key[24];
        int len = snprintf(key, sizeof key, "key-%07ld", i);
        eb_outgoing m = {.topic = "keys", .key = key, .key_len = (size_t)len,
                         .payload = "x", .payload_len = 1};
        cr_assert_eq(eb_publish(bus, &m, NULL, NULL), 0, "publish %ld failed", i);
    }
}

typedef struct settled {
    eb_bus *bus;
    long want;
    long long held_keys_peak;
} settled;

/** All `want` handled twice, nothing queued, held or in a batch; notes
 *  the most keys seen held at once. */
static bool all_settled(void *arg)
{
    settled *s = arg;
    long long held_keys = test_stat_required(s->bus, "held_keys");
    if (held_keys > s->held_keys_peak)
        s->held_keys_peak = held_keys;
    return atomic_load(&handled_twice) == s->want && held_keys == 0 &&
           test_stat_required(s->bus, "queued") == 0 &&
           test_stat_required(s->bus, "in_batch") == 0 && test_stat_required(s->bus, "held") == 0;
}

Test(million_keys, memory_comes_back_once_keys_are_idle, .timeout = 110)
{
    /* Retention small, so that the transport's own log stays small and
     * publish waits for the group (its memory is not the dispatcher's). */
    const char *const kv[][2] = {{"memory.name", "million-keys"},
                                 {"memory.retention.messages", "4096"},
                                 {"retry.backoff.ms", "20"},
                                 {"retry.backoff.max.ms", "20"}};
    eb_bus *bus = test_open_with(kv, 4, NULL);
    test_subscribe_ready(bus, "keys", retry_once);

    /* Warm-up: every structure that grows once (pool, timers, caches) has
     * grown before the baseline. */
    settled s = {bus, WARM_KEYS, 0};
    publish_keys(bus, 0, WARM_KEYS);
    cr_assert(test_wait_for(all_settled, &s, WAIT_MS), "the warm-up keys did not all finish");
    size_t before = heap_bytes();

    s = (settled){bus, WARM_KEYS + KEYS, 0};
    publish_keys(bus, WARM_KEYS, WARM_KEYS + KEYS);
    cr_assert(test_wait_for(all_settled, &s, WAIT_MS),
              "the million keys did not all finish: %ld handled twice",
              atomic_load(&handled_twice) - WARM_KEYS);
    size_t after = heap_bytes();
    cr_log_info("heap before %zu, after %zu; up to %lld keys held at once", before, after,
                s.held_keys_peak);

    cr_expect_gt(s.held_keys_peak, 100, "only %lld keys were ever seen held at once",
                 s.held_keys_peak);
    cr_expect_leq(after, before + SLACK_BYTES,
                  "%zu bytes more on the heap after a million idle keys (before %zu, after "
                  "%zu)",
                  after - before, before, after);
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    eb_bus_destroy(bus);
}
