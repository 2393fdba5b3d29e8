/*
 * fenced.c — reads of a partition fenced by its lease (see fenced.h).
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

int rd_fenced_read(rd_conn *c, rd_fenced_mode mode, const char *stream, const char *lease_key,
                   const char *token, const char *group, const char *consumer,
                   const char *cursor, size_t count, rd_fenced *out, char *err,
                   size_t err_size)
{
    *out = (rd_fenced){0};
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
