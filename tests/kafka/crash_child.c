/*
 * crash_child.c — the consumer that test_kafka_crash.c kills with SIGKILL.
 *
 * usage: kafka_crash_child BOOTSTRAP TOPIC GROUP PARTITIONS REPORT_FD [default-session]
 *
 * Opens a kafka bus (4 dispatch workers; the topic is created with
 * PARTITIONS partitions if missing; the tests' 3 s session timeout, or
 * eventbus's default with "default-session"), joins GROUP on TOPIC and handles the
 * stream until it is killed. On REPORT_FD (a pipe to the test) it writes
 * "ready\n" once its subscription is ready, then for every message
 *     "start <payload> <partition> <offset>\n"    when its handler starts
 *     "finish <payload> <partition> <offset>\n"   just before it returns ACK
 * (one write(2) per line, shorter than PIPE_BUF: lines of concurrent
 * handlers never interleave). Each handler sleeps 1-3 ms to simulate work,
 * so that a kill finds handlers running and messages queued.
 */
#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eventbus/eventbus.h"

static int report_fd;

static void report(const char *what, const eb_msg *msg)
{
    size_t len;
    const char *payload = eb_msg_payload(msg, &len);
    int partition;
    long long offset;
    if (sscanf(eb_msg_id(msg), "%d@%lld", &partition, &offset) != 2)
        partition = -1, offset = -1;
    char line[128];
    int n = snprintf(line, sizeof line, "%s %.*s %d %lld\n", what, (int)(len < 24 ? len : 24),
                     payload, partition, offset);
    while (write(report_fd, line, (size_t)n) < 0 && errno == EINTR)
        ;
}

static eb_result handle(const eb_msg *msg, void *opaque)
{
    (void)opaque;
    report("start", msg);
    /* Simulated work: 1-3 ms, by the message's offset. */
    int partition;
    long long offset = 0;
    sscanf(eb_msg_id(msg), "%d@%lld", &partition, &offset);
    struct timespec work = {0, (1 + offset % 3) * 1000000L};
    nanosleep(&work, NULL);
    report("finish", msg);
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
    bool default_session = argc == 7 && strcmp(argv[6], "default-session") == 0;
    if (argc != 6 && !default_session) {
        fprintf(stderr, "usage: %s BOOTSTRAP TOPIC GROUP PARTITIONS REPORT_FD [default-session]\n",
                argv[0]);
        return 2;
    }
    report_fd = atoi(argv[5]);
    alarm(180); /* a child whose test died ends by itself */
    eb_config *cfg = eb_config_new();
    /* Offsets are committed every 100 ms: the kill finds committed offsets
     * close behind the handlers, where a wrong one would show. */
    if (!cfg || set(cfg, "transport", "kafka") || set(cfg, "kafka.bootstrap.servers", argv[1]) ||
        set(cfg, "kafka.topic.partitions", argv[4]) || set(cfg, "kafka.topic.replication", "1") ||
        (!default_session && (set(cfg, "kafka.session.timeout.ms", "3000") ||
                              set(cfg, "kafka.heartbeat.interval.ms", "300"))) ||
        set(cfg, "kafka.auto.commit.interval.ms", "100") || set(cfg, "dispatch.workers", "4"))
        return 1;
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
