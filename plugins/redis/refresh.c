/*
 * refresh.c — the idle-time refresh of a consumer's own pending entries
 * (see refresh.h).
 */
#include "refresh.h"

#include <stdio.h>
#include <string.h>

/* KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3..] ids. Returns
 * the 1-based positions (in ARGV[3..]) of the ids that are not pending
 * under the consumer; resets the idle time of the others (JUSTID: the
 * delivery count stays). */
static const char SCRIPT[] =
    "local lost = {}\n"
    "local mine = {}\n"
    "for i = 3, #ARGV do\n"
    "  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)\n"
    "  if #p == 1 and p[1][2] == ARGV[2] then\n"
    "    mine[#mine + 1] = ARGV[i]\n"
    "  else\n"
    "    lost[#lost + 1] = i - 2\n"
    "  end\n"
    "end\n"
    "if #mine > 0 then\n"
    "  mine[#mine + 1] = 'JUSTID'\n"
    "  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(mine))\n"
    "end\n"
    "return lost\n";

/* Ids per EVAL: Lua's unpack() is bounded by its C stack (about 8,000). */
enum { IDS_PER_CALL = 1000 };

/** One EVAL for ids[0..n): appends the lost ones to lost[*n_lost..]. */
static int refresh_some(rd_conn *c, const char *stream, const char *group,
                        const char *consumer, const char *const *ids, size_t n,
                        const char **lost, size_t *n_lost, char *err, size_t err_size)
{
    const char *argv[6 + IDS_PER_CALL];
    argv[0] = "EVAL";
    argv[1] = SCRIPT;
    argv[2] = "1";
    argv[3] = stream;
    argv[4] = group;
    argv[5] = consumer;
    memcpy(argv + 6, ids, n * sizeof *ids);
    redisReply *r = rd_conn_command(c, (int)(6 + n), argv, NULL, err, err_size);
    if (!r)
        return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; i++) {
            long long at = r->element[i]->integer;
            if (r->element[i]->type == REDIS_REPLY_INTEGER && at >= 1 && (size_t)at <= n)
                lost[(*n_lost)++] = ids[at - 1];
        }
    } else {
        snprintf(err, err_size, "redis %s: refreshing pending entries of %s: %s",
                 c->url->display, stream,
                 r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
        rc = -1;
    }
    freeReplyObject(r);
    return rc;
}

int rd_refresh(rd_conn *c, const char *stream, const char *group, const char *consumer,
               const char *const *ids, size_t n, const char **lost, size_t *n_lost,
               char *err, size_t err_size)
{
    *n_lost = 0;
    for (size_t at = 0; at < n; at += IDS_PER_CALL) {
        size_t k = n - at < IDS_PER_CALL ? n - at : IDS_PER_CALL;
        if (refresh_some(c, stream, group, consumer, ids + at, k, lost, n_lost, err,
                         err_size) != 0)
            return -1;
    }
    return 0;
}
