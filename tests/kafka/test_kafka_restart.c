/*
 * test_kafka_restart.c — the real broker stopped and started again while a
 * producer bus publishes and a consumer bus handles.
 *
 * Needs EB_KAFKA_BOOTSTRAP, EB_KAFKA_CTL (tests/servers/kafka.sh) and
 * EB_KAFKA_RUN_DIR (all exported by `kafka.sh start`); skipped otherwise.
 * It stops the broker that other suites use: ctest runs it alone
 * (RUN_SERIAL), and it brings the broker back up even when it fails.
 *
 * A thread publishes about 200 messages/s with delivery callbacks. Once the
 * consumer handles, `kafka.sh down` stops the broker (SIGTERM; a second
 * case kills it with SIGKILL, `down -9`), publishing
 * goes on through an outage of a few seconds, `kafka.sh up` starts it
 * again (same ports and data). The producer's message.timeout.ms (60 s)
 * outlasts the outage, so publishes made while it was down are confirmed
 * after it returns. Then: every confirmed publish is handled, the consumer
 * having resumed by itself (it is never subscribed again). Redeliveries
 * after the member lost its partitions are counted, not failed.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka_helpers.h"

enum { CAPACITY = 40000, PARTITIONS = 2, OUTAGE_MS = 4000 };

static const char *broker_ctl(void)
{
    const char *ctl = getenv("EB_KAFKA_CTL");
    const char *run_dir = getenv("EB_KAFKA_RUN_DIR");
    if (!ctl || !*ctl || !run_dir || !*run_dir)
        cr_skip_test("EB_KAFKA_CTL and EB_KAFKA_RUN_DIR are not set (kafka.sh start exports "
                     "them)");
    return ctl;
}

/** Runs `kafka.sh <command> [arg]` on the test's run directory.
 *  @returns its exit status. */
static int kafka_ctl(const char *command, const char *arg)
{
    const char *argv[] = {"bash", getenv("EB_KAFKA_CTL"), command, arg, NULL};
    return kt_run(argv, NULL, NULL, 150);
}

/* Whatever happened, the other suites get their broker back. */
static void broker_back_up(void)
{
    const char *ctl = getenv("EB_KAFKA_CTL");
    if (ctl && *ctl && getenv("EB_KAFKA_RUN_DIR") && kafka_ctl("status", NULL) != 0)
        kafka_ctl("up", NULL);
}

/* ------------------------------------------------------------- publisher */

static size_t confirmed_between(const kt_tracker *t, size_t from, size_t to)
{
    size_t n = 0;
    for (size_t i = from; i < to; i++)
        n += t->status[i] == 0;
    return n;
}

/** The case, with the broker stopped by `kafka.sh down <how>` (NULL:
 *  SIGTERM, "-9": SIGKILL). */
static void restart_case(const char *how)
{
    const char *bootstrap = kt_real_broker();
    broker_ctl();
    char topic[128], group[128];
    kt_unique(topic, sizeof topic, "restart");
    kt_unique(group, sizeof group, "restart-g");
    kt_tracker *t = kt_tracker_new(CAPACITY);

    const kt_setting consumer_settings[] = {{"kafka.topic.partitions", "2"}, {NULL, NULL}};
    eb_bus *consumer = kt_open(bootstrap, consumer_settings, kt_tracker_event, t);
    eb_sub *sub = kt_subscribe_ready(consumer, topic, group, kt_handle, t, 30000);
    const kt_setting producer_settings[] = {{"kafka.message.timeout.ms", "60000"},
                                            {NULL, NULL}};
    eb_bus *producer = kt_open(bootstrap, producer_settings, NULL, NULL);

    /* A steady stream of about 200 messages/s; refusals during the outage
     * are counted and tried again. */
    kt_stream p = {.bus = producer, .t = t, .topic = topic, .keys = 50, .period_ms = 5,
                   .retry_refused = true};
    kt_stream_start(&p);
    size_t warm = 200;
    cr_assert(kt_wait(t, kt_handled_at_least, &warm, 30000), "handled %zu before the outage",
              t->n_handled_distinct);

    int64_t t0 = kt_now_ms();
    cr_assert_eq(kafka_ctl("down", how), 0, "kafka.sh down failed");
    size_t down_at = atomic_load(&p.next);
    int64_t t1 = kt_now_ms();
    /* The outage: the broker stays down this long while publishing goes on. */
    nanosleep(&(struct timespec){OUTAGE_MS / 1000, (OUTAGE_MS % 1000) * 1000000L}, NULL);
    size_t up_from = atomic_load(&p.next);
    cr_assert_eq(kafka_ctl("up", NULL), 0, "kafka.sh up failed");
    size_t up_at = atomic_load(&p.next);
    int64_t t2 = kt_now_ms();
    printf("restart: `down%s` took %lld ms, then %d ms of outage and %lld ms of `up`; "
           "messages %zu..%zu published while the broker was away\n",
           how ? " -9" : "", (long long)(t1 - t0), OUTAGE_MS, (long long)(t2 - t1 - OUTAGE_MS),
           down_at, up_at);

    /* The consumer resumes by itself: a message published after the
     * broker returned is handled. */
    cr_assert(kt_wait(t, kt_handled_from, &up_at, 90000),
              "nothing published after the restart was handled");
    kt_stream_join(&p, true);
    size_t total = atomic_load(&p.next);
    cr_expect_eq(eb_flush(producer, 90000), 0, "not every delivery callback ran");
    cr_assert(kt_wait(t, kt_reports_at_least, &total, 1000), "%zu of %zu delivery callbacks",
              t->n_reports, total);

    bool all = kt_wait(t, kt_all_confirmed_handled, NULL, 90000);
    cr_expect_eq(eb_bus_close(consumer, 10000), 0);
    size_t lost = 0, failed = 0;
    int first_failure = 0;
    for (size_t i = 0; i < total; i++) {
        lost += t->status[i] == 0 && t->handled[i] == 0;
        failed += t->status[i] != 0;
        if (t->status[i] != 0 && !first_failure)
            first_failure = t->status[i];
    }
    size_t outage_confirmed = confirmed_between(t, down_at, up_from);
    printf("restart: %zu published (%zu refused at once), %zu confirmed, %zu failed "
           "(first failure: %s); %zu of %zu published while down were confirmed; "
           "%zu handled, %zu lost, %zu duplicates after %zu revokes\n",
           total, atomic_load(&p.refused), t->n_confirmed, failed,
           first_failure ? eb_err_name(first_failure) : "none",
           outage_confirmed, up_from - down_at, t->n_handled_distinct, lost, kt_duplicates(t),
           t->n_revokes);
    cr_expect(all && lost == 0, "%zu confirmed publishes were never handled (first: %zu)", lost,
              kt_first_lost(t));
    cr_expect_gt(outage_confirmed, 0, "no publish made while the broker was down was confirmed");
    cr_expect_gt(up_from, down_at, "nothing was published during the outage");

    eb_sub_destroy(sub);
    eb_bus_destroy(consumer);
    cr_expect_eq(eb_bus_close(producer, 10000), 0);
    eb_bus_destroy(producer);
    kt_tracker_free(t);
}

Test(kafka_restart, broker_down_and_up_loses_no_confirmed_publish, .timeout = 280,
     .fini = broker_back_up)
{
    restart_case(NULL);
}

/* The broker killed (SIGKILL): no controlled shutdown, its log recovered
 * on start. What was confirmed (acks=all, the broker's fsync policy aside:
 * one broker, the data in its page cache survives a process kill) is
 * still handled. */
Test(kafka_restart, broker_killed_and_up_loses_no_confirmed_publish, .timeout = 280,
     .fini = broker_back_up)
{
    restart_case("-9");
}
