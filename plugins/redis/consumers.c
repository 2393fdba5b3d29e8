/*
 * consumers.c — leaving a group and pruning dead consumers (see
 * consumers.h), each one EVAL sent whole (nothing to reload after a
 * restart or SCRIPT FLUSH).
 */
#include "consumers.h"

#include <stdio.h>

/* KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] the idle time
 * to give. XCLAIM turns an idle time above the server's clock into 0, so
 * the value stays far below it (1000 days). */
static const char LEAVE[] =
    "local handed = 0\n"
    "local start = '-'\n"
    "while true do\n"
    "  local p = redis.call('XPENDING', KEYS[1], ARGV[1], start, '+', 500, ARGV[2])\n"
    "  if #p == 0 then break end\n"
    "  local args = {}\n"
    "  for i = 1, #p do args[i] = p[i][1] end\n"
    "  args[#args + 1] = 'IDLE'\n"
    "  args[#args + 1] = ARGV[3]\n"
    "  args[#args + 1] = 'JUSTID'\n"
    "  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(args))\n"
    "  handed = handed + #p\n"
    "  if #p < 500 then break end\n"
    "  start = '(' .. p[#p][1]\n"
    "end\n"
    "if handed == 0 then\n"
    "  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])\n"
    "end\n"
    "return handed\n";

/* KEYS[1] stream; ARGV[1] group, ARGV[2] the caller's consumer, ARGV[3]
 * the idle time past which a consumer with nothing pending is dead. */
static const char PRUNE[] =
    "local n = 0\n"
    "local limit = tonumber(ARGV[3])\n"
    "for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do\n"
    "  local f = {}\n"
    "  for j = 1, #c, 2 do f[c[j]] = c[j + 1] end\n"
    "  if f['name'] ~= ARGV[2] and f['pending'] == 0 and f['idle'] > limit then\n"
    "    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

static long long run(rd_conn *c, const char *script, const char *what, const char *stream,
                     const char *group, const char *consumer, const char *arg, char *err,
                     size_t err_size)
{
    const char *argv[] = {"EVAL", script, "1", stream, group, consumer, arg};
    redisReply *r = rd_conn_command(c, 7, argv, NULL, err, err_size);
    if (!r)
        return -1;
    long long n = -1;
    if (r->type == REDIS_REPLY_INTEGER)
        n = r->integer;
    else
        snprintf(err, err_size, "redis %s: %s %s %s: %s", c->url->display, what, stream, group,
                 r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
    freeReplyObject(r);
    return n;
}

long long rd_consumer_leave(rd_conn *c, const char *stream, const char *group,
                            const char *consumer, char *err, size_t err_size)
{
    return run(c, LEAVE, "leaving group", stream, group, consumer, "86400000000", err,
               err_size);
}

long long rd_consumers_prune(rd_conn *c, const char *stream, const char *group,
                             const char *self, int64_t idle_ms, char *err, size_t err_size)
{
    char idle[24];
    snprintf(idle, sizeof idle, "%lld", (long long)idle_ms);
    return run(c, PRUNE, "pruning consumers of", stream, group, self, idle, err, err_size);
}
