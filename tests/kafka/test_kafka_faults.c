/*
 * test_kafka_faults.c — faults injected into the Kafka transport itself
 * (the eventbus-kafka-faults build of the plugin, loaded by path), on a
 * real broker (EB_KAFKA_BOOTSTRAP; skipped without one).
 *
 * Issue 7, defect 10: when wrapping a polled message ran out of memory the
 * message was dropped without entering its lane, so the offsets stored
 * after it passed it and it was never handled. Here every 7th wrap fails
 * (EB_KAFKA_FAULT_WRAP_EVERY, set by ctest): every confirmed message must
 * still be handled, and nothing is committed past one that was not.
 *
 * Defect 9: when the consumer's close gave up before librdkafka's final
 * revoke, a subscription of the same member that was leaving at the same
 * time waited for ever for its lanes to be revoked. Here the close gives
 * up at once (EB_KAFKA_FAULT_CLOSE_GIVES_UP) while two subscriptions of
 * one member leave together: both unsubscribes must return.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kafka_helpers.h"

#ifndef EB_KAFKA_FAULTS_PLUGIN
#error "EB_KAFKA_FAULTS_PLUGIN: the path of eventbus-kafka-faults.so (CMakeLists.txt)"
#endif

enum { N = 500, PARTITIONS = 2 };

Test(kafka_faults, a_message_that_cannot_be_wrapped_is_fetched_again, .timeout = 120)
{
    const char *bootstrap = kt_real_broker();
    if (!bootstrap)
        cr_skip_test("EB_KAFKA_BOOTSTRAP is not set");
    char topic[96], group[96], partitions[8];
    kt_unique(topic, sizeof topic, "faults-wrap");
    kt_unique(group, sizeof group, "faults-wrap-g");
    snprintf(partitions, sizeof partitions, "%d", PARTITIONS);
    const kt_setting s[] = {{"transport", EB_KAFKA_FAULTS_PLUGIN},
                            {"kafka.topic.partitions", partitions},
                            {NULL, NULL}};
    kt_tracker *t = kt_tracker_new(N);
    eb_bus *bus = kt_open(bootstrap, s, NULL, NULL);
    kt_subscribe_ready(bus, topic, group, kt_handle, t, 30000);
    for (size_t i = 0; i < N; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%zu", i % 50);
        cr_assert_eq(kt_publish(bus, t, topic, i, key), 0);
    }
    size_t all = N;
    cr_assert(kt_wait(t, kt_reports_at_least, &all, 30000), "publishes not confirmed");
    bool handled = kt_wait(t, kt_handled_at_least, &all, 30000);
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    eb_bus_destroy(bus);
    cr_expect(handled, "%zu of %d confirmed messages handled; first missing: %zu",
              t->n_handled_distinct, N, kt_first_lost(t));

    /* Committed: the end of each partition, never past a message that was
     * not handled (all were, if the case got here). */
    int64_t committed[PARTITIONS], end[PARTITIONS] = {0};
    kt_committed(bootstrap, group, topic, PARTITIONS, committed);
    for (size_t i = 0; i < N; i++)
        if (t->partition[i] >= 0 && t->offset[i] + 1 > end[t->partition[i]])
            end[t->partition[i]] = t->offset[i] + 1;
    for (int p = 0; p < PARTITIONS; p++)
        cr_expect_eq(committed[p], end[p], "partition %d: committed %lld of %lld", p,
                     (long long)committed[p], (long long)end[p]);
    kt_tracker_free(t);
}

/* ------------------------------------------- leaving while close gives up */

typedef struct leaver {
    eb_sub *sub;
    pthread_barrier_t *start;
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    int *returned;
    pthread_t thread;
} leaver;

static void *leave(void *arg)
{
    leaver *l = arg;
    pthread_barrier_wait(l->start);
    eb_unsubscribe(l->sub);
    pthread_mutex_lock(l->mu);
    (*l->returned)++;
    pthread_cond_broadcast(l->cv);
    pthread_mutex_unlock(l->mu);
    return NULL;
}

enum { LEAVE_ROUNDS = 5, LEAVE_BOUND_S = 20 };

Test(kafka_faults, subs_leaving_together_return_when_the_close_gives_up, .timeout = 180)
{
    const char *bootstrap = kt_real_broker();
    if (!bootstrap)
        cr_skip_test("EB_KAFKA_BOOTSTRAP is not set");
    unsetenv("EB_KAFKA_FAULT_WRAP_EVERY");
    setenv("EB_KAFKA_FAULT_CLOSE_GIVES_UP", "1", 1);
    const kt_setting s[] = {{"transport", EB_KAFKA_FAULTS_PLUGIN},
                            {"kafka.topic.partitions", "2"},
                            {NULL, NULL}};
    for (int round = 0; round < LEAVE_ROUNDS; round++) {
        char a[96], b[96], group[96];
        kt_unique(a, sizeof a, "faults-leave-a");
        kt_unique(b, sizeof b, "faults-leave-b");
        kt_unique(group, sizeof group, "faults-leave-g");
        kt_tracker *t = kt_tracker_new(1);
        eb_bus *bus = kt_open(bootstrap, s, NULL, NULL);
        eb_sub *subs[2] = {kt_subscribe_ready(bus, a, group, kt_handle, t, 30000),
                           kt_subscribe_ready(bus, b, group, kt_handle, t, 30000)};
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, 2);
        pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
        pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
        int returned = 0;
        leaver l[2];
        for (int i = 0; i < 2; i++) {
            l[i] = (leaver){.sub = subs[i], .start = &start, .mu = &mu, .cv = &cv,
                            .returned = &returned};
            cr_assert_eq(pthread_create(&l[i].thread, NULL, leave, &l[i]), 0);
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += LEAVE_BOUND_S;
        pthread_mutex_lock(&mu);
        while (returned < 2 && pthread_cond_timedwait(&cv, &mu, &until) == 0)
            ;
        int done = returned;
        pthread_mutex_unlock(&mu);
        cr_assert_eq(done, 2, "round %d: %d of 2 unsubscribes returned within %d s", round,
                     done, LEAVE_BOUND_S);
        for (int i = 0; i < 2; i++)
            pthread_join(l[i].thread, NULL);
        pthread_barrier_destroy(&start);
        cr_expect_eq(eb_bus_close(bus, 10000), 0);
        eb_bus_destroy(bus);
        kt_tracker_free(t);
    }
}
