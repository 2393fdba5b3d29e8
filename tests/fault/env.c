/*
 * env.c — run names, the transport's readiness and the settings of every
 * bus (see env.h).
 */
#include "env.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

/* Test-sized Kafka group timeouts (DESIGN.md, "Facts"): a crashed member's
 * partitions move after 3 s, a rebalance on the mock cluster takes 2 s. */
static const char *const kafka_settings[][2] = {
    {"kafka.session.timeout.ms", "3000"},
    {"kafka.heartbeat.interval.ms", "300"},
    /* Commits every 100 ms: a wrong stored offset reaches the broker
     * before the member leaves, where the next member shows it. */
    {"kafka.auto.commit.interval.ms", "100"},
    {"kafka.reconnect.backoff.max.ms", "500"},
    {"kafka.topic.replication", "1"},
};

/* Redis (scenario.h has the numbers: the stall limit and check 5 count on
 * them): a member's entries are claimed 3 s after it stopped refreshing
 * them, and a command or a connect to a healthy local server never takes
 * long. Keyed mode adds its partition count and lease time (set_transport). */
static const struct {
    const char *key;
    long value;
} redis_settings[] = {
    {"redis.claim.idle.ms", REDIS_CLAIM_IDLE_MS},
    {"redis.command.timeout.ms", REDIS_COMMAND_TIMEOUT_MS},
    {"redis.connect.timeout.ms", REDIS_CONNECT_TIMEOUT_MS},
    {"redis.block.ms", REDIS_BLOCK_MS},
    {"redis.backoff.max.ms", 500},
};

int env_open(fault_env *e, const scenario *s, const char *run_id, char *why, size_t why_size)
{
    snprintf(e->group, sizeof e->group, "fault-%s-g", run_id);
    snprintf(e->dlq_group, sizeof e->dlq_group, "fault-%s-dlq", run_id);
    snprintf(e->memory_name, sizeof e->memory_name, "fault-%s", run_id);
    for (int t = 0; t < s->n_topics; t++) {
        snprintf(e->topics[t], sizeof e->topics[t], "fault-%s-t%d", run_id, t);
        snprintf(e->dlq_topics[t], sizeof e->dlq_topics[t], "%s.dlq", e->topics[t]);
    }
    switch (e->transport) {
    case FAULT_MEMORY:
        return 0;
    case FAULT_KAFKA_MOCK:
        return kafka_mock_start(e, s, why, why_size);
    case FAULT_KAFKA: {
        const char *bootstrap = getenv("EB_KAFKA_BOOTSTRAP");
        if (!bootstrap || !*bootstrap) {
            snprintf(why, why_size, "EB_KAFKA_BOOTSTRAP is not set "
                     "(eval \"$(bash tests/servers/kafka.sh start)\")");
            return 1;
        }
        snprintf(e->bootstrap, sizeof e->bootstrap, "%s", bootstrap);
        return 0;
    }
    case FAULT_REDIS:
    case FAULT_REDIS_KEYED: {
        const char *url = getenv("EB_REDIS_URL");
        if (!url || !*url) {
            snprintf(why, why_size, "EB_REDIS_URL is not set "
                     "(eval \"$(bash tests/servers/redis.sh start)\")");
            return 1;
        }
        snprintf(e->redis_url, sizeof e->redis_url, "%s", url);
        if (s->one_member_at_a_time)
            snprintf(e->consumer, sizeof e->consumer, "fault-%s-c", run_id);
        return 0;
    }
    }
    return -1;
}

void env_close(fault_env *e)
{
    if (e->transport == FAULT_KAFKA_MOCK)
        kafka_mock_stop(e);
}

int env_topic_index(const fault_env *e, const scenario *s, const char *topic)
{
    for (int t = 0; topic && t < s->n_topics; t++)
        if (strcmp(topic, e->topics[t]) == 0 || strcmp(topic, e->dlq_topics[t]) == 0)
            return t;
    return -1;
}

static bool set(eb_config *cfg, const char *key, const char *value)
{
    char err[512];
    if (eb_config_set(cfg, key, value, err, sizeof err) == 0)
        return true;
    fprintf(stderr, "fault: %s = %s: %s\n", key, value, err);
    return false;
}

static bool set_int(eb_config *cfg, const char *key, long value)
{
    char text[32];
    snprintf(text, sizeof text, "%ld", value);
    return set(cfg, key, text);
}

/** redis.url, not printed when refused: it may hold a password. */
static bool set_url(eb_config *cfg, const char *url)
{
    char err[512];
    if (eb_config_set(cfg, "redis.url", url, err, sizeof err) == 0)
        return true;
    fprintf(stderr, "fault: redis.url (EB_REDIS_URL) refused: %s\n", err);
    return false;
}

static bool set_transport(eb_config *cfg, const fault_env *e, const scenario *s)
{
    if (e->transport == FAULT_MEMORY) {
        bool ok = set(cfg, "transport", "memory") && set(cfg, "memory.name", e->memory_name) &&
                  set_int(cfg, "memory.partitions", s->partitions);
        if (ok && s->retention_messages > 0)
            ok = set_int(cfg, "memory.retention.messages", s->retention_messages);
        return ok;
    }
    if (fault_transport_is_redis(e->transport)) {
        bool keyed = e->transport == FAULT_REDIS_KEYED;
        bool ok = set(cfg, "transport", "redis") && set_url(cfg, e->redis_url) &&
                  set(cfg, "redis.group.mode", keyed ? "keyed" : "shared");
        /* Keyed: the least lease time the transport takes, so that a
         * killed member's partitions are free again within 3.3-6 s. */
        if (ok && keyed)
            ok = set_int(cfg, "redis.partitions", s->partitions) &&
                 set_int(cfg, "redis.lease.ms", scenario_redis_lease_ms(s));
        for (size_t i = 0; ok && i < sizeof redis_settings / sizeof redis_settings[0]; i++)
            ok = set_int(cfg, redis_settings[i].key, redis_settings[i].value);
        return ok;
    }
    bool ok = set(cfg, "transport", "kafka") &&
              set(cfg, "kafka.bootstrap.servers", e->bootstrap) &&
              set_int(cfg, "kafka.topic.partitions", s->partitions);
    for (size_t i = 0; ok && i < sizeof kafka_settings / sizeof kafka_settings[0]; i++)
        ok = set(cfg, kafka_settings[i][0], kafka_settings[i][1]);
    return ok;
}

eb_config *env_bus_config(const fault_env *e, const scenario *s, int workers, int workers_max,
                          int workers_idle_ms, eb_event_cb cb, void *opaque)
{
    eb_config *cfg = eb_config_new();
    bool ok = cfg && set_transport(cfg, e, s) &&
              set_int(cfg, "dispatch.workers", workers) &&
              (workers > 0 || (set_int(cfg, "dispatch.workers.max", workers_max) &&
                               set_int(cfg, "dispatch.workers.idle.ms", workers_idle_ms))) &&
              set_int(cfg, "dispatch.queue.max", s->queue_max) &&
              set_int(cfg, "dispatch.lane.max.inflight", s->lane_max_inflight) &&
              set_int(cfg, "dispatch.revoke.timeout.ms", s->revoke_timeout_ms) &&
              set_int(cfg, "retry.max.attempts", s->retry_max_attempts) &&
              set_int(cfg, "retry.backoff.ms", s->retry_backoff_ms) &&
              set_int(cfg, "retry.backoff.max.ms", s->retry_backoff_max_ms) &&
              /* A publisher waiting for retention room gives up soon. */
              set(cfg, "publish.timeout.ms", "200") &&
              set(cfg, "log.level", e->verbose ? "warn" : "error") &&
              (!cb || eb_config_set_event_cb(cfg, cb, opaque) == 0);
    if (!ok) {
        eb_config_destroy(cfg);
        return NULL;
    }
    return cfg;
}

bool env_member_settings(const fault_env *e, eb_config *cfg)
{
    return !e->consumer[0] || set(cfg, "redis.consumer", e->consumer);
}

bool env_cut_connections(const fault_env *e, char *why, size_t why_size)
{
    char *argv[] = {"redis-cli", "-u", (char *)e->redis_url, "CLIENT", "KILL", "TYPE",
                    "normal", NULL};
    posix_spawn_file_actions_t io;
    posix_spawn_file_actions_init(&io);
    posix_spawn_file_actions_addopen(&io, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, "redis-cli", &io, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&io);
    if (rc != 0) {
        snprintf(why, why_size, "cannot run redis-cli: %s", strerror(rc));
        return false;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return true;
    snprintf(why, why_size, "redis-cli CLIENT KILL failed (status %d)", status);
    return false;
}
