/*
 * test_delivery_tokens.c — delivery callbacks reach the (cb, opaque) pair
 * of their own publish, whether the bus interned that pair (its first 16
 * distinct ones) or gave the publish a token of its own; tokens of refused
 * publishes are given back (the ASan build turns a leak into a failure).
 * Two threads publish at once so that interning races filling the table.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>

#include "eventbus/eventbus.h"

enum { OPAQUES = 30, REPEATS = 3, THREADS = 2 };

/* One slot per (callback, opaque) pair: each callback counts into its own
 * row, so a callback called with another pair's opaque shows up. */
static atomic_int calls[2][OPAQUES];
static atomic_int failures;
static int slots[OPAQUES]; /* opaque i is &slots[i] */

static void *as_opaque(int i)
{
    return &slots[i];
}

static void first_cb(int status, const char *id, void *opaque)
{
    if (status != 0)
        atomic_fetch_add(&failures, 1);
    atomic_fetch_add(&calls[0][(int *)opaque - slots], 1);
}

static void second_cb(int status, const char *id, void *opaque)
{
    if (status != 0)
        atomic_fetch_add(&failures, 1);
    atomic_fetch_add(&calls[1][(int *)opaque - slots], 1);
}

static void *publish_every_pair(void *arg)
{
    eb_bus *bus = arg;
    eb_outgoing m = {.topic = "tokens", .payload = "x", .payload_len = 1};
    for (int r = 0; r < REPEATS; r++)
        for (int i = 0; i < OPAQUES; i++) {
            cr_assert_eq(eb_publish(bus, &m, first_cb, as_opaque(i)), 0);
            cr_assert_eq(eb_publish(bus, &m, second_cb, as_opaque(i)), 0);
        }
    return NULL;
}

static eb_bus *open_memory(void)
{
    char err[512];
    eb_config *cfg = eb_config_new();
    eb_bus *bus = NULL;
    cr_assert_eq(eb_bus_open(cfg, &bus, err, sizeof err), 0, "%s", err);
    eb_config_destroy(cfg);
    return bus;
}

Test(delivery_tokens, each_callback_gets_its_own_opaque)
{
    eb_bus *bus = open_memory();
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, publish_every_pair, bus), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(eb_flush(bus, 10000), 0);
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < OPAQUES; i++)
            cr_expect_eq(atomic_load(&calls[c][i]), THREADS * REPEATS,
                         "callback %d, opaque %d: %d calls", c, i, atomic_load(&calls[c][i]));
    cr_expect_eq(atomic_load(&failures), 0);
    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    eb_bus_destroy(bus);
}

Test(delivery_tokens, refused_publishes_give_their_tokens_back)
{
    eb_bus *bus = open_memory();
    eb_outgoing m = {.topic = "tokens", .payload = "x", .payload_len = 1};
    /* Fill the interned table, so later pairs get tokens of their own. */
    for (int i = 0; i < OPAQUES; i++)
        cr_assert_eq(eb_publish(bus, &m, first_cb, as_opaque(i)), 0);
    cr_assert_eq(eb_flush(bus, 10000), 0);
    cr_assert_eq(eb_bus_close(bus, 5000), 0);
    /* Refused after the token was made: interned and own ones alike. */
    for (int i = 0; i < OPAQUES; i++)
        cr_expect_eq(eb_publish(bus, &m, second_cb, as_opaque(i)), EB_ERR_CLOSED);
    eb_bus_destroy(bus);
    for (int i = 0; i < OPAQUES; i++) {
        cr_expect_eq(atomic_load(&calls[0][i]), 1);
        cr_expect_eq(atomic_load(&calls[1][i]), 0, "a refused publish was called back");
    }
}
