/*
 * dirlog_check.c — a small application of the dirlog transport, so that
 * check_two_processes.sh can publish and subscribe from separate processes
 * through one directory (the plugin is found by EVENTBUS_PLUGIN_PATH):
 *
 *   dirlog_check pub DIR TOPIC FIRST COUNT
 *       publishes messages FIRST .. FIRST+COUNT-1 (key "key-<n % 8>", a
 *       header "seq" holding n, payload "<n>"), waits until every one is
 *       confirmed, prints "published COUNT".
 *   dirlog_check sub DIR TOPIC GROUP LAST [WORK_US [INFLIGHT]]
 *       subscribes as a member of GROUP ("-": anonymous, from the earliest)
 *       and prints "ready" when ready, "assigned" when it becomes active,
 *       and "handled <n> <key>" per message before acknowledging it (a
 *       handler taking WORK_US microseconds, as if it did I/O; at most
 *       INFLIGHT messages read and not acknowledged: what a close drains,
 *       dispatch.lane.max.inflight). Once it
 *       handled message LAST it closes the bus (what is queued drains) and
 *       exits: publish LAST after everything else, and every message
 *       before it in the log has been handled by then.
 *
 * Exit status 0, or 1 with one line on stderr.
 */
#include <eventbus/eventbus.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WAIT_LAST_MS 120000

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t last_cv = PTHREAD_COND_INITIALIZER;
static bool last_handled;
static unsigned long last_seq, work_us;
static const char *inflight;

/* Lines never interleave: one writer at a time, flushed before returning. */
static void say(const char *line)
{
    pthread_mutex_lock(&out_mu);
    fputs(line, stdout);
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
}

/* Runs on a dispatch worker. */
static eb_result on_message(const eb_msg *msg, void *opaque)
{
    size_t len = 0, key_len = 0;
    const char *payload = eb_msg_payload(msg, &len);
    const char *key = eb_msg_key(msg, &key_len);
    char text[32] = "", key_text[32] = "";
    memcpy(text, payload, len < sizeof text - 1 ? len : sizeof text - 1);
    if (key)
        memcpy(key_text, key, key_len < sizeof key_text - 1 ? key_len : sizeof key_text - 1);
    unsigned long n = strtoul(text, NULL, 10);
    if (work_us)
        usleep((useconds_t)work_us); /* the handler's own work */
    char line[80];
    snprintf(line, sizeof line, "handled %lu %s\n", n, key_text);
    say(line);
    if (n == last_seq) {
        pthread_mutex_lock(&out_mu);
        last_handled = true;
        pthread_cond_signal(&last_cv);
        pthread_mutex_unlock(&out_mu);
    }
    return EB_ACK;
}

/* Runs on a bus thread. */
static void on_event(eb_bus *bus, const eb_event *ev, void *opaque)
{
    if (ev->type == EB_EVENT_ASSIGNED)
        say("assigned\n");
    else if (ev->type == EB_EVENT_ERROR || ev->type == EB_EVENT_DLQ_FAILED)
        fprintf(stderr, "dirlog_check: event: %s\n", ev->detail);
}

static int fail(const char *what, int rc, const char *err)
{
    fprintf(stderr, "dirlog_check: %s: %s%s%s\n", what, eb_strerror(rc), err[0] ? ": " : "",
            err);
    return 1;
}

static eb_bus *open_bus(const char *dir, char *err, size_t size)
{
    eb_config *cfg = eb_config_new();
    eb_bus *bus = NULL;
    if (cfg && eb_config_set(cfg, "transport", "dirlog", err, size) == 0 &&
        eb_config_set(cfg, "dirlog.dir", dir, err, size) == 0 &&
        (!inflight || eb_config_set(cfg, "dispatch.lane.max.inflight", inflight, err, size) == 0) &&
        eb_config_set_event_cb(cfg, on_event, NULL) == 0)
        eb_bus_open(cfg, &bus, err, size);
    eb_config_destroy(cfg);
    return bus;
}

static void confirmed(int status, const char *id, void *opaque)
{
    if (status != 0)
        fprintf(stderr, "dirlog_check: a publish failed: %s\n", eb_strerror(status));
    else
        __atomic_add_fetch((unsigned long *)opaque, 1, __ATOMIC_RELAXED);
}

static int publish(const char *dir, const char *topic, unsigned long first, unsigned long count)
{
    char err[512] = "";
    eb_bus *bus = open_bus(dir, err, sizeof err);
    if (!bus)
        return fail("open", EB_ERR_CONFIG, err);
    unsigned long ok = 0;
    int rc = 0;
    for (unsigned long n = first; rc == 0 && n < first + count; n++) {
        char key[32], payload[32];
        int key_len = snprintf(key, sizeof key, "key-%lu", n % 8);
        int len = snprintf(payload, sizeof payload, "%lu", n);
        eb_header seq = {"seq", payload, (size_t)len};
        eb_outgoing m = {.topic = topic, .key = key, .key_len = (size_t)key_len,
                         .payload = payload, .payload_len = (size_t)len,
                         .headers = &seq, .header_count = 1};
        rc = eb_publish(bus, &m, confirmed, &ok);
    }
    int flushed = eb_flush(bus, 60000);
    eb_bus_close(bus, 10000);
    eb_bus_destroy(bus);
    if (rc != 0 || flushed != 0)
        return fail("publish", rc ? rc : flushed, "");
    if (ok != count) {
        fprintf(stderr, "dirlog_check: %lu of %lu publishes confirmed\n", ok, count);
        return 1;
    }
    printf("published %lu\n", count);
    return 0;
}

static int subscribe(const char *dir, const char *topic, const char *group)
{
    char err[512] = "";
    eb_bus *bus = open_bus(dir, err, sizeof err);
    if (!bus)
        return fail("open", EB_ERR_CONFIG, err);
    eb_sub_options opts = {.struct_size = sizeof opts, .start = EB_START_EARLIEST};
    eb_sub *sub = NULL;
    int rc = eb_subscribe(bus, topic, strcmp(group, "-") ? group : NULL, on_message, NULL,
                          &opts, &sub, err, sizeof err);
    if (rc == 0 && (rc = eb_sub_wait_ready(sub, 30000)) == 0)
        say("ready\n");
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_LAST_MS / 1000;
    pthread_mutex_lock(&out_mu);
    while (rc == 0 && !last_handled)
        if (pthread_cond_timedwait(&last_cv, &out_mu, &until) == ETIMEDOUT)
            rc = EB_ERR_TIMEOUT;
    pthread_mutex_unlock(&out_mu);
    int closed = eb_bus_close(bus, 10000);
    eb_bus_destroy(bus);
    if (rc != 0)
        return fail(last_handled ? "subscribe" : "waiting for the last message", rc, err);
    return closed == 0 ? 0 : fail("close", closed, "");
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "pub") == 0)
        return publish(argv[2], argv[3], strtoul(argv[4], NULL, 10),
                       strtoul(argv[5], NULL, 10));
    if (argc >= 6 && argc <= 8 && strcmp(argv[1], "sub") == 0) {
        last_seq = strtoul(argv[5], NULL, 10);
        work_us = argc >= 7 ? strtoul(argv[6], NULL, 10) : 0;
        inflight = argc == 8 ? argv[7] : NULL;
        return subscribe(argv[2], argv[3], argv[4]);
    }
    fprintf(stderr, "usage: dirlog_check pub DIR TOPIC FIRST COUNT\n"
                    "       dirlog_check sub DIR TOPIC GROUP|- LAST [WORK_US [INFLIGHT]]\n");
    return 2;
}
