/*
 * thread_probe.c — a thread's state from /proc/self/task/<tid>/stat, kept
 * open so that a look is one pread ("tid (name) S ..."; the name may hold
 * spaces and parentheses, so the state follows the last ')'), or from its
 * CPU clock.
 */
#include "thread_probe.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "clock.h"

void eb__thread_probe_open(eb_thread_probe *p)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%ld/stat", (long)syscall(SYS_gettid));
    p->fd = open(path, O_RDONLY | O_CLOEXEC);
    p->has_cpu_clock = pthread_getcpuclockid(pthread_self(), &p->cpu_clock) == 0;
    p->last_wall_ns = p->last_cpu_ns = 0;
}

void eb__thread_probe_close(eb_thread_probe *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    p->has_cpu_clock = false;
}

/** The state letter of the thread, or 0. */
static char proc_state(int fd)
{
    char buf[256];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');
    return paren && paren[1] == ' ' ? paren[2] : 0;
}

bool eb__thread_probe_blocked(eb_thread_probe *p, int64_t recent_ns)
{
    if (p->fd >= 0) {
        char state = proc_state(p->fd);
        if (state)
            return state == 'S' || state == 'D';
    }
    struct timespec ts;
    if (!p->has_cpu_clock || clock_gettime(p->cpu_clock, &ts) != 0)
        return false;
    int64_t cpu = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, wall = eb__now_ns();
    bool recent = p->last_wall_ns && wall - p->last_wall_ns <= recent_ns;
    bool blocked = recent && (cpu - p->last_cpu_ns) * 2 < wall - p->last_wall_ns;
    p->last_wall_ns = wall;
    p->last_cpu_ns = cpu;
    return blocked;
}
