/*
 * test_wait.h — the one way tests wait for something that has no signal to
 * wait on (a counter bumped by a handler, a stats field): look again every
 * millisecond until the condition holds or a deadline passes. Callers
 * always have a deadline; nothing here sleeps to let time pass.
 */
#ifndef EB_TEST_WAIT_H
#define EB_TEST_WAIT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

static inline int64_t test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/** One millisecond between two looks at a condition. */
static inline void test_next_look(void)
{
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
}

/** Looks at pred(arg) every millisecond until it holds or timeout_ms
 *  passed. @returns whether it holds. */
static inline bool test_wait_for(bool (*pred)(void *), void *arg, int timeout_ms)
{
    int64_t deadline = test_now_ms() + timeout_ms;
    while (!pred(arg) && test_now_ms() < deadline)
        test_next_look();
    return pred(arg);
}

#endif
