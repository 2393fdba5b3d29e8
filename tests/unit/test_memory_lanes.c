/*
 * test_memory_lanes.c — a stuck handler holds back only its own lane:
 * the transport keeps delivering that partition until the lane's in-flight
 * bound (dispatch.lane.max.inflight) fills, then pauses only that lane;
 * the other partition is handled completely meanwhile. Partitions are read
 * from the delivery callbacks' ids ("partition@offset"). (Keys that hash
 * to the stuck handler's worker wait behind it too: a blocked handler
 * occupies its worker; retries do not, see the conformance suite.)
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eventbus/eventbus.h"
#include "test_wait.h"

enum { MESSAGES = 400, BOUND = 20 };

static atomic_int gate_open;
static atomic_int published_in[2], handled_in[2];
static atomic_int slow_partition = -1;

static int partition_of(const char *id) { return atoi(id); }

static void on_delivery(int status, const char *id, void *opaque)
{
    cr_assert_eq(status, 0);
    atomic_fetch_add(&published_in[partition_of(id)], 1);
    if (opaque)
        atomic_store(&slow_partition, partition_of(id));
}

/* The slow key's handler waits for the test to open the gate: being stuck
 * is the point of this handler. */
static eb_result handler(const eb_msg *msg, void *opaque)
{
    size_t len;
    const char *key = eb_msg_key(msg, &len);
    if (len == 4 && memcmp(key, "slow", 4) == 0)
        while (!atomic_load(&gate_open)) {
            test_next_look();
        }
    atomic_fetch_add(&handled_in[partition_of(eb_msg_id(msg))], 1);
    return EB_ACK;
}

static long delivered_to_core(eb_bus *bus)
{
    char *json = NULL;
    cr_assert_eq(eb_bus_stats(bus, &json), 0);
    const char *at = strstr(json, "\"delivered\":");
    cr_assert_not_null(at, "%s", json);
    long n = atol(at + strlen("\"delivered\":"));
    eb_free(json);
    return n;
}

static void wait_for(atomic_int *counter, int want)
{
    int64_t deadline = test_now_ms() + 10000;
    while (atomic_load(counter) < want && test_now_ms() < deadline) {
        test_next_look();
    }
    cr_assert_geq(atomic_load(counter), want, "waited 10 s for %d, have %d", want,
                  atomic_load(counter));
}

Test(memory_lanes, slow_key_pauses_only_its_lane)
{
    char err[512], bound[16];
    snprintf(bound, sizeof bound, "%d", BOUND);
    const char *settings[][2] = {{"memory.name", "lanes"}, {"memory.partitions", "2"},
                                 {"dispatch.workers", "4"},
                                 {"dispatch.lane.max.inflight", bound}};
    eb_config *cfg = eb_config_new();
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(eb_config_set(cfg, settings[i][0], settings[i][1], err, sizeof err), 0);
    eb_bus *bus;
    cr_assert_eq(eb_bus_open(cfg, &bus, err, sizeof err), 0, "%s", err);
    eb_config_destroy(cfg);
    eb_sub *sub;
    cr_assert_eq(eb_subscribe(bus, "t", "g", handler, NULL, NULL, &sub, err, sizeof err), 0);
    cr_assert_eq(eb_sub_wait_ready(sub, 5000), 0);

    eb_outgoing slow = {.topic = "t", .key = "slow", .key_len = 4, .payload = "x",
                        .payload_len = 1};
    cr_assert_eq(eb_publish(bus, &slow, on_delivery, &slow), 0);
    for (int i = 0; i < MESSAGES; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "k%d", i);
        eb_outgoing m = {.topic = "t", .key = key, .key_len = (size_t)n, .payload = "y",
                         .payload_len = 1};
        cr_assert_eq(eb_publish(bus, &m, on_delivery, NULL), 0);
    }
    cr_assert_eq(eb_flush(bus, 5000), 0);
    int sp = atomic_load(&slow_partition), other = 1 - sp;
    cr_assert(sp == 0 || sp == 1);
    cr_assert_gt(atomic_load(&published_in[sp]), BOUND + 10, "the test needs keys in both");

    /* The other partition flows completely; the slow one is delivered up
     * to its bound and no further while its oldest message is unfinished. */
    int other_total = atomic_load(&published_in[other]);
    wait_for(&handled_in[other], other_total);
    int64_t deadline = test_now_ms() + 10000;
    while (delivered_to_core(bus) - other_total < BOUND && test_now_ms() < deadline) {
        test_next_look();
    }
    long slow_lane = delivered_to_core(bus) - other_total;
    cr_expect_eq(slow_lane, BOUND, "lane %d: %ld delivered while its oldest is stuck; the "
                 "in-flight bound is %d", sp, slow_lane, BOUND);

    atomic_store(&gate_open, 1);
    wait_for(&handled_in[sp], atomic_load(&published_in[sp]));
    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    eb_bus_destroy(bus);
}

static atomic_int events[EB_EVENT_ERROR + 1];

static void count_event(eb_bus *bus, const eb_event *ev, void *opaque)
{
    cr_assert(ev->type >= EB_EVENT_CONNECTED && ev->type <= EB_EVENT_ERROR);
    cr_assert_not_null(ev->detail);
    atomic_fetch_add(&events[ev->type], 1);
}

static atomic_int handled_all;

/* Waits for the gate like the slow key above, for every message. */
static eb_result gated(const eb_msg *msg, void *opaque)
{
    while (!atomic_load(&gate_open)) {
        test_next_look();
    }
    atomic_fetch_add(&handled_all, 1);
    return EB_ACK;
}

Test(memory_lanes, full_pool_pauses_and_resumes_with_events)
{
    char err[512];
    const char *settings[][2] = {{"memory.name", "pause"}, {"dispatch.workers", "2"},
                                 {"dispatch.queue.max", "4"},
                                 {"dispatch.queue.low.watermark", "1"}};
    eb_config *cfg = eb_config_new();
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(eb_config_set(cfg, settings[i][0], settings[i][1], err, sizeof err), 0);
    eb_config_set_event_cb(cfg, count_event, NULL);
    eb_bus *bus;
    cr_assert_eq(eb_bus_open(cfg, &bus, err, sizeof err), 0, "%s", err);
    eb_config_destroy(cfg);
    cr_expect_eq(atomic_load(&events[EB_EVENT_CONNECTED]), 1);
    eb_sub *sub;
    cr_assert_eq(eb_subscribe(bus, "t", "g", gated, NULL, NULL, &sub, err, sizeof err), 0);
    cr_assert_eq(eb_sub_wait_ready(sub, 5000), 0);
    cr_expect_geq(atomic_load(&events[EB_EVENT_ASSIGNED]), 1);
    for (int i = 0; i < 50; i++) {
        eb_outgoing m = {.topic = "t", .payload = &i, .payload_len = sizeof i};
        cr_assert_eq(eb_publish(bus, &m, NULL, NULL), 0);
    }
    wait_for(&events[EB_EVENT_PAUSED], 1);
    atomic_store(&gate_open, 1);
    wait_for(&handled_all, 50);
    wait_for(&events[EB_EVENT_RESUMED], 1);
    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    eb_bus_destroy(bus);
}
