/*
 * test_redis_claim.c — taking over idle entries (plugins/redis/claim.c)
 * against the real redis-server ($EB_REDIS_URL): entries member "a" left
 * pending are claimed by "b" once idle long enough, with their delivery
 * counts (2: a's and b's); not before; in pages; and an entry deleted
 * from the stream is reported deleted, not delivered.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "claim.h"
#include "redis_test.h"
#include "test_wait.h"

static char err[512];
static rd_url url;
static rd_conn conn;
static char stream[64];
static char ids[8][64];

/* Five entries, read by member "a" of group "g" and never acknowledged. */
static void setup(void)
{
    url = rt_server_url();
    rt_connect(&conn, &url);
    rt_stream_name(stream, sizeof stream, "claim");
    rt_pending_entries(&conn, stream, "g", "a", 5, ids);
}

static void teardown(void)
{
    rt_delete(&conn, stream);
    rd_conn_close(&conn);
}

TestSuite(redis_claim, .init = setup, .fini = teardown);

static bool idle_100(void *arg)
{
    (void)arg;
    const char *argv[] = {"XPENDING", stream, "g", "IDLE", "100", "-", "+", "10"};
    redisReply *r = rt_run(&conn, 8, argv);
    bool all = r->elements == 5;
    freeReplyObject(r);
    return all;
}

Test(redis_claim, idle_entries_are_claimed_with_their_delivery_counts)
{
    rd_claimed cl;
    cr_assert_eq(rd_claim_idle(&conn, stream, "g", "b", 60000, "0-0", 10, &cl, err, sizeof err),
                 0, "%s", err);
    cr_expect_eq(cl.entries->elements, 0, "entries claimed before they were idle long enough");
    rd_claimed_free(&cl);

    cr_assert(test_wait_for(idle_100, NULL, 5000));
    cr_assert_eq(rd_claim_idle(&conn, stream, "g", "b", 100, "0-0", 10, &cl, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(cl.entries->elements, 5);
    for (size_t i = 0; i < 5; i++) {
        cr_expect_str_eq(cl.entries->element[i]->element[0]->str, ids[i]);
        cr_expect_eq(cl.deliveries[i], 2, "entry %zu: delivery count %u, not 2", i,
                     cl.deliveries[i]);
    }
    cr_expect_eq(cl.deleted->elements, 0);
    cr_expect_str_eq(cl.next, "0-0");
    rd_claimed_free(&cl);
    const char *owner[] = {"XPENDING", stream, "g", "-", "+", "10", "b"};
    redisReply *r = rt_run(&conn, 7, owner);
    cr_expect_eq(r->elements, 5, "b does not hold the claimed entries");
    freeReplyObject(r);
}

Test(redis_claim, in_pages)
{
    cr_assert(test_wait_for(idle_100, NULL, 5000));
    char cursor[64] = "0-0";
    size_t total = 0;
    int pages = 0;
    do {
        rd_claimed cl;
        cr_assert_eq(rd_claim_idle(&conn, stream, "g", "b", 100, cursor, 2, &cl, err, sizeof err),
                     0, "%s", err);
        cr_assert_leq(cl.entries->elements, 2);
        total += cl.entries->elements;
        snprintf(cursor, sizeof cursor, "%s", cl.next);
        rd_claimed_free(&cl);
        pages++;
    } while (strcmp(cursor, "0-0") != 0 && pages < 10);
    cr_expect_eq(total, 5, "%zu claimed in %d pages", total, pages);
    cr_expect_geq(pages, 3);
}

Test(redis_claim, an_entry_deleted_from_the_stream_is_reported_deleted)
{
    const char *del[] = {"XDEL", stream, ids[1]};
    rt_do(&conn, 3, del);
    cr_assert(test_wait_for(idle_100, NULL, 5000));
    rd_claimed cl;
    cr_assert_eq(rd_claim_idle(&conn, stream, "g", "b", 100, "0-0", 10, &cl, err, sizeof err), 0,
                 "%s", err);
    cr_expect_eq(cl.entries->elements, 4);
    cr_assert_eq(cl.deleted->elements, 1);
    cr_expect_str_eq(cl.deleted->element[0]->str, ids[1]);
    for (size_t i = 0; i < cl.entries->elements; i++)
        cr_expect_eq(cl.deliveries[i], 2);
    rd_claimed_free(&cl);
}

Test(redis_claim, a_missing_group_is_an_error)
{
    rd_claimed cl;
    cr_expect_eq(rd_claim_idle(&conn, stream, "nope", "b", 0, "0-0", 10, &cl, err, sizeof err),
                 -1);
    cr_expect(strstr(err, "NOGROUP"), "%s", err);
}
