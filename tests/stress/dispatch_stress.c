/*
 * dispatch_stress.c — a plain (non-criterion) stress test of the dispatch
 * code, so it runs under ThreadSanitizer: many keys through 4 workers
 * with a tiny pool (pause/resume all the time), handlers that ask for
 * retries, members joining and leaving (revokes) while messages flow, and
 * close with work still queued. Asserts: every published message handled
 * at least once, per-key order within each member's run, no key handled
 * concurrently, and the thread count back to its start. With "elastic",
 * the pool is elastic (up to 16 workers, idle ones retire after 2 ms) and
 * every 4th handler waits 300 us off the CPU, so the pool grows and
 * shrinks all the time while all of the above happens; it must have grown.
 *
 * usage: dispatch_stress [messages] [elastic]   (exit 0 = pass)
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eventbus/eventbus.h"
#include "bus_stat.h"
#include "proc_threads.h"

enum { KEYS = 64 };

static long n_messages = 20000;
static bool elastic;
static atomic_int failures;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "dispatch_stress:%d: ", __LINE__);                \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            atomic_fetch_add(&failures, 1);                                   \
        }                                                                     \
    } while (0)

typedef struct state {
    atomic_char *seen;          /* per message: handled with ACK at least once */
    atomic_long acked;
    atomic_int running[KEYS];   /* handlers of a key in progress, any member */
    atomic_long order_breaks;   /* seq went backwards in a member without a revoke */
} state;

/* One per bus (member): order is checked within a member until it sees a
 * revoke, after which redelivery may legitimately go back. */
typedef struct member_state {
    state *st;
    atomic_long last[KEYS];     /* last sequence handled per key (+1) */
    atomic_long revokes;
} member_state;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static eb_result handler(const eb_msg *msg, void *opaque)
{
    member_state *ms = opaque;
    state *st = ms->st;
    size_t len;
    long s;
    memcpy(&s, eb_msg_payload(msg, &len), sizeof s); /* payloads are not aligned */
    long key = s % KEYS;
    CHECK(atomic_fetch_add(&st->running[key], 1) == 0, "key %ld handled concurrently", key);
    /* Every 97th message asks for one retry; order must hold behind it. */
    bool retry = s % 97 == 0 && eb_msg_attempt(msg) == 1;
    long prev = atomic_load(&ms->last[key]);
    if (!retry) {
        if (s + 1 < prev && atomic_load(&ms->revokes) == 0 &&
            atomic_fetch_add(&st->order_breaks, 1) < 5)
            fprintf(stderr, "dispatch_stress: key %ld: seq %ld (attempt %u, id %s) after %ld\n",
                    key, s, eb_msg_attempt(msg), eb_msg_id(msg), prev - 1);
        atomic_store(&ms->last[key], s + 1);
    }
    if (elastic && s % 4 == 0) {
        struct timespec ts = {0, 300000};
        nanosleep(&ts, NULL); /* a handler waiting on I/O: the pool grows */
    }
    atomic_fetch_sub(&st->running[key], 1);
    if (retry)
        return EB_RETRY;
    if (atomic_exchange(&st->seen[s], 1) == 0)
        atomic_fetch_add(&st->acked, 1);
    return EB_ACK;
}

static void on_event(eb_bus *bus, const eb_event *ev, void *opaque)
{
    member_state *ms = opaque;
    if (ev->type == EB_EVENT_REVOKED)
        atomic_fetch_add(&ms->revokes, 1);
}

static eb_bus *open_bus(member_state *ms)
{
    eb_config *cfg = eb_config_new();
    char err[512];
    const char *settings[][2] = {
        {"memory.name", "stress"}, {"dispatch.workers", "4"},
        {"dispatch.queue.max", "64"}, {"dispatch.lane.max.inflight", "128"},
        {"retry.backoff.ms", "1"}, {"retry.backoff.max.ms", "5"},
        {"dispatch.revoke.timeout.ms", "5000"}};
    const char *elastic_settings[][2] = {
        {"dispatch.workers", "0"}, {"dispatch.workers.max", "16"},
        {"dispatch.workers.idle.ms", "2"}};
    for (size_t i = 0; i < sizeof settings / sizeof *settings; i++)
        if (eb_config_set(cfg, settings[i][0], settings[i][1], err, sizeof err) != 0) {
            fprintf(stderr, "dispatch_stress: %s\n", err);
            exit(2);
        }
    for (size_t i = 0; elastic && i < sizeof elastic_settings / sizeof *elastic_settings; i++)
        if (eb_config_set(cfg, elastic_settings[i][0], elastic_settings[i][1], err,
                          sizeof err) != 0) {
            fprintf(stderr, "dispatch_stress: %s\n", err);
            exit(2);
        }
    eb_config_set_event_cb(cfg, on_event, ms);
    eb_bus *bus = NULL;
    int rc = eb_bus_open(cfg, &bus, err, sizeof err);
    eb_config_destroy(cfg);
    if (rc != 0) {
        fprintf(stderr, "dispatch_stress: open: %s\n", err);
        exit(2);
    }
    return bus;
}

static eb_sub *subscribe(eb_bus *bus, member_state *ms)
{
    eb_sub *sub = NULL;
    char err[256];
    int rc = eb_subscribe(bus, "stress", "g", handler, ms, NULL, &sub, err, sizeof err);
    CHECK(rc == 0, "subscribe: %s", err);
    CHECK(rc == 0 && eb_sub_wait_ready(sub, 10000) == 0, "subscription not ready");
    return sub;
}

static void publish_range(eb_bus *bus, long from, long to)
{
    for (long s = from; s < to; s++) {
        char key[16];
        int klen = snprintf(key, sizeof key, "k%ld", s % KEYS);
        eb_outgoing m = {.topic = "stress", .key = key, .key_len = (size_t)klen,
                         .payload = &s, .payload_len = sizeof s};
        int rc = eb_publish(bus, &m, NULL, NULL);
        CHECK(rc == 0, "publish %ld: %s", s, eb_strerror(rc));
    }
}

static bool wait_all(state *st, long n, int64_t deadline)
{
    while (atomic_load(&st->acked) < n && now_ns() < deadline) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL); /* polling a counter with a deadline */
    }
    return atomic_load(&st->acked) == n;
}

static void *nothing(void *arg) { return arg; }

/** Thread count once the runtime's own helpers exist (TSan starts a
 *  background thread with the first pthread_create). */
static int baseline_threads(void)
{
    pthread_t t;
    pthread_create(&t, NULL, nothing, NULL);
    pthread_join(t, NULL);
    return proc_thread_count();
}

int main(int argc, char **argv)
{
    if (argc > 1)
        n_messages = atol(argv[1]);
    elastic = argc > 2 && strcmp(argv[2], "elastic") == 0;
    int threads_before = baseline_threads();
    state *st = calloc(1, sizeof *st);
    st->seen = calloc((size_t)n_messages, 1);

    member_state ms[3] = {{.st = st}, {.st = st}, {.st = st}};
    eb_bus *a = open_bus(&ms[0]), *b = open_bus(&ms[1]);
    eb_sub *sa = subscribe(a, &ms[0]);
    publish_range(a, 0, n_messages / 4);
    eb_sub *sb = subscribe(b, &ms[1]);              /* rebalance while flowing */
    publish_range(b, n_messages / 4, n_messages / 2);
    CHECK(eb_unsubscribe(sa) == 0, "unsubscribe");  /* and again */
    eb_sub_destroy(sa);
    publish_range(b, n_messages / 2, n_messages);
    /* Close a with nothing subscribed, b while work may still be queued:
     * a third member takes over what b leaves unacknowledged. */
    CHECK(eb_bus_close(a, 5000) == 0, "close a");
    eb_bus *c = open_bus(&ms[2]);
    eb_sub *sc = subscribe(c, &ms[2]);
    long long peak = bus_stat(b, "workers_peak");
    int rc = eb_bus_close(b, 100);
    CHECK(rc == 0 || rc == EB_ERR_TIMEOUT, "close b: %s", eb_strerror(rc));
    CHECK(wait_all(st, n_messages, now_ns() + 60 * 1000000000LL),
          "only %ld of %ld messages handled", atomic_load(&st->acked), n_messages);
    if (bus_stat(c, "workers_peak") > peak)
        peak = bus_stat(c, "workers_peak");
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK(!elastic || peak > cpus, "the elastic pool never grew (peak %lld, %ld CPUs)", peak,
          cpus);
    CHECK(eb_bus_close(c, 5000) == 0, "close c");
    (void)sb;
    (void)sc;
    eb_bus_destroy(a);
    eb_bus_destroy(b);
    eb_bus_destroy(c);
    CHECK(atomic_load(&st->order_breaks) == 0, "%ld order breaks",
          atomic_load(&st->order_breaks));
    int threads_after = proc_thread_count_settled(threads_before);
    CHECK(threads_after == threads_before, "threads: %d before, %d after",
          threads_before, threads_after);
    free(st->seen);
    free(st);
    int f = atomic_load(&failures);
    printf("dispatch_stress: %ld messages%s, %s\n", n_messages, elastic ? ", elastic pool" : "",
           f ? "FAILED" : "ok");
    printf("%d passed, %d failed\n", f ? 0 : 1, f ? 1 : 0);
    return f ? 1 : 0;
}
