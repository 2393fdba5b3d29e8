/*
 * dead_letter_stress.c — a plain (non-criterion) stress test of dead
 * letters, so it runs under ThreadSanitizer. Many keys flow through 4
 * workers with lanes of 8 in flight; handlers reject or retry some
 * messages; the memfault transport (tests/plugins/memfault.c) makes the
 * dead-letter topic, round after round, refuse everything (NOT_FOUND: lanes
 * stop while more messages arrive, then resume when it is lifted) and then
 * refuse large copies (TOO_LARGE: stubs). Asserts: every message ends
 * handled or dead-lettered exactly once (nothing is revoked, so nothing
 * repeats), the messages of a key run in order and never two at once,
 * each round stopped lanes and sent stubs, nothing stays stopped and
 * health is OK at the end, close returns 0, the threads are back.
 *
 * usage: dead_letter_stress [messages]   (exit 0 = pass)
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eventbus/eventbus.h"
#include "proc_threads.h"
#include "test_wait.h"

enum { KEYS = 64, BIG = 200, STUB_ABOVE = 300, ID_MAX = 32 }; /* a stub: ~180 bytes */
#define TOPIC "stress"
#define DLQ_TOPIC "stress.dlq"

static long n_messages = 2000;
static atomic_int failures;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "dead_letter_stress:%d: ", __LINE__);             \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            atomic_fetch_add(&failures, 1);                                   \
        }                                                                     \
    } while (0)

typedef void (*memfault_set_fn)(const char *topic, int err, size_t above_bytes);

static struct {
    atomic_long acked, settled;          /* handled to ACK; ACK or dead letter */
    atomic_int running[KEYS];
    atomic_long last[KEYS];              /* last seq handled per key, +1 */
    pthread_mutex_t mu;                  /* the id lists */
    char (*rejected)[ID_MAX], (*dead)[ID_MAX];
    long n_rejected, n_dead;
} st = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void add_id(char (*list)[ID_MAX], long *n, const char *id)
{
    pthread_mutex_lock(&st.mu);
    if (*n < n_messages)
        snprintf(list[(*n)++], ID_MAX, "%s", id);
    pthread_mutex_unlock(&st.mu);
}

/* Every 7th message is rejected, every 13th retried until dead-lettered. */
static eb_result handle(const eb_msg *msg, void *opaque)
{
    size_t len;
    long s;
    memcpy(&s, eb_msg_payload(msg, &len), sizeof s); /* payloads are not aligned */
    long key = s % KEYS;
    CHECK(atomic_fetch_add(&st.running[key], 1) == 0, "key %ld handled concurrently", key);
    long prev = atomic_load(&st.last[key]);
    CHECK(s + 1 >= prev, "key %ld: seq %ld after %ld", key, s, prev - 1);
    atomic_store(&st.last[key], s + 1);
    eb_result r = s % 7 == 3 ? EB_REJECT : s % 13 == 6 ? EB_RETRY : EB_ACK;
    bool last_attempt = eb_msg_attempt(msg) >= 2; /* retry.max.attempts */
    if (r == EB_REJECT || (r == EB_RETRY && last_attempt))
        add_id(st.rejected, &st.n_rejected, eb_msg_id(msg));
    atomic_fetch_sub(&st.running[key], 1);
    if (r == EB_ACK) {
        atomic_fetch_add(&st.acked, 1);
        atomic_fetch_add(&st.settled, 1);
    }
    return r;
}

static eb_result handle_dead_letter(const eb_msg *msg, void *opaque)
{
    const void *id;
    size_t len;
    CHECK(eb_msg_header_find(msg, EB_DLQ_HEADER_ORIGIN_ID, &id, &len) == 0 && len < ID_MAX,
          "a dead letter without its origin id");
    char text[ID_MAX] = "";
    memcpy(text, id, len < ID_MAX ? len : 0);
    add_id(st.dead, &st.n_dead, text);
    atomic_fetch_add(&st.settled, 1);
    return EB_ACK;
}

static eb_bus *open_bus(void)
{
    const char *settings[][2] = {
        {"transport", "memfault"}, {"plugin.path", EB_TEST_PLUGIN_DIR},
        {"dispatch.workers", "4"}, {"dispatch.lane.max.inflight", "8"},
        {"retry.max.attempts", "2"}, {"retry.backoff.ms", "1"},
        {"retry.backoff.max.ms", "100"}};
    eb_config *cfg = eb_config_new();
    char err[512];
    for (size_t i = 0; i < sizeof settings / sizeof *settings; i++)
        if (eb_config_set(cfg, settings[i][0], settings[i][1], err, sizeof err) != 0) {
            fprintf(stderr, "dead_letter_stress: %s\n", err);
            exit(2);
        }
    eb_bus *bus = NULL;
    int rc = eb_bus_open(cfg, &bus, err, sizeof err);
    eb_config_destroy(cfg);
    if (rc != 0) {
        fprintf(stderr, "dead_letter_stress: open: %s\n", err);
        exit(2);
    }
    return bus;
}

static void subscribe(eb_bus *bus, const char *topic, const char *group, eb_handler h)
{
    eb_sub *sub = NULL;
    char err[256];
    int rc = eb_subscribe(bus, topic, group, h, NULL, NULL, &sub, err, sizeof err);
    CHECK(rc == 0, "subscribe %s: %s", topic, err);
    CHECK(rc == 0 && eb_sub_wait_ready(sub, 10000) == 0, "%s not ready", topic);
}

/* Every 5th message is large enough that its copy is refused as too large
 * in the TOO_LARGE rounds: it goes as a stub. */
static void publish_range(eb_bus *bus, long from, long to)
{
    char payload[BIG] = {0};
    for (long s = from; s < to; s++) {
        char key[16];
        int klen = snprintf(key, sizeof key, "k%ld", s % KEYS);
        memcpy(payload, &s, sizeof s);
        eb_outgoing m = {.topic = TOPIC, .key = key, .key_len = (size_t)klen,
                         .payload = payload, .payload_len = s % 5 == 0 ? BIG : sizeof s};
        int rc = eb_publish(bus, &m, NULL, NULL);
        CHECK(rc == 0, "publish %ld: %s", s, eb_strerror(rc));
    }
}

static long long stat_of(eb_bus *bus, const char *name)
{
    char *json = NULL, pattern[64];
    if (eb_bus_stats(bus, &json) != 0)
        return -1;
    snprintf(pattern, sizeof pattern, "\"%s\":", name);
    const char *at = strstr(json, pattern);
    long long value = at ? atoll(at + strlen(pattern)) : -1;
    eb_free(json);
    return value;
}

/** Waits until stats `name` reaches `want`. */
static bool wait_stat(eb_bus *bus, const char *name, long long want, int64_t deadline_ms)
{
    while (stat_of(bus, name) < want && test_now_ms() < deadline_ms)
        test_next_look();
    return stat_of(bus, name) >= want;
}

static int by_text(const void *a, const void *b) { return strcmp(a, b); }

/** Each rejected message dead-lettered exactly once. */
static void check_dead_letters(void)
{
    CHECK(st.n_dead == st.n_rejected, "%ld dead letters for %ld rejected messages",
          st.n_dead, st.n_rejected);
    qsort(st.rejected, (size_t)st.n_rejected, ID_MAX, by_text);
    qsort(st.dead, (size_t)st.n_dead, ID_MAX, by_text);
    for (long i = 0; i < st.n_rejected && i < st.n_dead; i++)
        if (strcmp(st.rejected[i], st.dead[i]) != 0) {
            CHECK(false, "rejected %s, dead-lettered %s", st.rejected[i], st.dead[i]);
            break;
        }
}

static bool wait_settled(long n, int64_t deadline_ms)
{
    while (atomic_load(&st.settled) < n && test_now_ms() < deadline_ms)
        test_next_look();
    return atomic_load(&st.settled) == n;
}

enum { ROUNDS = 10 };

/**
 * One round of messages [from, to): the dead-letter topic is missing while
 * the first two thirds arrive (lanes stop), then takes everything, then
 * refuses large copies for the last third (stubs).
 */
static void one_round(eb_bus *bus, memfault_set_fn set, long from, long to)
{
    int64_t deadline = test_now_ms() + 60000;
    long third = (to - from) / 3;
    long long failed = stat_of(bus, "dlq_failed"), stubs = stat_of(bus, "dlq_stubs");
    set(DLQ_TOPIC, EB_ERR_NOT_FOUND, 0);
    publish_range(bus, from, from + third);
    CHECK(wait_stat(bus, "dlq_stopped", 1, deadline), "no lane stopped in round %ld", from);
    publish_range(bus, from + third, from + 2 * third); /* behind stopped lanes */
    CHECK(stat_of(bus, "dlq_failed") > failed, "no dead letter failed in round %ld", from);
    set(NULL, 0, 0);
    CHECK(wait_settled(from + 2 * third, deadline), "round %ld: %ld of %ld settled", from,
          atomic_load(&st.settled), from + 2 * third);
    set(DLQ_TOPIC, EB_ERR_TOO_LARGE, STUB_ABOVE);
    publish_range(bus, from + 2 * third, to);
    CHECK(wait_settled(to, deadline), "round %ld: %ld of %ld settled", from,
          atomic_load(&st.settled), to);
    CHECK(stat_of(bus, "dlq_stubs") > stubs, "no stub in round %ld", from);
    set(NULL, 0, 0);
}

static eb_health_state wait_health_ok(eb_bus *bus, int64_t deadline_ms)
{
    eb_health h = {0};
    while (eb_bus_health(bus, &h) == 0 && h.state != EB_HEALTH_OK && test_now_ms() < deadline_ms)
        test_next_look();
    return h.state;
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
    int threads_before = baseline_threads();
    st.rejected = calloc((size_t)n_messages, ID_MAX);
    st.dead = calloc((size_t)n_messages, ID_MAX);

    eb_bus *bus = open_bus();
    void *plugin = dlopen(EB_TEST_PLUGIN_DIR "/eventbus-memfault.so", RTLD_NOW | RTLD_NOLOAD);
    memfault_set_fn set = plugin ? (memfault_set_fn)dlsym(plugin, "memfault_set") : NULL;
    if (!set) {
        fprintf(stderr, "dead_letter_stress: memfault_set: %s\n", dlerror());
        return 2;
    }
    subscribe(bus, DLQ_TOPIC, "gdlq", handle_dead_letter);
    subscribe(bus, TOPIC, "g", handle);
    for (long r = 0; r < ROUNDS; r++)
        one_round(bus, set, n_messages * r / ROUNDS, n_messages * (r + 1) / ROUNDS);
    CHECK(wait_health_ok(bus, test_now_ms() + 10000) == EB_HEALTH_OK,
          "health is not OK once the dead-letter topic takes everything");
    char *json = NULL;
    if (eb_bus_stats(bus, &json) == 0) {
        CHECK(strstr(json, "\"dlq_stopped\":0,") != NULL, "still stopped: %s", json);
        printf("dead_letter_stress: %s\n", json);
        eb_free(json);
    }
    CHECK(eb_bus_close(bus, 10000) == 0, "close");
    eb_bus_destroy(bus);
    dlclose(plugin);
    check_dead_letters();
    int threads_after = proc_thread_count_settled(threads_before);
    CHECK(threads_after == threads_before, "threads: %d before, %d after", threads_before,
          threads_after);
    free(st.rejected);
    free(st.dead);
    int f = atomic_load(&failures);
    printf("dead_letter_stress: %ld messages, %ld dead letters, %s\n", n_messages, st.n_dead,
           f ? "FAILED" : "ok");
    printf("%d passed, %d failed\n", f ? 0 : 1, f ? 1 : 0);
    return f ? 1 : 0;
}
