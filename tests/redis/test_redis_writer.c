/*
 * test_redis_writer.c — the Redis transport's publish side (plugins/redis/
 * writer.c) against the real redis-server ($EB_REDIS_URL, $EB_REDIS_CTL),
 * through a host table that records what the writer reports: every
 * publish reported once with the entry id; a full queue refuses or waits;
 * a server frozen mid-pipeline makes the XADDs in flight UNCERTAIN, then
 * the writer reconnects by itself; a server that is not there times
 * queued messages out; stop purges what was never sent.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "redis_test.h"
#include "test_wait.h"
#include "writer.h"

/* ------------------------------------------------ a host that records */

enum { MAX_TOKENS = 20000 };
static atomic_int status_of[MAX_TOKENS];   /* the last status reported */
static atomic_int reports[MAX_TOKENS];
static atomic_int total_reports, ok_reports, uncertain, timed_out, purged, disconnects, connects;
static char first_id[64];
static pthread_mutex_t id_mu = PTHREAD_MUTEX_INITIALIZER;

static void host_log(eb_host_bus *hb, eb_log_level level, const char *fmt, ...)
{
    (void)hb, (void)level, (void)fmt;
}

static int64_t host_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void host_event(eb_host_bus *hb, eb_event_type type, const char *topic, const char *group,
                       int error, const char *detail)
{
    (void)hb, (void)topic, (void)group, (void)error, (void)detail;
    if (type == EB_EVENT_DISCONNECTED)
        atomic_fetch_add(&disconnects, 1);
    if (type == EB_EVENT_CONNECTED)
        atomic_fetch_add(&connects, 1);
}

static void host_delivered(eb_host_bus *hb, void *token, int status, const char *id)
{
    (void)hb;
    int i = (int)(intptr_t)token - 1;
    atomic_fetch_add(&reports[i], 1);
    atomic_store(&status_of[i], status);
    atomic_fetch_add(&total_reports, 1);
    if (status == 0) {
        atomic_fetch_add(&ok_reports, 1);
        pthread_mutex_lock(&id_mu);
        if (!first_id[0] && id)
            snprintf(first_id, sizeof first_id, "%s", id);
        pthread_mutex_unlock(&id_mu);
    }
    if (status == EB_ERR_UNCERTAIN)
        atomic_fetch_add(&uncertain, 1);
    if (status == EB_ERR_TIMEOUT)
        atomic_fetch_add(&timed_out, 1);
    if (status == EB_ERR_PURGED)
        atomic_fetch_add(&purged, 1);
}

static const eb_host host = {.abi_major = EB_TRANSPORT_ABI_MAJOR,
                             .abi_minor = EB_TRANSPORT_ABI_MINOR,
                             .struct_size = sizeof(eb_host),
                             .log = host_log,
                             .now_ns = host_now_ns,
                             .event = host_event,
                             .delivered = host_delivered};

/* ---------------------------------------------------------- fixtures */

static char err[512];
static rd_url url;
static char stream[64];

static rd_writer *start(const rd_url *u, size_t queue_max, int64_t delivery_timeout_ms)
{
    rt_stream_name(stream, sizeof stream, "writer");
    rd_writer_config cfg = {.url = u,
                            .timeouts = {.connect_ms = 500, .command_ms = 500},
                            .queue_max = queue_max,
                            .delivery_timeout_ms = delivery_timeout_ms,
                            .backoff_min_ms = 20,
                            .backoff_max_ms = 200};
    rd_writer *w = rd_writer_start(&host, NULL, &cfg);
    cr_assert(w);
    return w;
}

static int publish(rd_writer *w, int i, int64_t timeout_ms)
{
    char payload[32];
    int len = snprintf(payload, sizeof payload, "m%d", i);
    eb_outgoing m = {.topic = "t", .key = "k", .key_len = 1, .payload = payload,
                     .payload_len = (size_t)len};
    return rd_writer_publish(w, stream, 0, &m, timeout_ms, (void *)(intptr_t)(i + 1));
}

static bool reports_reach(void *want) { return atomic_load(&total_reports) >= *(int *)want; }

/** The stream's length; then it is deleted. */
static long long stream_len(void)
{
    rd_conn c;
    rt_connect(&c, &url);
    const char *argv[] = {"XLEN", stream};
    redisReply *r = rt_run(&c, 2, argv);
    long long n = r->integer;
    freeReplyObject(r);
    rt_delete(&c, stream);
    rd_conn_close(&c);
    return n;
}

typedef struct pub_args {
    rd_writer *w;
    int from, to;
} pub_args;

static void *publisher(void *arg)
{
    pub_args *a = arg;
    for (int i = a->from; i < a->to; i++)
        cr_assert_eq(publish(a->w, i, 5000), 0);
    return NULL;
}

Test(redis_writer, concurrent_publishes_are_each_reported_once_with_their_id, .timeout = 60)
{
    url = rt_server_url();
    enum { N = 8000, THREADS = 4 };
    rd_writer *w = start(&url, 1000, 10000);
    pthread_t t[THREADS];
    pub_args a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (pub_args){w, i * N / THREADS, (i + 1) * N / THREADS};
        pthread_create(&t[i], NULL, publisher, &a[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    cr_expect_eq(rd_writer_flush(w, host_now_ns() + 20000000000), 0, "flush timed out");
    cr_expect_eq(atomic_load(&total_reports), N, "flush returned before every report");
    rd_writer_stop(w);
    cr_expect_eq(atomic_load(&ok_reports), N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(atomic_load(&reports[i]), 1, "publish %d reported %d times", i,
                     atomic_load(&reports[i]));
    cr_expect(strncmp(first_id, "0@", 2) == 0 && strchr(first_id, '-'), "id %s", first_id);
    cr_expect_eq(stream_len(), N);
}

static bool server_frozen(void *arg)
{
    (void)arg;
    return rt_server_frozen(&url);
}

Test(redis_writer, a_full_queue_refuses_or_waits_and_close_ends_the_wait, .timeout = 60)
{
    url = rt_server_url();
    rd_writer *w = start(&url, 10, 30000);
    pid_t freezer = rt_freeze_server(3);
    cr_assert(test_wait_for(server_frozen, NULL, 10000), "the server never froze");
    /* The writer takes up to a pipeline's worth and sticks on the frozen
     * server; then the queue fills. */
    int accepted = 0, full = 0;
    for (int i = 0; i < 600 && !full; i++) {
        int rc = publish(w, i, 0);
        accepted += rc == 0;
        full += rc == EB_ERR_FULL;
    }
    cr_assert_eq(full, 1, "the queue of 10 never filled (%d accepted)", accepted);
    int64_t t0 = test_now_ms();
    cr_expect_eq(publish(w, accepted + 1, 100), EB_ERR_FULL);
    cr_expect_geq(test_now_ms() - t0, 100, "a publish gave up before its timeout");
    rd_writer_begin_close(w);
    t0 = test_now_ms();
    cr_expect_eq(publish(w, accepted + 2, 5000), EB_ERR_CLOSED);
    cr_expect_lt(test_now_ms() - t0, 1000, "close did not end the wait");
    int status;
    waitpid(freezer, &status, 0);
    rd_writer_stop(w);
    /* Every accepted publish was reported once: sent ones OK or UNCERTAIN
     * (the frozen server may have stored them), queued ones OK or PURGED. */
    for (int i = 0; i < accepted; i++)
        cr_expect_eq(atomic_load(&reports[i]), 1, "publish %d reported %d times", i,
                     atomic_load(&reports[i]));
    cr_expect_eq(atomic_load(&total_reports), accepted);
    stream_len();
}

Test(redis_writer, a_frozen_server_makes_sent_xadds_uncertain_then_it_reconnects, .timeout = 60)
{
    url = rt_server_url();
    rd_writer *w = start(&url, 1000, 30000);
    cr_assert_eq(publish(w, 0, 1000), 0);
    int one = 1;
    cr_assert(test_wait_for(reports_reach, &one, 5000));
    pid_t freezer = rt_freeze_server(3);
    cr_assert(test_wait_for(server_frozen, NULL, 10000), "the server never froze");
    for (int i = 1; i <= 50; i++)
        cr_assert_eq(publish(w, i, 1000), 0);
    int want = 51;
    cr_assert(test_wait_for(reports_reach, &want, 30000), "only %d of 51 reported",
              atomic_load(&total_reports));
    cr_expect_geq(atomic_load(&uncertain), 1, "no XADD in flight was reported uncertain");
    cr_expect_geq(atomic_load(&disconnects), 1, "no DISCONNECTED event");
    int status;
    waitpid(freezer, &status, 0);
    /* Thawed: the writer reconnects by itself and publishes go through. */
    for (int i = 51; i < 61; i++)
        cr_assert_eq(publish(w, i, 1000), 0);
    cr_expect_eq(rd_writer_flush(w, host_now_ns() + 20000000000), 0);
    for (int i = 51; i < 61; i++)
        cr_expect_eq(atomic_load(&status_of[i]), 0, "publish %d after the thaw: %d", i,
                     atomic_load(&status_of[i]));
    cr_expect_geq(atomic_load(&connects), 2, "no CONNECTED event after the thaw");
    rd_writer_stop(w);
    long long stored = stream_len();
    /* Stored: every one reported OK, and any of the uncertain ones (the
     * frozen server reads them once it thaws). */
    int ok = atomic_load(&ok_reports), maybe = atomic_load(&uncertain);
    cr_expect(stored >= ok && stored <= ok + maybe, "%lld stored, %d OK, %d uncertain", stored,
              ok, maybe);
    cr_expect_eq(ok + maybe, 61, "%d reported neither OK nor uncertain", 61 - ok - maybe);
}

Test(redis_writer, without_a_server_messages_time_out_and_stop_purges, .timeout = 60)
{
    url = rt_server_url();
    rd_url nowhere;
    cr_assert_eq(rd_url_parse("redis://127.0.0.1:1", &nowhere, err, sizeof err), 0);
    rd_writer *w = start(&nowhere, 1000, 300);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(publish(w, i, 0), 0);
    int want = 20;
    cr_assert(test_wait_for(reports_reach, &want, 10000), "only %d of 20 timed out",
              atomic_load(&total_reports));
    cr_expect_eq(atomic_load(&timed_out), 20);
    cr_expect_geq(atomic_load(&disconnects), 1);
    cr_expect_eq(rd_writer_connected(w), 0);
    for (int i = 20; i < 30; i++)
        cr_assert_eq(publish(w, i, 0), 0);
    rd_writer_stop(w);
    cr_expect_eq(atomic_load(&purged) + atomic_load(&timed_out), 30,
                 "stop left publishes unreported: %d purged, %d timed out",
                 atomic_load(&purged), atomic_load(&timed_out));
    for (int i = 0; i < 30; i++)
        cr_expect_eq(atomic_load(&reports[i]), 1, "publish %d reported %d times", i,
                     atomic_load(&reports[i]));
}
