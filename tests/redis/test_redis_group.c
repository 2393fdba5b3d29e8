/*
 * test_redis_group.c — a consumer group's reads and acks (plugins/redis/
 * group.c) against the real redis-server ($EB_REDIS_URL): the group made
 * once, own pending entries first (after a restart under the same name,
 * page by page), then new ones; a bounded BLOCK, which another
 * connection ends at once (CLIENT UNBLOCK); a deleted stream and group
 * made again (NOGROUP) and counted; XACK in batches.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "group.h"
#include "redis_test.h"
#include "test_wait.h"

static char err[512];
static rd_url url;
static rd_conn conn;
static char stream[64];

static void connect_server(void)
{
    url = rt_server_url();
    rt_connect(&conn, &url);
    rt_stream_name(stream, sizeof stream, "group");
}

static void delete_stream(void)
{
    const char *del[] = {"DEL", stream};
    rt_do(&conn, 2, del);
}

static void disconnect(void)
{
    rt_delete(&conn, stream);
    rd_conn_close(&conn);
}

TestSuite(redis_group, .init = connect_server, .fini = disconnect);

static void add(int i)
{
    char v[16];
    snprintf(v, sizeof v, "%d", i);
    const char *argv[] = {"XADD", stream, "*", "p", v};
    rt_do(&conn, 5, argv);
}

/** Reads once; copies the entries' payloads (their "p") into got[]. */
static size_t read_some(rd_group *g, size_t count, int block_ms, int *got, char ids[][64])
{
    redisReply *r;
    const redisReply *entries;
    cr_assert_eq(rd_group_read(g, count, block_ms, &r, &entries, err, sizeof err), 0, "%s", err);
    size_t n = entries->elements;
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = entries->element[i];
        if (ids)
            snprintf(ids[i], 64, "%s", e->element[0]->str);
        got[i] = e->element[1]->type == REDIS_REPLY_ARRAY ? atoi(e->element[1]->element[1]->str)
                                                          : -1;
    }
    freeReplyObject(r);
    return n;
}

Test(redis_group, own_pending_entries_first_after_a_restart_then_new_ones)
{
    rd_group g;
    rd_group_init(&g, &conn, stream, "g", "member-1", "0");
    cr_assert_eq(rd_group_ensure(&g, err, sizeof err), 0, "%s", err);
    cr_assert_eq(rd_group_ensure(&g, err, sizeof err), 0, "a second ensure: %s", err);
    for (int i = 0; i < 5; i++)
        add(i);
    int got[16];
    char ids[16][64];
    /* Nothing pending yet: the first read finds none and moves on to new. */
    cr_expect_eq(read_some(&g, 10, 0, got, ids), 0);
    cr_expect_str_eq(g.cursor, ">");
    cr_assert_eq(read_some(&g, 10, 0, got, ids), 5);
    /* Acknowledge 0 and 1; "restart" under the same name. */
    const char *done[] = {ids[0], ids[1]};
    cr_expect_eq(rd_group_ack(&g, done, 2, err, sizeof err), 2, "%s", err);
    cr_expect_eq(rd_group_ack(&g, done, 2, err, sizeof err), 0, "acked twice");
    add(5);
    rd_group again;
    rd_group_init(&again, &conn, stream, "g", "member-1", "0");
    /* Its own pending, page by page (2 a read), in order, then the new. */
    int all[16], n = 0;
    size_t k;
    while ((k = read_some(&again, 2, 0, all + n, NULL)) > 0 && strcmp(again.cursor, ">") != 0)
        n += (int)k;
    cr_assert_eq(n, 3, "%d own pending entries read again, not 3", n);
    cr_expect(all[0] == 2 && all[1] == 3 && all[2] == 4, "pending read out of order");
    cr_expect_str_eq(again.cursor, ">");
    cr_assert_eq(read_some(&again, 10, 0, got, NULL), 1);
    cr_expect_eq(got[0], 5);
    /* Another member's consumer sees none of member-1's pending. */
    rd_group other;
    rd_group_init(&other, &conn, stream, "g", "member-2", "0");
    cr_expect_eq(read_some(&other, 10, 0, got, NULL), 0);
}

Test(redis_group, a_group_made_at_the_end_skips_what_was_there)
{
    add(1);
    rd_group g;
    rd_group_init(&g, &conn, stream, "g-latest", "m", "$");
    cr_assert_eq(rd_group_ensure(&g, err, sizeof err), 0, "%s", err);
    add(2);
    int got[4];
    read_some(&g, 10, 0, got, NULL); /* no own pending */
    cr_assert_eq(read_some(&g, 10, 0, got, NULL), 1);
    cr_expect_eq(got[0], 2);
}

Test(redis_group, block_is_bounded)
{
    rd_group g;
    rd_group_init(&g, &conn, stream, "g", "m", "0");
    cr_assert_eq(rd_group_ensure(&g, err, sizeof err), 0, "%s", err);
    int got[4];
    read_some(&g, 10, 0, got, NULL);
    int64_t t0 = test_now_ms();
    cr_expect_eq(read_some(&g, 10, 300, got, NULL), 0);
    int64_t took = test_now_ms() - t0;
    cr_expect(took >= 250 && took < 1500, "BLOCK 300 took %lld ms", (long long)took);
}

Test(redis_group, a_deleted_stream_and_group_are_made_again_and_counted)
{
    rd_group g;
    rd_group_init(&g, &conn, stream, "g", "m", "0");
    cr_assert_eq(rd_group_ensure(&g, err, sizeof err), 0, "%s", err);
    add(1);
    int got[4];
    read_some(&g, 10, 0, got, NULL);
    cr_assert_eq(read_some(&g, 10, 0, got, NULL), 1);
    delete_stream(); /* as FLUSHALL or a restart without persistence would */
    cr_expect_eq(read_some(&g, 10, 0, got, NULL), 0);
    cr_expect_eq(g.recreated, 1, "NOGROUP was not counted");
    add(2);
    size_t n = read_some(&g, 10, 0, got, NULL);
    if (n == 0) /* the own-pending pass comes first after the rewind */
        n = read_some(&g, 10, 0, got, NULL);
    cr_assert_eq(n, 1, "what was published after the group came back was not read");
    cr_expect_eq(got[0], 2);
}

Test(redis_group, a_deleted_pending_entry_comes_back_with_nil_fields)
{
    rd_group g;
    rd_group_init(&g, &conn, stream, "g", "m", "0");
    cr_assert_eq(rd_group_ensure(&g, err, sizeof err), 0, "%s", err);
    add(1);
    int got[4];
    char ids[4][64];
    read_some(&g, 10, 0, got, ids);
    cr_assert_eq(read_some(&g, 10, 0, got, ids), 1);
    const char *xdel[] = {"XDEL", stream, ids[0]};
    rt_do(&conn, 3, xdel);
    rd_group_rewind(&g);
    cr_assert_eq(read_some(&g, 10, 0, got, ids), 1);
    cr_expect_eq(got[0], -1, "the deleted entry came back with fields");
}

typedef struct blocked_read {
    rd_group *g;
    atomic_bool started, returned;
    int64_t took_ms;
    size_t n;
} blocked_read;

static void *read_blocking(void *arg)
{
    blocked_read *b = arg;
    redisReply *r;
    const redisReply *entries;
    char e[512];
    atomic_store(&b->started, true);
    int64_t t0 = test_now_ms();
    int rc = rd_group_read(b->g, 10, 10000, &r, &entries, e, sizeof e);
    b->took_ms = test_now_ms() - t0;
    if (rc == 0) {
        b->n = entries->elements;
        freeReplyObject(r);
    }
    atomic_store(&b->returned, true);
    return NULL;
}

static bool is_blocked(void *arg)
{
    const char *argv[] = {"CLIENT", "LIST", "ID", arg};
    redisReply *r = rd_conn_command(&conn, 4, argv, NULL, err, sizeof err);
    bool blocked = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cmd=xreadgroup") &&
                   strstr(r->str, "flags=b");
    if (r)
        freeReplyObject(r);
    return blocked;
}

Test(redis_group, another_connection_ends_a_blocked_read_at_once, .timeout = 30)
{
    rd_conn reader;
    cr_assert_eq(rd_conn_open(&reader, &url, (rd_timeouts){2000, 15000}, err, sizeof err), 0,
                 "%s", err);
    long long id = rd_conn_client_id(&reader, err, sizeof err);
    cr_assert_geq(id, 0, "%s", err);
    rd_group g;
    rd_group_init(&g, &reader, stream, "g", "m", "0");
    cr_assert_eq(rd_group_ensure(&g, err, sizeof err), 0, "%s", err);
    snprintf(g.cursor, sizeof g.cursor, ">"); /* new entries: the read blocks */
    blocked_read b = {.g = &g};
    pthread_t t;
    pthread_create(&t, NULL, read_blocking, &b);
    char id_s[24];
    snprintf(id_s, sizeof id_s, "%lld", id);
    cr_assert(test_wait_for(is_blocked, id_s, 5000), "the read never blocked");
    cr_expect_eq(rd_conn_unblock(&conn, id, err, sizeof err), 1, "%s", err);
    pthread_join(t, NULL);
    cr_expect(atomic_load(&b.returned));
    cr_expect_lt(b.took_ms, 5000, "the blocked read took %lld ms of its 10 s BLOCK",
                 (long long)b.took_ms);
    cr_expect_eq(b.n, 0);
    cr_expect(reader.ctx != NULL, "the unblocked connection was closed");
    /* Not blocked any more: nothing to unblock. */
    cr_expect_eq(rd_conn_unblock(&conn, id, err, sizeof err), 0, "%s", err);
    rd_conn_close(&reader);
}
