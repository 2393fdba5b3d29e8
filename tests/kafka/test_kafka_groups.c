/*
 * test_kafka_groups.c — a group member that is already running takes a
 * further topic: subscribing a second topic to the same (bus, group) is
 * ready within one rebalance (well under the session timeout: no sleep, no
 * wait for a session to expire), messages of the new topic are handled,
 * and the first topic keeps flowing without losing what it confirmed.
 * Needs a real broker (EB_KAFKA_BOOTSTRAP); skipped without one.
 */
#include <criterion/criterion.h>
#include <stdio.h>

#include "kafka_helpers.h"

enum { PER_ROUND = 10, SESSION_TIMEOUT_MS = 3000 };

static void publish_round(eb_bus *bus, kt_tracker *t, const char *topic, size_t first)
{
    for (size_t i = first; i < first + PER_ROUND; i++)
        cr_assert_eq(kt_publish(bus, t, topic, i, NULL), 0);
}

static void expect_all_handled(kt_tracker *t, size_t n, const char *what)
{
    cr_expect(kt_wait(t, kt_handled_at_least, &n, 20000), "%s: %zu of %zu handled", what,
              t->n_handled_distinct, n);
}

Test(kafka_groups, a_further_topic_joins_a_running_member_within_one_rebalance,
     .timeout = 120)
{
    const char *bootstrap = kt_real_broker();
    if (!bootstrap)
        cr_skip_test("EB_KAFKA_BOOTSTRAP is not set");
    const kt_setting s[] = {{"kafka.topic.partitions", "2"}, {NULL, NULL}};
    eb_bus *bus = kt_open(bootstrap, s, NULL, NULL);
    char first[96], further[96], group[96];
    kt_unique(first, sizeof first, "grp-first");
    kt_unique(further, sizeof further, "grp-further");
    kt_unique(group, sizeof group, "grp-g");
    kt_tracker *a = kt_tracker_new(2 * PER_ROUND), *b = kt_tracker_new(PER_ROUND);

    kt_subscribe_ready(bus, first, group, kt_handle, a, 30000);
    publish_round(bus, a, first, 0);
    expect_all_handled(a, PER_ROUND, first);

    int64_t start = kt_now_ms();
    kt_subscribe_ready(bus, further, group, kt_handle, b, 30000);
    int64_t ready_ms = kt_now_ms() - start;
    fprintf(stderr, "test_kafka_groups: the further topic was ready in %lld ms\n",
            (long long)ready_ms);
    cr_expect_lt(ready_ms, SESSION_TIMEOUT_MS,
                 "the further topic took %lld ms: more than one rebalance",
                 (long long)ready_ms);

    publish_round(bus, b, further, 0);
    publish_round(bus, a, first, PER_ROUND);
    expect_all_handled(b, PER_ROUND, further);
    expect_all_handled(a, 2 * PER_ROUND, first);

    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    eb_bus_destroy(bus);
    cr_expect_eq(kt_first_lost(a), (size_t)2 * PER_ROUND, "%s lost a message", first);
    cr_expect_eq(kt_first_lost(b), (size_t)PER_ROUND, "%s lost a message", further);
    kt_tracker_free(a);
    kt_tracker_free(b);
}
