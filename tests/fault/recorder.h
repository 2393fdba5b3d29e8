/*
 * recorder.h — the model of the run: what was published and confirmed
 * (where it was stored), every handler call (which member incarnation,
 * which message, attempt, outcome, when), revokes, what the dead-letter
 * collector and the verifying member received, every leave (close or
 * unsubscribe) with its timing, and the failures the checks found. One
 * mutex guards it all; its condition variable wakes the run's waits.
 *
 * Sequence numbers (`seq`) order every record made under the mutex: a
 * handler call's start and end, and revokes, so order and overlap are
 * judged on what really happened first, not on clock readings.
 */
#ifndef FAULT_RECORDER_H
#define FAULT_RECORDER_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "position.h"
#include "scenario.h"

/** The checks of the driver, as the failure lines name them. */
typedef enum fault_check {
    CHECK_SETUP = 0,      /* an API call the driver needs failed */
    CHECK_REDELIVERY = 1, /* committed past an unfinished message */
    CHECK_HANDLED = 2,    /* a confirmed publish never handled to ACK or DLQ */
    CHECK_ORDER = 3,      /* per-key order within a member incarnation */
    CHECK_PROGRESS = 4,   /* work outstanding, nothing handled for too long */
    CHECK_CLOSE = 5,      /* close or unsubscribe past its bound */
    CHECK_THREADS = 6,    /* threads not back to where they were */
    CHECK_COUNT
} fault_check;

const char *fault_check_name(fault_check c);

typedef enum publish_state {
    PUB_NONE,      /* not published (yet), or refused by eb_publish */
    PUB_ACCEPTED,  /* eb_publish returned 0, no delivery callback yet */
    PUB_CONFIRMED, /* stored: its position known */
    PUB_UNCERTAIN, /* EB_ERR_UNCERTAIN: may be stored */
    PUB_FAILED     /* not stored */
} publish_state;

typedef struct msg_state {
    int topic;
    int key;               /* -1: no key */
    publish_state publish;
    fault_pos pos;         /* when confirmed */
    uint32_t calls;        /* handler calls by the scenario's members */
    uint32_t acks;         /* ... that returned EB_ACK */
    uint32_t dead_letters; /* copies the dead-letter collector received */
    uint32_t verify_calls; /* deliveries to the verifying member */
} msg_state;

typedef struct call_record {
    int incarnation;
    int topic, key;
    long message;
    fault_pos pos;         /* from the message's id */
    uint32_t attempt;
    eb_result result;
    bool finished;
    uint64_t start_seq, end_seq;
    int64_t start_ns, end_ns;
} call_record;

typedef struct revoke_record {
    int incarnation;
    int topic;             /* -1: every topic of the member */
    uint64_t seq;
} revoke_record;

typedef struct leave_record {
    int incarnation;
    bool is_close;         /* else an unsubscribe */
    int deadline_ms;       /* close only */
    int64_t start_ns, end_ns;
    int rc;
} leave_record;

typedef struct incarnation {
    int member;            /* index in the scenario; -1: the verifying member */
    bool child;
    bool killed;
} incarnation;

enum { FAULT_MAX_INCARNATIONS = 64, FAULT_FAILURE_LINES = 24 };

typedef struct recorder {
    pthread_mutex_t mu;
    pthread_cond_t cv;     /* CLOCK_MONOTONIC: every change broadcasts */
    const scenario *s;
    uint64_t features;     /* the transport's EB_FEATURE_* (run.c sets it) */
    uint64_t seq;

    long n_messages;       /* capacity: churn + tail */
    long n_published;      /* messages numbered so far */
    msg_state *msgs;

    call_record *calls;
    size_t n_calls, cap_calls;
    revoke_record *revokes;
    size_t n_revokes, cap_revokes;
    leave_record *leaves;
    size_t n_leaves, cap_leaves;
    incarnation incarnations[FAULT_MAX_INCARNATIONS];
    int n_incarnations;

    /* per topic, kept as messages change (see count_message) */
    long confirmed_unfinished[FAULT_MAX_TOPICS];
    long unresolved[FAULT_MAX_TOPICS]; /* ... and not delivered to the verifier */

    /* for the progress check */
    int running_calls;
    int live_members;      /* joined, ready, not yet leaving */
    int transitions;       /* joins and leaves in progress */
    int64_t last_activity_ns;

    /* failures and notes */
    int failures[CHECK_COUNT];
    int notes;             /* known defects allowed by an option */
    char *failure_lines[FAULT_FAILURE_LINES];
    int n_failure_lines;
} recorder;

recorder *recorder_new(const scenario *s);
void recorder_free(recorder *r);

/** Records a failure of `check` (first lines kept, every one counted). */
void recorder_fail(recorder *r, fault_check check, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/** As recorder_fail, with r->mu already held. */
void recorder_fail_locked(recorder *r, fault_check check, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/** A known defect seen but allowed by an option (`what` names the issue),
 *  counted apart from failures. */
void recorder_note(recorder *r, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int recorder_failure_total(recorder *r);

/* publishing */
long recorder_next_message(recorder *r, int topic, int key);
void recorder_accepted(recorder *r, long message);
void recorder_delivery(recorder *r, long message, int status, const char *id);

/* members */
int recorder_incarnation_new(recorder *r, int member, bool child);
void recorder_transition(recorder *r, int delta);
void recorder_live(recorder *r, int delta);
void recorder_killed(recorder *r, int incarnation);
void recorder_leave(recorder *r, const leave_record *leave);
void recorder_revoked(recorder *r, int incarnation, int topic);

/* handler calls (times from CLOCK_MONOTONIC, any process) */
size_t recorder_call_start(recorder *r, const call_record *c);
void recorder_call_end(recorder *r, size_t call, eb_result result, int64_t end_ns);
void recorder_dead_letter(recorder *r, long message);

/** Waits until pred(r, arg) holds or the deadline (CLOCK_MONOTONIC ns).
 *  @returns whether it holds. */
bool recorder_wait(recorder *r, bool (*pred)(recorder *r, void *arg), void *arg,
                   int64_t deadline_ns);

/** Finished: its handler returned ACK, or it reached the DLQ collector. */
static inline bool msg_finished(const msg_state *m)
{
    return m->acks > 0 || m->dead_letters > 0;
}

int64_t fault_now_ns(void);

#endif
