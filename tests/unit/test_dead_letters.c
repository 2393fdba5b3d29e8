/*
 * test_dead_letters.c — a dead-letter publish that fails for good (issue 7,
 * defect 8), on the memfault test transport (tests/plugins/memfault.c),
 * which refuses publishes to the dead-letter topic while a test says so:
 *  - NOT_FOUND or INVALID stops the lane: the message stays unacknowledged
 *    and its key waits, health says DEGRADED, DLQ_FAILED comes at most once
 *    a second; once the topic takes it the dead letter goes out, the key
 *    resumes in order and health is OK again;
 *  - a copy refused as TOO_LARGE goes out as a stub; a stub refused too
 *    stops the lane like NOT_FOUND;
 *  - message.max.bytes leaves Kafka's default room for the dead-letter
 *    headers.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eventbus/eventbus.h"
#include "test_bus.h"
#include "test_wait.h"

#define TOPIC "orders"
#define DLQ_TOPIC "orders.dlq"
#define LATER 3       /* messages of the bad key after it */
#define OTHERS 20     /* messages of other keys */
#define WAIT_MS 20000

static char err[512];

/* ------------------------------------------------------------ the fault */

typedef void (*memfault_set_fn)(const char *topic, int err, size_t above_bytes);

static void *memfault_handle;

/** memfault_set() of the copy the bus loaded (dlopen finds the same one). */
static memfault_set_fn memfault_control(void)
{
    memfault_handle = dlopen(EB_TEST_PLUGIN_DIR "/eventbus-memfault.so",
                             RTLD_NOW | RTLD_NOLOAD);
    cr_assert_not_null(memfault_handle, "the bus has not loaded memfault: %s", dlerror());
    memfault_set_fn set = (memfault_set_fn)dlsym(memfault_handle, "memfault_set");
    cr_assert_not_null(set, "%s", dlerror());
    return set;
}

/* -------------------------------------------------------------- the state */

static struct {
    pthread_mutex_t mu;
    char bad_id[64];
    atomic_int later_handled;
    unsigned later_order[LATER];
    atomic_int others_handled;
    atomic_int dead_letters;
    eb_msg *dead_letter; /* a copy of the first */
    atomic_int dlq_failed_events;
    atomic_int last_event_error;
} st = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void count_events(eb_bus *bus, const eb_event *ev, void *opaque)
{
    if (ev->type != EB_EVENT_DLQ_FAILED)
        return;
    atomic_store(&st.last_event_error, ev->error);
    atomic_fetch_add(&st.dlq_failed_events, 1);
}

/* Key "bad": seq 0 is rejected, the later ones recorded in order. */
static eb_result handle(const eb_msg *msg, void *opaque)
{
    size_t klen, plen;
    const char *key = eb_msg_key(msg, &klen);
    const char *payload = eb_msg_payload(msg, &plen);
    if (!key || klen != 3 || memcmp(key, "bad", 3) != 0) {
        atomic_fetch_add(&st.others_handled, 1);
        return EB_ACK;
    }
    unsigned seq = plen > 0 && payload[0] >= '0' && payload[0] <= '9' ? payload[0] - '0' : 0;
    if (seq == 0) {
        pthread_mutex_lock(&st.mu);
        snprintf(st.bad_id, sizeof st.bad_id, "%s", eb_msg_id(msg));
        pthread_mutex_unlock(&st.mu);
        return EB_REJECT;
    }
    pthread_mutex_lock(&st.mu);
    int n = atomic_fetch_add(&st.later_handled, 1);
    if (n < LATER)
        st.later_order[n] = seq;
    pthread_mutex_unlock(&st.mu);
    return EB_ACK;
}

static eb_result handle_dead_letter(const eb_msg *msg, void *opaque)
{
    pthread_mutex_lock(&st.mu);
    if (!st.dead_letter)
        eb_msg_copy(msg, &st.dead_letter); /* checked on the test's thread */
    pthread_mutex_unlock(&st.mu);
    atomic_fetch_add(&st.dead_letters, 1);
    return EB_ACK;
}

/* ---------------------------------------------------------------- helpers */

static eb_bus *open_memfault(void)
{
    const char *const kv[][2] = {
        {"transport", "memfault"}, {"plugin.path", EB_TEST_PLUGIN_DIR},
        {"retry.backoff.ms", "100"}, {"retry.backoff.max.ms", "200"}};
    eb_config *cfg = eb_config_new();
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        cr_assert_eq(eb_config_set(cfg, kv[i][0], kv[i][1], err, sizeof err), 0, "%s", err);
    eb_config_set_event_cb(cfg, count_events, NULL);
    eb_bus *bus = NULL;
    cr_assert_eq(eb_bus_open(cfg, &bus, err, sizeof err), 0, "%s", err);
    eb_config_destroy(cfg);
    return bus;
}

static void subscribe(eb_bus *bus, const char *topic, const char *group, eb_handler h)
{
    eb_sub *sub = NULL;
    cr_assert_eq(eb_subscribe(bus, topic, group, h, NULL, NULL, &sub, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(eb_sub_wait_ready(sub, 5000), 0);
}

static const eb_header original_headers[] = {{"h1", "v1", 2}};

/** The bad message (key "bad", seq 0, `payload_len` bytes, one header),
 *  LATER more of its key, and OTHERS of other keys. */
static void publish_all(eb_bus *bus, size_t payload_len)
{
    char *payload = malloc(payload_len);
    memset(payload, 'x', payload_len);
    payload[0] = '0';
    eb_outgoing bad = {.topic = TOPIC, .key = "bad", .key_len = 3, .payload = payload,
                       .payload_len = payload_len, .headers = original_headers,
                       .header_count = 1};
    cr_assert_eq(eb_publish(bus, &bad, NULL, NULL), 0);
    free(payload);
    for (unsigned seq = 1; seq <= LATER; seq++) {
        char text[2] = {(char)('0' + seq), 0};
        eb_outgoing m = {.topic = TOPIC, .key = "bad", .key_len = 3, .payload = text,
                         .payload_len = 1};
        cr_assert_eq(eb_publish(bus, &m, NULL, NULL), 0);
    }
    for (unsigned i = 0; i < OTHERS; i++) {
        char key[16];
        int klen = snprintf(key, sizeof key, "other-%u", i % 4);
        eb_outgoing m = {.topic = TOPIC, .key = key, .key_len = (size_t)klen,
                         .payload = "o", .payload_len = 1};
        cr_assert_eq(eb_publish(bus, &m, NULL, NULL), 0);
    }
}

static void wait_count(atomic_int *n, int want, const char *what)
{
    int64_t deadline = test_now_ms() + WAIT_MS;
    while (atomic_load(n) < want && test_now_ms() < deadline)
        test_next_look();
    cr_assert_geq(atomic_load(n), want, "%s: %d after %d ms, want %d", what, atomic_load(n),
                  WAIT_MS, want);
}

static eb_health health_of(eb_bus *bus)
{
    eb_health h = {0};
    cr_assert_eq(eb_bus_health(bus, &h), 0);
    return h;
}

static eb_health wait_health(eb_bus *bus, eb_health_state want)
{
    int64_t deadline = test_now_ms() + WAIT_MS;
    eb_health h = health_of(bus);
    while (h.state != want && test_now_ms() < deadline) {
        test_next_look();
        h = health_of(bus);
    }
    cr_assert_eq(h.state, want, "health %d (%s), want %d", h.state, h.detail, want);
    return h;
}

static void wait_stat(eb_bus *bus, const char *name, long long want)
{
    int64_t deadline = test_now_ms() + WAIT_MS;
    while (test_stat_required(bus, name) < want && test_now_ms() < deadline)
        test_next_look();
    cr_assert_geq(test_stat_required(bus, name), want, "stats %s", name);
}

static void expect_header(const eb_msg *m, const char *name, const char *want)
{
    const void *v = NULL;
    size_t len = 0;
    cr_assert_eq(eb_msg_header_find(m, name, &v, &len), 0, "no header %s", name);
    cr_expect(len == strlen(want) && memcmp(v, want, len) == 0,
              "header %s = \"%.*s\", want \"%s\"", name, (int)len, (const char *)v, want);
}

static void expect_later_in_order(void)
{
    wait_count(&st.later_handled, LATER, "later messages of the key");
    for (unsigned i = 0; i < LATER; i++)
        cr_expect_eq(st.later_order[i], i + 1, "later message #%u was seq %u", i,
                     st.later_order[i]);
}

/* ------------------------------------------------------- a stopped lane */

/**
 * The dead-letter topic refuses with `refusal` until the test lifts it:
 * the lane stops, then resumes by itself. `stub`: what finally goes out is
 * the stub (the copy was refused as too large first).
 */
static void refused_until_lifted(int refusal, bool stub)
{
    eb_bus *bus = open_memfault();
    memfault_set_fn set = memfault_control();
    set(DLQ_TOPIC, refusal, 0);
    subscribe(bus, DLQ_TOPIC, "gdlq", handle_dead_letter);
    subscribe(bus, TOPIC, "g", handle);
    int64_t started = test_now_ms();
    publish_all(bus, 10);

    wait_count(&st.others_handled, OTHERS, "other keys");
    wait_count(&st.dlq_failed_events, 1, "DLQ_FAILED events");
    cr_expect_eq(atomic_load(&st.last_event_error), refusal, "%s",
                 eb_err_name(atomic_load(&st.last_event_error)));
    /* Several retries later (100 ms, then 200 ms apart)... */
    wait_stat(bus, "dlq_failed", 8);
    int64_t elapsed = test_now_ms() - started;
    /* ... the key still waits, and nothing was dead-lettered. */
    cr_assert_eq(atomic_load(&st.later_handled), 0,
                 "%d later message(s) of the key ran while its dead letter was refused",
                 atomic_load(&st.later_handled));
    cr_assert_eq(atomic_load(&st.dead_letters), 0);
    eb_health h = health_of(bus);
    cr_assert_eq(h.state, EB_HEALTH_DEGRADED, "health %d (%s)", h.state, h.detail);
    cr_expect(strstr(h.detail, DLQ_TOPIC) && strstr(h.detail, eb_err_name(refusal)), "%s",
              h.detail);
    cr_expect_eq(test_stat_required(bus, "dlq_stopped"), 1);
    /* At most one event a second, the first at the first failure. */
    int events = atomic_load(&st.dlq_failed_events);
    cr_expect_leq(events, elapsed / 1000 + 1, "%d DLQ_FAILED events in %lld ms", events,
                  (long long)elapsed);

    set(NULL, 0, 0);
    wait_count(&st.dead_letters, 1, "dead letters once the topic takes them");
    cr_assert_not_null(st.dead_letter);
    expect_later_in_order();
    wait_health(bus, EB_HEALTH_OK);
    cr_expect_eq(test_stat_required(bus, "dlq_stopped"), 0);
    cr_expect_eq(test_stat_required(bus, "dlq_stubs"), stub ? 1 : 0);
    size_t plen = 0;
    eb_msg_payload(st.dead_letter, &plen);
    cr_expect_eq(plen, stub ? 0 : 10, "the dead letter's payload has %zu bytes", plen);
    expect_header(st.dead_letter, EB_DLQ_HEADER_ORIGIN_ID, st.bad_id);
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    eb_bus_destroy(bus);
    eb_msg_destroy(st.dead_letter);
    dlclose(memfault_handle);
}

Test(dead_letters, a_missing_topic_stops_the_lane_until_it_takes_the_dead_letter)
{
    refused_until_lifted(EB_ERR_NOT_FOUND, false);
}

Test(dead_letters, an_invalid_answer_stops_the_lane_until_the_topic_takes_it)
{
    refused_until_lifted(EB_ERR_INVALID, false);
}

Test(dead_letters, a_stub_refused_as_too_large_stops_the_lane_too)
{
    refused_until_lifted(EB_ERR_TOO_LARGE, true);
}

/* ------------------------------------------------------------------ stubs */

Test(dead_letters, a_copy_refused_as_too_large_goes_out_as_a_stub)
{
    eb_bus *bus = open_memfault();
    memfault_set_fn set = memfault_control();
    set(DLQ_TOPIC, EB_ERR_TOO_LARGE, 1000); /* the copy, not the stub */
    subscribe(bus, DLQ_TOPIC, "gdlq", handle_dead_letter);
    subscribe(bus, TOPIC, "g", handle);
    publish_all(bus, 2000);

    wait_count(&st.dead_letters, 1, "dead letters");
    cr_assert_not_null(st.dead_letter);
    expect_later_in_order();
    const eb_msg *m = st.dead_letter;
    size_t klen = 0, plen = 0;
    const void *key = eb_msg_key(m, &klen);
    eb_msg_payload(m, &plen);
    cr_expect(key && klen == 3 && memcmp(key, "bad", 3) == 0, "the stub keeps the key");
    cr_expect_eq(plen, 0, "the stub has a payload of %zu bytes", plen);
    const void *v;
    size_t vlen;
    cr_expect_neq(eb_msg_header_find(m, "h1", &v, &vlen), 0, "the stub kept header h1");
    expect_header(m, EB_DLQ_HEADER_STUB, "payload,headers");
    expect_header(m, EB_DLQ_HEADER_ORIGINAL_SIZE, "2007"); /* key 3, payload 2000, h1=v1 */
    expect_header(m, EB_DLQ_HEADER_ORIGIN_ID, st.bad_id);
    expect_header(m, EB_DLQ_HEADER_REASON, "rejected");
    expect_header(m, EB_DLQ_HEADER_TOPIC, TOPIC);
    cr_expect_eq(test_stat_required(bus, "dlq_stubs"), 1);
    cr_expect_eq(test_stat_required(bus, "dlq_failed"), 0);
    cr_expect_eq(atomic_load(&st.dlq_failed_events), 0);
    cr_expect_eq(health_of(bus).state, EB_HEALTH_OK);
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    eb_bus_destroy(bus);
    eb_msg_destroy(st.dead_letter);
    dlclose(memfault_handle);
}

/* ---------------------------------------------------------------- default */

Test(dead_letters, message_max_bytes_leaves_kafkas_default_room_for_dead_letter_headers)
{
    eb_config *cfg = eb_config_new();
    cr_assert_eq(eb_config_set(cfg, "memory.name", "limits", err, sizeof err), 0, "%s", err);
    eb_bus *bus = NULL;
    cr_assert_eq(eb_bus_open(cfg, &bus, err, sizeof err), 0, "%s", err);
    eb_config_destroy(cfg);
    /* librdkafka's and Kafka's default message.max.bytes is 1,000,000. */
    size_t limit = 1000000 - EB_DLQ_HEADROOM;
    char *payload = calloc(1, limit + 1);
    eb_outgoing m = {.topic = "limits", .key = "k", .key_len = 1, .payload = payload,
                     .payload_len = limit - 1};
    cr_expect_eq(eb_publish(bus, &m, NULL, NULL), 0);
    m.payload_len = limit;
    cr_expect_eq(eb_publish(bus, &m, NULL, NULL), EB_ERR_TOO_LARGE);
    free(payload);
    eb_bus_close(bus, 5000);
    eb_bus_destroy(bus);
}
