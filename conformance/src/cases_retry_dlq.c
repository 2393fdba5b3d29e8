/*
 * cases_retry_dlq.c — RETRY backs off and ends in the dead-letter topic,
 * REJECT dead-letters at once; the key waits behind its retrying message
 * while other keys flow; the dead letter keeps key, payload and headers and
 * says where it came from; a message too large to dead-letter whole goes
 * as a stub.
 */
#include "eventbus/conformance.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define RD_BAD_KEY 1
#define RD_KEY_LATER 3 /* seqs 1..3 of the bad key, published after it */
#define RD_OTHER_KEYS 4 /* keys 2..5 */
#define RD_OTHER_PER_KEY 20
#define RD_MAX_CALLS 8
#define RD_BACKOFF_MS 50
#define RD_MIN_GAP_MS 40.0

struct rd_state {
    const char *topic;
    const char *group; /* NULL: anonymous */
    eb_result verdict; /* what the bad message gets: RETRY or REJECT */

    pthread_mutex_t lock;
    unsigned calls;
    uint32_t attempt[RD_MAX_CALLS];
    double call_start[RD_MAX_CALLS], call_end[RD_MAX_CALLS];
    char id[RD_MAX_CALLS][128];
    unsigned later_seen;                 /* later messages of the bad key */
    unsigned later_order[RD_MAX_CALLS];
    double later_start[RD_MAX_CALLS];
    double others_last;                  /* when the last other key finished */

    eb_conf_recorder *others;
    eb_conf_counter *later_done, *others_done, *dlq_done;
    eb_msg *dlq_msg; /* the first dead letter, copied */
    double dlq_time;
    unsigned dlq_count;
    atomic_ulong unparsable;
};

/* Runs on a dispatch worker. */
static eb_result rd_handler(const eb_msg *msg, void *opaque)
{
    struct rd_state *st = opaque;
    unsigned key, seq;
    double start = eb_conf_now_ms();
    if (eb_conf_msg_seq(msg, &key, &seq) != 0) {
        atomic_fetch_add(&st->unparsable, 1);
        return EB_ACK;
    }
    if (key == RD_BAD_KEY && seq == 0) {
        pthread_mutex_lock(&st->lock);
        unsigned n = st->calls++;
        if (n < RD_MAX_CALLS) {
            st->attempt[n] = eb_msg_attempt(msg);
            st->call_start[n] = start;
            snprintf(st->id[n], sizeof st->id[n], "%s",
                     eb_msg_id(msg) ? eb_msg_id(msg) : "(null)");
            st->call_end[n] = eb_conf_now_ms();
        }
        pthread_mutex_unlock(&st->lock);
        return st->verdict;
    }
    if (key == RD_BAD_KEY) {
        pthread_mutex_lock(&st->lock);
        unsigned n = st->later_seen++;
        if (n < RD_MAX_CALLS) {
            st->later_order[n] = seq;
            st->later_start[n] = start;
        }
        pthread_mutex_unlock(&st->lock);
        eb_conf_counter_add(st->later_done, 1);
        return EB_ACK;
    }
    if (eb_conf_recorder_add(st->others, key, seq) == 0) {
        pthread_mutex_lock(&st->lock);
        st->others_last = eb_conf_now_ms();
        pthread_mutex_unlock(&st->lock);
        eb_conf_counter_add(st->others_done, 1);
    }
    return EB_ACK;
}

/* Runs on a dispatch worker: the dead-letter topic's handler. */
static eb_result rd_dlq_handler(const eb_msg *msg, void *opaque)
{
    struct rd_state *st = opaque;
    double now = eb_conf_now_ms();
    eb_msg *copy = NULL;
    pthread_mutex_lock(&st->lock);
    if (st->dlq_count++ == 0) {
        st->dlq_time = now;
        int rc = eb_msg_copy(msg, &copy);
        EB_CHECK(rc == 0, "eb_msg_copy: %s", eb_err_name(rc));
        st->dlq_msg = copy;
    }
    pthread_mutex_unlock(&st->lock);
    eb_conf_counter_add(st->dlq_done, 1);
    return EB_ACK;
}

static void rd_free_copy(void *p)
{
    struct rd_state *st = p;
    eb_msg_destroy(st->dlq_msg);
    st->dlq_msg = NULL;
}

static const eb_header rd_orig_headers[] = {
    {"orig-bin", "\0b\0", 3},
    {"orig-empty", NULL, 0},
    {"orig-dup", "1", 1},
    {"orig-dup", "2", 1},
};
#define RD_ORIG_HEADERS (sizeof rd_orig_headers / sizeof rd_orig_headers[0])

static int rd_is_dlq_header(const char *name)
{
    return strncmp(name, "eb-dlq-", 7) == 0;
}

static void rd_expect_header(const eb_msg *m, const char *name, const char *want)
{
    const void *v = NULL;
    size_t len = 0;
    int rc = eb_msg_header_find(m, name, &v, &len);
    EB_CHECK(rc == 0, "dead letter has no header %s (%s)", name, eb_err_name(rc));
    EB_CHECK(len == strlen(want) && (len == 0 || memcmp(v, want, len) == 0),
             "dead letter header %s = \"%.*s\", expected \"%s\"", name,
             (int)len, v ? (const char *)v : "", want);
}

/* The dead letter: same key, payload and headers, plus where it came from. */
static void rd_check_dead_letter(eb_conf_ctx *ctx, struct rd_state *st,
                                 const char *dlq_topic, const char *attempts,
                                 const char *reason)
{
    const eb_msg *m = st->dlq_msg;
    EB_CHECK(m != NULL, "no copy of the dead letter");
    EB_CHECK_STREQ(eb_msg_topic(m), dlq_topic);
    size_t klen = 0, plen = 0;
    const char *key = eb_msg_key(m, &klen);
    const char *payload = eb_msg_payload(m, &plen);
    EB_CHECK(key && klen == 5 && memcmp(key, "key-1", 5) == 0,
             "dead letter key differs (%zu bytes)", klen);
    EB_CHECK(payload && plen == 3 && memcmp(payload, "1:0", 3) == 0,
             "dead letter payload differs (%zu bytes)", plen);
    if (!eb_conf_has(ctx, EB_FEATURE_HEADERS))
        return;

    /* Original headers, in order, among the added ones. */
    size_t n = eb_msg_header_count(m), orig = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = NULL;
        const void *v = NULL;
        size_t len = 0;
        EB_CHECK_OK(eb_msg_header(m, i, &name, &v, &len));
        if (rd_is_dlq_header(name))
            continue;
        EB_CHECK(orig < RD_ORIG_HEADERS, "dead letter has extra header %s", name);
        const eb_header *want = &rd_orig_headers[orig++];
        EB_CHECK(strcmp(name, want->name) == 0 && len == want->value_len &&
                     (len == 0 || memcmp(v, want->value, len) == 0),
                 "dead letter original header %zu: got %s (%zu bytes), sent %s "
                 "(%zu bytes)", orig - 1, name, len, want->name, want->value_len);
    }
    EB_CHECK_EQ(orig, RD_ORIG_HEADERS);
    rd_expect_header(m, EB_DLQ_HEADER_TOPIC, st->topic);
    rd_expect_header(m, EB_DLQ_HEADER_GROUP, st->group ? st->group : "");
    rd_expect_header(m, EB_DLQ_HEADER_ATTEMPTS, attempts);
    rd_expect_header(m, EB_DLQ_HEADER_REASON, reason);
    rd_expect_header(m, EB_DLQ_HEADER_ORIGIN_ID, st->id[0]);
}

/* Publishes the bad message (key 1, seq 0, with headers), the later
 * messages of its key and the other keys; subscribes both topics first. */
static void rd_run(eb_conf_ctx *ctx, struct rd_state *st, eb_bus *bus,
                   const char *dlq_topic)
{
    eb_conf_subscribe(ctx, bus, dlq_topic,
                      eb_conf_group_or_anon(ctx, eb_conf_name(ctx, "gdlq")),
                      rd_dlq_handler, st);
    eb_conf_subscribe(ctx, bus, st->topic, st->group, rd_handler, st);

    eb_outgoing bad = {
        .topic = st->topic,
        .key = "key-1",
        .key_len = 5,
        .payload = "1:0",
        .payload_len = 3,
    };
    if (eb_conf_has(ctx, EB_FEATURE_HEADERS)) {
        bad.headers = rd_orig_headers;
        bad.header_count = RD_ORIG_HEADERS;
    }
    eb_conf_deliveries *d = eb_conf_deliveries_new(ctx, 1);
    eb_conf_publish(ctx, bus, &bad, eb_conf_deliveries_cb(),
                    eb_conf_deliveries_slot(d, 0));
    eb_conf_deliveries_accepted(d);
    for (unsigned seq = 0; seq < RD_OTHER_PER_KEY; seq++) {
        if (seq >= 1 && seq <= RD_KEY_LATER)
            eb_conf_publish_seq(ctx, bus, st->topic, RD_BAD_KEY, seq, NULL, 0);
        for (unsigned k = 0; k < RD_OTHER_KEYS; k++)
            eb_conf_publish_seq(ctx, bus, st->topic, 2 + k, seq, NULL, 0);
    }
    eb_conf_flush_confirmed(ctx, bus, d);

    EB_CHECK(eb_conf_counter_wait(st->dlq_done, 1, EB_CONF_WAIT_MS) == 0,
             "the message never reached %s (handler called %u times)",
             dlq_topic, st->calls);
    EB_CHECK(eb_conf_counter_wait(st->later_done, RD_KEY_LATER, EB_CONF_WAIT_MS) == 0,
             "only %ld of %d later messages of the dead-lettered key were handled",
             eb_conf_counter_get(st->later_done), RD_KEY_LATER);
    EB_CHECK(eb_conf_counter_wait(st->others_done, RD_OTHER_KEYS * RD_OTHER_PER_KEY,
                                  EB_CONF_WAIT_MS) == 0,
             "only %ld of %d messages of other keys were handled",
             eb_conf_counter_get(st->others_done), RD_OTHER_KEYS * RD_OTHER_PER_KEY);
    unsigned long revokes = eb_conf_event_count(ctx, EB_EVENT_REVOKED);
    EB_CHECK_OK(eb_bus_close(bus, EB_CONF_CLOSE_MS));
    EB_CHECK_EQ(atomic_load(&st->unparsable), 0);
    EB_CHECK_EQ(eb_conf_event_count(ctx, EB_EVENT_DLQ_FAILED), 0);
    eb_conf_check_duplicates(ctx, st->dlq_count - 1, revokes,
                             "dead letters of one message");
    eb_conf_check_duplicates(ctx, eb_conf_recorder_duplicates(st->others), revokes,
                             "other keys");

    /* The later messages of the key: in order, after the bad one ended. */
    EB_CHECK_EQ(st->later_seen, RD_KEY_LATER);
    unsigned last_call = st->calls < RD_MAX_CALLS ? st->calls - 1 : RD_MAX_CALLS - 1;
    for (unsigned i = 0; i < RD_KEY_LATER; i++) {
        EB_CHECK(st->later_order[i] == i + 1,
                 "key order: later message #%u of the key was seq %u, expected %u",
                 i, st->later_order[i], i + 1);
        EB_CHECK(st->later_start[i] >= st->call_end[last_call],
                 "key order: seq %u of the key started %.1f ms before its earlier "
                 "message's last attempt ended", st->later_order[i],
                 st->call_end[last_call] - st->later_start[i]);
    }
    eb_conf_expect_order(ctx, st->others, 1, "other keys");
}

static struct rd_state *rd_state_new(eb_conf_ctx *ctx, eb_result verdict)
{
    struct rd_state *st = eb_conf_alloc(ctx, sizeof *st);
    pthread_mutex_init(&st->lock, NULL);
    st->verdict = verdict;
    st->topic = eb_conf_name(ctx, "t");
    st->group = eb_conf_group_or_anon(ctx, eb_conf_name(ctx, "g"));
    st->others = eb_conf_recorder_new(ctx, 2 + RD_OTHER_KEYS, RD_OTHER_PER_KEY);
    st->later_done = eb_conf_counter_new(ctx);
    st->others_done = eb_conf_counter_new(ctx);
    st->dlq_done = eb_conf_counter_new(ctx);
    /* Registered after the alloc: runs before it is freed (LIFO). */
    eb_conf_defer_free(ctx, rd_free_copy, st);
    return st;
}

static const char *rd_dlq_topic(eb_conf_ctx *ctx, const char *topic)
{
    char *name = eb_conf_alloc(ctx, strlen(topic) + 5);
    sprintf(name, "%s.dlq", topic);
    return name;
}

void eb_case_retry_backoff_then_dlq(eb_conf_ctx *ctx)
{
    struct rd_state *st = rd_state_new(ctx, EB_RETRY);
    eb_config *cfg = eb_conf_config(ctx);
    eb_conf_set(ctx, cfg, "retry.max.attempts", "3");
    char backoff[16];
    snprintf(backoff, sizeof backoff, "%d", RD_BACKOFF_MS);
    eb_conf_set(ctx, cfg, "retry.backoff.ms", backoff);
    eb_bus *bus = eb_conf_open(ctx, cfg);
    const char *dlq_topic = rd_dlq_topic(ctx, st->topic);

    rd_run(ctx, st, bus, dlq_topic);

    EB_CHECK(st->calls == 3, "the handler returned RETRY %u times, expected 3 "
             "(retry.max.attempts=3)", st->calls);
    for (unsigned i = 0; i < 3; i++) {
        EB_CHECK(st->attempt[i] == i + 1, "call %u: eb_msg_attempt = %u, expected %u",
                 i + 1, st->attempt[i], i + 1);
        EB_CHECK_STREQ(st->id[i], st->id[0]);
    }
    for (unsigned i = 1; i < 3; i++) {
        double gap = st->call_start[i] - st->call_end[i - 1];
        EB_CHECK(gap >= RD_MIN_GAP_MS,
                 "attempt %u started %.1f ms after attempt %u returned RETRY; "
                 "retry.backoff.ms=%d", i + 1, gap, i, RD_BACKOFF_MS);
    }
    /* Other keys flowed while the bad message waited for its retries. */
    EB_CHECK(st->others_last < st->dlq_time,
             "other keys were held up: their last message finished %.1f ms after "
             "the dead letter arrived", st->others_last - st->dlq_time);
    rd_check_dead_letter(ctx, st, dlq_topic, "3", "max-attempts");
}

void eb_case_reject_to_dlq(eb_conf_ctx *ctx)
{
    struct rd_state *st = rd_state_new(ctx, EB_REJECT);
    eb_config *cfg = eb_conf_config(ctx);
    eb_conf_set(ctx, cfg, "retry.max.attempts", "5");
    eb_bus *bus = eb_conf_open(ctx, cfg);
    const char *dlq_topic = rd_dlq_topic(ctx, st->topic);

    rd_run(ctx, st, bus, dlq_topic);

    EB_CHECK(st->calls == 1, "the handler was called %u times for a REJECTed "
             "message, expected once", st->calls);
    EB_CHECK_EQ(st->attempt[0], 1);
    rd_check_dead_letter(ctx, st, dlq_topic, "1", "rejected");
}

/* ---------------------------------------------- dead_letter_too_large_is_a_stub */

/* A message larger than the subscribing bus's message.max.bytes +
 * EB_DLQ_HEADROOM (written by a bus with a larger limit, as any other
 * producer could) is dead-lettered as a stub: the eb-dlq-* headers, its
 * size and id, its key; no payload, none of its headers (issue 7, defect 8). */

#define DS_PAYLOAD 20000   /* the subscriber allows 1000 + EB_DLQ_HEADROOM */
#define DS_LATER 3

struct ds_state {
    const char *topic, *group;
    pthread_mutex_t lock;
    char bad_id[128];
    unsigned later_seen, later_order[DS_LATER];
    eb_conf_counter *later_done, *dlq_done;
    eb_msg *dlq_msg;
    atomic_ulong unexpected;
};

/* Runs on a dispatch worker: rejects the large message of key 1. */
static eb_result ds_handler(const eb_msg *msg, void *opaque)
{
    struct ds_state *st = opaque;
    size_t len = 0;
    eb_msg_payload(msg, &len);
    unsigned key, seq;
    if (len == DS_PAYLOAD) {
        pthread_mutex_lock(&st->lock);
        snprintf(st->bad_id, sizeof st->bad_id, "%s", eb_msg_id(msg));
        pthread_mutex_unlock(&st->lock);
        return EB_REJECT;
    }
    if (eb_conf_msg_seq(msg, &key, &seq) != 0 || key != 1) {
        atomic_fetch_add(&st->unexpected, 1);
        return EB_ACK;
    }
    pthread_mutex_lock(&st->lock);
    if (st->later_seen < DS_LATER)
        st->later_order[st->later_seen] = seq;
    st->later_seen++;
    pthread_mutex_unlock(&st->lock);
    eb_conf_counter_add(st->later_done, 1);
    return EB_ACK;
}

/* Runs on a dispatch worker: the dead-letter topic's handler. */
static eb_result ds_dlq_handler(const eb_msg *msg, void *opaque)
{
    struct ds_state *st = opaque;
    pthread_mutex_lock(&st->lock);
    if (!st->dlq_msg) {
        int rc = eb_msg_copy(msg, &st->dlq_msg);
        EB_CHECK(rc == 0, "eb_msg_copy: %s", eb_err_name(rc));
    }
    pthread_mutex_unlock(&st->lock);
    eb_conf_counter_add(st->dlq_done, 1);
    return EB_ACK;
}

static void ds_free_copy(void *p)
{
    struct ds_state *st = p;
    eb_msg_destroy(st->dlq_msg);
    st->dlq_msg = NULL;
}

static void ds_check_stub(struct ds_state *st, const char *dlq_topic)
{
    const eb_msg *m = st->dlq_msg;
    EB_CHECK(m != NULL, "no copy of the dead letter");
    EB_CHECK_STREQ(eb_msg_topic(m), dlq_topic);
    size_t klen = 0, plen = 0;
    const char *key = eb_msg_key(m, &klen);
    eb_msg_payload(m, &plen);
    EB_CHECK(key && klen == 5 && memcmp(key, "key-1", 5) == 0,
             "the stub lost its key (%zu bytes)", klen);
    EB_CHECK(plen == 0, "the dead letter carries a payload of %zu bytes, expected a stub "
             "without one", plen);
    for (size_t i = 0; i < eb_msg_header_count(m); i++) {
        const char *name = NULL;
        EB_CHECK_OK(eb_msg_header(m, i, &name, NULL, NULL));
        EB_CHECK(rd_is_dlq_header(name), "the stub kept header %s", name);
    }
    size_t size = 5 + DS_PAYLOAD; /* key and payload, then the headers */
    for (size_t i = 0; i < RD_ORIG_HEADERS; i++)
        size += strlen(rd_orig_headers[i].name) + rd_orig_headers[i].value_len;
    char size_text[24];
    snprintf(size_text, sizeof size_text, "%zu", size);
    rd_expect_header(m, EB_DLQ_HEADER_STUB, "payload,headers");
    rd_expect_header(m, EB_DLQ_HEADER_ORIGINAL_SIZE, size_text);
    rd_expect_header(m, EB_DLQ_HEADER_ORIGIN_ID, st->bad_id);
    rd_expect_header(m, EB_DLQ_HEADER_TOPIC, st->topic);
    rd_expect_header(m, EB_DLQ_HEADER_GROUP, st->group ? st->group : "");
    rd_expect_header(m, EB_DLQ_HEADER_REASON, "rejected");
    rd_expect_header(m, EB_DLQ_HEADER_ATTEMPTS, "1");
}

void eb_case_dead_letter_too_large_is_a_stub(eb_conf_ctx *ctx)
{
    struct ds_state *st = eb_conf_alloc(ctx, sizeof *st);
    pthread_mutex_init(&st->lock, NULL);
    st->topic = eb_conf_name(ctx, "t");
    st->group = eb_conf_group_or_anon(ctx, eb_conf_name(ctx, "g"));
    st->later_done = eb_conf_counter_new(ctx);
    st->dlq_done = eb_conf_counter_new(ctx);
    eb_conf_defer_free(ctx, ds_free_copy, st);
    const char *dlq_topic = rd_dlq_topic(ctx, st->topic);

    eb_config *sub_cfg = eb_conf_config(ctx);
    eb_conf_set(ctx, sub_cfg, "message.max.bytes", "1000");
    eb_bus *sub_bus = eb_conf_open(ctx, sub_cfg);
    eb_config *pub_cfg = eb_conf_config(ctx);
    eb_conf_set(ctx, pub_cfg, "message.max.bytes", "60000");
    eb_bus *pub_bus = eb_conf_open(ctx, pub_cfg);
    eb_conf_subscribe(ctx, sub_bus, dlq_topic,
                      eb_conf_group_or_anon(ctx, eb_conf_name(ctx, "gdlq")),
                      ds_dlq_handler, st);
    eb_conf_subscribe(ctx, sub_bus, st->topic, st->group, ds_handler, st);

    char *payload = eb_conf_alloc(ctx, DS_PAYLOAD);
    memset(payload, 'p', DS_PAYLOAD);
    eb_outgoing big = {.topic = st->topic, .key = "key-1", .key_len = 5,
                       .payload = payload, .payload_len = DS_PAYLOAD,
                       .headers = rd_orig_headers, .header_count = RD_ORIG_HEADERS};
    eb_conf_publish(ctx, pub_bus, &big, NULL, NULL);
    for (unsigned seq = 1; seq <= DS_LATER; seq++)
        eb_conf_publish_seq(ctx, pub_bus, st->topic, 1, seq, NULL, 0);

    EB_CHECK(eb_conf_counter_wait(st->dlq_done, 1, EB_CONF_WAIT_MS) == 0,
             "the large message never reached %s", dlq_topic);
    EB_CHECK(eb_conf_counter_wait(st->later_done, DS_LATER, EB_CONF_WAIT_MS) == 0,
             "only %ld of %d later messages of its key were handled",
             eb_conf_counter_get(st->later_done), DS_LATER);
    EB_CHECK_OK(eb_bus_close(sub_bus, EB_CONF_CLOSE_MS));
    EB_CHECK_OK(eb_bus_close(pub_bus, EB_CONF_CLOSE_MS));
    EB_CHECK_EQ(eb_conf_event_count(ctx, EB_EVENT_DLQ_FAILED), 0);
    EB_CHECK_EQ(atomic_load(&st->unexpected), 0);
    ds_check_stub(st, dlq_topic);
    for (unsigned i = 0; i < DS_LATER; i++)
        EB_CHECK(st->later_order[i] == i + 1,
                 "key order: later message #%u of the key was seq %u, expected %u", i,
                 st->later_order[i], i + 1);
}

/* --------------------------------------------------- publish_from_handler */

#define PH_KEYS 8
#define PH_PER_KEY 50
#define PH_N (PH_KEYS * PH_PER_KEY)
#define PH_SLOW_MS 1000.0 /* publish.timeout.ms is 5000: waiting would show */

struct ph_slot {
    struct ph_state *st;
    unsigned key, seq;
};

struct ph_state {
    eb_bus *bus;
    const char *topic_a, *topic_b, *topic_c;
    struct ph_slot slots[PH_N];
    eb_conf_recorder *rb, *rc;
    eb_conf_sink *sink_b, *sink_c;
    atomic_ulong full_b, full_c, slow, errors, callbacks;
};

static void ph_note_publish(struct ph_state *st, int rc, double ms,
                            atomic_ulong *fulls, const char *where)
{
    if (ms > PH_SLOW_MS)
        atomic_fetch_add(&st->slow, 1);
    if (rc == EB_ERR_FULL) {
        atomic_fetch_add(fulls, 1);
    } else if (rc != 0) {
        atomic_fetch_add(&st->errors, 1);
        EB_FAIL("eb_publish from a %s: %s", where, eb_err_name(rc));
    }
}

/* Runs on a dispatch worker: forwards A to B; a full transport retries. */
static eb_result ph_handler_a(const eb_msg *msg, void *opaque)
{
    struct ph_state *st = opaque;
    unsigned key, seq;
    if (eb_conf_msg_seq(msg, &key, &seq) != 0) {
        EB_FAIL("topic A: unparsable message");
        return EB_ACK;
    }
    double t0 = eb_conf_now_ms();
    int rc = eb_conf_try_publish_seq(st->bus, st->topic_b, key, seq, NULL, 0);
    ph_note_publish(st, rc, eb_conf_now_ms() - t0, &st->full_b, "handler");
    return rc == EB_ERR_FULL ? EB_RETRY : EB_ACK;
}

/* Runs on a transport thread: the delivery of a publish to A publishes to C. */
static void ph_delivery_cb(int status, const char *id, void *opaque)
{
    struct ph_slot *slot = opaque;
    struct ph_state *st = slot->st;
    (void)id;
    atomic_fetch_add(&st->callbacks, 1);
    EB_CHECK(status == 0, "publish to A failed: %s", eb_err_name(status));
    double t0 = eb_conf_now_ms();
    int rc = eb_conf_try_publish_seq(st->bus, st->topic_c, slot->key, slot->seq, NULL, 0);
    ph_note_publish(st, rc, eb_conf_now_ms() - t0, &st->full_c, "delivery callback");
}

static int ph_callbacks_done(void *arg)
{
    struct ph_state *st = arg;
    return atomic_load(&st->callbacks) >= PH_N;
}

void eb_case_publish_from_handler(eb_conf_ctx *ctx)
{
    struct ph_state *st = eb_conf_alloc(ctx, sizeof *st);
    st->topic_a = eb_conf_name(ctx, "a");
    st->topic_b = eb_conf_name(ctx, "b");
    st->topic_c = eb_conf_name(ctx, "c");
    st->rb = eb_conf_recorder_new(ctx, PH_KEYS, PH_PER_KEY);
    st->rc = eb_conf_recorder_new(ctx, PH_KEYS, PH_PER_KEY);
    st->sink_b = eb_conf_sink_new(ctx, st->rb, NULL);
    st->sink_c = eb_conf_sink_new(ctx, st->rc, NULL);

    eb_config *cfg = eb_conf_config(ctx);
    eb_conf_set(ctx, cfg, "publish.timeout.ms", "5000");
    st->bus = eb_conf_open(ctx, cfg);
    const char *group = eb_conf_group_or_anon(ctx, eb_conf_name(ctx, "g"));
    eb_conf_subscribe(ctx, st->bus, st->topic_b, group, eb_conf_sink_handler, st->sink_b);
    eb_conf_subscribe(ctx, st->bus, st->topic_c, group, eb_conf_sink_handler, st->sink_c);
    eb_conf_subscribe(ctx, st->bus, st->topic_a, group, ph_handler_a, st);

    for (unsigned seq = 0; seq < PH_PER_KEY; seq++) {
        for (unsigned key = 0; key < PH_KEYS; key++) {
            struct ph_slot *slot = &st->slots[seq * PH_KEYS + key];
            *slot = (struct ph_slot){st, key, seq};
            char keybuf[16], payload[32];
            int klen = snprintf(keybuf, sizeof keybuf, "key-%u", key);
            int plen = snprintf(payload, sizeof payload, "%u:%u", key, seq);
            eb_outgoing out = {.topic = st->topic_a, .key = keybuf,
                               .key_len = (size_t)klen, .payload = payload,
                               .payload_len = (size_t)plen};
            eb_conf_publish(ctx, st->bus, &out, ph_delivery_cb, slot);
        }
    }
    EB_CHECK_OK(eb_flush(st->bus, EB_CONF_WAIT_MS));
    EB_CHECK(eb_conf_wait(ph_callbacks_done, st, EB_CONF_WAIT_MS) == 0,
             "only %lu of %d delivery callbacks ran", atomic_load(&st->callbacks), PH_N);

    eb_conf_expect_all(ctx, st->rb, PH_KEYS, PH_PER_KEY,
                       "topic B (published from a handler)");
    /* A full transport at a callback has no retry: those are not expected. */
    unsigned long want_c = PH_N - atomic_load(&st->full_c);
    EB_CHECK(eb_conf_recorder_wait(st->rc, want_c, EB_CONF_WAIT_MS) == 0,
             "topic C (published from delivery callbacks): %lu of %lu arrived",
             eb_conf_recorder_unique(st->rc), want_c);
    EB_CHECK_OK(eb_bus_close(st->bus, EB_CONF_CLOSE_MS));
    if (atomic_load(&st->full_b) || atomic_load(&st->full_c))
        eb_conf_note(ctx, "EB_ERR_FULL: %lu from handlers, %lu from callbacks",
                     atomic_load(&st->full_b), atomic_load(&st->full_c));
    EB_CHECK(atomic_load(&st->slow) == 0,
             "%lu publish(es) from a handler or callback took over %.0f ms: they "
             "must never wait", atomic_load(&st->slow), PH_SLOW_MS);
    EB_CHECK_EQ(atomic_load(&st->errors), 0);
}
