/*
 * members.c — announcements of the members of a group and the assignment
 * they give (see members.h).
 */
#include "members.h"

#include <stdio.h>
#include <string.h>

/* KEYS[1] the members hash; ARGV[1] me, ARGV[2] the time to live in ms.
 * The server's clock decides who is live, so members' clocks need not
 * agree. Lua's table.sort of strings is bytewise (strcmp). */
static const char ANNOUNCE[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local ttl = tonumber(ARGV[2])\n"
    "redis.call('HSET', KEYS[1], ARGV[1], now + ttl)\n"
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "local live = {}\n"
    "for i = 1, #all, 2 do\n"
    "  if tonumber(all[i + 1]) > now then\n"
    "    live[#live + 1] = all[i]\n"
    "  else\n"
    "    redis.call('HDEL', KEYS[1], all[i])\n"
    "  end\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[1], 2 * ttl)\n"
    "table.sort(live)\n"
    "return live\n";

int rd_members_key(char *out, size_t size, const char *topic, const char *group)
{
    int n = snprintf(out, size, "eventbus:%s:%s:members", topic, group);
    return n >= 0 && (size_t)n < size ? 0 : -1;
}

int rd_members_announce(rd_conn *c, const char *key, const char *me, int64_t ttl_ms,
                        redisReply **live, char *err, size_t err_size)
{
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%lld", (long long)ttl_ms);
    const char *argv[] = {"EVAL", ANNOUNCE, "1", key, me, ttl};
    redisReply *r = rd_conn_command(c, 6, argv, NULL, err, err_size);
    if (!r)
        return -1;
    if (r->type != REDIS_REPLY_ARRAY) {
        snprintf(err, err_size, "redis %s: announcing %s: %s", c->url->display, key,
                 r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
        freeReplyObject(r);
        return -1;
    }
    *live = r;
    return 0;
}

int rd_members_leave(rd_conn *c, const char *key, const char *me, char *err, size_t err_size)
{
    const char *argv[] = {"HDEL", key, me};
    redisReply *r = rd_conn_command(c, 3, argv, NULL, err, err_size);
    if (!r)
        return -1;
    int rc = r->type == REDIS_REPLY_INTEGER ? 0 : -1;
    if (rc != 0)
        snprintf(err, err_size, "redis %s: leaving %s: %s", c->url->display, key,
                 r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
    freeReplyObject(r);
    return rc;
}

int rd_assign(const redisReply *live, const char *me, unsigned partitions,
              unsigned char *wanted)
{
    memset(wanted, 0, partitions);
    int index = -1;
    for (size_t i = 0; i < live->elements; i++)
        if (live->element[i]->str && strcmp(live->element[i]->str, me) == 0)
            index = (int)i;
    if (index < 0)
        return -1;
    for (unsigned p = 0; p < partitions; p++)
        wanted[p] = p % live->elements == (size_t)index;
    return index;
}
