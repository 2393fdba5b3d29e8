/*
 * env.h — where a run happens: the transport (memory broker name, the
 * mock cluster this process hosts, the real broker's or redis-server's
 * address), the names of the run's topics, groups and (Redis, one member
 * at a time) consumer, and the settings every bus of the run is opened
 * with (the scenario's tiny limits on top of test-sized Kafka group
 * timeouts or Redis claim, lease and command timeouts).
 */
#ifndef FAULT_ENV_H
#define FAULT_ENV_H

#include <stdbool.h>
#include <stddef.h>

#include "eventbus/eventbus.h"
#include "scenario.h"

typedef struct kafka_mock kafka_mock;

typedef struct fault_env {
    fault_transport transport;
    bool verbose;
    char bootstrap[512];     /* kafka, kafka-mock */
    char redis_url[512];     /* redis, redis-keyed */
    char consumer[128];      /* redis, one member at a time: every member's
                              * consumer name; "" otherwise (unique names) */
    char memory_name[64];    /* memory */
    kafka_mock *mock;        /* kafka-mock: the cluster this process hosts */
    char group[96];          /* the group under test */
    char dlq_group[112];     /* the dead-letter collector's group */
    char topics[FAULT_MAX_TOPICS][96];
    char dlq_topics[FAULT_MAX_TOPICS][112];
} fault_env;

/**
 * Names the run's topics and groups after `run_id` and readies the
 * transport: nothing for memory, a mock cluster with the topics for
 * kafka-mock, the address of EB_KAFKA_BOOTSTRAP for kafka, the URL of
 * EB_REDIS_URL for redis and redis-keyed.
 * @returns 0; 1 when the transport is not available here (no broker
 * address: the run is skipped); -1 on an error. Both with a sentence in
 * `why`.
 */
int env_open(fault_env *e, const scenario *s, const char *run_id, char *why, size_t why_size);
void env_close(fault_env *e);

/** The index of `topic` among the run's topics; -1 if it is none of them. */
int env_topic_index(const fault_env *e, const scenario *s, const char *topic);

/**
 * A config for one bus of the run: the transport, the scenario's limits,
 * `workers` dispatch workers, and `cb` for events. NULL (having printed
 * why) if a setting is refused.
 */
eb_config *env_bus_config(const fault_env *e, const scenario *s, int workers, int workers_max,
                          int workers_idle_ms, eb_event_cb cb,
                          void *opaque);

/** A member of the scenario (not the verifying one): its consumer name
 *  when the run has one for all (e->consumer). @returns false (having
 *  printed why) if refused. */
bool env_member_settings(const fault_env *e, eb_config *cfg);

/** Redis: the server drops every client's connection (redis-cli CLIENT
 *  KILL TYPE normal). @returns false, with a sentence, when that failed. */
bool env_cut_connections(const fault_env *e, char *why, size_t why_size);

/* The mock cluster (kafka_env.c; kafka_env_none.c where librdkafka is not
 * linked, as in the TSan build). */
int kafka_mock_start(fault_env *e, const scenario *s, char *why, size_t why_size);
void kafka_mock_stop(fault_env *e);
/** Whether this build can run the kafka modes (redis needs only its
 *  plugin). */
bool kafka_modes_built(void);

#endif
