/*
 * test_head_of_line.c — one blocked handler must hold only its own key
 * (issue 7, defect 6). The dispatcher before issue 8 sent a key to worker
 * hash(key) % workers: keys hashed to the blocked worker piled up, filled
 * the pool past its low watermark, and then deliver() refused every
 * subscription, so a subscription whose handlers never block stopped too
 * (15 of 2,000 handled). Now every other key of the blocked handler's
 * subscription and every other subscription finish, and the blocked key's
 * later messages wait for it, in order. The case bounds its wait and then
 * lets the handler go, so it fails by assertion, never by a hang.
 * Keys are told apart by their bytes, not their hash: a key that shares
 * its 32-bit hash (and so its shard) with a blocked or retrying key is
 * not held with it.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "eventbus/eventbus.h"
#include "test_bus.h"
#include "test_wait.h"

enum { FREE_MSGS = 2000, STUCK_KEYS = 400, KEYS = 100, WAIT_MS = 10000 };

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;
enum { STUCK_LATER = 3 };
static atomic_int free_handled, slow_handled, stuck_started;
static int stuck_order[1 + STUCK_LATER];

static void open_gate(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

/** Blocks until the gate opens (at most 30 s). */
static void wait_for_gate(void)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&gate_mu);
    while (!gate_open && pthread_cond_timedwait(&gate_cv, &gate_mu, &until) == 0)
        ;
    pthread_mutex_unlock(&gate_mu);
}

/** Topic "slow": the message keyed "stuck" blocks until the gate opens
 *  (at most 30 s); its other messages return at once. */
static eb_result slow_topic(const eb_msg *msg, void *opaque)
{
    (void)opaque;
    size_t len;
    const char *key = eb_msg_key(msg, &len);
    if (key && len == 5 && memcmp(key, "stuck", 5) == 0) {
        int n = atomic_fetch_add(&stuck_started, 1);
        const char *payload = eb_msg_payload(msg, &len);
        if (n <= STUCK_LATER)
            stuck_order[n] = payload[0] - '0';
        wait_for_gate();
        return EB_ACK;
    }
    atomic_fetch_add(&slow_handled, 1);
    return EB_ACK;
}

static eb_result free_topic(const eb_msg *msg, void *opaque)
{
    (void)msg, (void)opaque;
    atomic_fetch_add(&free_handled, 1);
    return EB_ACK;
}

static void publish_seq(eb_bus *bus, const char *topic, const char *key, char seq)
{
    eb_outgoing m = {.topic = topic, .key = key, .key_len = strlen(key),
                     .payload = &seq, .payload_len = 1};
    cr_assert_eq(eb_publish(bus, &m, NULL, NULL), 0);
}

Test(head_of_line, a_blocked_handler_holds_only_its_key)
{
    const char *const kv[][2] = {{"memory.name", "head-of-line"},
                                 {"dispatch.workers", "2"},
                                 {"dispatch.queue.max", "64"}};
    eb_bus *bus = test_open_with(kv, 3, NULL);
    test_subscribe_ready(bus, "slow", slow_topic);
    test_subscribe_ready(bus, "free", free_topic);

    publish_seq(bus, "slow", "stuck", '0');
    int64_t deadline = test_now_ms() + WAIT_MS;
    while (atomic_load(&stuck_started) == 0 && test_now_ms() < deadline)
        test_next_look();
    cr_assert_eq(atomic_load(&stuck_started), 1, "the blocking handler never started");
    /* The blocked key's later messages, other keys of the slow topic
     * (with the old dispatcher, half of them hashed to the blocked
     * worker), then a topic whose handlers never block. */
    for (int i = 1; i <= STUCK_LATER; i++)
        publish_seq(bus, "slow", "stuck", (char)('0' + i));
    for (int i = 0; i < STUCK_KEYS; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i % KEYS);
        publish_seq(bus, "slow", key, 'x');
    }
    for (int i = 0; i < FREE_MSGS; i++) {
        char key[16];
        snprintf(key, sizeof key, "f%d", i % KEYS);
        publish_seq(bus, "free", key, 'x');
    }
    deadline = test_now_ms() + WAIT_MS;
    while ((atomic_load(&free_handled) < FREE_MSGS || atomic_load(&slow_handled) < STUCK_KEYS) &&
           test_now_ms() < deadline)
        test_next_look();
    int handled = atomic_load(&free_handled), slow = atomic_load(&slow_handled);
    int stuck_before = atomic_load(&stuck_started);
    open_gate();
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    eb_bus_destroy(bus);
    cr_expect_eq(handled, FREE_MSGS,
                 "%d of %d messages of a topic that never blocks were handled while one "
                 "handler of another topic was blocked",
                 handled, FREE_MSGS);
    cr_expect_eq(slow, STUCK_KEYS,
                 "%d of %d messages of other keys of the blocked handler's topic were "
                 "handled while it was blocked",
                 slow, STUCK_KEYS);
    cr_expect_eq(stuck_before, 1, "%d messages of the blocked key started before it returned",
                 stuck_before);
    cr_expect_eq(atomic_load(&stuck_started), 1 + STUCK_LATER,
                 "the blocked key's later messages did not all run once it returned");
    for (int i = 0; i <= STUCK_LATER; i++)
        cr_expect_eq(stuck_order[i], i, "the blocked key ran out of order at %d", i);
}

/* Pairs of keys with one FNV-1a hash (the dispatcher's): each pair shares
 * a shard, and shared the held entry while keys were told apart by hash. */
static const char *const SAME_HASH[][2] = {{"costarring", "liquid"}, {"declinate", "macallums"}};
enum { TWIN_MSGS = 200, RETRY_MS = 3000 };
static atomic_int twin_handled, retries_seen;

static bool key_is(const eb_msg *msg, const char *want)
{
    size_t len;
    const char *key = eb_msg_key(msg, &len);
    return key && len == strlen(want) && memcmp(key, want, len) == 0;
}

/** "costarring" blocks until the gate opens; "declinate" asks for a retry
 *  (RETRY_MS away) on its first attempt; their twins return at once. */
static eb_result twins(const eb_msg *msg, void *opaque)
{
    (void)opaque;
    if (key_is(msg, SAME_HASH[0][0])) {
        atomic_fetch_add(&stuck_started, 1);
        wait_for_gate();
        return EB_ACK;
    }
    if (key_is(msg, SAME_HASH[1][0])) {
        atomic_fetch_add(&retries_seen, 1);
        return eb_msg_attempt(msg) == 1 ? EB_RETRY : EB_ACK;
    }
    atomic_fetch_add(&twin_handled, 1);
    return EB_ACK;
}

Test(head_of_line, keys_that_share_a_hash_are_held_apart)
{
    const char *const kv[][2] = {{"memory.name", "same-hash"},
                                 {"dispatch.workers", "2"},
                                 {"retry.backoff.ms", "3000"},
                                 {"retry.backoff.max.ms", "3000"}};
    eb_bus *bus = test_open_with(kv, 4, NULL);
    test_subscribe_ready(bus, "twins", twins);

    publish_seq(bus, "twins", SAME_HASH[0][0], '0');
    publish_seq(bus, "twins", SAME_HASH[1][0], '0');
    int64_t deadline = test_now_ms() + WAIT_MS;
    while ((atomic_load(&stuck_started) == 0 || atomic_load(&retries_seen) == 0) &&
           test_now_ms() < deadline)
        test_next_look();
    cr_assert_eq(atomic_load(&stuck_started), 1, "the blocking handler never started");
    cr_assert_eq(atomic_load(&retries_seen), 1, "the retrying handler never ran");
    for (int i = 0; i < TWIN_MSGS; i++)
        publish_seq(bus, "twins", SAME_HASH[i % 2][1], 'x');
    deadline = test_now_ms() + WAIT_MS;
    while (atomic_load(&twin_handled) < TWIN_MSGS && test_now_ms() < deadline)
        test_next_look();
    int handled = atomic_load(&twin_handled), retried = atomic_load(&retries_seen);
    open_gate();
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    eb_bus_destroy(bus);
    cr_expect_eq(handled, TWIN_MSGS,
                 "%d of %d messages of keys that share the hash of a blocked or retrying "
                 "key were handled meanwhile",
                 handled, TWIN_MSGS);
    cr_expect_eq(retried, 1,
                 "the twins of the retrying key were handled only once its retry came back "
                 "(%d ms later)",
                 RETRY_MS);
    cr_expect_eq(atomic_load(&retries_seen), 2, "the retried message did not run again");
}
