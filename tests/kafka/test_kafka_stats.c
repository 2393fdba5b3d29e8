/*
 * test_kafka_stats.c — per-partition consumer lag in eb_bus_stats(): with
 * the group's only handler stuck, the messages behind it show as lag on
 * their partition; once they are handled and committed the lag returns to
 * zero. Needs a real broker (EB_KAFKA_BOOTSTRAP); skipped without one.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka_helpers.h"

enum { MESSAGES = 50 };

static atomic_int handled;
static bool gate_open;
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;

/* Stuck until the test opens the gate: the lag is what waits behind it. */
static eb_result gated(const eb_msg *msg, void *opaque)
{
    pthread_mutex_lock(&gate_mu);
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    atomic_fetch_add(&handled, 1);
    return EB_ACK;
}

static void open_gate(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

/** Sum of "lag" values in the stats JSON (-1 = unknown counts as 0). */
static long total_lag(eb_bus *bus, char **json_out)
{
    char *json = NULL;
    cr_assert_eq(eb_bus_stats(bus, &json), 0);
    long sum = 0;
    for (const char *at = json; (at = strstr(at, "\"lag\":")); at++) {
        long lag = atol(at + strlen("\"lag\":"));
        sum += lag > 0 ? lag : 0;
    }
    *json_out = json;
    return sum;
}

/** Polls the stats until the lag satisfies `want`, with a deadline. */
static long wait_lag(eb_bus *bus, bool (*want)(long), const char *what)
{
    int64_t deadline = kt_now_ms() + 20000;
    char *json = NULL;
    long lag;
    for (;;) {
        lag = total_lag(bus, &json);
        if (want(lag) || kt_now_ms() > deadline)
            break;
        eb_free(json);
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL); /* polling the stats with a deadline */
    }
    cr_expect(want(lag), "lag never became %s: %s", what, json);
    eb_free(json);
    return lag;
}

static bool positive(long lag) { return lag > 0; }
static bool zero(long lag) { return lag == 0; }

Test(kafka_stats, lag_per_partition)
{
    const char *bootstrap = kt_real_broker();
    if (!bootstrap)
        cr_skip_test("EB_KAFKA_BOOTSTRAP is not set");
    const kt_setting s[] = {{"kafka.topic.partitions", "2"}, {"dispatch.workers", "1"},
                            {"kafka.fetch.wait.max.ms", "50"}, {NULL, NULL}};
    eb_bus *bus = kt_open(bootstrap, s, NULL, NULL);
    char topic[96], group[96];
    kt_unique(topic, sizeof topic, "lag");
    kt_unique(group, sizeof group, "lag-g");
    kt_subscribe_ready(bus, topic, group, gated, NULL, 30000);
    for (int i = 0; i < MESSAGES; i++) {
        eb_outgoing m = {.topic = topic, .payload = &i, .payload_len = sizeof i};
        cr_assert_eq(eb_publish(bus, &m, NULL, NULL), 0);
    }
    cr_assert_eq(eb_flush(bus, 10000), 0);
    wait_lag(bus, positive, "positive while the handler is stuck");
    open_gate();
    wait_lag(bus, zero, "zero once everything was handled and committed");
    cr_expect_eq(atomic_load(&handled), MESSAGES);
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    eb_bus_destroy(bus);
}
