/*
 * kafka_helpers.h — what the Kafka suites of tests/kafka/ (interop, crash,
 * restart, mock) share: a monotonic clock, the real broker's address (the
 * test is skipped when it is unset), buses opened from settings, child
 * commands (kcat, kafka.sh) run with a deadline, a tracker of numbered
 * messages (published, confirmed, handled) whose waits take a deadline, and
 * a raw librdkafka consumer and its read of a group's committed offsets,
 * and a paced stream of tracked publishes on a thread of its own.
 *
 * The helpers assert with criterion: call them from a Test, on the test's
 * own thread (the tracker's callbacks excepted: those run on bus threads).
 */
#ifndef EB_TESTS_KAFKA_HELPERS_H
#define EB_TESTS_KAFKA_HELPERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <librdkafka/rdkafka.h>

#include "eventbus/eventbus.h"

/** Milliseconds of CLOCK_MONOTONIC. */
int64_t kt_now_ms(void);

/** EB_KAFKA_BOOTSTRAP, or skips the test when it is unset. */
const char *kt_real_broker(void);

/** Creates a topic (replication 1) with librdkafka's admin API,
 *  independently of eventbus; asserts it worked. */
void kt_create_topic(const char *bootstrap, const char *topic, int partitions);

/** Writes "eb-<what>-<pid>-<ms>-<serial>" into out: a topic or group name
 *  no earlier run used. */
void kt_unique(char *out, size_t size, const char *what);

typedef struct kt_setting {
    const char *key, *value;
} kt_setting;

/**
 * Opens a kafka bus on `bootstrap` with the test group timeouts of
 * DESIGN.md, then `extra` (NULL-terminated; later settings win). `cb` may
 * be NULL.
 */
eb_bus *kt_open(const char *bootstrap, const kt_setting *extra, eb_event_cb cb,
                void *opaque);

/** Subscribes and waits (at most timeout_ms) until the subscription is
 *  ready. */
eb_sub *kt_subscribe_ready(eb_bus *bus, const char *topic, const char *group,
                           eb_handler handler, void *opaque, int timeout_ms);

/**
 * Runs argv[0] (searched on PATH) under coreutils' `timeout`, killed after
 * timeout_s; stdin from `stdin_path` (NULL: /dev/null), stdout to
 * `stdout_path` (NULL: this process's stderr, so it shows in the test log),
 * stderr to this process's stderr. The child inherits no other descriptor
 * (a broker started by kafka.sh must not hold the test runner's pipes).
 * @returns the exit status (124 when it timed out), -1 if it did not exit.
 */
int kt_run(const char *const argv[], const char *stdin_path, const char *stdout_path,
           int timeout_s);

/** kt_run() in the background. @returns the pid of the `timeout` running
 *  the command (a SIGTERM to it reaches the command); kt_reap() it. */
pid_t kt_spawn(const char *const argv[], const char *stdin_path, const char *stdout_path,
               int timeout_s);
/** Waits for a kt_spawn()ed command. @returns what kt_run() returns. */
int kt_reap(pid_t pid);

/** Reads a whole file into a NUL-terminated buffer (free it); *len gets the
 *  byte count. */
char *kt_read_file(const char *path, size_t *len);

/** Parses an id "partition@offset". @returns false if it is not one. */
bool kt_parse_id(const char *id, int32_t *partition, int64_t *offset);

/* ------------------------------------------------------------- tracker */

/**
 * Messages numbered 0..n-1: the payload of message i is its number in
 * decimal. The tracker counts delivery callbacks (status and id per
 * message) and handler calls, under one mutex whose condition variable
 * (CLOCK_MONOTONIC) wakes the waits.
 */
typedef struct kt_tracker kt_tracker;

typedef struct kt_slot {
    kt_tracker *t;
    size_t index;
} kt_slot;

struct kt_tracker {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t n;
    kt_slot *slots;       /* delivery callback opaques */
    int *status;          /* last delivery status; 1: no callback yet */
    int *reports;         /* delivery callbacks per message */
    int *handled;         /* handler calls per message */
    int32_t *partition;   /* stored partition (-1 until confirmed) */
    int64_t *offset;      /* stored offset (-1 until confirmed) */
    size_t n_reports, n_confirmed, n_handled_distinct, n_handled_calls;
    size_t n_revokes;     /* EB_EVENT_REVOKED seen by kt_tracker_event */
};

kt_tracker *kt_tracker_new(size_t n);
void kt_tracker_free(kt_tracker *t);

/** Publishes message `index` (payload: its number; key: `key`, NULL for
 *  none) with the tracker's delivery callback. @returns eb_publish's code. */
int kt_publish(eb_bus *bus, kt_tracker *t, const char *topic, size_t index,
               const char *key);

/** The delivery callback (opaque: &t->slots[i]). */
void kt_on_delivery(int status, const char *id, void *opaque);

/** A handler (opaque: the tracker): counts the message and ACKs. */
eb_result kt_handle(const eb_msg *msg, void *opaque);

/** Counts the message whose payload is `msg`'s number; false if the
 *  payload is not a number below n. */
bool kt_tracker_count(kt_tracker *t, const eb_msg *msg);

/** An event callback (opaque: the tracker) that counts revokes. */
void kt_tracker_event(eb_bus *bus, const eb_event *event, void *opaque);

/**
 * A steady stream of tracked messages on a thread of its own, for tests
 * that break the broker while publishing goes on: messages 0..t->n-1 (key
 * "key-<i % keys>"), one every period_ms, until `stop` or the last one. A
 * refused publish is counted in `refused`; with retry_refused it is tried
 * again, otherwise the stream ends there (the test sees what is missing).
 */
typedef struct kt_stream {
    eb_bus *bus;
    kt_tracker *t;
    const char *topic;
    unsigned keys;
    long period_ms;
    bool retry_refused;
    atomic_size_t next;    /* messages published so far */
    atomic_size_t refused; /* eb_publish errors */
    atomic_bool stop;
    pthread_t thread;
} kt_stream;

/** Starts s's thread (asserts it started). */
void kt_stream_start(kt_stream *s);
/** Sets `stop` if asked to, then joins the thread. */
void kt_stream_join(kt_stream *s, bool stop);

/**
 * A gate handlers wait at until the test opens it (KT_GATE_INIT; never
 * destroyed: its mutex and condition variable are static initializers).
 */
typedef struct kt_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
} kt_gate;
#define KT_GATE_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false}

/** Opens the gate: every waiter goes on, and later ones do not wait. */
void kt_gate_open(kt_gate *g);
/** Waits until the gate is open, at most timeout_s (a handler's bound, so
 *  a failed test never leaves one blocked). */
void kt_gate_wait(kt_gate *g, int timeout_s);

/** Waits until pred(t, arg) holds (checked under t->mu), at most
 *  timeout_ms. @returns whether it holds. */
bool kt_wait(kt_tracker *t, bool (*pred)(const kt_tracker *t, void *arg), void *arg,
             int timeout_ms);

/** Predicates for kt_wait. arg: a size_t *. */
bool kt_reports_at_least(const kt_tracker *t, void *arg);
bool kt_handled_at_least(const kt_tracker *t, void *arg);
/** Some message numbered at least *arg was handled. */
bool kt_handled_from(const kt_tracker *t, void *arg);
/** Every confirmed message (status 0) handled; arg unused. */
bool kt_all_confirmed_handled(const kt_tracker *t, void *arg);

/** Under no lock: messages handled more than once, and the first message
 *  confirmed but never handled (n when none). Call when the buses that
 *  update `t` are closed. */
size_t kt_duplicates(const kt_tracker *t);
size_t kt_first_lost(const kt_tracker *t);

/* ---------------------------------------------------- committed offsets */

/** A plain librdkafka consumer in `group` that commits nothing by itself
 *  (for reading a topic or a group's offsets independently of eventbus);
 *  asserts it was made. */
rd_kafka_t *kt_raw_consumer(const char *bootstrap, const char *group);

/**
 * The committed offsets of `group` for partitions 0..partitions-1 of
 * `topic`, read with a raw consumer that never joins the group (offsets[p]
 * < 0: nothing committed).
 */
void kt_committed(const char *bootstrap, const char *group, const char *topic,
                  int partitions, int64_t *offsets);

#endif
