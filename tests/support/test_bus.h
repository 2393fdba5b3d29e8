/*
 * test_bus.h — what criterion tests of the public API do over and over:
 * open a bus from key/value pairs, subscribe and wait until ready, read a
 * number from eb_bus_stats(). Each asserts what it needs, so a failing
 * step names itself.
 */
#ifndef EB_TEST_BUS_H
#define EB_TEST_BUS_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus_stat.h"
#include "eventbus/eventbus.h"

/** A bus from n key/value pairs, with the event callback cb (or none). */
static inline eb_bus *test_open_with(const char *const (*kv)[2], size_t n, eb_event_cb cb)
{
    char err[512];
    eb_config *cfg = eb_config_new();
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(eb_config_set(cfg, kv[i][0], kv[i][1], err, sizeof err), 0, "%s", err);
    if (cb)
        eb_config_set_event_cb(cfg, cb, NULL);
    eb_bus *bus = NULL;
    cr_assert_eq(eb_bus_open(cfg, &bus, err, sizeof err), 0, "%s", err);
    eb_config_destroy(cfg);
    return bus;
}

/** Subscribes h (no opaque) to topic in group "g" and waits until ready
 *  (5 s at most). */
static inline eb_sub *test_subscribe_ready(eb_bus *bus, const char *topic, eb_handler h)
{
    char err[512];
    eb_sub *sub = NULL;
    cr_assert_eq(eb_subscribe(bus, topic, "g", h, NULL, NULL, &sub, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(eb_sub_wait_ready(sub, 5000), 0);
    return sub;
}

/** bus_stat(): the number after the first `"name":` in the bus's stats,
 *  or -1. */
static inline long long test_stat(eb_bus *bus, const char *name)
{
    return bus_stat(bus, name);
}

/** test_stat, asserting that the stats have the field. */
static inline long long test_stat_required(eb_bus *bus, const char *name)
{
    long long n = test_stat(bus, name);
    cr_assert_geq(n, 0, "no %s in the stats", name);
    return n;
}

#endif
