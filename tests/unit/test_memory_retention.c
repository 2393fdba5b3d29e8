/*
 * test_memory_retention.c — the memory transport's retention rules: a group
 * with a live member holds retention back (publish waits, then EB_ERR_FULL,
 * and a handler's publish gets EB_ERR_FULL at once), a group without a live
 * member does not, and what it loses is counted in the stats.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "eventbus/eventbus.h"
#include "test_wait.h"

static eb_bus *open_small_broker(const char *name, const char *publish_timeout_ms)
{
    eb_config *cfg = eb_config_new();
    char err[512];
    const char *settings[][2] = {
        {"memory.name", name}, {"memory.partitions", "1"},
        {"memory.retention.messages", "10"}, {"publish.timeout.ms", publish_timeout_ms}};
    for (size_t i = 0; i < sizeof settings / sizeof *settings; i++)
        cr_assert_eq(eb_config_set(cfg, settings[i][0], settings[i][1], err, sizeof err), 0,
                     "%s", err);
    eb_bus *bus = NULL;
    cr_assert_eq(eb_bus_open(cfg, &bus, err, sizeof err), 0, "%s", err);
    eb_config_destroy(cfg);
    return bus;
}

static int publish_one(eb_bus *bus, int i)
{
    eb_outgoing m = {.topic = "t", .payload = &i, .payload_len = sizeof i};
    return eb_publish(bus, &m, NULL, NULL);
}

static atomic_int release_gate;
static atomic_int handled;

/* Holds its message until the test opens the gate, so the group's position
 * cannot pass the oldest record. Waiting is the point of this handler. */
static eb_result gated_handler(const eb_msg *msg, void *opaque)
{
    while (!atomic_load(&release_gate)) {
        test_next_look();
    }
    atomic_fetch_add(&handled, 1);
    return EB_ACK;
}

Test(memory_retention, live_group_holds_retention_then_full)
{
    eb_bus *bus = open_small_broker("ret-live", "200");
    eb_sub *sub;
    char err[256];
    cr_assert_eq(eb_subscribe(bus, "t", "g", gated_handler, NULL, NULL, &sub, err,
                              sizeof err), 0, "%s", err);
    cr_assert_eq(eb_sub_wait_ready(sub, 5000), 0);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(publish_one(bus, i), 0);
    int64_t start = test_now_ms();
    cr_assert_eq(publish_one(bus, 10), EB_ERR_FULL, "the 11th publish must not drop a record "
                 "the live group still needs");
    cr_assert_geq(test_now_ms() - start, 150, "publish must wait publish.timeout.ms before FULL");
    atomic_store(&release_gate, 1);
    int64_t deadline = test_now_ms() + 5000;
    while (atomic_load(&handled) < 10 && test_now_ms() < deadline) {
        test_next_look();
    }
    cr_assert_eq(atomic_load(&handled), 10, "all stored messages are handled");
    cr_assert_eq(publish_one(bus, 11), 0, "room again once the group moved on");
    cr_assert_eq(eb_bus_close(bus, 5000), 0);
    eb_bus_destroy(bus);
}

static eb_result ack_handler(const eb_msg *msg, void *opaque) { return EB_ACK; }

Test(memory_retention, group_without_member_loses_and_counts)
{
    eb_bus *bus = open_small_broker("ret-dead", "200");
    eb_sub *sub;
    char err[256];
    cr_assert_eq(eb_subscribe(bus, "t", "gone", ack_handler, NULL, NULL, &sub, err,
                              sizeof err), 0, "%s", err);
    cr_assert_eq(eb_sub_wait_ready(sub, 5000), 0);
    cr_assert_eq(eb_unsubscribe(sub), 0); /* the group stays, with no live member */
    eb_sub_destroy(sub);
    for (int i = 0; i < 25; i++)
        cr_assert_eq(publish_one(bus, i), 0, "a group with no live member never blocks");
    char *json = NULL;
    cr_assert_eq(eb_bus_stats(bus, &json), 0);
    cr_assert(strstr(json, "\"name\":\"gone\"") != NULL, "%s", json);
    cr_assert(strstr(json, "\"lost\":15") != NULL, "25 published, 10 kept: %s", json);
    eb_free(json);
    cr_assert_eq(eb_bus_close(bus, 5000), 0);
    eb_bus_destroy(bus);
}
