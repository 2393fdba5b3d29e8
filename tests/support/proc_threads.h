/*
 * proc_threads.h — the threads of this process as Linux lists them in
 * /proc/self/task: how many there are, and how many carry a given name
 * (what pthread_setname_np gave them). Shared by tests and benches that
 * check a bus starts and ends exactly the threads it should.
 */
#ifndef EB_PROC_THREADS_H
#define EB_PROC_THREADS_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/** Threads of this process (0 if /proc cannot be read). */
static inline int proc_thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

/** Threads of this process once it has `want` of them, or 2 s passed: a
 *  thread leaves /proc a moment after pthread_join returned for it, so a
 *  count taken at once after a close may still see threads it joined. A
 *  thread left running stays counted. */
static inline int proc_thread_count_settled(int want)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int n;
    while ((n = proc_thread_count()) != want) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 > 2000)
            break;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL); /* the next look at a condition, with a deadline */
    }
    return n;
}

/** Threads of this process whose name is `name`. */
static inline int proc_threads_named(const char *name)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[64] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* the thread just ended */
        if (fgets(comm, sizeof comm, f))
            comm[strcspn(comm, "\n")] = '\0';
        fclose(f);
        n += strcmp(comm, name) == 0;
    }
    if (d)
        closedir(d);
    return n;
}

#endif
