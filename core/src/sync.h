/*
 * sync.h — small wrappers over pthreads used across the core: condition
 * variables on the monotonic clock, and a timed wait on an absolute
 * deadline.
 */
#ifndef EB_SYNC_H
#define EB_SYNC_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>

#include "clock.h"

static inline void eb__cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
}

/** Waits until signalled or `deadline_ns` (monotonic); INT64_MAX waits
 *  without limit. @returns false once the deadline has passed. */
static inline bool eb__cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
                                       int64_t deadline_ns)
{
    if (deadline_ns == INT64_MAX) {
        pthread_cond_wait(cv, mu);
        return true;
    }
    struct timespec ts = eb__timespec_of(deadline_ns);
    return pthread_cond_timedwait(cv, mu, &ts) != ETIMEDOUT;
}

#endif
