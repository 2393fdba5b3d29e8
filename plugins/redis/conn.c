/*
 * conn.c — a blocking hiredis connection with deadlines (see conn.h).
 */
#include "conn.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

static struct timeval tv_of(int ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

static void say(char *err, size_t err_size, const rd_conn *c, const char *what,
                const char *why)
{
    if (err && err_size)
        snprintf(err, err_size, "redis %s: %s: %s", c->url->display, what, why);
}

/** Why the context failed, in words (hiredis leaves errstr empty on some
 *  timeouts), naming the timeout in force: the connect timeout while
 *  logging in, the command timeout after. */
static const char *why_ctx(const rd_conn *c, const redisContext *ctx)
{
    bool timed_out = (ctx->err == REDIS_ERR_IO && ctx->errstr[0] == '\0') ||
                     strstr(ctx->errstr, "Resource temporarily unavailable");
    if (timed_out)
        return c->logged_in ? "no answer within redis.command.timeout.ms"
                            : "no answer within redis.connect.timeout.ms";
    return ctx->errstr[0] ? ctx->errstr : "connection error";
}

redisReply *rd_conn_command(rd_conn *c, int argc, const char **argv, const size_t *lens,
                            char *err, size_t err_size)
{
    if (!c->ctx) {
        say(err, err_size, c, argv[0], "not connected");
        return NULL;
    }
    redisReply *r = redisCommandArgv(c->ctx, argc, argv, lens);
    if (!r) {
        say(err, err_size, c, argv[0], why_ctx(c, c->ctx));
        rd_conn_close(c); /* hiredis 0.14: a context that failed is dead */
    }
    return r;
}

int rd_conn_pipeline(rd_conn *c, size_t n, const int *argcs, const char *const *const *argvs,
                     redisReply **replies, char *err, size_t err_size)
{
    for (size_t i = 0; i < n; i++)
        replies[i] = NULL;
    if (!c->ctx) {
        say(err, err_size, c, argvs[0][0], "not connected");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (redisAppendCommandArgv(c->ctx, argcs[i], (const char **)argvs[i], NULL) !=
            REDIS_OK) {
            say(err, err_size, c, argvs[i][0], why_ctx(c, c->ctx));
            rd_conn_close(c);
            return -1;
        }
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        if (redisGetReply(c->ctx, &r) != REDIS_OK || !r) {
            say(err, err_size, c, argvs[i][0], why_ctx(c, c->ctx));
            for (size_t j = 0; j < i; j++) {
                freeReplyObject(replies[j]);
                replies[j] = NULL;
            }
            rd_conn_close(c); /* the rest of the replies would come out of step */
            return -1;
        }
        replies[i] = r;
    }
    return 0;
}

/** A command that must answer a status or string (AUTH, SELECT, PING):
 *  @returns 0, or -1 with a sentence (the connection is closed). */
static int expect_ok(rd_conn *c, int argc, const char **argv, const char *what, char *err,
                     size_t err_size)
{
    redisReply *r = rd_conn_command(c, argc, argv, NULL, err, err_size);
    if (!r)
        return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        say(err, err_size, c, what, r->str);
        rc = -1;
    }
    freeReplyObject(r);
    if (rc != 0)
        rd_conn_close(c);
    return rc;
}

int rd_conn_open(rd_conn *c, const rd_url *url, rd_timeouts timeouts, char *err,
                 size_t err_size)
{
    *c = (rd_conn){.url = url, .timeouts = timeouts};
    struct timeval connect_tv = tv_of(timeouts.connect_ms);
    redisContext *ctx = url->unix_path[0]
                            ? redisConnectUnixWithTimeout(url->unix_path, connect_tv)
                            : redisConnectWithTimeout(url->host, url->port, connect_tv);
    if (!ctx) {
        say(err, err_size, c, "connect", "out of memory");
        return -1;
    }
    if (ctx->err) {
        say(err, err_size, c, "connect", why_ctx(c, ctx));
        redisFree(ctx);
        return -1;
    }
    c->ctx = ctx;
    /* The login answers within the connect timeout, every later reply
     * within the command timeout. */
    if (redisSetTimeout(ctx, connect_tv) != REDIS_OK ||
        (!url->unix_path[0] && redisEnableKeepAlive(ctx) != REDIS_OK)) {
        say(err, err_size, c, "connect", why_ctx(c, ctx));
        rd_conn_close(c);
        return -1;
    }
    if (url->has_password) {
        const char *auth_user[] = {"AUTH", url->user, url->password};
        const char *auth_default[] = {"AUTH", url->password};
        int rc = url->user[0] ? expect_ok(c, 3, auth_user, "AUTH", err, err_size)
                              : expect_ok(c, 2, auth_default, "AUTH", err, err_size);
        if (rc != 0)
            return -1;
    }
    if (url->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", url->db);
        const char *select[] = {"SELECT", db};
        if (expect_ok(c, 2, select, "SELECT", err, err_size) != 0)
            return -1;
    }
    const char *ping[] = {"PING"};
    if (expect_ok(c, 1, ping, "PING", err, err_size) != 0)
        return -1;
    if (redisSetTimeout(ctx, tv_of(timeouts.command_ms)) != REDIS_OK) {
        say(err, err_size, c, "connect", why_ctx(c, ctx));
        rd_conn_close(c);
        return -1;
    }
    c->logged_in = true;
    return 0;
}

void rd_conn_close(rd_conn *c)
{
    if (c->ctx) {
        redisFree(c->ctx);
        c->ctx = NULL;
    }
}

long long rd_conn_client_id(rd_conn *c, char *err, size_t err_size)
{
    const char *argv[] = {"CLIENT", "ID"};
    redisReply *r = rd_conn_command(c, 2, argv, NULL, err, err_size);
    if (!r)
        return -1;
    long long id = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (id < 0)
        say(err, err_size, c, "CLIENT ID", r->type == REDIS_REPLY_ERROR ? r->str : "no id");
    freeReplyObject(r);
    return id;
}

int rd_conn_unblock(rd_conn *c, long long id, char *err, size_t err_size)
{
    char id_s[24];
    snprintf(id_s, sizeof id_s, "%lld", id);
    const char *argv[] = {"CLIENT", "UNBLOCK", id_s, "TIMEOUT"};
    redisReply *r = rd_conn_command(c, 4, argv, NULL, err, err_size);
    if (!r)
        return -1;
    int rc = r->type == REDIS_REPLY_INTEGER ? (int)r->integer : -1;
    if (rc < 0)
        say(err, err_size, c, "CLIENT UNBLOCK",
            r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
    freeReplyObject(r);
    return rc;
}
