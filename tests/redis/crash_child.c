/*
 * crash_child.c — the group member that test_redis_faults.c kills with
 * SIGKILL.
 *
 * usage: redis_crash_child URL TOPIC GROUP REPORT_FD [KEY=VALUE...]
 *
 * Opens a redis bus (4 dispatch workers, the suite's 3 s claim idle time,
 * then the KEY=VALUE settings given: test_redis_keyed.c's keyed mode),
 * joins GROUP on TOPIC and handles the stream until it is killed. On
 * REPORT_FD (a pipe to the test) it writes "ready\n" once its subscription
 * is ready, then "finish <payload>\n" just before each handler returns ACK
 * (one write(2) per line, shorter than PIPE_BUF: lines of concurrent
 * handlers never interleave); with the argument report=intervals the line
 * is "finish <payload> <message id> <start ns> <end ns>" (CLOCK_MONOTONIC,
 * one clock for every process of the machine). Each handler works 1-3 ms (by its payload),
 * so that a kill finds handlers running and entries read but not handled.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eventbus/eventbus.h"

static int report_fd;
static int intervals; /* report=intervals: each line also gives the id and times */

static long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static eb_result handle(const eb_msg *msg, void *opaque)
{
    (void)opaque;
    long long start = mono_ns();
    size_t len;
    const char *payload = eb_msg_payload(msg, &len);
    struct timespec work = {0, (1 + atol(payload) % 3) * 1000000L};
    nanosleep(&work, NULL); /* the handler's simulated work, not a wait for a condition */
    char line[160];
    int n = intervals ? snprintf(line, sizeof line, "finish %.*s %s %lld %lld\n",
                                 (int)(len < 24 ? len : 24), payload, eb_msg_id(msg), start,
                                 mono_ns())
                      : snprintf(line, sizeof line, "finish %.*s\n", (int)(len < 24 ? len : 24),
                                 payload);
    while (write(report_fd, line, (size_t)n) < 0 && errno == EINTR)
        ;
    return EB_ACK;
}

static int set(eb_config *cfg, const char *key, const char *value)
{
    char err[512];
    int rc = eb_config_set(cfg, key, value, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "crash_child: %s = %s: %s\n", key, value, err);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s URL TOPIC GROUP REPORT_FD [KEY=VALUE...]\n", argv[0]);
        return 2;
    }
    report_fd = atoi(argv[4]);
    alarm(180); /* a child whose test died ends by itself */
    eb_config *cfg = eb_config_new();
    if (!cfg || set(cfg, "transport", "redis") || set(cfg, "redis.url", argv[1]) ||
        set(cfg, "redis.claim.idle.ms", "3000") || set(cfg, "dispatch.workers", "4"))
        return 1;
    for (int i = 5; i < argc; i++) {
        if (strcmp(argv[i], "report=intervals") == 0) {
            intervals = 1;
            continue;
        }
        char *eq = strchr(argv[i], '=');
        if (!eq) {
            fprintf(stderr, "crash_child: '%s' is not KEY=VALUE\n", argv[i]);
            return 2;
        }
        *eq = '\0';
        if (set(cfg, argv[i], eq + 1))
            return 1;
    }
    char err[1024];
    eb_bus *bus = NULL;
    int rc = eb_bus_open(cfg, &bus, err, sizeof err);
    eb_config_destroy(cfg);
    if (rc != 0) {
        fprintf(stderr, "crash_child: eb_bus_open: %s\n", err);
        return 1;
    }
    eb_sub *sub = NULL;
    rc = eb_subscribe(bus, argv[2], argv[3], handle, NULL, NULL, &sub, err, sizeof err);
    if (rc == 0)
        rc = eb_sub_wait_ready(sub, 30000);
    if (rc != 0) {
        fprintf(stderr, "crash_child: subscribe: %s %s\n", eb_err_name(rc), err);
        return 1;
    }
    if (write(report_fd, "ready\n", 6) != 6)
        return 1;
    for (;;)
        pause(); /* handlers run on the bus's threads until SIGKILL */
}
