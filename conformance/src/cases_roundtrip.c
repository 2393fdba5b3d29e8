/*
 * cases_roundtrip.c — byte-exact round trips (keys, payloads, headers) and
 * the argument checks of eb_publish and friends.
 */
#include "eventbus/conformance.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- roundtrip_10k */

#define RT_N 10000
#define RT_BIG 9000

/* Message i, built the same way by the publisher and the checker. */
struct rt_msg {
    unsigned char key[8];
    const void *key_ptr;
    size_t key_len;
    unsigned char payload[4 + RT_BIG];
    const void *payload_ptr;
    size_t payload_len;
    unsigned char bin[5];
    eb_header headers[4];
    size_t header_count;
};

static void rt_put_le32(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static unsigned rt_get_le32(const unsigned char *p)
{
    return (unsigned)p[0] | (unsigned)p[1] << 8 | (unsigned)p[2] << 16 |
           (unsigned)p[3] << 24;
}

/*
 * Keys cycle through: no key, an empty key, a 7-byte binary key holding i
 * (with NULs), a 5-byte binary key shared by many messages (with NULs).
 * Payloads start with i (4 bytes) then binary filler, except some messages
 * with the i-holding key, whose payload is empty (NULL or not).
 */
static void rt_make(unsigned i, int with_headers, struct rt_msg *m)
{
    memset(m, 0, offsetof(struct rt_msg, payload));
    switch (i % 4) {
    case 0:
        m->key_ptr = NULL;
        m->key_len = 0;
        break;
    case 1:
        m->key_ptr = m->key;
        m->key_len = 0;
        break;
    case 2:
        m->key[0] = 0x00;
        m->key[1] = 'b';
        rt_put_le32(m->key + 2, i);
        m->key[6] = 0x00;
        m->key_ptr = m->key;
        m->key_len = 7;
        break;
    default:
        m->key[0] = 's';
        m->key[1] = 0x00;
        m->key[2] = (unsigned char)(i % 8);
        m->key[3] = 0x00;
        m->key[4] = 0xfe;
        m->key_ptr = m->key;
        m->key_len = 5;
        break;
    }
    if (i % 4 == 2 && (i / 4) % 3 == 0) {
        m->payload_ptr = (i / 12) % 2 ? NULL : (const void *)m->payload;
        m->payload_len = 0;
    } else {
        size_t extra = i % 500 == 7 ? RT_BIG : i % 257;
        rt_put_le32(m->payload, i);
        for (size_t j = 0; j < extra; j++)
            m->payload[4 + j] = (unsigned char)((i * 7 + j * 31) & 0xff);
        m->payload_ptr = m->payload;
        m->payload_len = 4 + extra;
    }
    if (!with_headers)
        return;
    m->bin[0] = 0x00;
    m->bin[1] = 0x01;
    m->bin[2] = 0x00;
    m->bin[3] = (unsigned char)i;
    m->bin[4] = 0xff;
    m->header_count = i % 5;
    m->headers[0] = (eb_header){"bin", m->bin, 5};
    m->headers[1] = (eb_header){"empty", i % 2 ? NULL : (const void *)m->bin, 0};
    m->headers[2] = (eb_header){"dup", "first\0x", 7};
    m->headers[3] = (eb_header){"dup", "second", 6};
}

struct rt_state {
    const char *topic;
    int with_headers;
    atomic_uint seen[RT_N];
    atomic_ulong duplicates;
    eb_conf_counter *unique;
};

static int rt_same(const void *a, size_t alen, const void *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* Runs on a dispatch worker: identify the message, rebuild what was sent,
 * compare byte by byte. */
static eb_result rt_handler(const eb_msg *msg, void *opaque)
{
    struct rt_state *st = opaque;
    size_t klen = 0, plen = 0;
    const unsigned char *key = eb_msg_key(msg, &klen);
    const unsigned char *payload = eb_msg_payload(msg, &plen);
    unsigned i;

    EB_CHECK(payload != NULL, "eb_msg_payload returned NULL (len %zu)", plen);
    if (payload && plen >= 4)
        i = rt_get_le32(payload);
    else if (key && klen == 7 && key[1] == 'b')
        i = rt_get_le32(key + 2);
    else {
        EB_FAIL("cannot identify a message: payload %zu bytes, key %s %zu bytes",
                plen, key ? "non-NULL" : "NULL", klen);
        return EB_ACK;
    }
    if (i >= RT_N) {
        EB_FAIL("message index %u out of range", i);
        return EB_ACK;
    }
    if (atomic_fetch_add(&st->seen[i], 1) == 0)
        eb_conf_counter_add(st->unique, 1);
    else
        atomic_fetch_add(&st->duplicates, 1);

    struct rt_msg *want = malloc(sizeof *want);
    if (!want) {
        EB_FAIL("out of memory");
        return EB_ACK;
    }
    rt_make(i, st->with_headers, want);
    EB_CHECK_STREQ(eb_msg_topic(msg), st->topic);
    const char *id = eb_msg_id(msg);
    EB_CHECK(id && id[0], "message %u: eb_msg_id is NULL or empty", i);
    EB_CHECK_EQ(eb_msg_attempt(msg), 1);
    if (want->key_ptr == NULL)
        EB_CHECK(key == NULL, "message %u: sent without key, received a key of %zu bytes",
                 i, klen);
    else
        EB_CHECK(key != NULL && rt_same(key, klen, want->key_ptr, want->key_len),
                 "message %u: key differs (sent %zu bytes, received %s of %zu bytes)",
                 i, want->key_len, key ? "a key" : "NULL", klen);
    EB_CHECK(payload && rt_same(payload, plen, want->payload_ptr, want->payload_len),
             "message %u: payload differs (sent %zu bytes, received %zu)", i,
             want->payload_len, plen);

    size_t hc = eb_msg_header_count(msg);
    EB_CHECK(hc == want->header_count, "message %u: %zu headers, sent %zu", i,
             hc, want->header_count);
    for (size_t h = 0; h < hc && h < want->header_count; h++) {
        const char *name = NULL;
        const void *value = NULL;
        size_t vlen = 0;
        int rc = eb_msg_header(msg, h, &name, &value, &vlen);
        EB_CHECK(rc == 0, "message %u: eb_msg_header(%zu): %s", i, h, eb_err_name(rc));
        if (rc != 0)
            continue;
        EB_CHECK(name && strcmp(name, want->headers[h].name) == 0,
                 "message %u: header %zu named '%s', sent '%s'", i, h,
                 name ? name : "(null)", want->headers[h].name);
        EB_CHECK((vlen == 0 || value) &&
                     rt_same(value, vlen, want->headers[h].value,
                             want->headers[h].value_len),
                 "message %u: header %zu (%s) value differs (%zu bytes, sent %zu)",
                 i, h, want->headers[h].name, vlen, want->headers[h].value_len);
    }
    if (hc == 4 && want->header_count == 4) {
        const void *value = NULL;
        size_t vlen = 0;
        int rc = eb_msg_header_find(msg, "dup", &value, &vlen);
        EB_CHECK(rc == 0 && rt_same(value, vlen, "second", 6),
                 "message %u: eb_msg_header_find(dup) did not return the last one", i);
        EB_CHECK_ERR(eb_msg_header_find(msg, "absent", &value, &vlen), EB_ERR_NOT_FOUND);
    }
    free(want);
    return EB_ACK;
}

void eb_case_roundtrip_10k(eb_conf_ctx *ctx)
{
    struct rt_state *st = eb_conf_alloc(ctx, sizeof *st);
    st->with_headers = eb_conf_has(ctx, EB_FEATURE_HEADERS);
    st->unique = eb_conf_counter_new(ctx);
    st->topic = eb_conf_name(ctx, "t");
    if (!st->with_headers)
        eb_conf_note(ctx, "transport has no HEADERS: headers not round-tripped");

    eb_config *cfg = eb_conf_config(ctx);
    eb_bus *bus = eb_conf_open(ctx, cfg);
    eb_conf_subscribe(ctx, bus, st->topic,
                      eb_conf_group_or_anon(ctx, eb_conf_name(ctx, "g")),
                      rt_handler, st);
    unsigned long revokes = eb_conf_event_count(ctx, EB_EVENT_REVOKED);

    eb_conf_deliveries *d = eb_conf_deliveries_new(ctx, RT_N);
    struct rt_msg *m = eb_conf_alloc(ctx, sizeof *m);
    for (unsigned i = 0; i < RT_N; i++) {
        rt_make(i, st->with_headers, m);
        eb_outgoing out = {
            .topic = st->topic,
            .key = m->key_ptr,
            .key_len = m->key_len,
            .payload = m->payload_ptr,
            .payload_len = m->payload_len,
            .headers = m->header_count ? m->headers : NULL,
            .header_count = m->header_count,
        };
        eb_conf_publish(ctx, bus, &out, eb_conf_deliveries_cb(),
                        eb_conf_deliveries_slot(d, i));
        eb_conf_deliveries_accepted(d);
    }
    eb_conf_flush_confirmed(ctx, bus, d);

    if (eb_conf_counter_wait(st->unique, RT_N, EB_CONF_WAIT_MS) != 0) {
        char missing[200] = "";
        size_t used = 0, n = 0;
        for (unsigned i = 0; i < RT_N; i++)
            if (!atomic_load(&st->seen[i]) && n++ < 10 && used < sizeof missing)
                used += (size_t)snprintf(missing + used, sizeof missing - used,
                                         " %u", i);
        EB_FAIL("only %ld of %d messages arrived within %d ms; missing (first):%s",
                eb_conf_counter_get(st->unique), RT_N, EB_CONF_WAIT_MS, missing);
    }
    /* Revokes caused by the close itself excuse nothing: one member, a
     * clean close, so exactly once. */
    unsigned long revoked = eb_conf_revokes_since(ctx, revokes);
    /* Closing drains what is queued: a late duplicate would show up now. */
    EB_CHECK_OK(eb_bus_close(bus, EB_CONF_CLOSE_MS));
    EB_CHECK_EQ(eb_conf_counter_get(st->unique), RT_N);
    eb_conf_check_duplicates(ctx, atomic_load(&st->duplicates), revoked,
                             "roundtrip (exactly once)");
}

/* -------------------------------------------------------------- bad_input */

static eb_result bad_input_handler(const eb_msg *msg, void *opaque)
{
    (void)msg;
    (void)opaque;
    return EB_ACK;
}

void eb_case_bad_input(eb_conf_ctx *ctx)
{
    eb_config *cfg = eb_conf_config(ctx);
    eb_conf_set(ctx, cfg, "message.max.bytes", "1000");
    eb_bus *bus = eb_conf_open(ctx, cfg);
    const char *topic = eb_conf_name(ctx, "t");
    char payload[2048];
    memset(payload, 'p', sizeof payload);
    eb_outgoing ok = {.topic = topic, .payload = payload, .payload_len = 100};

    /* NULL handles and messages */
    EB_CHECK_ERR(eb_publish(NULL, &ok, NULL, NULL), EB_ERR_INVALID);
    EB_CHECK_ERR(eb_publish(bus, NULL, NULL, NULL), EB_ERR_INVALID);
    EB_CHECK_ERR(eb_bus_close(NULL, 0), EB_ERR_INVALID);
    EB_CHECK_ERR(eb_flush(NULL, 0), EB_ERR_INVALID);
    EB_CHECK_ERR(eb_sub_wait_ready(NULL, 0), EB_ERR_INVALID);
    EB_CHECK_ERR(eb_unsubscribe(NULL), EB_ERR_INVALID);
    EB_CHECK_EQ(eb_bus_features(NULL), 0);
    EB_CHECK_STREQ(eb_bus_transport(NULL), "");
    EB_CHECK(eb_strerror(-12345) != NULL, "eb_strerror(unknown) returned NULL");

    /* topics: NULL, empty, 250 chars are invalid; 249 chars is the limit */
    eb_outgoing bad = ok;
    bad.topic = NULL;
    EB_CHECK_ERR(eb_publish(bus, &bad, NULL, NULL), EB_ERR_INVALID);
    bad.topic = "";
    EB_CHECK_ERR(eb_publish(bus, &bad, NULL, NULL), EB_ERR_INVALID);
    char long_topic[251];
    memset(long_topic, 'a', 250);
    long_topic[250] = '\0';
    bad.topic = long_topic;
    EB_CHECK_ERR(eb_publish(bus, &bad, NULL, NULL), EB_ERR_INVALID);
    long_topic[249] = '\0';
    bad.topic = long_topic;
    EB_CHECK_OK(eb_publish(bus, &bad, NULL, NULL));

    /* a payload or key length without a pointer */
    bad = ok;
    bad.payload = NULL;
    EB_CHECK_ERR(eb_publish(bus, &bad, NULL, NULL), EB_ERR_INVALID);

    /* headers: a NULL or empty name is invalid */
    if (eb_conf_has(ctx, EB_FEATURE_HEADERS)) {
        eb_header h_null = {NULL, "v", 1}, h_empty = {"", "v", 1};
        bad = ok;
        bad.headers = &h_null;
        bad.header_count = 1;
        EB_CHECK_ERR(eb_publish(bus, &bad, NULL, NULL), EB_ERR_INVALID);
        bad.headers = &h_empty;
        EB_CHECK_ERR(eb_publish(bus, &bad, NULL, NULL), EB_ERR_INVALID);
        bad.headers = NULL; /* a count without headers */
        EB_CHECK_ERR(eb_publish(bus, &bad, NULL, NULL), EB_ERR_INVALID);
    }

    /* message.max.bytes = 1000 counts payload, key and headers */
    bad = ok;
    bad.payload_len = 1001;
    EB_CHECK_ERR(eb_publish(bus, &bad, NULL, NULL), EB_ERR_TOO_LARGE);
    bad.payload_len = 2000;
    EB_CHECK_ERR(eb_publish(bus, &bad, NULL, NULL), EB_ERR_TOO_LARGE);
    bad.payload_len = 500;
    bad.key = payload;
    bad.key_len = 600;
    EB_CHECK_ERR(eb_publish(bus, &bad, NULL, NULL), EB_ERR_TOO_LARGE);
    if (eb_conf_has(ctx, EB_FEATURE_HEADERS)) {
        eb_header big = {"h", payload, 990};
        bad = ok;
        bad.payload_len = 20;
        bad.headers = &big;
        bad.header_count = 1;
        EB_CHECK_ERR(eb_publish(bus, &bad, NULL, NULL), EB_ERR_TOO_LARGE);
    }
    EB_CHECK_OK(eb_publish(bus, &ok, NULL, NULL));

    /* subscribe: bad arguments */
    eb_sub *sub = NULL;
    EB_CHECK_ERR(eb_subscribe(NULL, topic, NULL, bad_input_handler, NULL, NULL,
                              &sub, NULL, 0), EB_ERR_INVALID);
    EB_CHECK_ERR(eb_subscribe(bus, NULL, NULL, bad_input_handler, NULL, NULL,
                              &sub, NULL, 0), EB_ERR_INVALID);
    EB_CHECK_ERR(eb_subscribe(bus, "", NULL, bad_input_handler, NULL, NULL,
                              &sub, NULL, 0), EB_ERR_INVALID);
    EB_CHECK_ERR(eb_subscribe(bus, topic, NULL, NULL, NULL, NULL, &sub, NULL, 0),
                 EB_ERR_INVALID);
    EB_CHECK_ERR(eb_subscribe(bus, topic, NULL, bad_input_handler, NULL, NULL,
                              NULL, NULL, 0), EB_ERR_INVALID);

    /* after close: CLOSED everywhere; a second close too */
    EB_CHECK_OK(eb_bus_close(bus, EB_CONF_CLOSE_MS));
    EB_CHECK_ERR(eb_publish(bus, &ok, NULL, NULL), EB_ERR_CLOSED);
    EB_CHECK_ERR(eb_flush(bus, 0), EB_ERR_CLOSED);
    EB_CHECK_ERR(eb_subscribe(bus, topic, NULL, bad_input_handler, NULL, NULL,
                              &sub, NULL, 0), EB_ERR_CLOSED);
    EB_CHECK_ERR(eb_bus_close(bus, 0), EB_ERR_CLOSED);
    eb_conf_destroy_bus(ctx, bus);

    /* destroy functions accept NULL */
    eb_bus_destroy(NULL);
    eb_sub_destroy(NULL);
    eb_config_destroy(NULL);
    eb_msg_destroy(NULL);
    eb_free(NULL);
}
