/*
 * settings.c — the redis.* keys: each checked alone at open (config_check),
 * then read together into rd_settings and checked for how they fit (BLOCK
 * below the command timeout, backoff bounds in order). The defaults here
 * are the README's.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "int_keys.h"
#include "partitions.h"
#include "redis.h"

static const eb_int_key int_keys[] = {
    {"redis.connect.timeout.ms", 10, 600000, 2000},
    {"redis.command.timeout.ms", 100, 600000, 5000},
    {"redis.block.ms", 1, 600000, 1000},
    {"redis.count", 1, 100000, 512},
    {"redis.backoff.min.ms", 1, 600000, 100},
    {"redis.backoff.max.ms", 1, 600000, 5000},
    {"redis.claim.idle.ms", RD_CLAIM_IDLE_MIN_MS, 86400000, 30000},
    {"redis.consumer.prune.ms", 1000, 30LL * 86400000, 3600000},
    {"redis.stream.maxlen", 0, 1LL << 62, 0},
    {"redis.publish.queue.max", 1, 100000000, 100000},
    {"redis.delivery.timeout.ms", 1, 86400000, 30000},
    {"redis.partitions", 1, RD_PARTITIONS_MAX, 1},
    {"redis.lease.ms", 0, 86400000, 0},
};

static const char *const known_keys[] = {
    "redis.url", "redis.consumer", "redis.group.mode", "redis.connect.timeout.ms",
    "redis.command.timeout.ms", "redis.block.ms", "redis.count", "redis.backoff.min.ms",
    "redis.backoff.max.ms", "redis.claim.idle.ms", "redis.consumer.prune.ms",
    "redis.stream.maxlen", "redis.publish.queue.max", "redis.delivery.timeout.ms",
    "redis.partitions", "redis.lease.ms", NULL};

#define DEFAULT_URL "redis://127.0.0.1:6379"

static const eb_int_key *find_int_key(const char *key)
{
    return eb_int_key_find(int_keys, sizeof int_keys / sizeof *int_keys, key);
}

int rd_settings_check_key(const eb_host *host, const char *key, const char *value,
                          char *errstr, size_t errstr_size)
{
    const eb_int_key *k = find_int_key(key);
    long long v;
    if (k) {
        if (eb_int_key_parse(k, value, &v, errstr, errstr_size) == 0)
            return 0;
        if (strcmp(key, "redis.claim.idle.ms") == 0)
            snprintf(errstr, errstr_size,
                     "bad claim idle time '%s' (expected %lld to %lld ms: entries held are "
                     "refreshed every third of it, so less than %d ms would let another "
                     "member claim an entry whose handler runs)",
                     value, k->min, k->max, RD_CLAIM_IDLE_MIN_MS);
        return EB_ERR_CONFIG;
    }
    if (strcmp(key, "redis.url") == 0) {
        rd_url url;
        return rd_url_parse(value, &url, errstr, errstr_size) == 0 ? 0 : EB_ERR_CONFIG;
    }
    if (strcmp(key, "redis.consumer") == 0) {
        if (value[0] && strlen(value) < sizeof ((rd_settings *)0)->consumer - 1)
            return 0;
        snprintf(errstr, errstr_size, "the consumer name must be 1 to %zu bytes",
                 sizeof ((rd_settings *)0)->consumer - 2);
        return EB_ERR_CONFIG;
    }
    if (strcmp(key, "redis.group.mode") == 0) {
        if (strcmp(value, "shared") == 0 || strcmp(value, "keyed") == 0)
            return 0;
        snprintf(errstr, errstr_size, "unknown group mode '%s' (supported: shared, keyed)",
                 value);
        return EB_ERR_CONFIG;
    }
    char near[64];
    if (host->nearest_key(key, known_keys, near, sizeof near))
        snprintf(errstr, errstr_size, "unknown key; did you mean '%s'?", near);
    else
        snprintf(errstr, errstr_size, "unknown key of the redis transport");
    return EB_ERR_CONFIG;
}

static long long int_setting(const eb_host *host, eb_host_bus *hb, const char *key)
{
    return eb_int_key_setting(find_int_key(key), host, hb);
}

/** A consumer name no other member uses: host, process, a per-process
 *  count and the time, so a restarted process never reuses one. */
static void unique_consumer(char *out, size_t size)
{
    static atomic_uint counter;
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, size, "%s-%ld-%u-%llx", host, (long)getpid(),
             atomic_fetch_add(&counter, 1) + 1,
             (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec);
}

int rd_settings_load(const eb_host *host, eb_host_bus *hb, rd_settings *s, char *errstr,
                     size_t errstr_size)
{
    *s = (rd_settings){0};
    const char *url = host->config_get(hb, "redis.url");
    if (rd_url_parse(url ? url : DEFAULT_URL, &s->url, errstr, errstr_size) != 0)
        return EB_ERR_CONFIG;
    const char *consumer = host->config_get(hb, "redis.consumer");
    if (consumer)
        snprintf(s->consumer, sizeof s->consumer, "%s", consumer);
    else
        unique_consumer(s->consumer, sizeof s->consumer);
    s->timeouts.connect_ms = (int)int_setting(host, hb, "redis.connect.timeout.ms");
    s->timeouts.command_ms = (int)int_setting(host, hb, "redis.command.timeout.ms");
    s->block_ms = (int)int_setting(host, hb, "redis.block.ms");
    s->count = (int)int_setting(host, hb, "redis.count");
    s->backoff_min_ms = (int)int_setting(host, hb, "redis.backoff.min.ms");
    s->backoff_max_ms = (int)int_setting(host, hb, "redis.backoff.max.ms");
    s->claim_idle_ms = int_setting(host, hb, "redis.claim.idle.ms");
    s->prune_idle_ms = int_setting(host, hb, "redis.consumer.prune.ms");
    snprintf(s->maxlen, sizeof s->maxlen, "%lld", int_setting(host, hb, "redis.stream.maxlen"));
    s->publish_queue_max = (size_t)int_setting(host, hb, "redis.publish.queue.max");
    s->delivery_timeout_ms = int_setting(host, hb, "redis.delivery.timeout.ms");
    if (s->block_ms + 100 > s->timeouts.command_ms) {
        snprintf(errstr, errstr_size,
                 "redis.block.ms (%d) must be at least 100 ms below redis.command.timeout.ms "
                 "(%d): a blocked read that outlives the command timeout kills its connection",
                 s->block_ms, s->timeouts.command_ms);
        return EB_ERR_CONFIG;
    }
    const char *mode = host->config_get(hb, "redis.group.mode");
    s->keyed = mode && strcmp(mode, "keyed") == 0;
    s->partitions = (unsigned)int_setting(host, hb, "redis.partitions");
    const char *revoke = host->config_get(hb, "dispatch.revoke.timeout.ms");
    s->revoke_ms = revoke ? strtoll(revoke, NULL, 10) : 10000;
    s->lease_ms = int_setting(host, hb, "redis.lease.ms");
    int64_t lease_min = 3 * (s->revoke_ms + s->timeouts.command_ms);
    if (s->lease_ms == 0)
        s->lease_ms = lease_min;
    if (!s->keyed && s->partitions > 1) {
        snprintf(errstr, errstr_size,
                 "redis.partitions = %u needs redis.group.mode = keyed (the shared mode reads "
                 "one stream per topic)",
                 s->partitions);
        return EB_ERR_CONFIG;
    }
    if (s->keyed && s->lease_ms < lease_min) {
        snprintf(errstr, errstr_size,
                 "redis.lease.ms (%lld) must be at least 3 x (dispatch.revoke.timeout.ms + "
                 "redis.command.timeout.ms) = %lld: a member gives a lease up that long before "
                 "it expires, and two renewals may fail first",
                 (long long)s->lease_ms, (long long)lease_min);
        return EB_ERR_CONFIG;
    }
    if (s->backoff_min_ms > s->backoff_max_ms) {
        snprintf(errstr, errstr_size,
                 "redis.backoff.min.ms (%d) must not exceed redis.backoff.max.ms (%d)",
                 s->backoff_min_ms, s->backoff_max_ms);
        return EB_ERR_CONFIG;
    }
    return 0;
}
