/*
 * fenced.c — reads of a partition fenced by its lease (see fenced.h):
 * claims and pending reads in one script, new entries under WATCH.
 */
#include "fenced.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* KEYS[1] the stream, KEYS[2] the lease; ARGV[1] the token, ARGV[2]
 * claim|pending|new, ARGV[3] the group, ARGV[4] the consumer, ARGV[5] the
 * cursor, ARGV[6] the count. Returns {'notowner'}, {'claim', next,
 * entries, deleted} or {'read', entries, last id}. */
static const char READ[] =
    "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {'notowner'} end\n"
    "if ARGV[2] == 'claim' then\n"
    "  local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[3], ARGV[4], 0, ARGV[5],\n"
    "                       'COUNT', ARGV[6])\n"
    "  return {'claim', r[1], r[2], r[3]}\n"
    "end\n"
    "local id = ARGV[2] == 'new' and '>' or ARGV[5]\n"
    "local r = redis.call('XREADGROUP', 'GROUP', ARGV[3], ARGV[4], 'COUNT', ARGV[6],\n"
    "                     'STREAMS', KEYS[1], id)\n"
    "local entries = {}\n"
    "if r then entries = r[1][2] end\n"
    "local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)\n"
    "local last_id = '0-0'\n"
    "if #last > 0 then last_id = last[1][1] end\n"
    "return {'read', entries, last_id}\n";

static int fail(char *err, size_t err_size, const rd_conn *c, const char *stream,
                const char *why)
{
    snprintf(err, err_size, "redis %s: reading %s: %s", c->url->display, stream, why);
    return -1;
}

static bool is(const redisReply *r, const char *s)
{
    return r->type == REDIS_REPLY_STRING && strcmp(r->str, s) == 0;
}

/* What a read of nothing points its entries at. */
static const redisReply NO_ENTRIES = {.type = REDIS_REPLY_ARRAY};

static void free_replies(redisReply **r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (r[i])
            freeReplyObject(r[i]);
}

/** Unfenced the connection (a WATCH not followed by EXEC). */
static void unwatch(rd_conn *c)
{
    char err[256];
    const char *argv[] = {"UNWATCH"};
    redisReply *r = rd_conn_command(c, 1, argv, NULL, err, sizeof err);
    if (r)
        freeReplyObject(r);
}

/**
 * New entries without a script: Lua's conversion of every entry to a
 * table and back costs the server about twice a plain XREADGROUP's time
 * (measured: keyed reads at 0.5x shared ones). WATCH the lease, GET it
 * (one pipeline); when it is ours, MULTI / XREADGROUP / XREVRANGE / EXEC
 * (another): EXEC runs the read only if the lease key did not change
 * since the WATCH, so the read is as fenced as the script's. A change
 * (another owner, or our own renewal) aborts EXEC: look again.
 */
static int read_new(rd_conn *c, const char *stream, const char *lease_key, const char *token,
                    const char *group, const char *consumer, const char *count,
                    rd_fenced *out, char *err, size_t err_size)
{
    enum { TRIES = 5 };
    for (int attempt = 0; attempt < TRIES; attempt++) {
        const char *watch[] = {"WATCH", lease_key}, *get[] = {"GET", lease_key};
        const char *const *check[] = {watch, get};
        redisReply *r[4];
        if (rd_conn_pipeline(c, 2, (const int[]){2, 2}, check, r, err, err_size) != 0)
            return -1;
        const redisReply *bad = r[0]->type == REDIS_REPLY_ERROR   ? r[0]
                                : r[1]->type == REDIS_REPLY_ERROR ? r[1]
                                                                  : NULL;
        if (bad) {
            int rc = fail(err, err_size, c, stream, bad->str);
            free_replies(r, 2);
            return rc;
        }
        bool ours = r[1]->type == REDIS_REPLY_STRING && strcmp(r[1]->str, token) == 0;
        free_replies(r, 2);
        if (!ours) {
            unwatch(c);
            return RD_NOT_OWNER;
        }
        const char *multi[] = {"MULTI"}, *exec[] = {"EXEC"};
        const char *read[] = {"XREADGROUP", "GROUP", group, consumer, "COUNT", count,
                              "STREAMS",    stream,  ">"};
        const char *last[] = {"XREVRANGE", stream, "+", "-", "COUNT", "1"};
        const char *const *tx[] = {multi, read, last, exec};
        if (rd_conn_pipeline(c, 4, (const int[]){1, 9, 6, 1}, tx, r, err, err_size) != 0)
            return -1;
        redisReply *x = r[3];
        r[3] = NULL;
        free_replies(r, 3);
        if (x->type == REDIS_REPLY_NIL) { /* the lease key changed meanwhile */
            freeReplyObject(x);
            continue;
        }
        const redisReply *xr = x->type == REDIS_REPLY_ARRAY && x->elements == 2 ? x->element[0]
                                                                                : NULL;
        const redisReply *lr = xr ? x->element[1] : NULL;
        const char *why = x->type == REDIS_REPLY_ERROR     ? x->str
                          : !xr                            ? "a reply in an unexpected shape"
                          : xr->type == REDIS_REPLY_ERROR  ? xr->str
                          : lr->type != REDIS_REPLY_ARRAY  ? "a reply in an unexpected shape"
                          : xr->type == REDIS_REPLY_NIL    ? NULL
                          : xr->type != REDIS_REPLY_ARRAY || xr->elements != 1 ||
                                  xr->element[0]->type != REDIS_REPLY_ARRAY ||
                                  xr->element[0]->elements != 2 ||
                                  xr->element[0]->element[1]->type != REDIS_REPLY_ARRAY
                              ? "a reply in an unexpected shape"
                              : NULL;
        if (why) {
            int rc = fail(err, err_size, c, stream, why);
            freeReplyObject(x);
            return rc;
        }
        out->reply = x;
        out->entries = xr->type == REDIS_REPLY_NIL ? &NO_ENTRIES : xr->element[0]->element[1];
        snprintf(out->last, sizeof out->last, "%s",
                 lr->elements && lr->element[0]->type == REDIS_REPLY_ARRAY &&
                         lr->element[0]->elements == 2
                     ? lr->element[0]->element[0]->str
                     : "0-0");
        return 0;
    }
    return fail(err, err_size, c, stream, "its lease key kept changing during the read");
}

int rd_fenced_read(rd_conn *c, rd_fenced_mode mode, const char *stream, const char *lease_key,
                   const char *token, const char *group, const char *consumer,
                   const char *cursor, size_t count, rd_fenced *out, char *err,
                   size_t err_size)
{
    *out = (rd_fenced){0};
    if (mode == RD_FENCED_NEW) {
        char count_new[24];
        snprintf(count_new, sizeof count_new, "%zu", count);
        return read_new(c, stream, lease_key, token, group, consumer, count_new, out, err,
                        err_size);
    }
    static const char *const modes[] = {"claim", "pending", "new"};
    char count_s[24];
    snprintf(count_s, sizeof count_s, "%zu", count);
    const char *argv[] = {"EVAL", READ, "2", stream, lease_key, token, modes[mode],
                          group, consumer, cursor ? cursor : "0", count_s};
    redisReply *r = rd_conn_command(c, 11, argv, NULL, err, err_size);
    if (!r)
        return -1;
    if (r->type == REDIS_REPLY_ERROR) {
        int rc = fail(err, err_size, c, stream, r->str);
        freeReplyObject(r);
        return rc;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && is(r->element[0], "notowner")) {
        freeReplyObject(r);
        return RD_NOT_OWNER;
    }
    bool claim = r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
                 is(r->element[0], "claim") && r->element[1]->type == REDIS_REPLY_STRING &&
                 r->element[2]->type == REDIS_REPLY_ARRAY &&
                 r->element[3]->type == REDIS_REPLY_ARRAY;
    bool read = r->type == REDIS_REPLY_ARRAY && r->elements == 3 && is(r->element[0], "read") &&
                r->element[1]->type == REDIS_REPLY_ARRAY &&
                r->element[2]->type == REDIS_REPLY_STRING;
    if (!claim && !read) {
        freeReplyObject(r);
        return fail(err, err_size, c, stream, "a reply in an unexpected shape");
    }
    out->reply = r;
    out->entries = r->element[claim ? 2 : 1];
    if (claim) {
        out->deleted = r->element[3];
        snprintf(out->next, sizeof out->next, "%s", r->element[1]->str);
    } else {
        snprintf(out->last, sizeof out->last, "%s", r->element[2]->str);
    }
    return 0;
}

void rd_fenced_free(rd_fenced *f)
{
    if (f->reply)
        freeReplyObject(f->reply);
    *f = (rd_fenced){0};
}
