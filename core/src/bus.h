/*
 * bus.h — the internal structures of a bus and a subscription, shared by the
 * files that implement them (bus.c, subscription.c, publish.c, dispatch.c,
 * outcome.c, dead_letter.c, host.c, stats.c).
 */
#ifndef EB_BUS_H
#define EB_BUS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "eventbus/eventbus.h"
#include "eventbus/transport.h"

typedef struct eb_dispatch eb_dispatch;
typedef struct eb_timers eb_timers;
typedef struct eb_plugin eb_plugin;

enum eb_bus_state { EB_BUS_OPEN = 0, EB_BUS_CLOSING, EB_BUS_CLOSED };

/** Core settings read once at open. */
typedef struct eb_settings {
    int64_t publish_timeout_ms;
    int64_t close_timeout_ms;
    int64_t revoke_timeout_ms;
    int64_t message_max_bytes;
    int64_t retry_max_attempts;
    int64_t retry_backoff_ms;
    int64_t retry_backoff_max_ms;
    int64_t lane_max_inflight;
    int64_t queue_max;
    int64_t queue_low_watermark;
    int64_t workers;
    int64_t workers_max;
    int64_t workers_idle_ms;
    int log_level;
} eb_settings;

/** Counters reported by eb_bus_stats(). */
typedef struct eb_counters {
    atomic_uint_fast64_t published;
    atomic_uint_fast64_t publish_failed;
    atomic_uint_fast64_t delivered;
    atomic_uint_fast64_t acked;
    atomic_uint_fast64_t retried;
    atomic_uint_fast64_t dead_lettered;
    atomic_uint_fast64_t dlq_failed;
    atomic_uint_fast64_t dlq_stubs;      /* dead letters published as stubs */
    atomic_uint_fast64_t released;
    atomic_uint_fast64_t paused;
} eb_counters;

/* Delivery tokens: (cb, opaque) pairs a publish asks an outcome for. The
 * first EB_INTERNED_TOKENS distinct pairs of a bus are kept in this table
 * for its life, so the common publisher (one callback, one context) neither
 * allocates per publish nor frees on the transport's thread; other pairs
 * get a token of their own (publish.c). */
enum { EB_INTERNED_TOKENS = 16 };
typedef struct eb_token {
    eb_delivery_cb cb;
    void *opaque;
} eb_token;
typedef struct eb_token_table {
    atomic_int used;       /* slots filled, published with release */
    pthread_mutex_t mu;    /* serialises filling */
    eb_token slot[EB_INTERNED_TOKENS];
} eb_token_table;

struct eb_sub {
    eb_bus *bus;
    char *topic;
    char *group;       /* NULL: anonymous */
    char *dlq_topic;
    eb_handler handler;
    void *opaque;
    void (*opaque_free)(void *opaque);
    void *state;       /* the transport's, NULL once destroyed */
    struct eb_sub *next;   /* bus->subs, under bus->mu */

    pthread_mutex_t mu;    /* ready and the lifecycle flags below */
    pthread_cond_t cv;
    bool ready;
    bool unsubscribed;     /* eb_unsubscribe ran (or close did it) */
    bool transport_freed;  /* sub_destroy ran */

    /* Messages the core holds (queued, running, retrying, dead-lettering):
     * the transport's sub state must outlive them. */
    atomic_long outstanding;
    atomic_long parked;    /* of those, waiting for a retry (eb__sub_parked) */

    /* EB_EVENT_DLQ_FAILED at most once a second (dead_letter.c). */
    atomic_int_fast64_t dlq_event_ns;      /* when the last one was raised */
    atomic_uint dlq_failures_unreported;   /* failures since then */

    /* Owned by dispatch, under its lock. */
    bool started;      /* subscribe() returned: acks may flow */
    bool leaving;      /* deliver refuses everything */
    bool draining;     /* unsubscribing: deliver refuses, what is held runs */
    bool paused;       /* deliver refused: owe a resume() */
    struct eb_sub *paused_next;
    uint64_t *revoked_gen; /* per lane: messages of generation <= are stale */
    size_t revoked_cap;
};

/* Dead letters whose lane is stopped (dead_letter.c): health says
 * DEGRADED while there are any. */
typedef struct eb_dlq_stopped {
    atomic_long count;
    pthread_mutex_t mu;    /* detail */
    char detail[128];      /* the latest failure: topic and error */
} eb_dlq_stopped;

struct eb_bus {
    eb_config *cfg;
    eb_settings set;
    eb_plugin *plugin;
    const eb_transport *tp;
    void *state;           /* the transport's */
    uint64_t features;     /* this bus's (the transport's bus_features, ABI 1.2) */
    eb_event_cb event_cb;
    void *event_opaque;

    pthread_mutex_t mu;    /* subs list and lifecycle */
    pthread_cond_t cv;
    atomic_int lifecycle;  /* enum eb_bus_state */
    atomic_int in_calls;   /* API calls using the transport's state */
    eb_sub *subs;

    eb_dispatch *dispatch;
    eb_timers *timers;
    eb_counters count;
    eb_token_table tokens;
    eb_dlq_stopped dlq_stopped;
};

/* The thread's role, so calls that would deadlock are refused (BUSY) and
 * publishes from callbacks never wait. Set by workers, the timer thread and
 * the delivery-callback trampoline. */
extern __thread eb_bus *eb__tls_callback_bus;

/** Returns the attempt number as eb_msg_attempt() reports it. */
uint32_t eb__msg_attempt(const eb_msg *m);

/** Gives messages back to their transport as acknowledged or released,
 *  and updates the owning subscriptions' outstanding counts. */
void eb__sub_ack(eb_sub *sub, eb_msg *const *msgs, size_t n);
void eb__sub_release(eb_sub *sub, eb_msg *const *msgs, size_t n);
/** `n` (negative: fewer) of the sub's outstanding messages wait for a
 *  retry: on the timer, or held behind their key's retrying head. A
 *  graceful unsubscribe finishes the others, not these. Any thread. */
void eb__sub_parked(eb_sub *sub, long n);

/** The host table handed to every transport. */
extern const eb_host eb__host;

/** Raises an event to the application. */
void eb__bus_event(eb_bus *bus, eb_event_type type, const char *topic,
                   const char *group, int error, const char *detail);
void eb__bus_log(eb_bus *bus, eb_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Enters an API call that uses the transport's state: false once the bus
 *  is closing (except on the bus's own threads). Pair with eb__bus_leave. */
bool eb__bus_enter(eb_bus *bus);
void eb__bus_leave(eb_bus *bus);

/** Waits until a close running on another thread has finished. */
void eb__bus_wait_closed(eb_bus *bus);

/** Publishes through the transport without the public checks (DLQ);
 *  `token` from eb__delivery_token(), or NULL for no outcome. */
int eb__bus_publish_raw(eb_bus *bus, const eb_outgoing *out, int64_t timeout_ms,
                        void *token);

/** A token that makes the transport's host->delivered() call cb: an
 *  interned one when (cb, opaque) is or can become one of the bus's, else
 *  a new one. NULL when out of memory. */
void *eb__delivery_token(eb_bus *bus, eb_delivery_cb cb, void *opaque);
/** A token of its own, never interned: for per-message opaques (DLQ). */
void *eb__delivery_token_new(eb_delivery_cb cb, void *opaque);
/** Gives back a token the transport refused. */
void eb__delivery_token_drop(eb_bus *bus, void *token);
/** host->delivered: runs the token's callback (thread marked), frees it
 *  unless it is one of the bus's interned tokens. */
void eb__delivered(eb_host_bus *hb, void *token, int status, const char *id);

#endif
