/*
 * progress.h — check 4 while the group works: a thread that looks at the
 * recorder every 50 ms and fails the run when messages are outstanding on
 * partitions where no handler runs, members are live, no join or leave is
 * in progress, and nothing at all happened (no handler started or ended,
 * no revoke, no dead letter) for the scenario's stall limit. A stall while
 * some handler has run longer than the limit is head-of-line blocking
 * (issue 7 defect 6, issue 8): a note with allow_hol, else a failure.
 */
#ifndef FAULT_PROGRESS_H
#define FAULT_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "recorder.h"

typedef struct progress_hooks {
    void *ctx;
    /** Messages of `topic` the group lost to retention (memory), else 0. */
    long (*lost)(void *ctx, int topic);
    /** Writes the stats of the live buses (for the failure report). */
    void (*describe)(void *ctx, char *buf, size_t size);
} progress_hooks;

typedef struct progress_monitor progress_monitor;

progress_monitor *progress_start(recorder *r, const scenario *s, bool allow_hol,
                                 progress_hooks hooks);
/** Stops and frees the monitor (NULL allowed). */
void progress_stop(progress_monitor *pm);

#endif
