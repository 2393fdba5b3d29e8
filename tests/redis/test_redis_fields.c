/*
 * test_redis_fields.c — the stream-entry layout (plugins/redis/fields.c)
 * through the real redis-server ($EB_REDIS_URL): what XADD stores reads
 * back byte for byte (absent and empty keys apart, binary payloads, header
 * order and duplicates), redis-cli's entries are read by the documented
 * rule, and a pending entry deleted from the stream is told apart.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fields.h"
#include "redis_test.h"

static char err[512];
static rd_url url;
static rd_conn conn;
static char stream[64];

static void connect_server(void)
{
    url = rt_server_url();
    rt_connect(&conn, &url);
    rt_stream_name(stream, sizeof stream, "fields");
}

static void disconnect(void)
{
    rt_delete(&conn, stream);
    rd_conn_close(&conn);
}

TestSuite(redis_fields, .init = connect_server, .fini = disconnect);

static void add(const eb_outgoing *m, const char *maxlen)
{
    rd_xadd x;
    cr_assert_eq(rd_xadd_build(&x, stream, m, maxlen), 0);
    redisReply *r = rt_run_lens(&conn, (int)x.argc, x.argv, x.lens);
    cr_expect_eq(r->type, REDIS_REPLY_STRING, "XADD did not answer an id");
    freeReplyObject(r);
    rd_xadd_free(&x);
}

/** XRANGE stream - + : the reply (caller frees). */
static redisReply *read_all(size_t want)
{
    const char *argv[] = {"XRANGE", stream, "-", "+"};
    redisReply *r = rt_run(&conn, 4, argv);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(r->elements, want, "%zu entries, not %zu", r->elements, want);
    return r;
}

static void expect_bytes(const void *got, size_t got_len, const void *want, size_t want_len,
                         const char *what)
{
    cr_expect_eq(got_len, want_len, "%s: %zu bytes, not %zu", what, got_len, want_len);
    if (got_len == want_len && want_len)
        cr_expect(memcmp(got, want, want_len) == 0, "%s: other bytes", what);
}

Test(redis_fields, a_message_reads_back_byte_for_byte)
{
    static const char payload[] = {'a', 0, 'b', (char)0xff, 0, 'c'};
    static const char bin_value[] = {0, 1, 2};
    const eb_header headers[] = {{"trace", "t-1", 3},
                                 {"dup", "first", 5},
                                 {"bin", bin_value, sizeof bin_value},
                                 {"dup", "second", 6},
                                 {"empty", NULL, 0}};
    eb_outgoing m = {.topic = "t", .key = "k\0ey", .key_len = 4, .payload = payload,
                     .payload_len = sizeof payload, .headers = headers, .header_count = 5};
    add(&m, NULL);
    redisReply *r = read_all(1);
    rd_entry e;
    cr_assert_eq(rd_entry_read(r->element[0], &e, err, sizeof err), 0, "%s", err);
    cr_expect(e.has_key);
    expect_bytes(e.key, e.key_len, "k\0ey", 4, "key");
    expect_bytes(e.payload, e.payload_len, payload, sizeof payload, "payload");
    cr_assert_eq(e.header_count, 5);
    for (size_t i = 0; i < 5; i++) {
        cr_expect_str_eq(e.headers[i].name, headers[i].name, "header %zu", i);
        expect_bytes(e.headers[i].value, e.headers[i].value_len, headers[i].value,
                     headers[i].value_len, headers[i].name);
    }
    cr_expect(strchr(e.id, '-'), "id %s", e.id);
    rd_entry_free(&e);
    freeReplyObject(r);
}

Test(redis_fields, an_absent_key_and_an_empty_key_stay_apart)
{
    eb_outgoing none = {.topic = "t", .payload = "x", .payload_len = 1};
    eb_outgoing empty = {.topic = "t", .key = "", .key_len = 0};
    add(&none, NULL);
    add(&empty, NULL);
    redisReply *r = read_all(2);
    rd_entry a, b;
    cr_assert_eq(rd_entry_read(r->element[0], &a, err, sizeof err), 0, "%s", err);
    cr_assert_eq(rd_entry_read(r->element[1], &b, err, sizeof err), 0, "%s", err);
    cr_expect(!a.has_key, "no key read back as a key");
    cr_expect(b.has_key, "the empty key read back as no key");
    cr_expect_eq(b.key_len, 0);
    expect_bytes(b.payload, b.payload_len, "", 0, "empty payload");
    cr_expect_eq(a.header_count + b.header_count, 0);
    rd_entry_free(&a);
    rd_entry_free(&b);
    freeReplyObject(r);
}

Test(redis_fields, entries_of_other_programs_are_read_by_the_rule)
{
    /* As `redis-cli XADD s '*' f v colour blue p hello` would write it. */
    const char *argv[] = {"XADD", stream, "*", "f", "v", "colour", "blue", "p", "hello", "", "e"};
    rt_do(&conn, 11, argv);
    const char *only[] = {"XADD", stream, "*", "temperature", "21.5"};
    rt_do(&conn, 5, only);
    redisReply *r = read_all(2);
    rd_entry e;
    cr_assert_eq(rd_entry_read(r->element[0], &e, err, sizeof err), 0, "%s", err);
    cr_expect(!e.has_key);
    expect_bytes(e.payload, e.payload_len, "hello", 5, "payload");
    cr_assert_eq(e.header_count, 3);
    cr_expect_str_eq(e.headers[0].name, "f");
    expect_bytes(e.headers[0].value, e.headers[0].value_len, "v", 1, "f");
    cr_expect_str_eq(e.headers[1].name, "colour");
    cr_expect_str_eq(e.headers[2].name, "_", "an empty field name");
    rd_entry_free(&e);
    cr_assert_eq(rd_entry_read(r->element[1], &e, err, sizeof err), 0, "%s", err);
    cr_expect_eq(e.payload_len, 0, "an entry without p has an empty payload");
    cr_assert_eq(e.header_count, 1);
    cr_expect_str_eq(e.headers[0].name, "temperature");
    rd_entry_free(&e);
    freeReplyObject(r);
}

Test(redis_fields, maxlen_trims_the_stream)
{
    eb_outgoing m = {.topic = "t", .payload = "x", .payload_len = 1};
    for (int i = 0; i < 300; i++)
        add(&m, "10");
    const char *xlen[] = {"XLEN", stream};
    redisReply *r = rt_run(&conn, 2, xlen);
    /* "~": Redis trims whole nodes (100 entries by default), never below 10. */
    cr_expect(r->integer >= 10 && r->integer < 300, "XLEN %lld after MAXLEN ~ 10", r->integer);
    freeReplyObject(r);
}

Test(redis_fields, a_pending_entry_deleted_from_the_stream_is_not_found)
{
    eb_outgoing m = {.topic = "t", .payload = "x", .payload_len = 1};
    add(&m, NULL);
    const char *create[] = {"XGROUP", "CREATE", stream, "g", "0"};
    rt_do(&conn, 5, create);
    const char *read_new[] = {"XREADGROUP", "GROUP", "g", "c", "COUNT", "10",
                              "STREAMS", stream, ">"};
    redisReply *r = rt_run(&conn, 9, read_new);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    const redisReply *entries = r->element[0]->element[1];
    cr_assert_eq(entries->elements, 1);
    char id[64];
    snprintf(id, sizeof id, "%s", entries->element[0]->element[0]->str);
    freeReplyObject(r);
    const char *del[] = {"XDEL", stream, id};
    rt_do(&conn, 3, del);
    /* The consumer's own pending entries: the id comes back with nil fields. */
    const char *read_pending[] = {"XREADGROUP", "GROUP", "g", "c", "COUNT", "10",
                                  "STREAMS", stream, "0"};
    r = rt_run(&conn, 9, read_pending);
    entries = r->element[0]->element[1];
    cr_assert_eq(entries->elements, 1);
    rd_entry e;
    cr_expect_eq(rd_entry_read(entries->element[0], &e, err, sizeof err), EB_ERR_NOT_FOUND);
    cr_expect_str_eq(e.id, id);
    rd_entry_free(&e);
    freeReplyObject(r);
}

Test(redis_fields, replies_of_another_shape_are_refused)
{
    /* An integer where an entry should be. */
    const char *xlen[] = {"XLEN", stream};
    redisReply *r = rt_run(&conn, 2, xlen);
    rd_entry e;
    cr_expect_eq(rd_entry_read(r, &e, err, sizeof err), EB_ERR_INVALID);
    cr_expect(strstr(err, "unexpected shape"), "%s", err);
    freeReplyObject(r);
}
