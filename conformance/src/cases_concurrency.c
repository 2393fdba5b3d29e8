/*
 * cases_concurrency.c — many threads on the API at once: four threads
 * publish together, two per bus (delivery tokens, topic handles and
 * producer queues shared between threads), each its own key; then both
 * buses close at once, from two threads. Every publish is confirmed
 * exactly once, every message handled, each key in order.
 */
#include "eventbus/conformance.h"

#include <pthread.h>

#define CP_THREADS 4
#define CP_PER_THREAD 250

struct cp_publisher {
    eb_bus *bus;
    const char *topic;
    eb_conf_deliveries *d;
    unsigned key;
    atomic_int failed_rc; /* the first unexpected eb_publish code */
};

static void *cp_publish(void *arg)
{
    struct cp_publisher *p = arg;
    for (unsigned seq = 0; seq < CP_PER_THREAD; seq++) {
        int rc;
        size_t slot = p->key * CP_PER_THREAD + seq;
        while ((rc = eb_conf_try_publish_seq(p->bus, p->topic, p->key, seq, p->d, slot)) ==
               EB_ERR_FULL)
            eb_flush(p->bus, 10); /* let the transport drain */
        if (rc != 0) {
            atomic_store(&p->failed_rc, rc);
            return NULL;
        }
    }
    return NULL;
}

struct cp_closer {
    eb_bus *bus;
    int rc;
};

static void *cp_close(void *arg)
{
    struct cp_closer *c = arg;
    c->rc = eb_bus_close(c->bus, EB_CONF_CLOSE_MS);
    return NULL;
}

void eb_case_concurrent_publishers(eb_conf_ctx *ctx)
{
    const char *topic = eb_conf_name(ctx, "t");
    eb_bus *sub_bus = eb_conf_open(ctx, eb_conf_config(ctx));
    eb_conf_recorder *r = eb_conf_recorder_new(ctx, CP_THREADS, CP_PER_THREAD);
    eb_conf_sink *sink = eb_conf_sink_new(ctx, r, NULL);
    unsigned long revokes = eb_conf_event_count(ctx, EB_EVENT_REVOKED);
    eb_conf_subscribe(ctx, sub_bus, topic, eb_conf_group_or_anon(ctx, eb_conf_name(ctx, "g")),
                      eb_conf_sink_handler, sink);

    eb_bus *pub[2] = {eb_conf_open(ctx, eb_conf_config(ctx)),
                      eb_conf_open(ctx, eb_conf_config(ctx))};
    eb_conf_deliveries *d = eb_conf_deliveries_new(ctx, CP_THREADS * CP_PER_THREAD);
    struct cp_publisher *p = eb_conf_alloc(ctx, CP_THREADS * sizeof *p);
    pthread_t threads[CP_THREADS];
    for (unsigned i = 0; i < CP_THREADS; i++) {
        p[i].bus = pub[i % 2];
        p[i].topic = topic;
        p[i].d = d;
        p[i].key = i;
        EB_CHECK(pthread_create(&threads[i], NULL, cp_publish, &p[i]) == 0,
                 "cannot start publisher thread %u", i);
    }
    for (unsigned i = 0; i < CP_THREADS; i++)
        pthread_join(threads[i], NULL);
    for (unsigned i = 0; i < CP_THREADS; i++)
        EB_CHECK(atomic_load(&p[i].failed_rc) == 0, "publisher %u: eb_publish returned %s", i,
                 eb_err_name(atomic_load(&p[i].failed_rc)));

    struct cp_closer closers[2] = {{pub[0], 1}, {pub[1], 1}};
    pthread_t close_threads[2];
    for (int i = 0; i < 2; i++)
        EB_CHECK(pthread_create(&close_threads[i], NULL, cp_close, &closers[i]) == 0,
                 "cannot start closer thread %d", i);
    for (int i = 0; i < 2; i++)
        pthread_join(close_threads[i], NULL);
    for (int i = 0; i < 2; i++)
        EB_CHECK(closers[i].rc == 0, "closing publisher bus %d at once with the other: %s", i,
                 eb_err_name(closers[i].rc));

    /* Close flushed: every accepted publish has had its one callback. */
    EB_CHECK_EQ(eb_conf_deliveries_accepted_count(d), CP_THREADS * CP_PER_THREAD);
    EB_CHECK_EQ(eb_conf_deliveries_double_callbacks(d), 0);
    EB_CHECK_EQ(eb_conf_deliveries_confirmed(d), CP_THREADS * CP_PER_THREAD);
    eb_conf_expect_all(ctx, r, CP_THREADS, CP_PER_THREAD, "from four publishing threads");
    eb_conf_expect_order(ctx, r, 1, "one key per publishing thread");
    eb_conf_check_duplicates(ctx, eb_conf_recorder_duplicates(r),
                             eb_conf_revokes_since(ctx, revokes), "concurrent publishers");
}
