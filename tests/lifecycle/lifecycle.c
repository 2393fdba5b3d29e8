/*
 * lifecycle.c — opens, uses, closes and destroys a bus on the memory
 * transport many times. After every cycle the process must have exactly the
 * threads it had before the first open (DESIGN.md, "Lifecycle and threads");
 * leaks are the business of the checker running this executable
 * (AddressSanitizer in the address build, valgrind in the plain build).
 *
 * One cycle: eb_config_new, eb_bus_open (default transport), subscribe
 * group "lc" to three topics, wait until the subscriptions are ready,
 * publish ten messages per topic, wait until all thirty are handled and
 * their delivery callbacks ran, eb_bus_close must return 0, then destroy.
 * Odd cycles destroy the subscriptions themselves before the bus; even
 * cycles leave them to eb_bus_destroy().
 *
 * The transport is the memory transport unless EB_TEST_CONFIG names a
 * properties file; EB_TEST_SET="key=value;..." adds settings known only
 * at run time (a broker's address; see tests/conformance/with_server.sh).
 *
 * usage: lifecycle [cycles]   (default 100)
 * Exits 0 when every cycle passed, 1 at the first failure (with a sentence).
 */
#include <eventbus/eventbus.h>

#include <dirent.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
    TOPIC_COUNT = 3,
    MESSAGES_PER_TOPIC = 10,
    MESSAGES_PER_CYCLE = TOPIC_COUNT * MESSAGES_PER_TOPIC,
    READY_TIMEOUT_MS = 10000,
    HANDLED_TIMEOUT_MS = 10000,
    CLOSE_TIMEOUT_MS = 5000,
    /* A joined thread leaves /proc/self/task a moment after pthread_join()
     * returns (the kernel reaps it after waking the joiner): allow that. */
    THREADS_SETTLE_MS = 2000,
    MAX_TRACKED_THREADS = 1024,
};

/* Unique per run: a broker outlives test runs, and Kafka topics are never
 * deleted under a consumer (librdkafka 2.0.2 can hang at close then). */
static char topics[TOPIC_COUNT][64];
static const char group[] = "lc";

/* What one cycle saw; written by bus threads, read by main. */
struct cycle_counts {
    atomic_int handled;
    atomic_int delivered;
    atomic_int delivery_failed;
};

static int current_cycle;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lifecycle: cycle %d: ", current_cycle);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void check_call(int rc, const char *call, const char *errstr)
{
    if (rc != 0)
        fail("%s returned %s (%s)%s%s", call, eb_err_name(rc), eb_strerror(rc),
             errstr && errstr[0] ? ": " : "", errstr ? errstr : "");
}

static int64_t monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void pause_briefly(void)
{
    struct timespec one_ms = {0, 1000000};
    nanosleep(&one_ms, NULL);
}

/* Runs on a dispatch worker. */
static eb_result count_handled(const eb_msg *msg, void *opaque)
{
    struct cycle_counts *counts = opaque;
    (void)msg;
    atomic_fetch_add(&counts->handled, 1);
    return EB_ACK;
}

/* Runs on a transport thread. */
static void count_delivered(int status, const char *id, void *opaque)
{
    struct cycle_counts *counts = opaque;
    (void)id;
    if (status == 0)
        atomic_fetch_add(&counts->delivered, 1);
    else
        atomic_fetch_add(&counts->delivery_failed, 1);
}

/* The ids of the process's threads (entries of /proc/self/task), in readdir
 * order; returns how many, at most `max`. */
static int list_threads(long *tids, int max)
{
    DIR *dir = opendir("/proc/self/task");
    if (dir == NULL)
        fail("cannot open /proc/self/task");
    int n = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        if (n < max)
            tids[n] = strtol(entry->d_name, NULL, 10);
        n++;
    }
    closedir(dir);
    return n < max ? n : max;
}

static bool contains(const long *tids, int n, long tid)
{
    for (int i = 0; i < n; i++)
        if (tids[i] == tid)
            return true;
    return false;
}

/* Waits (bounded) until the process has exactly the threads of `before`;
 * otherwise fails naming each thread that is left over. */
static void expect_threads(const long *before, int before_count)
{
    static long now[MAX_TRACKED_THREADS];
    int64_t deadline = monotonic_ms() + THREADS_SETTLE_MS;
    int count;
    while ((count = list_threads(now, MAX_TRACKED_THREADS)) != before_count &&
           monotonic_ms() < deadline)
        pause_briefly();
    if (count == before_count)
        return;

    fprintf(stderr, "lifecycle: cycle %d: %d threads after close, %d before open\n",
            current_cycle, count, before_count);
    for (int i = 0; i < count; i++) {
        if (contains(before, before_count, now[i]))
            continue;
        char path[64], name[64] = "?";
        snprintf(path, sizeof path, "/proc/self/task/%ld/comm", now[i]);
        FILE *comm = fopen(path, "r");
        if (comm != NULL) {
            if (fgets(name, sizeof name, comm) != NULL)
                name[strcspn(name, "\n")] = '\0';
            fclose(comm);
        }
        fprintf(stderr, "lifecycle:   left over: thread %ld \"%s\"\n", now[i], name);
    }
    fail("the bus left threads behind");
}

/* Waits until every message was handled and every delivery callback ran,
 * at most HANDLED_TIMEOUT_MS. */
static void wait_for_cycle(struct cycle_counts *counts)
{
    int64_t deadline = monotonic_ms() + HANDLED_TIMEOUT_MS;
    while (atomic_load(&counts->handled) < MESSAGES_PER_CYCLE ||
           atomic_load(&counts->delivered) + atomic_load(&counts->delivery_failed) <
               MESSAGES_PER_CYCLE) {
        if (monotonic_ms() >= deadline)
            fail("after %d ms: %d of %d messages handled, %d delivery callbacks",
                 HANDLED_TIMEOUT_MS, atomic_load(&counts->handled), MESSAGES_PER_CYCLE,
                 atomic_load(&counts->delivered) + atomic_load(&counts->delivery_failed));
        pause_briefly();
    }
}

static void publish_messages(eb_bus *bus, struct cycle_counts *counts)
{
    for (int t = 0; t < TOPIC_COUNT; t++) {
        for (int i = 0; i < MESSAGES_PER_TOPIC; i++) {
            char key[16], payload[64];
            snprintf(key, sizeof key, "key-%d", i % 3);
            int payload_len = snprintf(payload, sizeof payload,
                                       "cycle %d, %s, message %d",
                                       current_cycle, topics[t], i);
            /* Half keyed (per-key workers), half unkeyed (any worker). */
            eb_outgoing msg = {
                .topic = topics[t],
                .key = i % 2 == 0 ? key : NULL,
                .key_len = i % 2 == 0 ? strlen(key) : 0,
                .payload = payload,
                .payload_len = (size_t)payload_len,
            };
            check_call(eb_publish(bus, &msg, count_delivered, counts),
                       "eb_publish", NULL);
        }
    }
}

/** The config of EB_TEST_CONFIG and EB_TEST_SET (see the top comment). */
static eb_config *test_config(void)
{
    eb_config *cfg = eb_config_new();
    if (cfg == NULL)
        fail("eb_config_new returned NULL");
    char err[512] = "";
    const char *path = getenv("EB_TEST_CONFIG");
    if (path && *path && eb_config_load(cfg, path, err, sizeof err) != 0)
        fail("EB_TEST_CONFIG=%s: %s", path, err);
    const char *set = getenv("EB_TEST_SET");
    char *copy = strdup(set ? set : ""), *save = NULL;
    for (char *kv = strtok_r(copy, ";", &save); kv; kv = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq)
            fail("EB_TEST_SET: '%s' is not key=value", kv);
        *eq = '\0';
        if (eb_config_set(cfg, kv, eq + 1, err, sizeof err) != 0)
            fail("EB_TEST_SET: %s", err);
    }
    free(copy);
    return cfg;
}

/* Returns the number of threads seen while the bus was open. */
static int run_cycle(void)
{
    struct cycle_counts counts;
    atomic_init(&counts.handled, 0);
    atomic_init(&counts.delivered, 0);
    atomic_init(&counts.delivery_failed, 0);
    char errstr[512] = "";

    eb_config *cfg = test_config();
    eb_bus *bus = NULL;
    check_call(eb_bus_open(cfg, &bus, errstr, sizeof errstr), "eb_bus_open", errstr);
    eb_config_destroy(cfg);

    eb_sub *subs[TOPIC_COUNT];
    for (int t = 0; t < TOPIC_COUNT; t++)
        check_call(eb_subscribe(bus, topics[t], group, count_handled, &counts, NULL,
                                &subs[t], errstr, sizeof errstr),
                   "eb_subscribe", errstr);
    for (int t = 0; t < TOPIC_COUNT; t++)
        check_call(eb_sub_wait_ready(subs[t], READY_TIMEOUT_MS), "eb_sub_wait_ready", NULL);

    publish_messages(bus, &counts);
    wait_for_cycle(&counts);

    static long tids[MAX_TRACKED_THREADS];
    int threads_open = list_threads(tids, MAX_TRACKED_THREADS);

    check_call(eb_bus_close(bus, CLOSE_TIMEOUT_MS), "eb_bus_close", NULL);
    int handled = atomic_load(&counts.handled);
    int delivered = atomic_load(&counts.delivered);
    int delivery_failed = atomic_load(&counts.delivery_failed);
    if (handled != MESSAGES_PER_CYCLE || delivered != MESSAGES_PER_CYCLE ||
        delivery_failed != 0)
        fail("after close: %d handled, %d delivered, %d failed deliveries; "
             "expected exactly %d, %d, 0",
             handled, delivered, delivery_failed, MESSAGES_PER_CYCLE, MESSAGES_PER_CYCLE);

    if (current_cycle % 2 == 1)
        for (int t = 0; t < TOPIC_COUNT; t++)
            eb_sub_destroy(subs[t]);
    eb_bus_destroy(bus);
    return threads_open;
}

int main(int argc, char **argv)
{
    long cycles = 100;
    if (argc > 1) {
        char *end;
        cycles = strtol(argv[1], &end, 10);
        if (argc > 2 || *end != '\0' || cycles < 1) {
            fprintf(stderr, "usage: %s [cycles]   (a positive count; default 100)\n",
                    argv[0]);
            return 2;
        }
    }

    for (int t = 0; t < TOPIC_COUNT; t++)
        snprintf(topics[t], sizeof topics[t], "lifecycle-%d-%d", (int)getpid(), t);
    static long before[MAX_TRACKED_THREADS];
    int before_count = list_threads(before, MAX_TRACKED_THREADS);
    int threads_open = 0;
    for (current_cycle = 1; current_cycle <= cycles; current_cycle++) {
        threads_open = run_cycle();
        expect_threads(before, before_count);
    }
    printf("lifecycle: %ld cycles passed; %d threads before open, %d while open, "
           "%d after close\n",
           cycles, before_count, threads_open, before_count);
    return 0;
}
