/*
 * eventbus.h — the application API of eventbus, the only header an
 * application needs.
 *
 * eventbus gives one message-bus API (publish, subscribe, ack, retry, close)
 * over interchangeable transports loaded as plugins: memory (the default,
 * in-process), kafka and redis.
 *
 * Conventions, stated once:
 *  - Every function that can fail returns int: 0 on success or a negative
 *    EB_ERR_* code; eb_strerror() turns a code into a sentence. Calls that can
 *    fail for a reason a person must read (config, open, subscribe) also fill
 *    an `errstr` buffer of `errstr_size` bytes (NULL/0 allowed).
 *  - Every function checks its arguments and returns EB_ERR_INVALID on NULL
 *    or bad sizes instead of crashing.
 *  - Every call is thread-safe, except the destroy functions (the caller
 *    ensures nothing else uses a handle while it is destroyed) and the
 *    eb_config_* calls (a config is used by one thread at a time; a bus
 *    copies its config at open, so nothing is shared afterwards).
 *  - Strings passed in are copied; the caller keeps ownership of its memory.
 *    Pointers returned by accessors are owned by the handle they came from.
 */
#ifndef EVENTBUS_EVENTBUS_H
#define EVENTBUS_EVENTBUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define EB_API __attribute__((visibility("default")))
#else
#define EB_API
#endif

#define EB_VERSION_MAJOR 0
#define EB_VERSION_MINOR 1
#define EB_VERSION_PATCH 0
#define EB_VERSION_STRING "0.1.0"

/** @returns the library's version string, e.g. "0.1.0". */
EB_API const char *eb_version(void);

/* ------------------------------------------------------------------ errors */

/**
 * The error table: X(NAME, value, sentence). EB_ERR_<NAME> = value, and
 * eb_strerror()/eb_err_name() are generated from the same table so they never
 * drift apart.
 */
#define EB_ERRNO_MAP(X)                                                       \
    X(INVALID, -1, "invalid argument")                                        \
    X(NOMEM, -2, "out of memory")                                             \
    X(CONFIG, -3, "invalid configuration")                                    \
    X(PLUGIN, -4, "transport plugin could not be loaded")                     \
    X(CLOSED, -5, "handle is closed")                                         \
    X(TIMEOUT, -6, "deadline passed before the operation finished")           \
    X(FULL, -7, "transport is full; try again later")                         \
    X(UNCERTAIN, -8,                                                          \
      "outcome unknown: the message may or may not have been stored")         \
    X(BUSY, -9, "not allowed from inside a handler or callback of this bus")  \
    X(EXISTS, -10, "already exists")                                          \
    X(TOO_LARGE, -11, "message larger than message.max.bytes")                \
    X(NOT_FOUND, -12, "not found")                                            \
    X(TRANSPORT, -13, "transport error")                                      \
    X(UNSUPPORTED, -14, "not supported by this transport")                    \
    X(IO, -15, "input/output error")                                          \
    X(PURGED, -16, "message was not delivered before close")

enum eb_error {
    EB_OK = 0,
#define EB_ERR_ENUM_(name, value, text) EB_ERR_##name = value,
    EB_ERRNO_MAP(EB_ERR_ENUM_)
#undef EB_ERR_ENUM_
};

/** @returns a sentence for an error code (never NULL; unknown codes too). */
EB_API const char *eb_strerror(int err);
/** @returns the code's name, e.g. "EB_ERR_FULL" (never NULL). */
EB_API const char *eb_err_name(int err);

/* ------------------------------------------------------------ the handles */

typedef struct eb_config eb_config; /**< key = value settings */
typedef struct eb_bus eb_bus;       /**< an open bus over one transport */
typedef struct eb_sub eb_sub;       /**< one subscription (topic, group) */
typedef struct eb_msg eb_msg;       /**< a received message */

/* ----------------------------------------------------------------- config */

/**
 * @brief Creates an empty configuration (every key at its default).
 * @returns NULL only when out of memory.
 */
EB_API eb_config *eb_config_new(void);

/**
 * @brief Sets `key` to `value`. Later settings win.
 *
 * Core keys (transport, plugin.path, dispatch.*, retry.*, dlq.*, publish.*,
 * message.*, log.*) are checked now: an unknown key, a bad number or a bad
 * enum value returns EB_ERR_CONFIG and a sentence naming the key and, for an
 * unknown key, the nearest known one. Keys of a transport (`memory.*`,
 * `kafka.*`, `redis.*`, ...) are checked at eb_bus_open() by the transport.
 */
EB_API int eb_config_set(eb_config *cfg, const char *key, const char *value,
                         char *errstr, size_t errstr_size);

/**
 * @brief Reads a properties file: `key = value` lines, `#` or `!` comments,
 * blank lines ignored, whitespace around key and value trimmed.
 *
 * Each setting is checked as by eb_config_set(); errors name the file, the
 * line and the key ("app.properties:12: unknown key 'dispach.workers'; did
 * you mean 'dispatch.workers'?"). An unreadable file is EB_ERR_IO. On error
 * the settings read before the bad line stay applied.
 */
EB_API int eb_config_load(eb_config *cfg, const char *path, char *errstr,
                          size_t errstr_size);

/**
 * @brief Looks up the value of `key` as set (not the default).
 * @returns the value, owned by `cfg` and valid until the key is set again or
 *          cfg is destroyed; NULL if the key was never set.
 */
EB_API const char *eb_config_get(const eb_config *cfg, const char *key);

/**
 * @brief Writes every setting as `key = value` lines into a new string,
 * secrets (`*.password`, `sasl.*`, `ssl.key.password`, `ssl.key.pem`, the
 * password part of a `*url` value such as `redis.url`) replaced by
 * `********`.
 * @returns 0 and `*out` (free with eb_free()), or an error.
 */
EB_API int eb_config_dump(const eb_config *cfg, char **out);

/**
 * @brief The effective configuration as `key = value` lines: every core
 * key (one not set shows its default, marked `# default`), then every
 * other key set (transport keys), secrets redacted as by eb_config_dump().
 * @returns 0 and `*out` (free with eb_free()), or an error.
 */
EB_API int eb_config_effective(const eb_config *cfg, char **out);

/**
 * @brief Checks a configuration as eb_bus_open() would, without opening a
 * bus or connecting to any server: the core keys and how they fit
 * together, the transport plugin (found, loadable, this ABI), and each
 * transport key by the plugin's own check. Errors name where the key was
 * set ("app.properties:12: redis.block.ms: ..."). Checks a transport
 * makes across its keys at open (one bound against another) are not run.
 * @returns 0; EB_ERR_CONFIG or EB_ERR_PLUGIN with a sentence; EB_ERR_INVALID
 *          on NULL cfg.
 */
EB_API int eb_config_check(const eb_config *cfg, char *errstr, size_t errstr_size);

/** Events a bus reports to the application; see eb_config_set_event_cb(). */
typedef enum eb_event_type {
    EB_EVENT_CONNECTED = 1,    /**< transport reaches its server again after
                                    a DISCONNECTED */
    EB_EVENT_DISCONNECTED,     /**< transport lost its server: health is
                                    now DOWN */
    EB_EVENT_ASSIGNED,         /**< lanes were assigned to a subscription */
    EB_EVENT_REVOKED,          /**< lanes were taken from a subscription */
    EB_EVENT_PAUSED,           /**< intake paused: the pool is full */
    EB_EVENT_RESUMED,          /**< intake resumed */
    EB_EVENT_DLQ_FAILED,       /**< a dead-letter publish failed; it is retried
                                    (at most one event a second per
                                    subscription; see "Dead letters") */
    EB_EVENT_ERROR             /**< any other error worth a person's eye */
} eb_event_type;

typedef struct eb_event {
    eb_event_type type;
    const char *topic;  /**< topic concerned, or NULL */
    const char *group;  /**< group concerned, or NULL */
    int error;          /**< an EB_ERR_* code, or 0 */
    const char *detail; /**< a sentence; never NULL */
} eb_event;

/**
 * Event callback. Runs on an internal thread of the bus (a transport or
 * dispatch thread); must return quickly and must not close the bus. The
 * event and its strings are valid only during the call.
 */
typedef void (*eb_event_cb)(eb_bus *bus, const eb_event *event, void *opaque);

/** @brief Sets the event callback of buses opened from this config. */
EB_API int eb_config_set_event_cb(eb_config *cfg, eb_event_cb cb,
                                  void *opaque);

/** @brief Frees a config. NULL is allowed. */
EB_API void eb_config_destroy(eb_config *cfg);

/* -------------------------------------------------------------------- bus */

/**
 * @brief Opens a bus: loads the transport plugin named by `transport`
 * (default "memory"), checks the transport's keys and starts the
 * transport. The dispatch workers and the retry timer start with the
 * bus's first eb_subscribe(): a bus that only publishes never has them.
 *
 * The config is copied: it may be changed or destroyed afterwards.
 * @returns 0 and `*out`, or EB_ERR_CONFIG / EB_ERR_PLUGIN / EB_ERR_TRANSPORT
 *          with a sentence in errstr.
 */
EB_API int eb_bus_open(const eb_config *cfg, eb_bus **out, char *errstr,
                       size_t errstr_size);

/**
 * @brief Stops and drains the bus; the handle stays valid until destroyed.
 *
 * Stops intake, keeps handling what is queued and acknowledges what
 * finishes, all before `timeout_ms` from now. Publishes still waiting for
 * room return EB_ERR_CLOSED at once (their messages are not stored;
 * publishes already accepted are kept and flushed below). At that deadline
 * no further handler starts; queued messages and retries waiting for their
 * backoff, including retries scheduled as the deadline passes, and dead
 * letters still waiting to be published (see "Dead letters"), are
 * abandoned unacknowledged (durable transports redeliver them), and
 * handlers already running are waited for.
 * Then subscriptions are closed (final commits, leaving groups) and the
 * producer is flushed, within what is left of the same deadline but at
 * least EB_LEAVE_MIN_MS (500 ms) from when the handlers finished (messages
 * still undelivered get their delivery callback with an error; what was not
 * committed is redelivered), the transport is closed and every thread the
 * bus started is joined. So close returns by the later of the deadline and
 * the end of the handlers running at it, plus that margin and the time to
 * join threads, even when the server does not answer.
 *
 * With a server that answers nothing, a transport's client library may
 * hold its threads longer (Kafka: until its requests to the group
 * coordinator time out, at most session.timeout.ms after the last
 * heartbeat was sent); close still joins them.
 *
 * @returns 0; EB_ERR_TIMEOUT if the deadline cut the drain, a final
 *          commit or leave (what it did not commit is redelivered), or the
 *          flush;
 *          EB_ERR_BUSY when called from a handler or callback of this bus;
 *          EB_ERR_CLOSED when already closed. Later calls on the bus (other
 *          than destroy) return EB_ERR_CLOSED.
 */
EB_API int eb_bus_close(eb_bus *bus, int timeout_ms);

/**
 * @brief Frees the bus (closing it first with close.timeout.ms if it is
 * still open), every subscription handle not yet destroyed, and unloads the
 * plugin unless it asked to stay resident. NULL is allowed. Called from a
 * handler or callback of this bus it would wait for itself: it logs an
 * error and does nothing.
 */
EB_API void eb_bus_destroy(eb_bus *bus);

/** Transport feature flags, see eb_bus_features(). */
enum eb_feature {
    EB_FEATURE_DURABLE = 1u << 0,      /**< stored messages survive members */
    EB_FEATURE_GROUPS = 1u << 1,       /**< consumer groups share the work */
    /** Per-key order across members, as long as handlers finish within
     *  dispatch.revoke.timeout.ms: a handler still running when its lane
     *  is revoked (rebalance) may overlap the next owner handling the
     *  key's later messages. */
    EB_FEATURE_KEY_ORDER = 1u << 2,
    EB_FEATURE_KEY_ORDER_SINGLE_MEMBER = 1u << 3, /**< per-key order, one member */
    EB_FEATURE_REDELIVERY = 1u << 4,   /**< unacked messages are redelivered */
    EB_FEATURE_HEADERS = 1u << 5,      /**< message headers */
    EB_FEATURE_TIMESTAMPS = 1u << 6,   /**< message timestamps */
    EB_FEATURE_DELIVERY_COUNT = 1u << 7, /**< server counts deliveries */
    /** Consumer groups fail over instead of sharing the work: one member
     *  of a group handles all of its messages at a time, the others stand
     *  by and one of them takes over (with what was not acknowledged)
     *  when it leaves or dies. A transport declares this or GROUPS, not
     *  both. */
    EB_FEATURE_FAILOVER_GROUPS = 1u << 8,
};

/** One transport plugin file found on the search path (eb_plugins_list). */
typedef struct eb_plugin_info {
    const char *file;       /**< the file, as found in its directory */
    const char *name;       /**< the transport's name (from the file name when refused) */
    const char *version;    /**< the plugin's version; "" when refused */
    unsigned abi_major, abi_minor; /**< the ABI it was built for; 0 when refused */
    uint64_t features;      /**< the descriptor's EB_FEATURE_* flags */
    bool features_vary;     /**< a bus's flags depend on its config (eb_bus_features) */
    bool shadowed;          /**< an earlier directory has a plugin of this name: a
                                 bus asking for the name gets that one */
    const char *refused;    /**< NULL when it loads; else the loader's sentence */
} eb_plugin_info;

/**
 * @brief Lists every `eventbus-*.so` in the directories eb_bus_open()
 * searches, in its order: `plugin_path` (colon-separated, as the
 * `plugin.path` key; NULL for none), $EVENTBUS_PLUGIN_PATH, then the
 * directory installed beside libeventbus. Each file is loaded and checked
 * as eb_bus_open() would (ownership, permissions, ABI, descriptor, name),
 * then unloaded; no transport is opened. A file that fails a check is
 * listed with the loader's sentence in `refused`.
 * @returns 0 and `*out` with `*n` entries (free with eb_plugins_free());
 *          EB_ERR_INVALID on NULL out or n; EB_ERR_NOMEM.
 */
EB_API int eb_plugins_list(const char *plugin_path, eb_plugin_info **out, size_t *n);

/** Frees what eb_plugins_list() returned (NULL-safe). */
EB_API void eb_plugins_free(eb_plugin_info *list, size_t n);

/** @returns the EB_FEATURE_* flags of this bus's transport, as its config
 *  made them (Redis: `KEY_ORDER` in group mode `keyed` only); 0 for NULL. */
EB_API uint64_t eb_bus_features(const eb_bus *bus);

/** @returns the transport's name ("memory", "kafka", ...); "" for NULL. */
EB_API const char *eb_bus_transport(const eb_bus *bus);

typedef enum eb_health_state {
    EB_HEALTH_OK = 0,      /**< connected and working */
    EB_HEALTH_DEGRADED,    /**< working, with errors (retrying) */
    EB_HEALTH_DOWN,        /**< cannot reach its server */
    EB_HEALTH_CLOSED       /**< closed */
} eb_health_state;

typedef struct eb_health {
    eb_health_state state;
    char detail[256]; /**< a sentence saying why */
} eb_health;

/**
 * @brief Reports the transport's state, as of now: no call reaches the
 * server. A transport goes DEGRADED when its server leaves requests
 * unanswered for a while and DOWN when it cannot reach it or has had no
 * answer for longer (raising EB_EVENT_DISCONNECTED), and returns to OK by
 * itself at the next answer (raising EB_EVENT_CONNECTED); the README gives
 * each transport's thresholds (Kafka: DEGRADED within 7 s and DOWN within
 * 14 s of a broker that stops answering). Any thread.
 *
 * The core adds its own: while a dead letter cannot be published for a
 * reason that needs a person (its dead-letter topic is missing or refuses
 * it, see "Dead letters"), a bus whose transport says OK says
 * EB_HEALTH_DEGRADED, naming the topic and the error; it says OK again
 * once every such dead letter is published.
 */
EB_API int eb_bus_health(eb_bus *bus, eb_health *out);

/**
 * @brief The bus's counters as a JSON object: core counters (published,
 * delivered, handled, acked, retried, dead_lettered, dlq_failed, dlq_stubs
 * (dead letters published as stubs), dlq_stopped (dead letters waiting for
 * a topic that refuses them), queued, running, ...) and a "transport"
 * object from the transport (lag, losses, ...).
 * @returns 0 and `*json` (free with eb_free()), or an error.
 */
EB_API int eb_bus_stats(eb_bus *bus, char **json);

/** Frees memory that eventbus returned to the caller. NULL is allowed. */
EB_API void eb_free(void *ptr);

/* ---------------------------------------------------------------- publish */

typedef struct eb_header {
    const char *name;  /**< NUL-terminated, non-empty */
    const void *value; /**< may be NULL when value_len is 0 */
    size_t value_len;  /**< bytes; binary values are kept exactly */
} eb_header;

/** A message to publish. Everything is copied before eb_publish returns. */
typedef struct eb_outgoing {
    const char *topic;       /**< required: 1..249 chars, no NUL */
    const void *key;         /**< NULL: no key; non-NULL with key_len 0: empty key */
    size_t key_len;
    const void *payload;     /**< may be NULL when payload_len is 0 */
    size_t payload_len;
    const eb_header *headers; /**< may be NULL when header_count is 0 */
    size_t header_count;     /**< duplicates and their order are kept */
} eb_outgoing;

/**
 * Delivery callback: the final outcome of one publish. Runs once per
 * accepted publish, on a transport thread, never inside eb_publish().
 * status 0: stored (durably, where the transport is durable);
 * EB_ERR_UNCERTAIN: may or may not be stored; other codes: not stored.
 * `id` is the transport's id for the stored message ("3@1024": partition 3,
 * offset 1024), or NULL when status is not 0; valid during the call.
 */
typedef void (*eb_delivery_cb)(int status, const char *id, void *opaque);

/**
 * @brief Publishes one message.
 *
 * Waits at most publish.timeout.ms while the transport is full; from inside
 * a handler or a callback of this bus it never waits and returns EB_ERR_FULL
 * at once. eb_bus_close() cuts the wait short: the publish returns
 * EB_ERR_CLOSED and its message is not stored (with a transport built for
 * ABI 1.0 the wait lasts until its timeout, and close waits with it). A
 * return of 0 means accepted: the outcome comes through `cb` (which may be
 * NULL).
 * @returns 0; EB_ERR_INVALID (bad topic, NULL message, header without a
 *          name, a length without its pointer); EB_ERR_TOO_LARGE (payload +
 *          key + header names and values above message.max.bytes, by
 *          default 995,904: Kafka's 1,000,000 less EB_DLQ_HEADROOM; summed
 *          without overflow: a length of SIZE_MAX, say a negative ssize_t,
 *          or lengths whose sum wraps, are too large, never accepted);
 *          EB_ERR_FULL; EB_ERR_CLOSED (the bus is closed or closing, also
 *          when close began while this publish waited for room).
 */
EB_API int eb_publish(eb_bus *bus, const eb_outgoing *msg, eb_delivery_cb cb,
                      void *opaque);

/**
 * @brief Waits until every delivery callback of publishes made so far has
 * run, at most `timeout_ms`. It waits until the transport's queue is empty,
 * so publishes other threads make meanwhile are waited for too: with
 * publishers that never pause, it returns EB_ERR_TIMEOUT. @returns 0 or
 * EB_ERR_TIMEOUT (or BUSY/CLOSED).
 */
EB_API int eb_flush(eb_bus *bus, int timeout_ms);

/* -------------------------------------------------------------- subscribe */

/**
 * Dead letters. After retry.max.attempts, or on EB_REJECT, the core
 * publishes the message to its dead-letter topic through the same
 * transport and acknowledges the original only once that publish is
 * confirmed. Until then the original is neither acknowledged nor released:
 * its lane commits nothing past it, and later messages of its key wait
 * (per-key order holds across the dead letter).
 *
 * The dead letter is a copy: key, payload and headers as they were, plus
 * the EB_DLQ_HEADER_* headers below (topic, group, attempts, reason, origin
 * id). Transports accept message.max.bytes + EB_DLQ_HEADROOM bytes so that
 * the copy of any message the bus accepted fits (the Kafka transport
 * refuses to open otherwise).
 *
 * A failed dead-letter publish is never dropped and never loops fast:
 *  - EB_ERR_TOO_LARGE (the copy above message.max.bytes + EB_DLQ_HEADROOM,
 *    say a message another producer wrote, or refused by the transport or
 *    the topic): a stub is dead-lettered instead: the EB_DLQ_HEADER_*
 *    headers, EB_DLQ_HEADER_ORIGINAL_SIZE, EB_DLQ_HEADER_STUB, the key when
 *    it fits, no payload, none of the original headers.
 *  - EB_ERR_NOT_FOUND, EB_ERR_INVALID, EB_ERR_UNSUPPORTED, or a stub that
 *    is still too large: the lane stops. The message stays unacknowledged,
 *    its key waits, its lane pauses once dispatch.lane.max.inflight fills,
 *    eb_bus_health() says EB_HEALTH_DEGRADED, and the publish is tried
 *    again with a backoff doubling from retry.backoff.ms (at least 100 ms)
 *    to retry.backoff.max.ms, so the lane resumes by itself once the
 *    dead-letter topic takes it (created, its limit raised).
 *  - any other error: retried with the same backoff.
 * Each failure raises EB_EVENT_DLQ_FAILED, at most one a second per
 * subscription (the detail counts the failures not reported). Close or a
 * revoke gives a dead letter still waiting back unacknowledged: it is
 * redelivered, and dead-lettered again, later.
 */

/** Bytes a transport must accept beyond message.max.bytes: room for the
 *  EB_DLQ_HEADER_* headers of a dead letter (their names and values, a
 *  topic and group of up to 249 characters, and a transport's framing of
 *  the headers). */
#define EB_DLQ_HEADROOM 4096

/** Headers the core adds to a dead letter. Values are text. */
#define EB_DLQ_HEADER_TOPIC "eb-dlq-original-topic"   /**< topic it came from */
#define EB_DLQ_HEADER_GROUP "eb-dlq-group"            /**< group ("" if anonymous) */
#define EB_DLQ_HEADER_ATTEMPTS "eb-dlq-attempts"      /**< decimal attempt count */
#define EB_DLQ_HEADER_REASON "eb-dlq-reason"          /**< "rejected" or "max-attempts" */
#define EB_DLQ_HEADER_ORIGIN_ID "eb-dlq-origin-id"    /**< eb_msg_id() of the original */
/** Only on a stub: what was left out, "payload,headers" or
 *  "payload,headers,key" (the key too when it alone was too large). */
#define EB_DLQ_HEADER_STUB "eb-dlq-stub"
/** Only on a stub: the original's key + payload + header names and values,
 *  in decimal bytes (what message.max.bytes counts). */
#define EB_DLQ_HEADER_ORIGINAL_SIZE "eb-dlq-original-size"

/** What a handler decides about a message. */
typedef enum eb_result {
    EB_ACK = 0,    /**< handled: acknowledge */
    EB_RETRY = 1,  /**< handle again after a backoff (then dead-letter) */
    EB_REJECT = 2  /**< never retry: dead-letter now */
} eb_result;

/**
 * Handler. Runs on a dispatch worker of the bus; handlers of one key never
 * run concurrently and run in stored order; other keys run in parallel.
 * `msg` is valid only during the call (eb_msg_copy() keeps one). A handler
 * may publish (never waits: EB_ERR_FULL when full) but may not close the bus
 * or unsubscribe (EB_ERR_BUSY).
 */
typedef eb_result (*eb_handler)(const eb_msg *msg, void *opaque);

typedef enum eb_start_position {
    EB_START_DEFAULT = 0,  /**< earliest for a new group, latest if anonymous */
    EB_START_EARLIEST,
    EB_START_LATEST
} eb_start_position;

/** Optional subscription settings; zero-initialise, set struct_size. */
typedef struct eb_sub_options {
    size_t struct_size;        /**< sizeof(eb_sub_options) */
    eb_start_position start;   /**< where a new group starts */
    const char *dlq_topic;     /**< NULL: dlq.topic, default "<topic>.dlq" */
    void (*opaque_free)(void *opaque); /**< called on eb_sub_destroy() */
} eb_sub_options;

/**
 * @brief Subscribes `handler` to `topic` as a member of `group`.
 *
 * A NULL group is an anonymous member: it receives every message published
 * after it is ready, commits nothing and leaves nothing on the server. All
 * subscriptions of one group in one bus form one member; subscribing the
 * same (topic, group) twice in one bus is EB_ERR_EXISTS.
 * Does not wait for the assignment: see eb_sub_wait_ready().
 * `opts` may be NULL.
 * @returns 0 and `*out`; EB_ERR_INVALID (NULL or bad arguments);
 *          EB_ERR_EXISTS; EB_ERR_BUSY (from a handler or callback of this
 *          bus); EB_ERR_CLOSED; EB_ERR_NOMEM (also when the first
 *          subscription cannot start the handler threads); the transport's
 *          error (a missing topic is EB_ERR_NOT_FOUND), with a sentence in
 *          errstr.
 */
EB_API int eb_subscribe(eb_bus *bus, const char *topic, const char *group,
                        eb_handler handler, void *opaque,
                        const eb_sub_options *opts, eb_sub **out,
                        char *errstr, size_t errstr_size);

/**
 * @brief Waits until the subscription is ready: it has its assignment
 * (possibly empty) and a fetch position for each lane, so a message
 * published after this returns reaches the group.
 * @returns 0, EB_ERR_TIMEOUT or EB_ERR_CLOSED.
 */
EB_API int eb_sub_wait_ready(eb_sub *sub, int timeout_ms);

/**
 * @brief Leaves the group on purpose: intake stops, the messages the bus
 * already holds for the subscription are handled and acknowledged, then
 * its lanes are revoked, what finished is committed and the lanes are
 * released, all within dispatch.revoke.timeout.ms, or 500 ms more when
 * handlers used it all (the transport's leave always gets at least
 * 500 ms). So the lanes' next owner repeats
 * nothing that was handled here. Messages waiting for a retry (and those
 * of their keys behind them), and whatever the deadline cuts short, are
 * left unacknowledged: the next owner gets them.
 * @returns 0, EB_ERR_BUSY (from a handler), EB_ERR_CLOSED (already done).
 */
EB_API int eb_unsubscribe(eb_sub *sub);

/** @brief Frees a subscription (unsubscribing first, waiting for its
 *  running handlers). NULL is allowed. From a handler or callback of its
 *  bus it logs an error and does nothing (it would wait for itself). */
EB_API void eb_sub_destroy(eb_sub *sub);

/* --------------------------------------------------------------- messages */

/** @returns the topic (never NULL for a valid message). */
EB_API const char *eb_msg_topic(const eb_msg *msg);
/** @returns the key and its length; NULL when the message has no key (an
 *  empty key is non-NULL with length 0). */
EB_API const void *eb_msg_key(const eb_msg *msg, size_t *len);
/** @returns the payload and its length (non-NULL, possibly length 0). */
EB_API const void *eb_msg_payload(const eb_msg *msg, size_t *len);
/** @returns the number of headers. */
EB_API size_t eb_msg_header_count(const eb_msg *msg);
/** @brief Header `index` in stored order. @returns 0 or EB_ERR_INVALID. */
EB_API int eb_msg_header(const eb_msg *msg, size_t index, const char **name,
                         const void **value, size_t *value_len);
/** @brief The last header named `name`. @returns 0 or EB_ERR_NOT_FOUND. */
EB_API int eb_msg_header_find(const eb_msg *msg, const char *name,
                              const void **value, size_t *value_len);
/** @returns the transport id ("partition@offset", a stream id, ...). */
EB_API const char *eb_msg_id(const eb_msg *msg);
/** @returns the message timestamp in ms since the epoch (0 if unknown). */
EB_API int64_t eb_msg_timestamp_ms(const eb_msg *msg);
/** @returns the attempt number: 1 on first delivery. */
EB_API uint32_t eb_msg_attempt(const eb_msg *msg);

/** @brief Copies a message so it outlives the handler. @returns 0,
 *  EB_ERR_INVALID (NULL, or lengths that add up past SIZE_MAX) or
 *  EB_ERR_NOMEM. */
EB_API int eb_msg_copy(const eb_msg *msg, eb_msg **out);
/** @brief Frees a message made by eb_msg_copy(). NULL is allowed. */
EB_API void eb_msg_destroy(eb_msg *msg);

#ifdef __cplusplus
}
#endif
#endif /* EVENTBUS_EVENTBUS_H */
