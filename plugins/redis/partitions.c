/*
 * partitions.c — partition streams, the key hash and the topic's meta
 * record (see partitions.h).
 */
#include "partitions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eventbus/eventbus.h"

int rd_partition_stream(char *out, size_t size, const char *topic, unsigned partitions,
                        unsigned p)
{
    int n = partitions <= 1 ? snprintf(out, size, "%s", topic)
                            : snprintf(out, size, "%s:%u", topic, p);
    return n >= 0 && (size_t)n < size ? 0 : -1;
}

unsigned rd_partition_of_key(const void *key, size_t len, unsigned partitions)
{
    uint32_t h = 2166136261u;
    const unsigned char *b = key;
    for (size_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 16777619u;
    return partitions ? h % partitions : 0;
}

int rd_meta_key(char *out, size_t size, const char *topic)
{
    int n = snprintf(out, size, "eventbus:%s:meta", topic);
    return n >= 0 && (size_t)n < size ? 0 : -1;
}

/* KEYS[1] the meta hash; ARGV[1] our protocol, ARGV[2] our partitions.
 * Writes ours where nothing is recorded; returns what is recorded. */
static const char META[] =
    "redis.call('HSETNX', KEYS[1], 'protocol', ARGV[1])\n"
    "redis.call('HSETNX', KEYS[1], 'partitions', ARGV[2])\n"
    "return redis.call('HMGET', KEYS[1], 'protocol', 'partitions')\n";

int rd_meta_check(rd_conn *c, const char *topic, unsigned partitions, char *err,
                  size_t err_size)
{
    char key[RD_NAME_MAX], protocol[16], count[16];
    if (rd_meta_key(key, sizeof key, topic) != 0) {
        snprintf(err, err_size, "topic '%.64s...': the name is too long", topic);
        return EB_ERR_CONFIG;
    }
    snprintf(protocol, sizeof protocol, "%d", RD_PROTOCOL_VERSION);
    snprintf(count, sizeof count, "%u", partitions);
    const char *argv[] = {"EVAL", META, "1", key, protocol, count};
    redisReply *r = rd_conn_command(c, 6, argv, NULL, err, err_size);
    if (!r)
        return -1;
    int rc = 0;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
        snprintf(err, err_size, "redis %s: reading %s: %s", c->url->display, key,
                 r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
        rc = -1;
    } else if (atoi(r->element[0]->str) != RD_PROTOCOL_VERSION) {
        snprintf(err, err_size,
                 "topic '%s' is used with eventbus's Redis protocol version %s (%s), and this "
                 "eventbus speaks version %d: members and publishers of one topic must speak "
                 "one version",
                 topic, r->element[0]->str, key, RD_PROTOCOL_VERSION);
        rc = EB_ERR_CONFIG;
    } else if ((unsigned)atoi(r->element[1]->str) != partitions) {
        snprintf(err, err_size,
                 "topic '%s' has %s partition stream(s) (recorded in %s) but "
                 "redis.partitions is %u here: messages would go to streams its members do "
                 "not read; set redis.partitions = %s",
                 topic, r->element[1]->str, key, partitions, r->element[1]->str);
        rc = EB_ERR_CONFIG;
    }
    freeReplyObject(r);
    return rc;
}
