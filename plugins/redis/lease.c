/*
 * lease.c — taking, renewing and releasing partition leases (see lease.h).
 */
#include "lease.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eventbus/eventbus.h"

/* KEYS the leases; ARGV[1] take|renew|release, ARGV[2] the token,
 * ARGV[3] the lease time in ms. Returns 1 or 0 per key. */
static const char LEASES[] =
    "local op, token, ms = ARGV[1], ARGV[2], ARGV[3]\n"
    "local out = {}\n"
    "for i, k in ipairs(KEYS) do\n"
    "  local v = redis.call('GET', k)\n"
    "  if op == 'take' and v == false then\n"
    "    redis.call('SET', k, token, 'PX', ms)\n"
    "    out[i] = 1\n"
    "  elseif v == token and op ~= 'release' then\n"
    "    redis.call('PEXPIRE', k, ms)\n"
    "    out[i] = 1\n"
    "  elseif v == token then\n"
    "    redis.call('DEL', k)\n"
    "    out[i] = 1\n"
    "  else\n"
    "    out[i] = 0\n"
    "  end\n"
    "end\n"
    "return out\n";

int rd_lease_key(char *out, size_t size, const char *topic, const char *group, unsigned p)
{
    int n = snprintf(out, size, "eventbus:%s:%s:lease:%u", topic, group, p);
    return n >= 0 && (size_t)n < size ? 0 : -1;
}

int rd_lease_apply(rd_conn *c, rd_lease_op op, const char *const *keys, size_t n,
                   const char *token, int64_t lease_ms, unsigned char *ours, char *err,
                   size_t err_size)
{
    if (n == 0)
        return 0;
    const char **argv = malloc((n + 6) * sizeof *argv);
    if (!argv) {
        snprintf(err, err_size, "redis: leases: out of memory");
        return -1;
    }
    static const char *const ops[] = {"take", "renew", "release"};
    char count[24], ms[24];
    snprintf(count, sizeof count, "%zu", n);
    snprintf(ms, sizeof ms, "%lld", (long long)lease_ms);
    argv[0] = "EVAL";
    argv[1] = LEASES;
    argv[2] = count;
    for (size_t i = 0; i < n; i++)
        argv[3 + i] = keys[i];
    argv[3 + n] = ops[op];
    argv[4 + n] = token;
    argv[5 + n] = ms;
    redisReply *r = rd_conn_command(c, (int)(n + 6), argv, NULL, err, err_size);
    free(argv);
    if (!r)
        return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == n) {
        for (size_t i = 0; i < n; i++)
            ours[i] = r->element[i]->type == REDIS_REPLY_INTEGER && r->element[i]->integer == 1;
    } else {
        snprintf(err, err_size, "redis %s: %s leases: %s", c->url->display, ops[op],
                 r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
        rc = -1;
    }
    freeReplyObject(r);
    return rc;
}

int rd_lease_check_eviction(rd_conn *c, char *err, size_t err_size)
{
    const char *argv[] = {"CONFIG", "GET", "maxmemory-policy"};
    redisReply *r = rd_conn_command(c, 3, argv, NULL, err, err_size);
    if (!r)
        return 1;
    int rc = 1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING) {
        rc = strcmp(r->element[1]->str, "noeviction") == 0 ? 0 : EB_ERR_CONFIG;
        if (rc)
            snprintf(err, err_size,
                     "redis %s: maxmemory-policy is %s: keyed mode needs noeviction (an "
                     "evicted lease would let two members read one partition)",
                     c->url->display, r->element[1]->str);
    } else {
        snprintf(err, err_size, "redis %s: cannot read maxmemory-policy (%s): keyed mode needs "
                 "noeviction", c->url->display,
                 r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
    }
    freeReplyObject(r);
    return rc;
}
