/*
 * test_redis_leaser.c — partition leases in keyed mode (plugins/redis/
 * leaser.c) against the real redis-server (EB_REDIS_URL; skipped
 * without): two members split the partitions without ever holding one at
 * once, a lease taken by someone else is reported lost at the next
 * renewal, and a member that cannot renew (the server frozen) gives its
 * leases up before they can expire on the server.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "lease.h"
#include "leaser.h"
#include "redis_test.h"
#include "test_wait.h"

enum { PARTS = 4, LEASE_MS = 3000, REVOKE_MS = 500, MARGIN_MS = 300 };

static void host_log(eb_host_bus *hb, eb_log_level level, const char *fmt, ...)
{
    (void)hb, (void)level, (void)fmt;
}

static int64_t host_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void host_event(eb_host_bus *hb, eb_event_type type, const char *topic, const char *group,
                       int error, const char *detail)
{
    (void)hb, (void)type, (void)topic, (void)group, (void)error, (void)detail;
}

static const eb_host host = {.abi_major = EB_TRANSPORT_ABI_MAJOR,
                             .abi_minor = EB_TRANSPORT_ABI_MINOR,
                             .struct_size = sizeof(eb_host),
                             .log = host_log,
                             .now_ns = host_now_ns,
                             .event = host_event};

static rd_url url;
static rd_conn conn;
static char topic[64];

static void setup(void)
{
    url = rt_server_url();
    rt_connect(&conn, &url);
    rt_stream_name(topic, sizeof topic, "leaser");
}

static void teardown(void) { rd_conn_close(&conn); }

TestSuite(redis_leaser, .init = setup, .fini = teardown, .timeout = 60);

static atomic_int changes;

static void on_change(void *ctx)
{
    (void)ctx;
    atomic_fetch_add(&changes, 1);
}

static rd_leaser *start(const char *token)
{
    rd_leaser_config cfg = {.url = &url,
                            .timeouts = {500, 1000},
                            .backoff_min_ms = 50,
                            .backoff_max_ms = 300,
                            .topic = topic,
                            .group = "g",
                            .token = token,
                            .partitions = PARTS,
                            .lease_ms = LEASE_MS,
                            .revoke_ms = REVOKE_MS,
                            .margin_ms = MARGIN_MS,
                            .changed = on_change};
    rd_leaser *l = rd_leaser_start(&host, NULL, &cfg);
    cr_assert_not_null(l);
    return l;
}

typedef struct state {
    unsigned char held[PARTS], lost[PARTS], unwanted[PARTS];
} state;

static state view(rd_leaser *l)
{
    state s;
    rd_lease_view v = {s.held, s.lost, s.unwanted, false};
    rd_leaser_view(l, &v);
    return s;
}

static int count(const unsigned char *v)
{
    int n = 0;
    for (int p = 0; p < PARTS; p++)
        n += v[p];
    return n;
}

typedef struct split_wait {
    rd_leaser *a, *b;
    int overlaps;
} split_wait;

/** Acts as both members: gives up what is unwanted; true once each holds
 *  half. Counts any partition both hold at once. */
static bool split(void *arg)
{
    split_wait *w = arg;
    state a = view(w->a), b = view(w->b);
    for (int p = 0; p < PARTS; p++) {
        w->overlaps += a.held[p] && b.held[p];
        if (a.unwanted[p])
            rd_leaser_release(w->a, (unsigned)p);
        if (b.unwanted[p])
            rd_leaser_release(w->b, (unsigned)p);
    }
    return count(a.held) == PARTS / 2 && count(b.held) == PARTS / 2 && !count(a.unwanted) &&
           !count(b.unwanted);
}

static bool holds_all(void *arg) { return count(view(arg).held) == PARTS; }

Test(redis_leaser, two_members_split_the_partitions_and_never_share_one)
{
    rd_leaser *a = start("a/0000000000000001");
    cr_assert(test_wait_for(holds_all, a, 5000), "a alone never held every partition");
    rd_leaser *b = start("b/0000000000000002");
    split_wait w = {a, b, 0};
    cr_assert(test_wait_for(split, &w, 10000), "the partitions were never split");
    cr_expect_eq(w.overlaps, 0, "%d observations of a partition held by both", w.overlaps);
    /* What Redis says agrees: member i of 2 owns p % 2 == i. */
    for (unsigned p = 0; p < PARTS; p++) {
        char key[256];
        rd_lease_key(key, sizeof key, topic, "g", p);
        const char *get[] = {"GET", key};
        redisReply *r = rt_run(&conn, 2, get);
        cr_expect_str_eq(r->str, p % 2 ? "b/0000000000000002" : "a/0000000000000001",
                         "partition %u", p);
        freeReplyObject(r);
    }
    uint64_t taken, lost, released;
    rd_leaser_counts(a, &taken, &lost, &released);
    cr_expect(taken == PARTS && lost == 0 && released == PARTS / 2, "a: %llu %llu %llu",
              (unsigned long long)taken, (unsigned long long)lost,
              (unsigned long long)released);
    rd_leaser_stop(a);
    rd_leaser_stop(b);
    for (unsigned p = 0; p < PARTS; p++) {
        char key[256];
        rd_lease_key(key, sizeof key, topic, "g", p);
        const char *exists[] = {"EXISTS", key};
        redisReply *r = rt_run(&conn, 2, exists);
        cr_expect_eq(r->integer, 0, "stop left lease %u behind", p);
        freeReplyObject(r);
    }
}

typedef struct lost_wait {
    rd_leaser *l;
    unsigned p;
    bool seen; /* a view reports a loss once */
} lost_wait;

static bool reported_lost(void *arg)
{
    lost_wait *w = arg;
    state s = view(w->l);
    w->seen |= s.lost[w->p] && !s.held[w->p];
    return w->seen;
}

Test(redis_leaser, a_lease_taken_by_another_is_reported_lost)
{
    rd_leaser *a = start("a/0000000000000001");
    cr_assert(test_wait_for(holds_all, a, 5000));
    char key[256];
    rd_lease_key(key, sizeof key, topic, "g", 2);
    const char *steal[] = {"SET", key, "thief/0", "PX", "60000"};
    rt_do(&conn, 5, steal);
    lost_wait w = {a, 2, false};
    cr_assert(test_wait_for(reported_lost, &w, LEASE_MS), "the stolen lease was never lost");
    state s = view(a);
    cr_expect_eq(s.held[2], 0, "taken back from its new owner");
    cr_expect_eq(count(s.held), PARTS - 1);
    rd_leaser_stop(a);
    const char *get[] = {"GET", key};
    redisReply *r = rt_run(&conn, 2, get);
    cr_expect_str_eq(r->str, "thief/0", "stop released a lease that was not its own");
    freeReplyObject(r);
    rt_delete(&conn, key);
}

static bool nothing_held(void *arg) { return count(view(arg).held) == 0; }

Test(redis_leaser, a_member_that_cannot_renew_gives_up_before_the_lease_expires)
{
    rd_leaser *a = start("a/0000000000000001");
    cr_assert(test_wait_for(holds_all, a, 5000));
    int64_t frozen_at = test_now_ms();
    pid_t freezer = rt_freeze_server(LEASE_MS / 1000 + 2);
    cr_assert(test_wait_for(nothing_held, a, LEASE_MS + 2000),
              "still holding leases while the server is frozen");
    int64_t gave_up = test_now_ms() - frozen_at;
    /* The last renewal was sent at most one interval before the freeze:
     * given up by then + L - revoke - margin, before the server-side
     * expiry (then + L) with revoke_ms to spare. */
    cr_expect_leq(gave_up, LEASE_MS - REVOKE_MS - MARGIN_MS + 200, "gave up after %lld ms",
                  (long long)gave_up);
    int status;
    waitpid(freezer, &status, 0);
    cr_assert(test_wait_for(holds_all, a, 3 * LEASE_MS), "never took the partitions back");
    rd_leaser_stop(a);
}

/** `redis.sh COMMAND`. @returns its exit status. */
static int server_ctl(const char *command)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execlp("bash", "bash", getenv("EB_REDIS_CTL"), command, (char *)NULL);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static bool holds_partition_1(void *arg) { return view(arg).held[1]; }

Test(redis_leaser, after_a_server_restart_no_lease_is_taken_for_a_lease_time)
{
    if (!getenv("EB_REDIS_CTL"))
        cr_skip_test("EB_REDIS_CTL is not set (tests/servers/redis.sh start)");
    rd_leaser *a = start("a/0000000000000001");
    cr_assert(test_wait_for(holds_all, a, 5000));
    cr_assert_eq(server_ctl("down"), 0);
    /* The member may reconnect before `up` returns: the lease time counts
     * from no earlier than when the server was started. */
    int64_t up_at = test_now_ms();
    cr_assert_eq(server_ctl("up"), 0);
    rd_conn_close(&conn);
    rt_connect(&conn, &url);
    char key[256];
    rd_lease_key(key, sizeof key, topic, "g", 1);
    rt_delete(&conn, key); /* as a restart without persistence would */
    lost_wait w = {a, 1, false};
    cr_assert(test_wait_for(reported_lost, &w, LEASE_MS), "the vanished lease was never lost");
    cr_assert(test_wait_for(holds_partition_1, a, 3 * LEASE_MS), "never taken again");
    int64_t after = test_now_ms() - up_at;
    cr_expect_geq(after, LEASE_MS, "taken again %lld ms after the restart", (long long)after);
    rd_leaser_stop(a);
}
