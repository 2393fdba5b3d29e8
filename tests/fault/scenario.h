/*
 * scenario.h — what one seed means: the limits of the buses, the topics,
 * keys and message counts, the members of the group with when and how each
 * joins and leaves, and the handler's decision for every (message,
 * attempt). Everything here is a pure function of the seed and the
 * transport; thread timing is the only thing a replay does not repeat.
 */
#ifndef FAULT_SCENARIO_H
#define FAULT_SCENARIO_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "eventbus/eventbus.h"

typedef enum fault_transport {
    FAULT_MEMORY,
    FAULT_KAFKA_MOCK,
    FAULT_KAFKA,
    FAULT_REDIS,       /* a real redis-server, group mode `shared` */
    FAULT_REDIS_KEYED  /* the same server, group mode `keyed` */
} fault_transport;

static inline bool fault_transport_is_kafka(fault_transport t)
{
    return t == FAULT_KAFKA_MOCK || t == FAULT_KAFKA;
}

static inline bool fault_transport_is_redis(fault_transport t)
{
    return t == FAULT_REDIS || t == FAULT_REDIS_KEYED;
}

/* The Redis settings of every bus of a redis run (env.c sets them; the
 * stall limit and check 5 count on them): the least claim idle time the
 * transport takes, so that a member's entries are claimed 3 s after it
 * died, and test-sized timeouts (BLOCK well below the command timeout).
 * The transport looks for entries to claim once a second
 * (plugins/redis/member.c, CLAIM_EVERY_MS). Keyed mode: a lease's holder
 * renews it, and the others look for free partitions, every second
 * (plugins/redis/keyed.c, LEASER_TURN_MS); the lease time is
 * scenario_redis_lease_ms(). */
enum {
    REDIS_CLAIM_IDLE_MS = 3000,
    REDIS_CLAIM_EVERY_MS = 1000,
    REDIS_LEASE_TURN_MS = 1000,
    REDIS_COMMAND_TIMEOUT_MS = 1000,
    REDIS_CONNECT_TIMEOUT_MS = 500,
    REDIS_BLOCK_MS = 200
};

enum { FAULT_MAX_TOPICS = 3, FAULT_MAX_MEMBERS = 8, FAULT_MAX_KEYS = 48, FAULT_MAX_CUTS = 3 };

/** How a member leaves the group. */
typedef enum leave_kind {
    LEAVE_CLOSE,       /* eb_bus_close with the member's deadline */
    LEAVE_UNSUBSCRIBE, /* eb_unsubscribe of each topic, then close */
    LEAVE_KILL         /* SIGKILL of the child process running it */
} leave_kind;

typedef struct member_plan {
    int64_t join_ms;       /* after the churn phase starts */
    int64_t leave_ms;      /* < 0: stays until the tail closes everyone */
    leave_kind leave;
    int close_deadline_ms; /* also used when the tail closes it */
    int workers;           /* dispatch.workers (0: elastic) */
    int workers_max;       /* dispatch.workers.max, when elastic */
    int workers_idle_ms;   /* dispatch.workers.idle.ms, when elastic */
    bool in_child;         /* a child process (real Kafka and Redis) */
} member_plan;

/** The simulated work of one handler call, before it returns. */
typedef enum work_kind {
    WORK_NONE,
    WORK_SLOW,        /* a few ms */
    WORK_BLOCKED,     /* tens to hundreds of ms */
    WORK_PAST_REVOKE, /* longer than dispatch.revoke.timeout.ms */
    WORK_LONG         /* longer than the progress check's stall limit */
} work_kind;

typedef struct handler_plan {
    eb_result result;
    work_kind work;
    int work_ms;
} handler_plan;

typedef struct scenario {
    uint64_t seed;
    fault_transport transport;
    /* limits */
    int partitions;          /* memory, Kafka, Redis keyed (partition streams);
                              * Redis shared: 1 (a stream per topic) */
    int queue_max;
    int lane_max_inflight;
    int revoke_timeout_ms;
    int retry_max_attempts;
    int retry_backoff_ms, retry_backoff_max_ms;
    long retention_messages; /* memory only; 0: the default */
    /* traffic */
    int n_topics;
    int n_keys;
    int null_key_percent;
    int n_churn_messages;    /* published during the churn phase */
    int n_tail_messages;     /* published just before the tail closes */
    int burst_max;           /* messages published back to back */
    int pause_max_ms;        /* between bursts */
    /* handler decisions, percent per (message, attempt) */
    int retry_percent, reject_percent;
    int slow_percent, blocked_percent, past_revoke_percent;
    int long_block_message;  /* its first attempt blocks WORK_LONG; -1: none */
    int long_block_ms;
    /* members */
    int churn_ms;
    int tail_wait_ms;        /* from the tail burst to the closes */
    int n_members;
    member_plan members[FAULT_MAX_MEMBERS];
    /* Redis shared: the members join one after another, each once the one
     * before it has left or was killed, all under one consumer name (a
     * process that restarts): the case where KEY_ORDER_SINGLE_MEMBER
     * promises per-key order (checks.c). */
    bool one_member_at_a_time;
    /* Redis: when (ms after the churn phase starts, rising) the server drops
     * every client's connection (CLIENT KILL TYPE normal): replies in
     * flight are lost (a read the server answered, an XACK, an XADD), and
     * every connection of every bus is rebuilt. Half the seeds have 1-3. */
    int n_cuts;
    int cut_ms[FAULT_MAX_CUTS];
} scenario;

/** Draws the scenario of `seed` for `transport`. */
void scenario_generate(uint64_t seed, fault_transport transport, scenario *out);

/** One paragraph describing it (printed with --verbose and on failure). */
void scenario_print(const scenario *s, FILE *out);

/** The handler's decision for `message` at `attempt` (eb_msg_attempt). */
handler_plan scenario_handler_plan(const scenario *s, long message, uint32_t attempt);

/** The stall limit of the progress check (ms) for this transport. */
int scenario_stall_limit_ms(const scenario *s);

/** Redis keyed: redis.lease.ms, the least the transport takes (3 x
 *  (revoke timeout + command timeout)), so that a killed member's
 *  partitions are free again within 3.3-6 s. */
int scenario_redis_lease_ms(const scenario *s);

const char *fault_transport_name(fault_transport t);
/** Parses "memory", "kafka-mock", "kafka", "redis" or "redis-keyed".
 *  @returns false otherwise. */
bool fault_transport_parse(const char *name, fault_transport *out);

#endif
