/*
 * member.h — one member of the group under test: its own bus, a
 * subscription to each of the run's topics, and the handler that plays the
 * scenario's decisions (outcome and simulated work per message and
 * attempt). A member reports what it does to a sink: the recorder when it
 * runs in this process, a pipe to the parent when it runs in a child.
 * The verifying member (index -1) ACKs everything at once.
 */
#ifndef FAULT_MEMBER_H
#define FAULT_MEMBER_H

#include "env.h"
#include "recorder.h"
#include "scenario.h"

typedef struct member_sink {
    void *ctx;
    /** A handler starts (c->incarnation is filled in by the sink).
     *  @returns the call's handle for call_end. */
    long (*call_start)(void *ctx, const call_record *c);
    void (*call_end)(void *ctx, long call, eb_result result, int64_t end_ns);
    void (*revoked)(void *ctx, int topic);
    void (*leave)(void *ctx, const leave_record *leave);
    void (*fail)(void *ctx, fault_check check, const char *text);
} member_sink;

typedef struct member member;

typedef struct member_topic {
    member *m;
    int topic;
} member_topic;

struct member {
    const scenario *s;
    const fault_env *env;
    int index;             /* in the scenario; -1: the verifying member */
    int workers, workers_max, workers_idle_ms; /* see member_plan */
    member_sink sink;
    eb_bus *bus;
    eb_sub *subs[FAULT_MAX_TOPICS];
    member_topic topics[FAULT_MAX_TOPICS];
};

/** Opens the bus, subscribes to every topic and waits until each is
 *  ready. @returns 0, or -1 having told the sink why. */
int member_join(member *m);

/** Leaves: unsubscribes each topic first for LEAVE_UNSUBSCRIBE, then
 *  closes with `deadline_ms`; each step's timing goes to the sink. */
void member_leave(member *m, leave_kind how, int deadline_ms);

/** Frees the subscriptions and the bus (after member_leave). */
void member_destroy(member *m);

/** How long a member waits for its subscriptions to be ready. */
int member_ready_timeout_ms(const scenario *s);

/** released true: every simulated work in progress or to come ends at
 *  once (the run gave up); false: work takes its time again (next run). */
void member_release_work(bool released);

#endif
