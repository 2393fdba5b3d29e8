/*
 * run.h — one run: one seed, one scenario, its phases and its checks.
 *
 * Phases: the observer bus (publisher and dead-letter collector) opens;
 * churn (members join and leave as planned while messages are published,
 * the progress check watching); settle (the members that stay handle
 * everything outstanding); tail (a last burst, then every member closes
 * with its deadline while work is in flight); verify (a fresh member of
 * the group must receive every message not yet ACKed or dead-lettered);
 * then the checks, and the thread count once everything is closed.
 */
#ifndef FAULT_RUN_H
#define FAULT_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "scenario.h"

typedef struct run_options {
    uint64_t seed;
    fault_transport transport;
    bool verbose;
    bool allow_hol;        /* stalls behind a long handler are notes (issue 8) */
    bool allow_slow_kafka_leave; /* Kafka closes held by a JoinGroup in flight
                                  * are notes (checks.h) */
    const char *self_path; /* this executable, for child members */
} run_options;

typedef struct run_result {
    int failures;
    int notes;             /* known defects allowed by an option */
    bool skipped;          /* the transport is not available here */
    long published, confirmed, handler_calls, dead_letters, redelivered;
} run_result;

/** Runs the scenario of o->seed; prints its failures, each naming the
 *  seed. @returns 0 when it passed (or was skipped), 1 otherwise. */
int run_one(const run_options *o, run_result *out);

#endif
