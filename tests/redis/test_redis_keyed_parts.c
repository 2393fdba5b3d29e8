/*
 * test_redis_keyed_parts.c — the keyed group mode's protocol parts against
 * the real redis-server (EB_REDIS_URL; skipped without): partition stream
 * names and the key hash (partitions.c), the topic's meta record with its
 * protocol version and partition count, leases taken, renewed, released
 * and expired by token (lease.c), member announcements and the assignment
 * they give (members.c), and reads fenced by the lease (fenced.c).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "eventbus/eventbus.h"
#include "fenced.h"
#include "lease.h"
#include "members.h"
#include "partitions.h"
#include "redis_test.h"
#include "test_wait.h"

static rd_url url;
static rd_conn conn;
static char name[64]; /* this test's topic */

static void setup(void)
{
    url = rt_server_url();
    rt_connect(&conn, &url);
    rt_stream_name(name, sizeof name, "keyed-parts");
}

static void teardown(void)
{
    /* Every key of the test starts with "eventbus:<name>:" or is <name>. */
    char pattern[128];
    snprintf(pattern, sizeof pattern, "eventbus:%s:*", name);
    const char *keys[] = {"KEYS", pattern};
    if (conn.ctx) {
        redisReply *r = rt_run(&conn, 2, keys);
        for (size_t i = 0; i < r->elements; i++)
            rt_delete(&conn, r->element[i]->str);
        freeReplyObject(r);
    }
    rd_conn_close(&conn);
}

TestSuite(redis_keyed_parts, .init = setup, .fini = teardown, .timeout = 30);

Test(redis_keyed_parts, streams_and_the_key_hash_are_the_documented_ones)
{
    char s[128];
    cr_assert_eq(rd_partition_stream(s, sizeof s, "orders", 1, 0), 0);
    cr_expect_str_eq(s, "orders");
    cr_assert_eq(rd_partition_stream(s, sizeof s, "orders", 8, 5), 0);
    cr_expect_str_eq(s, "orders:5");
    cr_expect_eq(rd_partition_stream(s, 8, "orders", 8, 5), -1, "a name that does not fit");
    /* FNV-1a 32: "" = 2166136261, "a" = 0xe40c292c, "foobar" = 0xbf9cf968. */
    cr_expect_eq(rd_partition_of_key("", 0, 1000), 2166136261u % 1000);
    cr_expect_eq(rd_partition_of_key("a", 1, 1000), 0xe40c292cu % 1000);
    cr_expect_eq(rd_partition_of_key("foobar", 6, 7), 0xbf9cf968u % 7);
    cr_expect_eq(rd_partition_of_key("\0x", 2, 1), 0);
}

Test(redis_keyed_parts, the_meta_record_refuses_another_count_or_version)
{
    char err[1024];
    cr_assert_eq(rd_meta_check(&conn, name, 4, err, sizeof err), 0, "%s", err);
    cr_assert_eq(rd_meta_check(&conn, name, 4, err, sizeof err), 0, "the same again: %s", err);
    cr_assert_eq(rd_meta_check(&conn, name, 8, err, sizeof err), EB_ERR_CONFIG);
    cr_expect(strstr(err, "has 4 partition") && strstr(err, "redis.partitions is 8") &&
                  strstr(err, "set redis.partitions = 4"),
              "%s", err);
    char key[256];
    cr_assert_eq(rd_meta_key(key, sizeof key, name), 0);
    cr_expect(strstr(err, key), "the sentence does not name %s: %s", key, err);
    const char *newer[] = {"HSET", key, "protocol", "2"};
    rt_do(&conn, 4, newer);
    cr_assert_eq(rd_meta_check(&conn, name, 4, err, sizeof err), EB_ERR_CONFIG);
    cr_expect(strstr(err, "version 2") && strstr(err, "speaks version 1"), "%s", err);
}

static const char *A = "member-a/0000000000000001", *B = "member-b/0000000000000002";

static void lease_op(rd_lease_op op, const char *const *keys, size_t n, const char *token,
                     int64_t ms, unsigned char *ours)
{
    char err[1024];
    cr_assert_eq(rd_lease_apply(&conn, op, keys, n, token, ms, ours, err, sizeof err), 0, "%s",
                 err);
}

static long long pttl(const char *key)
{
    const char *argv[] = {"PTTL", key};
    redisReply *r = rt_run(&conn, 2, argv);
    long long ms = r->integer;
    freeReplyObject(r);
    return ms;
}

Test(redis_keyed_parts, a_lease_is_taken_renewed_and_released_only_by_its_owner)
{
    char k0[256], k1[256];
    rd_lease_key(k0, sizeof k0, name, "g", 0);
    rd_lease_key(k1, sizeof k1, name, "g", 1);
    const char *keys[] = {k0, k1};
    unsigned char ours[2];
    lease_op(RD_LEASE_TAKE, keys, 1, A, 60000, ours);
    cr_expect_eq(ours[0], 1, "a free lease was not taken");
    lease_op(RD_LEASE_TAKE, keys, 2, B, 60000, ours);
    cr_expect_eq(ours[0], 0, "B took A's lease");
    cr_expect_eq(ours[1], 1, "B did not take the free one");
    lease_op(RD_LEASE_RENEW, keys, 2, A, 90000, ours);
    cr_expect(ours[0] == 1 && ours[1] == 0, "A renewed %d %d", ours[0], ours[1]);
    cr_expect_gt(pttl(k0), 60000, "the renewal did not extend the lease");
    cr_expect_leq(pttl(k1), 60000, "A's renewal touched B's lease");
    lease_op(RD_LEASE_RELEASE, keys, 2, B, 0, ours);
    cr_expect(ours[0] == 0 && ours[1] == 1, "B released %d %d", ours[0], ours[1]);
    cr_expect_gt(pttl(k0), 0, "B's release deleted A's lease");
    cr_expect_eq(pttl(k1), -2, "B's own lease is still there");
    lease_op(RD_LEASE_RELEASE, keys, 1, A, 0, ours);
    cr_expect_eq(pttl(k0), -2);
}

static bool key_gone(void *key) { return pttl(key) == -2; }

Test(redis_keyed_parts, an_expired_lease_goes_to_whoever_takes_it_next)
{
    char k[256];
    rd_lease_key(k, sizeof k, name, "g", 3);
    const char *keys[] = {k};
    unsigned char ours[1];
    lease_op(RD_LEASE_TAKE, keys, 1, A, 200, ours);
    cr_assert_eq(ours[0], 1);
    cr_assert(test_wait_for(key_gone, k, 5000), "the lease never expired");
    lease_op(RD_LEASE_RENEW, keys, 1, A, 200, ours);
    cr_expect_eq(ours[0], 0, "an expired lease was renewed");
    lease_op(RD_LEASE_TAKE, keys, 1, B, 60000, ours);
    cr_expect_eq(ours[0], 1, "B could not take the expired lease");
}

static redisReply *announce(const char *key, const char *me, int64_t ttl)
{
    char err[1024];
    redisReply *live = NULL;
    cr_assert_eq(rd_members_announce(&conn, key, me, ttl, &live, err, sizeof err), 0, "%s",
                 err);
    return live;
}

typedef struct gone_wait {
    const char *key, *me, *gone;
} gone_wait;

static bool announced_without(void *arg)
{
    gone_wait *w = arg;
    redisReply *live = announce(w->key, w->me, 60000);
    bool without = true;
    for (size_t i = 0; i < live->elements; i++)
        without &= strcmp(live->element[i]->str, w->gone) != 0;
    freeReplyObject(live);
    return without;
}

Test(redis_keyed_parts, members_announce_expire_and_split_the_partitions)
{
    char key[256];
    cr_assert_eq(rd_members_key(key, sizeof key, name, "g"), 0);
    freeReplyObject(announce(key, B, 60000));
    redisReply *live = announce(key, A, 60000);
    cr_assert_eq(live->elements, 2);
    cr_expect_str_eq(live->element[0]->str, A, "not sorted");
    cr_expect_str_eq(live->element[1]->str, B);
    unsigned char wa[5], wb[5];
    cr_expect_eq(rd_assign(live, A, 5, wa), 0);
    cr_expect_eq(rd_assign(live, B, 5, wb), 1);
    for (unsigned p = 0; p < 5; p++) {
        cr_expect_eq(wa[p], p % 2 == 0, "A and partition %u", p);
        cr_expect_eq(wa[p] + wb[p], 1, "partition %u wanted by %d members", p, wa[p] + wb[p]);
    }
    cr_expect_eq(rd_assign(live, "stranger/0", 5, wa), -1);
    cr_expect_eq(wa[0] + wa[1] + wa[2] + wa[3] + wa[4], 0);
    freeReplyObject(live);

    /* C announces for 300 ms and stops: the next announcement after that
     * no longer lists it. */
    const char *C = "member-c/0000000000000003";
    freeReplyObject(announce(key, C, 300));
    gone_wait w = {key, A, C};
    cr_assert(test_wait_for(announced_without, &w, 5000), "C never expired");
    char err[512];
    cr_assert_eq(rd_members_leave(&conn, key, B, err, sizeof err), 0, "%s", err);
    live = announce(key, A, 60000);
    cr_expect_eq(live->elements, 1, "B did not leave");
    freeReplyObject(live);
}

static int fenced(rd_fenced_mode mode, const char *lease, const char *token,
                  const char *consumer, const char *cursor, rd_fenced *out, char *err,
                  size_t err_size)
{
    return rd_fenced_read(&conn, mode, name, lease, token, "g", consumer, cursor, 100, out, err,
                          err_size);
}

Test(redis_keyed_parts, reads_go_through_only_while_the_lease_is_ours)
{
    char lease[256], err[1024];
    rd_lease_key(lease, sizeof lease, name, "g", 0);
    char ids[3][64];
    rt_pending_entries(&conn, name, "g", "earlier-owner", 3, ids); /* left by a dead member */
    const char *more[] = {"XADD", name, "*", "p", "new"};
    redisReply *added = rt_run(&conn, 5, more);
    char new_id[64];
    snprintf(new_id, sizeof new_id, "%s", added->str);
    freeReplyObject(added);

    rd_fenced f;
    cr_expect_eq(fenced(RD_FENCED_NEW, lease, A, "a", NULL, &f, err, sizeof err), RD_NOT_OWNER,
                 "read without a lease");
    unsigned char ours[1];
    const char *keys[] = {lease};
    lease_op(RD_LEASE_TAKE, keys, 1, B, 60000, ours);
    cr_expect_eq(fenced(RD_FENCED_CLAIM, lease, A, "a", "0-0", &f, err, sizeof err),
                 RD_NOT_OWNER, "read under another member's lease");
    lease_op(RD_LEASE_RELEASE, keys, 1, B, 0, ours);
    lease_op(RD_LEASE_TAKE, keys, 1, A, 60000, ours);

    /* The new owner first claims what the earlier owner left, in id order. */
    cr_assert_eq(fenced(RD_FENCED_CLAIM, lease, A, "a", "0-0", &f, err, sizeof err), 0, "%s",
                 err);
    cr_assert_eq(f.entries->elements, 3);
    for (int i = 0; i < 3; i++)
        cr_expect_str_eq(f.entries->element[i]->element[0]->str, ids[i]);
    cr_expect_str_eq(f.next, "0-0");
    rd_fenced_free(&f);
    /* Then its own pending ones (the claimed three), then the new one. */
    cr_assert_eq(fenced(RD_FENCED_PENDING, lease, A, "a", "0", &f, err, sizeof err), 0, "%s",
                 err);
    cr_expect_eq(f.entries->elements, 3);
    rd_fenced_free(&f);
    cr_assert_eq(fenced(RD_FENCED_NEW, lease, A, "a", NULL, &f, err, sizeof err), 0, "%s", err);
    cr_assert_eq(f.entries->elements, 1);
    cr_expect_str_eq(f.entries->element[0]->element[0]->str, new_id);
    cr_expect_str_eq(f.last, new_id, "the stream's last id for a blocking wait");
    rd_fenced_free(&f);
    cr_assert_eq(fenced(RD_FENCED_NEW, lease, A, "a", NULL, &f, err, sizeof err), 0, "%s", err);
    cr_expect_eq(f.entries->elements, 0, "nothing new");
    rd_fenced_free(&f);

    const char *del[] = {"XGROUP", "DESTROY", name, "g"};
    rt_do(&conn, 4, del);
    cr_expect_eq(fenced(RD_FENCED_NEW, lease, A, "a", NULL, &f, err, sizeof err), -1);
    cr_expect(strstr(err, "NOGROUP"), "%s", err);
    cr_expect_not_null(conn.ctx, "an error reply closed the connection");
    rt_delete(&conn, name);
}
