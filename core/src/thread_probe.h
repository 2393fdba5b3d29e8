/*
 * thread_probe.h — is a thread blocked (sleeping, waiting on I/O or a
 * lock) rather than running or waiting for a CPU? The elastic pool grows
 * only while its workers are blocked inside handlers, never while they
 * use or queue for CPUs. Linux's /proc/self/task/<tid>/stat gives the
 * thread's state at once (R: running or runnable; S, D: blocked); without
 * it, the thread's CPU clock: blocked when it advanced less than half the
 * wall time since the last look (waiting for a CPU then counts as
 * blocked). schedstat's times were tried first: they are brought up to
 * date only when the thread is switched, so a thread queued for a CPU
 * for a millisecond looked blocked.
 */
#ifndef EB_THREAD_PROBE_H
#define EB_THREAD_PROBE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

typedef struct eb_thread_probe {
    int fd;             /* /proc/self/task/<tid>/stat, or -1 */
    clockid_t cpu_clock;
    bool has_cpu_clock;
    int64_t last_wall_ns, last_cpu_ns; /* the CPU clock's last look */
} eb_thread_probe;

/** Called by the thread itself: opens its probe. */
void eb__thread_probe_open(eb_thread_probe *p);

/** Closes what open opened (once the thread is joined). */
void eb__thread_probe_close(eb_thread_probe *p);

/** From any thread, by one at a time: is the thread blocked now (with the
 *  CPU clock: since the last look, at most `recent_ns` ago)? False when
 *  nothing can be read. */
bool eb__thread_probe_blocked(eb_thread_probe *p, int64_t recent_ns);

#endif
