/*
 * clock.h — the monotonic clock every deadline in the core is measured on,
 * and conversions between relative milliseconds and absolute deadlines.
 */
#ifndef EB_CLOCK_H
#define EB_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t eb__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/** Absolute deadline `ms` milliseconds from now (negative ms: already past). */
static inline int64_t eb__deadline_after_ms(int64_t ms)
{
    return eb__now_ns() + (ms < 0 ? 0 : ms) * 1000000;
}

/** The timespec pthread_cond_timedwait wants for a CLOCK_MONOTONIC condvar. */
static inline struct timespec eb__timespec_of(int64_t deadline_ns)
{
    struct timespec ts = {.tv_sec = deadline_ns / 1000000000,
                          .tv_nsec = deadline_ns % 1000000000};
    return ts;
}

#endif
