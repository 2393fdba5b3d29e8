/*
 * kafka.h — the Kafka transport's parts, shared by its files:
 *   kafka_transport.c  the descriptor, config keys and the slots
 *   config.c           kafka.* settings -> rd_kafka_conf_t, with our defaults
 *   producer.c         one idempotent producer per bus and its poll thread
 *                      (delivery reports -> eventbus delivery callbacks)
 *   admin.c            topic existence checks and creation, metadata waits
 *   member.c           one consumer per (bus, group): its poll thread,
 *                      rebalances, lanes, contiguous offset stores
 *   health.c           whether the cluster answers: the producer's probe,
 *                      eb_bus_health(), CONNECTED/DISCONNECTED events
 *
 * librdkafka 2.0.2 traps (DESIGN.md): eager assignor only; no batch
 * consume; pause/resume/assign only on the poll thread; offsets stored are
 * the next offset, never computed; the plugin stays resident.
 */
#ifndef EB_KAFKA_H
#define EB_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "eventbus/transport.h"

/* The least time the commit on revoke waits for the broker's answer, even
 * when the handlers used up the revoke timeout (a round trip is needed). */
enum { KF_COMMIT_MIN_MS = 1000 };

typedef struct kf_producer kf_producer;
typedef struct kf_known_topic kf_known_topic;
typedef struct kf_topic_cache kf_topic_cache;
typedef struct kf_member kf_member;
typedef struct kf_sub kf_sub;
typedef struct kf_probe kf_probe;

/** What the cluster's answers say about a bus (health.c). Written by the
 *  producer's poll thread unless noted; read by any thread. */
typedef struct kf_health {
    _Atomic int64_t waiting_since_ns; /* a probe has waited unanswered since; 0: none */
    _Atomic int64_t last_answer_ns;   /* the cluster's latest answer; 0: none yet */
    atomic_bool brokers_down;         /* librdkafka said so (any thread); until an answer */
    char reason[256];                 /* librdkafka's latest connection error; under mu */
} kf_health;

/** A bus's view of the transport. */
typedef struct kf_bus {
    const eb_host *host;
    eb_host_bus *hb;
    kf_producer *producer;
    pthread_mutex_t mu;       /* members */
    kf_member *members;       /* one per group (anonymous ones each alone) */
    int topic_partitions;     /* kafka.topic.partitions: 0 = never create */
    int topic_replication;    /* kafka.topic.replication */
    int64_t revoke_timeout_ms; /* handlers' time, then the commit's (member.c) */
    int refs;                 /* the bus and each member; under mu */
    _Atomic(kf_known_topic *) known_topics; /* prepended under mu, read without */
    kf_health health;
} kf_bus;

/** Members keep the bus's state alive (each takes a reference, under mu,
 *  when created): their librdkafka handles log through it until destroyed,
 *  which may be after the transport closed. */
void kf_bus_unref(kf_bus *kb);

/* ---------------------------------------------------------------- config */

/** Keys of ours under kafka.* that are not librdkafka properties. */
bool kf_config_is_own_key(const char *key);

/** Checks one kafka.* key at open: ours by range, the rest by asking
 *  librdkafka (rd_kafka_conf_set on a scratch conf). 0 or EB_ERR_CONFIG. */
int kf_config_check(const eb_host *host, const char *key, const char *value,
                    char *errstr, size_t errstr_size);

/** The core's message.max.bytes plus EB_DLQ_HEADROOM must fit the
 *  producer's kafka.message.max.bytes, so that every message the bus
 *  accepts can also be dead-lettered whole. 0 or EB_ERR_CONFIG. */
int kf_config_check_limits(kf_bus *kb, char *errstr, size_t errstr_size);

/**
 * A librdkafka conf from every kafka.* key of the bus (ours excluded), on
 * top of eventbus's defaults for `role` ("producer": idempotence on,
 * acks=all; "consumer": no auto offset store, eager assignor). Logs go to
 * host->log. @returns 0 or EB_ERR_CONFIG with librdkafka's reason.
 */
int kf_config_build(kf_bus *kb, const char *role, rd_kafka_conf_t **out,
                    char *errstr, size_t errstr_size);

/* -------------------------------------------------------------- producer */

int kf_producer_start(kf_bus *kb, kf_producer **out, char *errstr, size_t errstr_size);
/** The librdkafka handle (for admin requests and metadata). */
rd_kafka_t *kf_producer_handle(kf_producer *p);
/** eb_transport.publish: timeout_ms 0 never waits on a full queue. */
int kf_producer_publish(kf_producer *p, const eb_outgoing *m, int64_t timeout_ms,
                        void *token);
int kf_producer_flush(kf_producer *p, int64_t deadline_ns);
/** eb_transport.begin_close: publishers waiting for room in librdkafka's
 *  queue return EB_ERR_CLOSED at once, and so do later ones that would
 *  wait. Never blocks. */
void kf_producer_begin_close(kf_producer *p);
/** Refuses publishes (EB_ERR_CLOSED), purges what is undelivered
 *  (callbacks with EB_ERR_PURGED or EB_ERR_UNCERTAIN), joins the poll
 *  thread, destroys the handle. */
void kf_producer_stop(kf_producer *p);
/** JSON fragment like snprintf: {"outq":N,...}. */
int kf_producer_stats(kf_producer *p, char *buf, size_t size);

/* ---------------------------------------------------------------- health */

/** librdkafka reported an error (any thread): "all brokers down" makes the
 *  bus DOWN until the cluster answers again; connection errors are kept as
 *  the reason the health detail gives. */
void kf_health_error(kf_bus *kb, rd_kafka_resp_err_t err, const char *reason);
/** eb_transport.health: OK, DEGRADED or DOWN by how long the cluster has
 *  left a request unanswered (health.c). Any thread. */
int kf_health_report(kf_bus *kb, eb_health *out);

/** The producer's probe of the cluster, on `rk`. NULL: out of memory. */
kf_probe *kf_probe_new(kf_bus *kb, rd_kafka_t *rk);
/** Producer's poll thread, after each rd_kafka_poll(): reads the probe's
 *  result, sends the next probe when due, raises CONNECTED/DISCONNECTED.
 *  Never blocks. */
void kf_probe_tick(kf_probe *pr);
/** Producer's poll thread: a delivery report says a message was stored,
 *  so the cluster answers. */
void kf_probe_saw_answer(kf_probe *pr);
/** Before rd_kafka_destroy(); NULL is allowed. */
void kf_probe_free(kf_probe *pr);

/* ---------------------------------------------------------- topic cache */

kf_topic_cache *kf_topic_cache_new(rd_kafka_t *rk);
/** The topic's handle, or NULL (cache full, or out of memory): publish by
 *  name then. Any thread. */
rd_kafka_topic_t *kf_topic_cache_get(kf_topic_cache *c, const char *name);
/** Destroys the handles; before rd_kafka_destroy(). */
void kf_topic_cache_free(kf_topic_cache *c);

/* ----------------------------------------------------------------- admin */

/**
 * Makes sure `topic` exists: present in metadata, or created (when
 * kafka.topic.partitions is set) through the admin API and waited for in
 * metadata. Otherwise EB_ERR_NOT_FOUND with a sentence saying how to
 * create it or set kafka.topic.partitions. Blocks up to timeout_ms.
 */
int kf_topic_ensure(kf_bus *kb, rd_kafka_t *rk, const char *topic, int timeout_ms,
                    char *errstr, size_t errstr_size);

/** kf_topic_ensure, remembered: a topic found or created once is not
 *  asked about again by this bus (known_topics.c). */
int kf_topic_ensure_once(kf_bus *kb, rd_kafka_t *rk, const char *topic, int timeout_ms,
                         char *errstr, size_t errstr_size);
void kf_known_topics_free(kf_bus *kb);

/** Writes "partition@offset" into out (at least 32 bytes). */
void kf_format_id(char *out, int32_t partition, int64_t offset);

/** Maps librdkafka errors to EB_ERR_* (delivery reports, produce calls). */
int kf_error_of(rd_kafka_resp_err_t err);

/* ---------------------------------------------------------------- member */

int kf_sub_start(kf_bus *kb, eb_host_sub *hs, const eb_sub_params *p, kf_sub **out,
                 char *errstr, size_t errstr_size);
/** Leaves: the sub's lanes are revoked and committed by `deadline_ns` (0:
 *  the revoke timeout); the last sub of a member closes the consumer by
 *  then (0: the revoke timeout plus a margin), leaving what it could not
 *  commit to the next owner. @returns 0, or EB_ERR_TIMEOUT when the
 *  deadline cut the final commit or the close short. */
int kf_sub_stop(kf_sub *s, int64_t deadline_ns);
void kf_sub_free(kf_sub *s);
void kf_sub_ack(kf_sub *s, eb_msg *const *msgs, size_t n);
void kf_sub_release(kf_sub *s, eb_msg *const *msgs, size_t n);
void kf_sub_resume(kf_sub *s);
/** Per-partition lag of every member, as a JSON array like snprintf. */
int kf_members_stats(kf_bus *kb, char *buf, size_t size);

#endif
