/*
 * test_redis_conn.c — the Redis transport's connection (plugins/redis/
 * conn.c) against the real redis-server of tests/servers/redis.sh
 * ($EB_REDIS_URL, $EB_REDIS_TEST_USER/_PASSWORD, $EB_REDIS_CTL): login as
 * an ACL user, clear errors for a wrong password and a missing server
 * (naming the URL without its password), and a server that is frozen
 * (SIGSTOP: it still accepts TCP connections) noticed within the timeout.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "redis_test.h"
#include "test_wait.h"

static char err[512];
static const rd_timeouts TIMEOUTS = {.connect_ms = 1000, .command_ms = 1000};

/** The server's URL with user:password@ put in. */
static rd_url with_login(const char *user, const char *password)
{
    rd_url base = rt_server_url();
    char text[RD_URL_MAX];
    snprintf(text, sizeof text, "redis://%s:%s@%s:%d/0", user, password, base.host, base.port);
    rd_url u;
    cr_assert_eq(rd_url_parse(text, &u, err, sizeof err), 0, "%s", err);
    return u;
}

static const char *test_user(void)
{
    const char *user = getenv("EB_REDIS_TEST_USER");
    cr_assert(user, "EB_REDIS_TEST_USER is not set");
    return user;
}

static const char *test_password(void)
{
    const char *password = getenv("EB_REDIS_TEST_PASSWORD");
    cr_assert(password, "EB_REDIS_TEST_PASSWORD is not set");
    return password;
}

Test(redis_conn, connects_and_runs_commands)
{
    rd_url u = rt_server_url();
    rd_conn c;
    cr_assert_eq(rd_conn_open(&c, &u, TIMEOUTS, err, sizeof err), 0, "%s", err);
    const char *argv[] = {"ECHO", "hello"};
    redisReply *r = rd_conn_command(&c, 2, argv, NULL, err, sizeof err);
    cr_assert(r, "%s", err);
    cr_expect_eq(r->type, REDIS_REPLY_STRING);
    cr_expect_str_eq(r->str, "hello");
    freeReplyObject(r);
    /* An error reply is a reply: the connection stays usable. */
    const char *bad[] = {"NOSUCHCOMMAND"};
    r = rd_conn_command(&c, 1, bad, NULL, err, sizeof err);
    cr_assert(r, "%s", err);
    cr_expect_eq(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    cr_expect(c.ctx != NULL, "an error reply closed the connection");
    rd_conn_close(&c);
    rd_conn_close(&c); /* idempotent */
}

Test(redis_conn, logs_in_as_an_acl_user_and_selects_the_database)
{
    rd_url u = with_login(test_user(), test_password());
    u.db = 5;
    rd_conn c;
    cr_assert_eq(rd_conn_open(&c, &u, TIMEOUTS, err, sizeof err), 0, "%s", err);
    const char *whoami[] = {"ACL", "WHOAMI"};
    redisReply *r = rd_conn_command(&c, 2, whoami, NULL, err, sizeof err);
    cr_assert(r, "%s", err);
    cr_expect_str_eq(r->str, test_user());
    freeReplyObject(r);
    const char *info[] = {"CLIENT", "INFO"};
    r = rd_conn_command(&c, 2, info, NULL, err, sizeof err);
    cr_assert(r, "%s", err);
    cr_expect(strstr(r->str, " db=5 "), "not in database 5: %s", r->str);
    freeReplyObject(r);
    rd_conn_close(&c);
}

Test(redis_conn, a_wrong_password_is_a_clear_error_without_the_password)
{
    rd_url u = with_login(test_user(), "not-the-password-s3cret");
    rd_conn c;
    cr_assert_eq(rd_conn_open(&c, &u, TIMEOUTS, err, sizeof err), -1);
    cr_expect(c.ctx == NULL);
    cr_expect(strstr(err, "AUTH") && strstr(err, "WRONGPASS"), "%s", err);
    cr_expect(strstr(err, u.display), "the error does not name the URL: %s", err);
    cr_expect(!strstr(err, "s3cret"), "the error shows the password: %s", err);
}

Test(redis_conn, a_missing_server_is_a_clear_error)
{
    /* Port 1: nothing listens there. */
    rd_url u;
    cr_assert_eq(rd_url_parse("redis://127.0.0.1:1/0", &u, err, sizeof err), 0, "%s", err);
    rd_conn c;
    int64_t start = test_now_ms();
    cr_assert_eq(rd_conn_open(&c, &u, TIMEOUTS, err, sizeof err), -1);
    cr_expect_lt(test_now_ms() - start, 3000, "connect to a closed port took %lld ms",
                 (long long)(test_now_ms() - start));
    cr_expect(strstr(err, "redis://127.0.0.1:1/0") && strstr(err, "connect"), "%s", err);
    cr_expect(strstr(err, "refused"), "%s", err);
}

Test(redis_conn, a_frozen_server_is_noticed_within_the_timeouts, .timeout = 60)
{
    rd_url u = rt_server_url();
    rd_conn c;
    cr_assert_eq(rd_conn_open(&c, &u, TIMEOUTS, err, sizeof err), 0, "%s", err);
    pid_t freezer = rt_freeze_server(4);
    /* Wait until the freeze took: a fresh connection's PING goes unanswered. */
    int64_t deadline = test_now_ms() + 10000;
    bool frozen = false;
    while (!(frozen = rt_server_frozen(&u)) && test_now_ms() < deadline)
        ;
    cr_assert(frozen, "the server never froze");
    rd_conn probe;
    /* The open connection's command times out; opening a new one too,
     * although the frozen server's kernel still accepts the TCP connection. */
    const char *ping[] = {"PING"};
    int64_t start = test_now_ms();
    redisReply *r = rd_conn_command(&c, 1, ping, NULL, err, sizeof err);
    int64_t took = test_now_ms() - start;
    cr_expect(r == NULL, "PING to a frozen server answered");
    cr_expect(c.ctx == NULL, "the timed-out connection was kept");
    cr_expect_lt(took, TIMEOUTS.command_ms + 1000, "the command took %lld ms", (long long)took);
    cr_expect(strstr(err, "no answer within redis.command.timeout.ms"), "%s", err);
    start = test_now_ms();
    cr_expect_eq(rd_conn_open(&probe, &u, TIMEOUTS, err, sizeof err), -1);
    took = test_now_ms() - start;
    cr_expect_lt(took, TIMEOUTS.connect_ms + 1000, "opening took %lld ms", (long long)took);
    cr_expect(strstr(err, "PING") && strstr(err, "redis.connect.timeout.ms"), "%s", err);
    int status;
    cr_assert_eq(waitpid(freezer, &status, 0), freezer);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "redis.sh freeze failed");
    /* Thawed: a new connection works again. */
    cr_expect_eq(rd_conn_open(&c, &u, TIMEOUTS, err, sizeof err), 0, "%s", err);
    rd_conn_close(&c);
}
