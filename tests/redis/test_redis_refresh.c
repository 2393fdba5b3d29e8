/*
 * test_redis_refresh.c — the idle-time refresh of a consumer's pending
 * entries (plugins/redis/refresh.c) against the real redis-server
 * ($EB_REDIS_URL): its own entries' idle time goes back to zero with the
 * delivery count unchanged; an entry another member claimed meanwhile is
 * reported lost and stays that member's (never stolen back); acknowledged
 * and unknown ids are reported lost too.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "refresh.h"
#include "redis_test.h"
#include "test_wait.h"

static char err[512];
static rd_url url;
static rd_conn conn;
static char stream[64];
static char ids[4][64];

/* Three entries, read by consumer "a" of group "g": pending under "a". */
static void setup(void)
{
    url = rt_server_url();
    rt_connect(&conn, &url);
    rt_stream_name(stream, sizeof stream, "refresh");
    rt_pending_entries(&conn, stream, "g", "a", 3, ids);
}

static void teardown(void)
{
    rt_delete(&conn, stream);
    rd_conn_close(&conn);
}

TestSuite(redis_refresh, .init = setup, .fini = teardown);

typedef struct pending {
    char owner[32];
    long long idle_ms, deliveries;
} pending;

static pending pending_of(const char *id)
{
    const char *argv[] = {"XPENDING", stream, "g", id, id, "1"};
    redisReply *r = rt_run(&conn, 6, argv);
    pending p = {"", -1, -1};
    if (r->elements == 1) {
        snprintf(p.owner, sizeof p.owner, "%s", r->element[0]->element[1]->str);
        p.idle_ms = r->element[0]->element[2]->integer;
        p.deliveries = r->element[0]->element[3]->integer;
    }
    freeReplyObject(r);
    return p;
}

static bool idle_at_least_100(void *id) { return pending_of(id).idle_ms >= 100; }

Test(redis_refresh, own_entries_refreshed_others_reported_and_left_alone)
{
    /* "b" claims the second entry: a member that thought "a" dead. */
    const char *claim[] = {"XCLAIM", stream, "g", "b", "0", ids[1]};
    rt_do(&conn, 6, claim);
    /* "a" finished the third. */
    const char *ack[] = {"XACK", stream, "g", ids[2]};
    rt_do(&conn, 4, ack);
    cr_assert(test_wait_for(idle_at_least_100, ids[0], 5000));
    cr_assert(test_wait_for(idle_at_least_100, ids[1], 5000));
    pending before = pending_of(ids[0]);

    const char *mine[] = {ids[0], ids[1], ids[2], "1-1"};
    const char *lost[4];
    size_t n_lost = 99;
    cr_assert_eq(rd_refresh(&conn, stream, "g", "a", mine, 4, lost, &n_lost, err, sizeof err),
                 0, "%s", err);

    pending own = pending_of(ids[0]), stolen = pending_of(ids[1]);
    cr_expect_lt(own.idle_ms, 100, "its own entry's idle time was not reset (%lld ms)",
                 own.idle_ms);
    cr_expect_str_eq(own.owner, "a");
    cr_expect_eq(own.deliveries, before.deliveries, "the refresh counted a delivery");
    cr_expect_str_eq(stolen.owner, "b", "the refresh stole back an entry another member claimed");
    cr_expect_geq(stolen.idle_ms, 100, "the refresh touched another member's entry");
    cr_assert_eq(n_lost, 3, "%zu ids reported lost, not 3", n_lost);
    cr_expect_str_eq(lost[0], ids[1]);
    cr_expect_str_eq(lost[1], ids[2]);
    cr_expect_str_eq(lost[2], "1-1");
}

Test(redis_refresh, nothing_to_refresh_is_nothing_lost)
{
    const char *lost[1];
    size_t n_lost = 99;
    cr_assert_eq(rd_refresh(&conn, stream, "g", "a", NULL, 0, lost, &n_lost, err, sizeof err), 0);
    cr_expect_eq(n_lost, 0);
}

Test(redis_refresh, a_missing_group_is_an_error)
{
    const char *mine[] = {ids[0]};
    const char *lost[1];
    size_t n_lost;
    cr_expect_eq(rd_refresh(&conn, stream, "no-such-group", "a", mine, 1, lost, &n_lost, err,
                            sizeof err),
                 -1);
    cr_expect(strstr(err, "NOGROUP"), "%s", err);
}

Test(redis_refresh, thousands_of_ids_in_one_call)
{
    enum { N = 2500 };
    static char many[N][64];
    static const char *mine[N + 1];
    for (int i = 0; i < N; i++) {
        const char *add[] = {"XADD", stream, "*", "p", "x"};
        redisReply *r = rt_run(&conn, 5, add);
        snprintf(many[i], sizeof many[i], "%s", r->str);
        freeReplyObject(r);
        mine[i] = many[i];
    }
    const char *read[] = {"XREADGROUP", "GROUP", "g", "a", "COUNT", "10000", "STREAMS", stream,
                          ">"};
    rt_do(&conn, 9, read);
    mine[N] = "1-1"; /* not pending: the last one, in the third call */
    static const char *lost[N + 1];
    size_t n_lost = 0;
    cr_assert_eq(rd_refresh(&conn, stream, "g", "a", mine, N + 1, lost, &n_lost, err,
                            sizeof err),
                 0, "%s", err);
    cr_assert_eq(n_lost, 1, "%zu lost of %d own entries and one unknown", n_lost, N);
    cr_expect_str_eq(lost[0], "1-1");
}
