/*
 * transport.h — the plugin ABI of eventbus, the only header a transport
 * author needs.
 *
 * A transport is a shared object named `eventbus-<name>.so` that exports one
 * function, EB_TRANSPORT_ENTRY_SYMBOL, returning a const descriptor
 * (eb_transport). The core checks the descriptor's ABI version and size
 * before calling anything, then drives the transport through the slots, and
 * hands it a host table (eb_host) so that a plugin never links against the
 * core.
 *
 * Growth rules (SQLite's sqlite3_vfs): abi_major changes only when a frozen
 * layout changes; new slots are only appended, each version's slots marked
 * below (1.1: begin_close, unsubscribe_until; 1.2: bus_features); the host
 * checks struct_size before calling a slot newer than 1.0, and treats a
 * NULL optional slot as "not provided". Plugins built for an older minor
 * load unchanged.
 *
 * Threads: the core calls open/close/flush/subscribe/unsubscribe/
 * sub_destroy/begin_close from application threads (serialised per bus);
 * publish from any thread, concurrently (also with begin_close);
 * ack/release/resume from dispatch threads, concurrently, and release also
 * from inside host->revoke() on the thread that called it.
 *
 * Locks: ack, release and resume may take the transport's own mutex for
 * their bookkeeping, held briefly and never across I/O, a broker client
 * call or a host call; they never wait for anything else (no condition
 * wait, no join, no network): they record the request and wake the
 * transport's own thread. In turn the transport calls host->deliver(),
 * host->revoke*() and host->ready() holding no lock that ack, release or
 * resume take (the dispatcher may call them back from other threads
 * before those host calls return).
 *
 * docs/writing-a-transport.md walks through the whole contract: lanes and
 * generations, deliver/pause/resume, events, feature flags, lifetimes,
 * errors, and proving a plugin with `eventbus conformance`.
 */
#ifndef EVENTBUS_TRANSPORT_H
#define EVENTBUS_TRANSPORT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "eventbus.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EB_TRANSPORT_ABI_MAJOR 1
#define EB_TRANSPORT_ABI_MINOR 2

/** The least time eb_bus_close() gives a transport's unsubscribe_until()
 *  (commit what finished, leave the group) once the handlers finished,
 *  even past the close deadline. */
#define EB_LEAVE_MIN_MS 500

/** The one symbol a plugin exports: `const eb_transport *eb_transport_entry(void)`. */
#define EB_TRANSPORT_ENTRY_SYMBOL "eb_transport_entry"
typedef const struct eb_transport *(*eb_transport_entry_fn)(void);

#if defined(__GNUC__)
#define EB_TRANSPORT_EXPORT __attribute__((visibility("default")))
#else
#define EB_TRANSPORT_EXPORT
#endif

/** Plugin flags (eb_transport.plugin_flags). */
enum eb_plugin_flag {
    /** Never unload: for plugins linked to libraries with global state. */
    EB_PLUGIN_RESIDENT = 1u << 0
};

/* Opaque handles the core gives a transport. */
typedef struct eb_host_bus eb_host_bus; /**< the bus that opened the transport */
typedef struct eb_host_sub eb_host_sub; /**< one subscription of that bus */

/**
 * The core's part of a message. Transports zero it (calloc) and never read
 * or write it.
 */
typedef struct eb_msg_core {
    struct eb_msg *next;   /* queue link */
    void *sub;             /* owning subscription */
    int64_t due_ns;        /* retry time; while queued, the revoke count it was checked at */
    uint32_t attempts;     /* handler calls in this member */
    uint32_t key_hash;
    uint32_t flags;
    uint32_t dlq_failures; /* failed dead-letter publishes (backoff) */
} eb_msg_core;

/**
 * A received message (layout frozen for ABI major 1). The transport
 * allocates it, usually as the first member of its own struct, fills the
 * fields and hands it to host->deliver(). It must stay valid and unchanged
 * until the core returns it through ack() or release().
 */
struct eb_msg {
    const char *topic;
    const void *key;          /**< NULL: no key; non-NULL, key_len 0: empty */
    size_t key_len;
    const void *payload;      /**< non-NULL (may point at "" when empty) */
    size_t payload_len;
    const eb_header *headers;
    size_t header_count;
    const char *id;           /**< transport id, e.g. "3@1024" */
    int64_t timestamp_ms;
    uint32_t delivery_count;  /**< 1 on first delivery; 0 if unknown */
    uint32_t lane;            /**< lane index within the subscription */
    uint64_t lane_generation; /**< bumped each time the lane is assigned */
    eb_msg_core core;
};

/** Flags of host->revoke_until. */
enum {
    /** The lanes are gone already (Kafka's lost assignment, a lease not
     *  renewed): another member may be handling them. The core starts no
     *  more handlers for them and does not wait for running ones; their
     *  acks arrive later and must be discarded by generation. */
    EB_REVOKE_LOST = 1u << 0
};

/** A lane the transport takes away from a subscription (see host->revoke). */
typedef struct eb_lane_ref {
    uint32_t lane;
    uint64_t generation;
} eb_lane_ref;

typedef enum eb_log_level {
    EB_LOG_ERROR = 0,
    EB_LOG_WARN,
    EB_LOG_INFO,
    EB_LOG_DEBUG
} eb_log_level;

/**
 * What the core offers a transport. Valid from open() until close()
 * returns. Grows at the end only; check struct_size before a newer field.
 */
typedef struct eb_host {
    uint16_t abi_major;
    uint16_t abi_minor;
    uint32_t struct_size;
    /* --- ABI 1.0 --- */
    /** Logs a line through the bus's logger. Any thread. */
    void (*log)(eb_host_bus *hb, eb_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    /**
     * CLOCK_MONOTONIC in nanoseconds. Every deadline_ns the core passes
     * (flush, unsubscribe_until, revoke_until) is on this clock: the
     * milliseconds left are (deadline_ns - now_ns()) / 1000000, at least 0.
     */
    int64_t (*now_ns)(void);
    /** The value set for `key` (e.g. "memory.partitions"), or NULL. */
    const char *(*config_get)(eb_host_bus *hb, const char *key);
    /**
     * Raises an event to the application's event callback. Any thread.
     * The transport raises CONNECTED and DISCONNECTED (its health going
     * OK/DOWN), ASSIGNED each time a subscription gains lanes (the first
     * assignment and every later one, `detail` naming them; a fail-over
     * standby raises it when it becomes active) and ERROR. The core raises
     * REVOKED (inside host->revoke*), PAUSED, RESUMED and DLQ_FAILED: a
     * transport never raises those.
     */
    void (*event)(eb_host_bus *hb, eb_event_type type, const char *topic,
                  const char *group, int error, const char *detail);
    /**
     * Hands `n` messages to the dispatcher. @returns how many it accepted
     * (a prefix of msgs). The transport keeps the rest, delivers nothing
     * more for this subscription, and waits for resume(). Never blocks,
     * and never calls ack, release or resume itself.
     *
     * - Until subscribe() has returned, it accepts nothing and owes a
     *   resume() once subscribe() returned.
     * - While the subscription is being unsubscribed or the bus closes, it
     *   accepts nothing and owes no resume(): keep what it refused and let
     *   unsubscribe() / sub_destroy() free it (it is redelivered to the
     *   next owner, as anything not acknowledged).
     * - resume() may run on a dispatch thread before the refusing call has
     *   returned: record it (a flag under the transport's mutex) rather
     *   than assume it comes after.
     * - ack() and release() of messages of this very batch may run on
     *   dispatch threads before deliver() returns: count them as held
     *   before the call.
     */
    size_t (*deliver)(eb_host_sub *hs, eb_msg **msgs, size_t n);
    /**
     * Takes lanes away: the core stops starting handlers for messages of
     * these lanes (of this generation or older), will return the ones it
     * holds through release() (possibly after this returns), and waits up
     * to dispatch.revoke.timeout.ms for running handlers, whose acks arrive
     * through ack() before this returns (later acks may still arrive and
     * must be discarded by generation). Call it from the transport's own
     * thread, holding no lock that ack() or release() takes.
     */
    void (*revoke)(eb_host_sub *hs, const eb_lane_ref *lanes, size_t n);
    /**
     * The subscription has joined and knows where to read: its first
     * assignment (which may be empty: a group member with no lane, or a
     * fail-over standby, is ready too) and its start positions.
     * eb_sub_wait_ready() waits for it. Any thread, before or after
     * subscribe() returned; the first call counts, later ones do nothing.
     */
    void (*ready)(eb_host_sub *hs);
    /**
     * Writes into `out` the known key nearest to `key` (edit distance), for
     * "did you mean" sentences. @returns 1 if one is close enough, else 0.
     */
    int (*nearest_key)(const char *key, const char *const *known, char *out,
                       size_t out_size);
    /**
     * Calls fn for every key set that starts with `prefix` (e.g. "kafka."),
     * in the order first set; stops at fn's first non-zero and returns it.
     */
    int (*config_foreach)(eb_host_bus *hb, const char *prefix,
                          int (*fn)(const char *key, const char *value, void *ctx),
                          void *ctx);
    /**
     * The outcome of the publish that carried `token`: call exactly once
     * per non-NULL token, from a transport thread, never inside publish().
     * status 0 with the stored message's id ("3@1024"), or an EB_ERR_*
     * with id NULL. The token is the core's; do not touch it afterwards.
     * Tokens are opaque and may repeat: publishes with the same callback
     * and context can carry the same pointer while in flight, so never
     * compare them or use them as keys.
     */
    void (*delivered)(eb_host_bus *hb, void *token, int status, const char *id);
    /* --- end of ABI 1.0 --- */

    /* --- ABI 1.1: check struct_size before use --- */

    /**
     * host->revoke with a deadline for the running handlers (a monotonic
     * now_ns() value; 0: the revoke timeout from now) and EB_REVOKE_*
     * flags. Lanes of several subscriptions revoked together share one
     * deadline, so a member's revoke takes one revoke timeout, not one per
     * subscription.
     */
    void (*revoke_until)(eb_host_sub *hs, const eb_lane_ref *lanes, size_t n,
                         int64_t deadline_ns, unsigned flags);
    /* --- end of ABI 1.1 --- */
} eb_host;

/** What subscribe() gets besides the handles. */
typedef struct eb_sub_params {
    const char *topic;
    const char *group;             /**< NULL: anonymous member */
    eb_start_position start;
    /** dispatch.lane.max.inflight. The transport enforces it: at most
     *  this many messages of one lane delivered and not yet given back
     *  through ack() or release(); the core does not count per lane. */
    uint32_t lane_max_inflight;
    /** Where its dead letters go (NULL: none). subscribe() checks it as it
     *  checks `topic` (a name the transport cannot serve fails with a
     *  sentence; one that makes topics makes it), so a dead letter never
     *  finds out late. */
    const char *dlq_topic;
} eb_sub_params;

/**
 * The descriptor a plugin returns (layout frozen for ABI major 1 up to the
 * 1.0 marker; later minors append, each marked where its slots end).
 */
typedef struct eb_transport {
    uint16_t abi_major;       /**< EB_TRANSPORT_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor;
    uint32_t struct_size;     /**< sizeof(eb_transport) the plugin was built with */
    const char *name;         /**< "memory": also its config key prefix */
    const char *version;      /**< the plugin's own version */
    uint64_t features;        /**< EB_FEATURE_* */
    uint32_t plugin_flags;    /**< EB_PLUGIN_* */

    /* --- ABI 1.0 slots: all required --- */

    /** Checks one transport key ("<name>.<...>") at open. 0 or
     *  EB_ERR_CONFIG with a sentence (without the key: the core adds it). */
    int (*config_check)(const eb_host *host, const char *key,
                        const char *value, char *errstr, size_t errstr_size);
    /** Opens the transport for one bus. Starts what it needs. */
    int (*open)(const eb_host *host, eb_host_bus *hb, void **state,
                char *errstr, size_t errstr_size);
    /**
     * Closes: every undelivered publish gets host->delivered() (EB_ERR_PURGED
     * or EB_ERR_UNCERTAIN), every thread is joined, everything but the
     * subscription states is freed. Called after every subscription was
     * unsubscribed. Delivery callbacks may run until close() returns,
     * never after. release() and sub_destroy() may follow it: the messages
     * the core still holds (their topic, key, payload, headers and id) and
     * the subscription states must outlive close(); free them in
     * ack()/release() and sub_destroy().
     */
    void (*close)(void *state);
    /**
     * Publishes a copy of `msg`. Waits for room at most `timeout_ms`; 0
     * means never wait (the clock is read only when waiting is needed).
     * A non-NULL `token` asks for the outcome: host->delivered() with it,
     * later, exactly once (one pointer to keep per message: librdkafka's
     * opaque, say; nothing to allocate). Not called when publish fails.
     * A transport takes messages of message.max.bytes + EB_DLQ_HEADROOM
     * (dead letters, eventbus.h), or refuses to open. The errors it gives
     * decide what happens to a dead letter: EB_ERR_TOO_LARGE sends a stub,
     * EB_ERR_NOT_FOUND / INVALID / UNSUPPORTED stop its lane.
     * @returns 0, EB_ERR_FULL, EB_ERR_TOO_LARGE, EB_ERR_TRANSPORT...
     */
    int (*publish)(void *state, const eb_outgoing *msg, int64_t timeout_ms, void *token);
    /** Waits until every callback of earlier publishes ran, at most until
     *  deadline_ns (host->now_ns() clock). 0 or EB_ERR_TIMEOUT. */
    int (*flush)(void *state, int64_t deadline_ns);
    /** Starts a subscription; delivery begins through host->deliver(). */
    int (*subscribe)(void *state, eb_host_sub *hs, const eb_sub_params *p,
                     void **sub_state, char *errstr, size_t errstr_size);
    /**
     * Leaves: revokes every lane (host->revoke), commits what finished,
     * leaves the group and stops its threads. ack()/release() may still be
     * called afterwards (discard them but free the messages) until
     * sub_destroy().
     */
    void (*unsubscribe)(void *sub_state);
    /** Frees the subscription; the core holds none of its messages. */
    void (*sub_destroy)(void *sub_state);
    /** The handler of each message returned ACK (or it was dead-lettered). */
    void (*ack)(void *sub_state, eb_msg *const *msgs, size_t n);
    /** The core gives messages back unacknowledged (revoke, close). */
    void (*release)(void *sub_state, eb_msg *const *msgs, size_t n);
    /** The dispatcher has room again after deliver() refused messages. */
    void (*resume)(void *sub_state);
    /** Fills `out`. */
    int (*health)(void *state, eb_health *out);
    /** Writes a JSON object into buf like snprintf; @returns its length. */
    int (*stats)(void *state, char *buf, size_t size);
    /* --- end of ABI 1.0 --- */

    /* --- ABI 1.1 slots: optional (NULL: not provided); the core calls one
     * only when the plugin's struct_size covers it --- */

    /**
     * Close has begun: the first thing eb_bus_close() does, before the
     * drain. A publish() waiting for room returns EB_ERR_CLOSED at once,
     * and from now on one that would wait returns EB_ERR_CLOSED instead;
     * publishes that need no wait (dead letters of the handlers still
     * draining) go on as before. The message of a publish that returns
     * EB_ERR_CLOSED was not stored. Never blocks. Without this slot a
     * publisher waiting for room holds close for its whole timeout.
     */
    void (*begin_close)(void *state);
    /**
     * unsubscribe() bounded by `deadline_ns` (now_ns() clock): the revoke,
     * the commit of what finished and leaving the group end by then; what
     * was not committed is redelivered to the lanes' next owner. The core
     * calls it (when present, else unsubscribe()) once the subscription's
     * handlers finished: eb_unsubscribe() gives it what is left of the
     * revoke timeout, eb_bus_close() its close deadline (at least
     * EB_LEAVE_MIN_MS from when the handlers finished).
     * @returns 0, or EB_ERR_TIMEOUT when the deadline cut the commit or
     * the leave short (eb_bus_close() then returns EB_ERR_TIMEOUT).
     */
    int (*unsubscribe_until)(void *sub_state, int64_t deadline_ns);
    /* --- end of ABI 1.1 --- */

    /* --- ABI 1.2 slots: optional, like those of 1.1 --- */

    /**
     * The feature flags of this bus, for a transport whose guarantees
     * depend on its config (Redis's group mode): the descriptor's
     * `features` then say what every config gives. Called once, right
     * after open() returned 0, on the thread that opened the bus;
     * eb_bus_features() answers with it from then on. Without this slot
     * a bus has the descriptor's features.
     */
    uint64_t (*bus_features)(void *state);
    /* --- end of ABI 1.2 --- */
} eb_transport;

#ifdef __cplusplus
}
#endif
#endif /* EVENTBUS_TRANSPORT_H */
