/*
 * claim.c — XAUTOCLAIM with delivery counts (see claim.h).
 */
#include "claim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t err_size, const rd_conn *c, const char *stream,
                const char *why)
{
    snprintf(err, err_size, "redis %s: claiming idle entries of %s: %s", c->url->display,
             stream, why);
    return -1;
}

int rd_pending_deliveries(rd_conn *c, const char *stream, const char *group,
                          const redisReply *entries, uint32_t *out, char *err, size_t err_size)
{
    size_t n = entries->elements;
    for (size_t i = 0; i < n; i++) {
        out[i] = 0;
        const char *id = entries->element[i]->element[0]->str;
        const char *argv[] = {"XPENDING", stream, group, id, id, "1"};
        if (redisAppendCommandArgv(c->ctx, 6, argv, NULL) != REDIS_OK) {
            rd_conn_close(c); /* a half-written pipeline: the context is unusable */
            return fail(err, err_size, c, stream, "XPENDING: out of memory");
        }
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        void *reply;
        if (redisGetReply(c->ctx, &reply) != REDIS_OK) {
            rc = fail(err, err_size, c, stream,
                      c->ctx->errstr[0] ? c->ctx->errstr : "XPENDING: no answer in time");
            rd_conn_close(c);
            return rc;
        }
        redisReply *r = reply;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
            r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements >= 4)
            out[i] = (uint32_t)r->element[0]->element[3]->integer;
        else if (r->type == REDIS_REPLY_ERROR && rc == 0)
            rc = fail(err, err_size, c, stream, r->str);
        freeReplyObject(r);
    }
    return rc;
}

int rd_claim_idle(rd_conn *c, const char *stream, const char *group, const char *consumer,
                  int64_t min_idle_ms, const char *cursor, size_t count, rd_claimed *out,
                  char *err, size_t err_size)
{
    *out = (rd_claimed){0};
    char idle[24], count_s[24];
    snprintf(idle, sizeof idle, "%lld", (long long)min_idle_ms);
    snprintf(count_s, sizeof count_s, "%zu", count);
    const char *argv[] = {"XAUTOCLAIM", stream, group, consumer, idle, cursor, "COUNT", count_s};
    redisReply *r = rd_conn_command(c, 8, argv, NULL, err, err_size);
    if (!r)
        return -1;
    /* Redis 7: [next cursor, [[id, fields]...], [deleted ids]]. */
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY ||
        r->element[2]->type != REDIS_REPLY_ARRAY) {
        int rc = fail(err, err_size, c, stream,
                      r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
        freeReplyObject(r);
        return rc;
    }
    out->reply = r;
    out->entries = r->element[1];
    out->deleted = r->element[2];
    snprintf(out->next, sizeof out->next, "%s", r->element[0]->str);
    if (out->entries->elements &&
        (!(out->deliveries = calloc(out->entries->elements, sizeof *out->deliveries)) ||
         rd_pending_deliveries(c, stream, group, out->entries, out->deliveries, err,
                               err_size) != 0)) {
        if (!out->deliveries)
            fail(err, err_size, c, stream, "out of memory");
        rd_claimed_free(out);
        return -1;
    }
    return 0;
}

void rd_claimed_free(rd_claimed *cl)
{
    if (cl->reply)
        freeReplyObject(cl->reply);
    free(cl->deliveries);
    *cl = (rd_claimed){0};
}
