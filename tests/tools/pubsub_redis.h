/*
 * pubsub_redis.h — what the pub and sub tests do against the redis-server
 * of tests/servers/redis.sh ($EB_REDIS_URL; a test is skipped without
 * it): command lines with the Redis settings, topics of their own, and,
 * through the library rather than the command under test, publishing
 * messages and reading back what a topic holds (with the stream's length
 * from redis-cli, so that nothing extra hides).
 */
#ifndef EB_PUBSUB_REDIS_H
#define EB_PUBSUB_REDIS_H

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eventbus/eventbus.h"
#include "spawn_cli.h"

static inline const char *pr_url(void)
{
    const char *url = getenv("EB_REDIS_URL");
    if (!url)
        cr_skip_test("EB_REDIS_URL is not set (tests/servers/redis.sh start)");
    return url;
}

/** A topic no other run uses: "cli-<what>-<pid>-<ns>". */
static inline const char *pr_topic(const char *what)
{
    static char names[8][96];
    static int next;
    char *name = names[next++ % 8];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(name, sizeof names[0], "cli-%s-%d-%lld%09ld", what, (int)getpid(),
             (long long)ts.tv_sec, ts.tv_nsec);
    return name;
}

/** A command line: EB_CLI_PATH, the Redis settings (before the
 *  subcommand, so that a `--` among the arguments cannot take them), then
 *  the arguments given. */
typedef struct pr_args {
    char *v[64];
    int n;
    char url_setting[512];
} pr_args;

static inline void pr_add(pr_args *a, const char *arg)
{
    cr_assert_lt(a->n, 60);
    a->v[a->n++] = (char *)arg;
    a->v[a->n] = NULL;
}

/** Arguments up to a NULL. */
static inline char **pr_command(pr_args *a, const char *first, ...)
{
    a->n = 0;
    snprintf(a->url_setting, sizeof a->url_setting, "redis.url=%s", pr_url());
    pr_add(a, EB_CLI_PATH);
    pr_add(a, "-X");
    pr_add(a, "transport=redis");
    pr_add(a, "-X");
    pr_add(a, a->url_setting);
    va_list ap;
    va_start(ap, first);
    for (const char *arg = first; arg; arg = va_arg(ap, const char *))
        pr_add(a, arg);
    va_end(ap);
    return a->v;
}

static inline eb_bus *pr_open(void)
{
    eb_config *cfg = eb_config_new();
    char err[512];
    cr_assert_eq(eb_config_set(cfg, "transport", "redis", err, sizeof err), 0, "%s", err);
    cr_assert_eq(eb_config_set(cfg, "redis.url", pr_url(), err, sizeof err), 0, "%s", err);
    eb_bus *bus = NULL;
    cr_assert_eq(eb_bus_open(cfg, &bus, err, sizeof err), 0, "%s", err);
    eb_config_destroy(cfg);
    return bus;
}

static void pr_confirmed(int status, const char *id, void *opaque)
{
    (void)id;
    if (status != 0)
        *(int *)opaque = status;
}

/** Publishes one message (key NULL: none) and waits for its confirmation. */
static inline void pr_publish(const char *topic, const char *key, size_t key_len,
                              const void *payload, size_t len, const eb_header *headers,
                              size_t header_count)
{
    eb_bus *bus = pr_open();
    int status = 0;
    eb_outgoing m = {.topic = topic, .key = key, .key_len = key_len, .payload = payload,
                     .payload_len = len, .headers = headers, .header_count = header_count};
    cr_assert_eq(eb_publish(bus, &m, pr_confirmed, &status), 0);
    cr_assert_eq(eb_flush(bus, 10000), 0);
    cr_assert_eq(status, 0, "publish: %s", eb_err_name(status));
    eb_bus_destroy(bus);
}

/** Publishes text payloads, all with `key` (NULL: none), in order. */
static inline void pr_publish_texts(const char *topic, const char *key, int n,
                                    const char *const *texts)
{
    for (int i = 0; i < n; i++)
        pr_publish(topic, key, key ? strlen(key) : 0, texts[i], strlen(texts[i]), NULL, 0);
}

/* -------------------------------------------------------------- reading */

typedef struct pr_received {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    eb_msg *msgs[512];
    size_t n;
    size_t lost;                 /* not kept: no room or no memory */
} pr_received;

/* A handler: runs on a bus thread, where criterion cannot assert. */
static eb_result pr_keep(const eb_msg *msg, void *opaque)
{
    pr_received *r = opaque;
    eb_msg *copy = NULL;
    int rc = eb_msg_copy(msg, &copy);
    pthread_mutex_lock(&r->mu);
    if (rc == 0 && r->n < sizeof r->msgs / sizeof *r->msgs) {
        r->msgs[r->n++] = copy;
    } else {
        r->lost++;
        eb_msg_destroy(copy);
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return EB_ACK;
}

/** The length of topic's stream, from redis-cli. */
static inline long pr_stream_length(const char *topic)
{
    char command[1024];
    snprintf(command, sizeof command, "redis-cli -u '%s' XLEN '%s'", pr_url(), topic);
    FILE *p = popen(command, "r");
    cr_assert_not_null(p);
    long n = -1;
    cr_assert_eq(fscanf(p, "%ld", &n), 1, "%s printed no number", command);
    pclose(p);
    return n;
}

/**
 * Reads topic from its start through the library (a group of its own)
 * until `want` messages came, at most 20 s, and checks that the stream
 * holds no more than those. Free with pr_received_free().
 */
static inline pr_received *pr_read_back(const char *topic, size_t want)
{
    pr_received *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &attr);
    pthread_condattr_destroy(&attr);
    eb_bus *bus = pr_open();
    eb_sub_options so = {.struct_size = sizeof so, .start = EB_START_EARLIEST};
    eb_sub *sub = NULL;
    char err[512];
    cr_assert_eq(eb_subscribe(bus, topic, "test-reader", pr_keep, r, &so, &sub, err, sizeof err),
                 0, "%s", err);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += 20;
    pthread_mutex_lock(&r->mu);
    while (r->n < want && pthread_cond_timedwait(&r->cv, &r->mu, &deadline) == 0)
        ;
    size_t got = r->n;
    pthread_mutex_unlock(&r->mu);
    eb_bus_destroy(bus);
    cr_assert_eq(r->lost, 0, "the reader could not keep %zu messages", r->lost);
    cr_assert_eq(got, want, "read back %zu of %zu messages from %s", got, want, topic);
    cr_assert_eq(pr_stream_length(topic), (long)want, "%s holds more than expected", topic);
    return r;
}

/** The message whose payload is `text`, or the test fails. */
static inline const eb_msg *pr_find(const pr_received *r, const char *text)
{
    for (size_t i = 0; i < r->n; i++) {
        size_t len;
        const void *p = eb_msg_payload(r->msgs[i], &len);
        if (len == strlen(text) && memcmp(p, text, len) == 0)
            return r->msgs[i];
    }
    cr_assert_fail("no message with payload '%s' was read back", text);
    return NULL;
}

/** Asserts msg's key: NULL for none, else `len` bytes. */
static inline void pr_expect_key(const eb_msg *msg, const char *key, size_t len)
{
    size_t got_len;
    const void *got = eb_msg_key(msg, &got_len);
    if (!key) {
        cr_expect_null(got, "a key where none was expected");
        return;
    }
    cr_assert_not_null(got, "no key; expected '%.*s'", (int)len, key);
    cr_expect_eq(got_len, len);
    cr_expect_eq(memcmp(got, key, len), 0, "key '%.*s', not '%.*s'", (int)got_len,
                 (const char *)got, (int)len, key);
}

static inline void pr_received_free(pr_received *r)
{
    for (size_t i = 0; i < r->n; i++)
        eb_msg_destroy(r->msgs[i]);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

#endif
