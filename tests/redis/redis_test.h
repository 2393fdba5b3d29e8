/*
 * redis_test.h — what the Redis suites do over and over against the
 * redis-server of tests/servers/redis.sh: read its URL ($EB_REDIS_URL;
 * the case is skipped without it), connect, run a command that must not
 * fail, name a stream of its own, and freeze the server for a while
 * ($EB_REDIS_CTL freeze). Each asserts what it needs.
 */
#ifndef EB_REDIS_TEST_H
#define EB_REDIS_TEST_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include "conn.h"

/** The test server's URL, or the case is skipped (outside scripts/test.sh). */
static inline rd_url rt_server_url(void)
{
    const char *text = getenv("EB_REDIS_URL");
    if (!text)
        cr_skip_test("EB_REDIS_URL is not set (tests/servers/redis.sh start)");
    rd_url u;
    char err[512];
    cr_assert_eq(rd_url_parse(text, &u, err, sizeof err), 0, "%s", err);
    return u;
}

/** Opens c to u (2 s timeouts), asserting it works. */
static inline void rt_connect(rd_conn *c, const rd_url *u)
{
    char err[512];
    cr_assert_eq(rd_conn_open(c, u, (rd_timeouts){2000, 2000}, err, sizeof err), 0, "%s", err);
}

/** Runs a command (binary arguments: lens; NULL: C strings) that must
 *  answer without an error; @returns its reply. */
static inline redisReply *rt_run_lens(rd_conn *c, int argc, const char **argv,
                                      const size_t *lens)
{
    char err[512];
    redisReply *r = rd_conn_command(c, argc, argv, lens, err, sizeof err);
    cr_assert(r, "%s", err);
    cr_assert_neq(r->type, REDIS_REPLY_ERROR, "%s: %s", argv[0], r->str);
    return r;
}

static inline redisReply *rt_run(rd_conn *c, int argc, const char **argv)
{
    return rt_run_lens(c, argc, argv, NULL);
}

/** rt_run, the reply freed. */
static inline void rt_do(rd_conn *c, int argc, const char **argv)
{
    freeReplyObject(rt_run(c, argc, argv));
}

/** A stream name of this process: "<prefix>-<pid>-<n>". */
static inline void rt_stream_name(char *out, size_t size, const char *prefix)
{
    static int n;
    snprintf(out, size, "%s-%d-%d", prefix, (int)getpid(), n++);
}

/** Deletes `key` if c is still connected (a fixture's teardown). */
static inline void rt_delete(rd_conn *c, const char *key)
{
    if (!c->ctx)
        return;
    char err[512];
    const char *del[] = {"DEL", key};
    redisReply *r = rd_conn_command(c, 2, del, NULL, err, sizeof err);
    if (r)
        freeReplyObject(r);
}

/**
 * A group `group` on a new stream with n entries (field p = "0", "1", ...;
 * their ids into ids[], 64 bytes each), all read by `consumer` and not
 * acknowledged: pending under it.
 */
static inline void rt_pending_entries(rd_conn *c, const char *stream, const char *group,
                                      const char *consumer, int n, char (*ids)[64])
{
    const char *create[] = {"XGROUP", "CREATE", stream, group, "0", "MKSTREAM"};
    rt_do(c, 6, create);
    for (int i = 0; i < n; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        const char *add[] = {"XADD", stream, "*", "p", v};
        redisReply *r = rt_run(c, 5, add);
        snprintf(ids[i], 64, "%s", r->str);
        freeReplyObject(r);
    }
    const char *read[] = {"XREADGROUP", "GROUP", group, consumer, "STREAMS", stream, ">"};
    rt_do(c, 7, read);
}

/** Runs `redis.sh freeze SECONDS` in a child; @returns its pid (waitpid it). */
static inline pid_t rt_freeze_server(int seconds)
{
    const char *ctl = getenv("EB_REDIS_CTL");
    cr_assert(ctl, "EB_REDIS_CTL is not set");
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char secs[16];
        snprintf(secs, sizeof secs, "%d", seconds);
        execlp("bash", "bash", ctl, "freeze", secs, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/** Is the server at u frozen (a fresh connection gets no PONG in 200 ms)? */
static inline bool rt_server_frozen(const rd_url *u)
{
    rd_conn probe;
    char err[512];
    if (rd_conn_open(&probe, u, (rd_timeouts){200, 200}, err, sizeof err) == 0) {
        rd_conn_close(&probe);
        return false;
    }
    return true;
}

#endif
