/*
 * conformance.h — the transport conformance kit (libeventbus-conformance):
 * the cases every transport must pass, each needing some EB_FEATURE_*
 * flags; the plain runner behind `eventbus-conformance` and `eventbus
 * conformance`; the settings every case's config gets; the check macros
 * the cases use and the helpers they share (unique names, buses, waits
 * with deadlines, a thread-safe message recorder, a delivery tracker).
 * It links libeventbus and nothing else.
 *
 * Proving a transport: `eventbus conformance --transport PATH/eventbus-NAME.so
 * [-X key=value]...`, or eventbus-conformance with --config/-X, or
 * eb_conformance_run() from a program of your own. A case the transport's
 * flags do not cover is skipped with the flags it lacks.
 *
 * Config: every case builds its configs from $EB_CONFORMANCE_CONFIG's file,
 * then the files and key=value settings added with eb_conformance_add_file()
 * and eb_conformance_add_setting() (the runner's --config and -X), in order,
 * then $EB_TEST_SET ("key=value;..."); nothing at all means the memory
 * transport with its defaults. Cases set a few core keys of their own
 * (dispatch.workers, retry.*, message.max.bytes, ...) on top.
 *
 * Retention: while no member of a group is receiving (before its first
 * member joins, between one member leaving and the next joining, while a
 * standby takes over), the transport must keep the messages the group has
 * not acknowledged. The cases keep that need small and say it: each case's
 * `retention` is the most messages of one topic it leaves waiting so (at
 * most 4,800: graceful_handover publishes 4,800 before its first member;
 * close_during_stream keeps its publisher within 2,000 of the closing
 * member, then adds 2,000 while no member is open; `--list` prints each).
 * A transport that keeps fewer declares how many (the runner's
 * --retention N, eb_conformance_set_retention()): cases that need more are
 * skipped with a sentence naming both numbers. With a member receiving, a
 * topic holds at most 16,000 messages (key_order_parallel); a transport
 * may make publishers wait for room (EB_ERR_FULL is retried) but must not
 * drop what a live group has not acknowledged.
 *
 * Groups: a transport declares EB_FEATURE_GROUPS (members share the work)
 * or EB_FEATURE_FAILOVER_GROUPS (one member active, the others standing by
 * until it leaves or dies). The cases about one member per group, groups
 * starting at the earliest, leaving and rejoining, hand-overs and closing
 * mid-stream run for either; two_members_split needs GROUPS; the failover_*
 * cases need FAILOVER_GROUPS and assume: a standby's eb_subscribe()
 * succeeds and eb_sub_wait_ready() returns once it has joined; the first
 * member of a group becomes active and stays active until it leaves or its
 * process dies; a standby handles nothing and is told nothing
 * (EB_EVENT_ASSIGNED) while the active member lives, then takes over:
 * EB_EVENT_ASSIGNED, and every message the group has not acknowledged.
 *
 * A case runs alone in its own process (the plain runner forks one per case;
 * criterion forks one per test), so the suite keeps one "current case" per
 * process and the check macros need no context argument.
 *
 * Rules for case authors:
 *  - EB_CHECK and friends may be called from any thread. On the case's own
 *    thread a failed check records "file:line: message", tears the case down
 *    (closes and destroys its buses, runs its teardown hooks) and longjmps
 *    out of the case. On any other thread (handlers, callbacks) it records
 *    the failure and returns; the case fails when it ends.
 *  - State a handler or callback touches must come from eb_conf_alloc() (or
 *    be static): it is freed only after every bus of the case is destroyed.
 *  - Never sleep to let things happen: wait for a count or a predicate with
 *    a deadline (eb_conf_counter_wait, eb_conf_recorder_wait, eb_conf_wait).
 *  - A process the case forks must not use the checks (they would unwind
 *    into the runner's copy in that process): it reports through memory
 *    shared with the case and ends with _exit() or a signal.
 */
#ifndef EB_CONFORMANCE_H
#define EB_CONFORMANCE_H

#include <eventbus/eventbus.h>

#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eb_conf_ctx eb_conf_ctx;

/* Case flags. */
/** The case restarts, kills or stops (SIGSTOP) a server, or kills a member
 *  process it forked: excluded by the runner's --no-server-control (the
 *  TSan build runs no crash cases). */
#define EB_CASE_NEEDS_SERVER_CONTROL (1u << 0)

typedef struct eb_conf_case {
    const char *name;
    uint64_t required_features; /**< every one of these flags is needed */
    uint64_t any_features;      /**< if non-zero, at least one is needed */
    unsigned flags;             /**< EB_CASE_* */
    /** The most messages of one topic the case leaves waiting for a group
     *  none of whose members is receiving (see "Retention" above). */
    unsigned long retention;
    void (*fn)(eb_conf_ctx *ctx);
} eb_conf_case;

/** Outcome of one case. */
enum { EB_CONF_PASS = 0, EB_CONF_FAIL = 1, EB_CONF_SKIP = 2 };

/** Exit status of a forked case process that skipped (automake's code). */
#define EB_CONF_EXIT_SKIP 77

/** @returns the case table and its length. */
EB_API const eb_conf_case *eb_conformance_cases(size_t *count);
/** @returns the case named `name`, or NULL. */
EB_API const eb_conf_case *eb_conformance_find(const char *name);

/**
 * Adds a properties file that every case's config loads, after
 * $EB_CONFORMANCE_CONFIG and the settings added before. The file is read
 * and checked now. Not thread-safe: call before running cases.
 * @returns 0, or an EB_ERR_* with a sentence in errstr (the file and line).
 */
EB_API int eb_conformance_add_file(const char *path, char *errstr, size_t errstr_size);
/**
 * Adds one setting (as `-X key=value`) that every case's config gets, after
 * those added before. Checked now as eb_config_set() checks it (a
 * transport's keys only when a bus opens). Not thread-safe.
 * @returns 0, or an EB_ERR_* with a sentence in errstr.
 */
EB_API int eb_conformance_add_setting(const char *key, const char *value, char *errstr,
                                      size_t errstr_size);
/**
 * Declares that the transport keeps at most `messages` messages of a topic
 * for a group none of whose members is receiving; cases whose `retention`
 * is larger are skipped. 0 (the default): no limit.
 */
EB_API void eb_conformance_set_retention(unsigned long messages);
/** Forgets the settings added and the declared retention. */
EB_API void eb_conformance_clear_settings(void);

/**
 * Runs one case in this process: probes the transport's features with the
 * suite config, skips when some are missing (or the case needs more
 * retention than declared), else runs the case and tears it down. Writes
 * the failure ("file:line: message") or the skip reason into `msg`.
 * @returns EB_CONF_PASS, EB_CONF_FAIL or EB_CONF_SKIP.
 */
EB_API int eb_conformance_run_case(const eb_conf_case *c, char *msg, size_t msg_size);

/**
 * The plain runner (behind eventbus-conformance and `eventbus
 * conformance`): forks each selected case with a timeout, prints
 * `ok|FAIL|skip <name>` per case and a final `N passed, N failed, N
 * skipped` line. Options (argv[0] is the program's name, used in errors):
 * --list, --case NAME, --filter SUBSTR, --exclude SUBSTR (each
 * repeatable), --config FILE and -X key=value (repeatable, added with the
 * calls above), --retention N, --timeout SEC, --no-server-control, --help.
 * @returns the exit status: 0 when nothing failed, 1 when something
 * failed, 2 on a usage error or a bad setting.
 */
EB_API int eb_conformance_run(int argc, char **argv);

/* ------------------------------------------------------------- checks */

EB_API void eb_conf_fail_at(const char *file, int line, const char *fmt,
                            ...) __attribute__((format(printf, 3, 4)));
EB_API void eb_conf_skip_at(const char *file, int line, const char *fmt,
                            ...) __attribute__((format(printf, 3, 4)));

#define EB_FAIL(...) eb_conf_fail_at(__FILE__, __LINE__, __VA_ARGS__)
/** Ends the case as skipped (only on the case's own thread). */
#define EB_SKIP(...) eb_conf_skip_at(__FILE__, __LINE__, __VA_ARGS__)

#define EB_CHECK(cond, ...)                                                   \
    do {                                                                      \
        if (!(cond))                                                          \
            eb_conf_fail_at(__FILE__, __LINE__, __VA_ARGS__);                 \
    } while (0)

#define EB_CHECK_CMP_(a, op, b, what)                                         \
    do {                                                                      \
        long long eb_a_ = (long long)(a), eb_b_ = (long long)(b);            \
        if (!(eb_a_ op eb_b_))                                                \
            eb_conf_fail_at(__FILE__, __LINE__, "%s: %s = %lld, %s = %lld",   \
                            what, #a, eb_a_, #b, eb_b_);                      \
    } while (0)

#define EB_CHECK_EQ(a, b) EB_CHECK_CMP_(a, ==, b, "expected " #a " == " #b)
#define EB_CHECK_NE(a, b) EB_CHECK_CMP_(a, !=, b, "expected " #a " != " #b)
#define EB_CHECK_GE(a, b) EB_CHECK_CMP_(a, >=, b, "expected " #a " >= " #b)
#define EB_CHECK_GT(a, b) EB_CHECK_CMP_(a, >, b, "expected " #a " > " #b)
#define EB_CHECK_LE(a, b) EB_CHECK_CMP_(a, <=, b, "expected " #a " <= " #b)
#define EB_CHECK_LT(a, b) EB_CHECK_CMP_(a, <, b, "expected " #a " < " #b)

/** Checks that an eventbus call returned the error `want` (0 for success). */
#define EB_CHECK_ERR(expr, want)                                              \
    do {                                                                      \
        int eb_rc_ = (expr), eb_want_ = (want);                               \
        if (eb_rc_ != eb_want_)                                               \
            eb_conf_fail_at(__FILE__, __LINE__, "%s returned %s (%s), expected %s", \
                            #expr, eb_err_name(eb_rc_), eb_strerror(eb_rc_),  \
                            eb_err_name(eb_want_));                           \
    } while (0)
#define EB_CHECK_OK(expr) EB_CHECK_ERR(expr, 0)

#define EB_CHECK_STREQ(a, b)                                                  \
    do {                                                                      \
        const char *eb_sa_ = (a), *eb_sb_ = (b);                              \
        if (!eb_sa_ || !eb_sb_ || strcmp(eb_sa_, eb_sb_) != 0)                \
            eb_conf_fail_at(__FILE__, __LINE__, "%s = \"%s\", expected \"%s\"", \
                            #a, eb_sa_ ? eb_sa_ : "(null)",                   \
                            eb_sb_ ? eb_sb_ : "(null)");                      \
    } while (0)

/* -------------------------------------------------------------- context */

/** @returns the transport's features (probed before the case started). */
EB_API uint64_t eb_conf_features(eb_conf_ctx *ctx);
/** @returns non-zero when every flag in `features` is present. */
EB_API int eb_conf_has(eb_conf_ctx *ctx, uint64_t features);
/** @returns the running case's name. */
EB_API const char *eb_conf_case_name(eb_conf_ctx *ctx);
/** @returns how many events of `type` buses of this case reported so far. */
EB_API unsigned long eb_conf_event_count(eb_conf_ctx *ctx, eb_event_type type);
/** @returns non-zero once a check failed on some thread. */
EB_API int eb_conf_failed(eb_conf_ctx *ctx);
/** Prints a note about the case to stderr (duplicates seen, ...). */
EB_API void eb_conf_note(eb_conf_ctx *ctx, const char *fmt, ...)
           __attribute__((format(printf, 2, 3)));

/** Zeroed memory freed after the case's buses are destroyed. */
EB_API void *eb_conf_alloc(eb_conf_ctx *ctx, size_t size);
/** Runs `fn(ptr)` at teardown, after the buses are destroyed (LIFO with
 *  eb_conf_alloc: register after allocating what fn uses). */
EB_API void eb_conf_defer_free(eb_conf_ctx *ctx, void (*fn)(void *), void *ptr);
/** Runs `fn(arg)` at teardown, before buses are destroyed (LIFO): stop and
 *  join the case's own threads here. `fn` must be idempotent. */
EB_API void eb_conf_on_teardown(eb_conf_ctx *ctx, void (*fn)(void *), void *arg);

/* ------------------------------------------------------------- helpers */

/** Generous deadlines: a slow CI machine under a sanitizer still makes them. */
#define EB_CONF_READY_MS 30000
#define EB_CONF_WAIT_MS 60000
#define EB_CONF_CLOSE_MS 30000

/** The monotonic clock, in milliseconds. */
EB_API double eb_conf_now_ms(void);
/** Busy-waits `us` microseconds: handler work that overlaps other handlers. */
EB_API void eb_conf_spin_us(unsigned us);

/**
 * A new config: the suite's file (EB_CONFORMANCE_CONFIG) if set, with the
 * case's event callback (counts events). Destroyed at teardown.
 */
EB_API eb_config *eb_conf_config_at(const char *file, int line, eb_conf_ctx *ctx);
#define eb_conf_config(...) eb_conf_config_at(__FILE__, __LINE__, __VA_ARGS__)
/** eb_config_set that fails the case on error. */
EB_API void eb_conf_set_at(const char *file, int line, eb_conf_ctx *ctx,
                           eb_config *cfg, const char *key, const char *value);
#define eb_conf_set(...) eb_conf_set_at(__FILE__, __LINE__, __VA_ARGS__)
/** A name unique across processes and runs: "ebconf-<case>-<what>-<pid>-<time>-<n>". */
EB_API const char *eb_conf_name(eb_conf_ctx *ctx, const char *what);

/** Opens a bus (fails the case on error); closed and destroyed at teardown. */
EB_API eb_bus *eb_conf_open_at(const char *file, int line, eb_conf_ctx *ctx,
                               const eb_config *cfg);
#define eb_conf_open(...) eb_conf_open_at(__FILE__, __LINE__, __VA_ARGS__)
/** Destroys a bus opened with eb_conf_open before teardown. */
EB_API void eb_conf_destroy_bus(eb_conf_ctx *ctx, eb_bus *bus);
/** Subscribes and waits until ready; fails the case on error. */
EB_API eb_sub *eb_conf_subscribe_at(const char *file, int line, eb_conf_ctx *ctx,
                                    eb_bus *bus, const char *topic, const char *group,
                                    eb_handler handler, void *opaque);
#define eb_conf_subscribe(...) eb_conf_subscribe_at(__FILE__, __LINE__, __VA_ARGS__)
/** The group a case should use: `name` when the transport has groups of
 *  either kind (GROUPS or FAILOVER_GROUPS), NULL (an anonymous member)
 *  otherwise. */
EB_API const char *eb_conf_group_or_anon(eb_conf_ctx *ctx, const char *name);

/**
 * Waits until pred(arg) is non-zero, polling every millisecond, at most
 * `timeout_ms`. @returns 0, or -1 at the deadline.
 */
EB_API int eb_conf_wait(int (*pred)(void *), void *arg, int timeout_ms);

/* A counter that threads add to and the case waits on (mutex + condvar). */
typedef struct eb_conf_counter eb_conf_counter;
EB_API eb_conf_counter *eb_conf_counter_new(eb_conf_ctx *ctx);
EB_API void eb_conf_counter_add(eb_conf_counter *c, long n);
EB_API long eb_conf_counter_get(eb_conf_counter *c);
/** @returns 0 once the count is >= target, -1 at the deadline. */
EB_API int eb_conf_counter_wait(eb_conf_counter *c, long target, int timeout_ms);

/*
 * The recorder: which (key, seq) pairs were handled, how often, and in
 * which order. Sequences of one key are 0, 1, 2, ... A first-time seq lower
 * than the highest seen for its key is an order violation; a seq seen before
 * is a duplicate (a redelivery), not an order violation.
 */
typedef struct eb_conf_recorder eb_conf_recorder;
EB_API eb_conf_recorder *eb_conf_recorder_new(eb_conf_ctx *ctx, unsigned nkeys,
                                              unsigned per_key);
/** @returns how often (key, seq) was seen before this call (0: first time);
 *  -1 when out of range (recorded as an error). */
EB_API int eb_conf_recorder_add(eb_conf_recorder *r, unsigned key, unsigned seq);
EB_API unsigned eb_conf_recorder_count(eb_conf_recorder *r, unsigned key,
                                       unsigned seq);
EB_API unsigned long eb_conf_recorder_unique(eb_conf_recorder *r);
EB_API unsigned long eb_conf_recorder_total(eb_conf_recorder *r);
EB_API unsigned long eb_conf_recorder_duplicates(eb_conf_recorder *r);
EB_API unsigned long eb_conf_recorder_order_violations(eb_conf_recorder *r);
EB_API unsigned long eb_conf_recorder_out_of_range(eb_conf_recorder *r);
/** @returns 0 once `unique` distinct pairs were seen, -1 at the deadline. */
EB_API int eb_conf_recorder_wait(eb_conf_recorder *r, unsigned long unique,
                                 int timeout_ms);
/** Describes the first order violation ("" if none). */
EB_API const char *eb_conf_recorder_first_violation(eb_conf_recorder *r);
/** Writes up to a few missing pairs among key < nkeys, seq < per_key into buf. */
EB_API unsigned long eb_conf_recorder_missing(eb_conf_recorder *r, unsigned nkeys,
                                              unsigned per_key, char *buf,
                                              size_t size);

/*
 * The delivery tracker: one slot per seq, filled by delivery callbacks.
 * Detects double callbacks and counts outcomes.
 */
typedef struct eb_conf_deliveries eb_conf_deliveries;
EB_API eb_conf_deliveries *eb_conf_deliveries_new(eb_conf_ctx *ctx, size_t capacity);
/** The callback and opaque to pass to eb_publish for `seq`. */
EB_API eb_delivery_cb eb_conf_deliveries_cb(void);
EB_API void *eb_conf_deliveries_slot(eb_conf_deliveries *d, size_t seq);
/** Counts an accepted publish (eb_publish returned 0). */
EB_API void eb_conf_deliveries_accepted(eb_conf_deliveries *d);
EB_API long eb_conf_deliveries_accepted_count(eb_conf_deliveries *d);
EB_API long eb_conf_deliveries_callbacks(eb_conf_deliveries *d);
EB_API long eb_conf_deliveries_confirmed(eb_conf_deliveries *d);
EB_API long eb_conf_deliveries_double_callbacks(eb_conf_deliveries *d);
/** @returns non-zero when seq's callback reported status 0. */
EB_API int eb_conf_deliveries_ok(eb_conf_deliveries *d, size_t seq);
/** @returns the status of seq's callback, or 1 when none ran yet. */
EB_API int eb_conf_deliveries_status(eb_conf_deliveries *d, size_t seq);
/** Waits until every accepted publish had its callback. @returns 0 or -1. */
EB_API int eb_conf_deliveries_wait(eb_conf_deliveries *d, int timeout_ms);

/*
 * Sequenced messages: key "key-<k>" (or no key for EB_CONF_NO_KEY), payload
 * "<k>:<seq>" as text.
 */
#define EB_CONF_NO_KEY 0xffffffffu

/** Publishes once; returns eb_publish's code (for threads other than the
 *  case's: no check). `d` may be NULL; its slot index is `slot`. */
EB_API int eb_conf_try_publish_seq(eb_bus *bus, const char *topic, unsigned key,
                                   unsigned seq, eb_conf_deliveries *d, size_t slot);
/** Publishes, retrying EB_ERR_FULL until EB_CONF_WAIT_MS; fails the case on
 *  any other error. `d` may be NULL; its slot index is `slot`. */
EB_API void eb_conf_publish_seq_at(const char *file, int line, eb_conf_ctx *ctx,
                                   eb_bus *bus, const char *topic, unsigned key,
                                   unsigned seq, eb_conf_deliveries *d, size_t slot);
#define eb_conf_publish_seq(...) eb_conf_publish_seq_at(__FILE__, __LINE__, __VA_ARGS__)
/** Publishes `msg`, retrying EB_ERR_FULL; fails the case on other errors. */
EB_API void eb_conf_publish_at(const char *file, int line, eb_conf_ctx *ctx,
                               eb_bus *bus, const eb_outgoing *msg, eb_delivery_cb cb,
                               void *opaque);
#define eb_conf_publish(...) eb_conf_publish_at(__FILE__, __LINE__, __VA_ARGS__)
/** Parses a sequenced message. @returns 0, or -1 when it is not one. */
EB_API int eb_conf_msg_seq(const eb_msg *msg, unsigned *key, unsigned *seq);

/*
 * A sink: a ready-made handler recording sequenced messages into a shared
 * recorder (the group's view) and/or its own (this member's view).
 */
typedef struct eb_conf_sink {
    eb_conf_recorder *shared; /**< may be NULL */
    eb_conf_recorder *own;    /**< may be NULL */
    unsigned spin_us;         /**< work per message */
    atomic_ulong handled;     /**< handler calls */
    atomic_ulong unparsable;  /**< not a sequenced message */
} eb_conf_sink;
EB_API eb_conf_sink *eb_conf_sink_new(eb_conf_ctx *ctx, eb_conf_recorder *shared,
                                      eb_conf_recorder *own);
/** The handler; opaque is the sink. Always ACKs. */
EB_API eb_result eb_conf_sink_handler(const eb_msg *msg, void *opaque);

/** Fails the case with what is missing unless every (key, seq) pair of
 *  nkeys x per_key reaches `r` within EB_CONF_WAIT_MS. */
EB_API void eb_conf_expect_all_at(const char *file, int line, eb_conf_ctx *ctx,
                                  eb_conf_recorder *r, unsigned nkeys,
                                  unsigned per_key, const char *what);
#define eb_conf_expect_all(...) eb_conf_expect_all_at(__FILE__, __LINE__, __VA_ARGS__)
/** Fails on order violations in `r` when the transport promises per-key
 *  order (KEY_ORDER, or KEY_ORDER_SINGLE_MEMBER with `single_member`). */
EB_API void eb_conf_expect_order_at(const char *file, int line, eb_conf_ctx *ctx,
                                    eb_conf_recorder *r, int single_member,
                                    const char *what);
#define eb_conf_expect_order(...) eb_conf_expect_order_at(__FILE__, __LINE__, __VA_ARGS__)

/**
 * Duplicates fail a case only when no revoke happened during it (a
 * rebalance legitimately redelivers): fails when `duplicates` > 0 and
 * `revokes` (EB_EVENT_REVOKED seen in the window that matters, see
 * eb_conf_revokes_since) is 0; otherwise prints them.
 */
EB_API void eb_conf_check_duplicates_at(const char *file, int line, eb_conf_ctx *ctx,
                                        unsigned long duplicates,
                                        unsigned long revokes, const char *what);
#define eb_conf_check_duplicates(...) eb_conf_check_duplicates_at(__FILE__, __LINE__, __VA_ARGS__)
/** @returns the EB_EVENT_REVOKED events since the count was `before`. */
EB_API unsigned long eb_conf_revokes_since(eb_conf_ctx *ctx, unsigned long before);
/** Flushes `bus` and checks that every accepted publish tracked by `d` was
 *  confirmed (status 0). */
EB_API void eb_conf_flush_confirmed_at(const char *file, int line, eb_conf_ctx *ctx,
                                       eb_bus *bus, eb_conf_deliveries *d);
#define eb_conf_flush_confirmed(...) eb_conf_flush_confirmed_at(__FILE__, __LINE__, __VA_ARGS__)

/* ---------------------------------------------------------------- cases */

/*
 * The case list, once: X(name, required features, any-of features, flags,
 * retention).
 * conformance.c builds the table from it (the function is eb_case_<name>),
 * criterion_main.c one criterion Test per case.
 */
#define EB_F_(f) ((uint64_t)EB_FEATURE_##f)
/* Cases that fit either kind of group (see "Groups" above). */
#define EB_CONF_ANY_GROUPS_ (EB_F_(GROUPS) | EB_F_(FAILOVER_GROUPS))
#define EB_CONF_CASE_LIST(X)                                                  \
    X(roundtrip_10k, 0, 0, 0, 0)                                              \
    X(bad_input, 0, 0, 0, 0)                                                  \
    X(key_order_parallel, 0,                                                  \
      EB_F_(KEY_ORDER) | EB_F_(KEY_ORDER_SINGLE_MEMBER), 0, 0)                \
    X(two_groups_each_get_all, 0, EB_CONF_ANY_GROUPS_, 0, 0)                  \
    X(group_starts_earliest, EB_F_(DURABLE), EB_CONF_ANY_GROUPS_, 0, 400)     \
    X(two_members_split, EB_F_(GROUPS), 0, 0, 0)                              \
    X(anonymous_member, 0, 0, 0, 0)                                           \
    X(duplicate_subscription, 0, EB_CONF_ANY_GROUPS_, 0, 0)                   \
    X(unsubscribe_resubscribe, EB_F_(DURABLE), EB_CONF_ANY_GROUPS_, 0, 2000)  \
    X(graceful_handover, EB_F_(DURABLE), EB_CONF_ANY_GROUPS_, 0, 4800)        \
    X(retry_backoff_then_dlq, 0, 0, 0, 0)                                     \
    X(reject_to_dlq, 0, 0, 0, 0)                                              \
    X(dead_letter_too_large_is_a_stub, EB_F_(HEADERS), 0, 0, 0)               \
    X(publish_from_handler, 0, 0, 0, 0)                                       \
    X(close_during_stream, EB_F_(DURABLE), EB_CONF_ANY_GROUPS_, 0, 4000)      \
    X(close_slow_handler_timeout, 0, 0, 0, 0)                                 \
    X(close_from_handler_busy, 0, 0, 0, 0)                                    \
    X(full_pool_pauses_and_resumes, 0, 0, 0, 0)                               \
    X(concurrent_publishers, 0, 0, 0, 0)                                      \
    X(failover_one_active, EB_F_(FAILOVER_GROUPS), 0, 0, 0)                   \
    X(failover_close_takeover, EB_F_(FAILOVER_GROUPS) | EB_F_(DURABLE), 0, 0, \
      3200)                                                                   \
    X(failover_kill_takeover, EB_F_(FAILOVER_GROUPS) | EB_F_(DURABLE), 0,     \
      EB_CASE_NEEDS_SERVER_CONTROL, 1600)

#ifdef __cplusplus
}
#endif
#endif /* EB_CONFORMANCE_H */
