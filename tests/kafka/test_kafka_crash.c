/*
 * test_kafka_crash.c — a group member killed with SIGKILL mid-stream, on the
 * real broker (EB_KAFKA_BOOTSTRAP).
 *
 * A child process (crash_child.c: 4 workers, handlers of 1-3 ms) handles a
 * stream of N keyed messages and reports each handler's start and finish
 * over a pipe. Once it has finished a few hundred messages and committed
 * offsets, the test kills it with SIGKILL and checks:
 *   - per partition, the group's committed offset never passes the first
 *     message whose handler did not finish (contiguous acknowledgement);
 *   - a new member of the group (a bus in this process) starts at the
 *     committed offsets (it handles nothing below them) and handles every
 *     message the child did not finish: losses zero.
 * Messages finished by the child past its last commit are handled again by
 * the new member: those duplicates are allowed and printed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kafka_helpers.h"

#ifndef EB_CRASH_CHILD_PATH
#error "EB_CRASH_CHILD_PATH: the path of kafka_crash_child (set by CMakeLists.txt)"
#endif

enum { N = 5000, PARTITIONS = 4, KEYS = 200, KILL_AFTER = 300, CHILD_FD = 3 };

/* --------------------------------------------------------- the child log */

/** What the child reported, by message number. */
typedef struct child_log {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    int fd;
    bool ready, eof;
    bool started[N], finished[N];
    int32_t partition[N];
    int64_t offset[N];
    size_t n_started, n_finished, bad_lines;
} child_log;

static void log_line(child_log *cl, const char *line)
{
    char what[16];
    unsigned long id;
    int partition;
    long long offset;
    if (strcmp(line, "ready") == 0) {
        cl->ready = true;
    } else if (sscanf(line, "%15s %lu %d %lld", what, &id, &partition, &offset) == 4 && id < N &&
               (strcmp(what, "start") == 0 || strcmp(what, "finish") == 0)) {
        bool finish = what[0] == 'f';
        bool *seen = finish ? cl->finished : cl->started;
        if (!seen[id])
            finish ? cl->n_finished++ : cl->n_started++;
        seen[id] = true;
        cl->partition[id] = partition;
        cl->offset[id] = offset;
    } else {
        cl->bad_lines++;
    }
}

/** The reader thread: parses the child's lines until EOF (its death). */
static void *read_child(void *arg)
{
    child_log *cl = arg;
    char buf[8192], line[256];
    size_t used = 0;
    for (;;) {
        ssize_t n = read(cl->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        pthread_mutex_lock(&cl->mu);
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (used < sizeof line - 1)
                    line[used++] = buf[i];
                continue;
            }
            line[used] = '\0';
            log_line(cl, line);
            used = 0;
        }
        if (n <= 0)
            cl->eof = true;
        pthread_cond_broadcast(&cl->cv);
        pthread_mutex_unlock(&cl->mu);
        if (n <= 0)
            return NULL;
    }
}

static bool child_reached(child_log *cl, bool (*pred)(const child_log *), int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000)
        deadline.tv_sec++, deadline.tv_nsec -= 1000000000;
    pthread_mutex_lock(&cl->mu);
    bool holds;
    while (!(holds = pred(cl)) && !cl->eof &&
           pthread_cond_timedwait(&cl->cv, &cl->mu, &deadline) != ETIMEDOUT)
        ;
    holds = pred(cl);
    pthread_mutex_unlock(&cl->mu);
    return holds;
}

static bool is_ready(const child_log *cl) { return cl->ready; }
static bool finished_enough(const child_log *cl) { return cl->n_finished >= KILL_AFTER; }

/* ------------------------------------------------------------- the child */

static pid_t child_pid; /* until it is reaped */

/* A test that failed before the kill leaves no child behind. */
static void kill_child(void)
{
    if (child_pid > 0) {
        kill(child_pid, SIGKILL);
        waitpid(child_pid, NULL, 0);
    }
}

static pid_t spawn_child(const char *bootstrap, const char *topic, const char *group,
                         bool default_session, int *read_fd)
{
    int fds[2];
    cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
    char partitions[16], fd_arg[16];
    snprintf(partitions, sizeof partitions, "%d", PARTITIONS);
    snprintf(fd_arg, sizeof fd_arg, "%d", CHILD_FD);
    const char *argv[] = {EB_CRASH_CHILD_PATH, bootstrap, topic, group, partitions, fd_arg,
                          default_session ? "default-session" : NULL, NULL};
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) { /* async-signal-safe calls only until exec */
        if (dup2(fds[1], CHILD_FD) < 0)
            _exit(126);
        for (int fd = CHILD_FD + 1; fd < 1024; fd++)
            close(fd);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    *read_fd = fds[0];
    child_pid = pid;
    return pid;
}

/* The commits of the child run every 100 ms: waits (checking the group's
 * offsets at most every 100 ms) until one is past the start. */
static bool child_committed_something(const char *bootstrap, const char *group,
                                      const char *topic, child_log *cl, int timeout_ms)
{
    int64_t deadline = kt_now_ms() + timeout_ms;
    while (kt_now_ms() < deadline) {
        int64_t committed[PARTITIONS];
        kt_committed(bootstrap, group, topic, PARTITIONS, committed);
        for (int p = 0; p < PARTITIONS; p++)
            if (committed[p] > 0)
                return true;
        pthread_mutex_lock(&cl->mu);
        bool eof = cl->eof;
        pthread_mutex_unlock(&cl->mu);
        if (eof)
            return false;
        /* Polling the broker with a deadline: nothing signals a commit. */
        struct timespec pace = {0, 100 * 1000000L};
        nanosleep(&pace, NULL); /* between two looks at the broker, within the deadline */
    }
    return false;
}

/* ------------------------------------------------------ the new member */

typedef struct member_ctx {
    kt_tracker *t;
    const int64_t *committed;
    atomic_size_t below_committed; /* handled below its partition's commit */
} member_ctx;

static eb_result handle_after_crash(const eb_msg *msg, void *opaque)
{
    member_ctx *mc = opaque;
    int32_t partition;
    int64_t offset;
    if (kt_parse_id(eb_msg_id(msg), &partition, &offset) && partition < PARTITIONS &&
        offset < mc->committed[partition])
        atomic_fetch_add(&mc->below_committed, 1);
    kt_tracker_count(mc->t, msg);
    return EB_ACK;
}

/** Every message finished by the child or handled by the new member. */
static bool nothing_left(const kt_tracker *t, void *arg)
{
    const child_log *cl = arg;
    for (size_t i = 0; i < N; i++)
        if (!cl->finished[i] && !t->handled[i])
            return false;
    return true;
}

/* ------------------------------------------------------------- the checks */

/**
 * Per partition, the offset of the first message the child did not finish
 * (the end of the partition when it finished them all): the committed
 * offset may not pass it.
 */
static void check_commits(const kt_tracker *pub, const child_log *cl, const int64_t *committed)
{
    for (int p = 0; p < PARTITIONS; p++) {
        int64_t first_unfinished = -1, end = 0;
        size_t finished = 0, total = 0;
        for (size_t i = 0; i < N; i++) {
            if (pub->partition[i] != p)
                continue;
            total++;
            if (pub->offset[i] + 1 > end)
                end = pub->offset[i] + 1;
            if (cl->finished[i]) {
                finished++;
                cr_expect(cl->partition[i] == p && cl->offset[i] == pub->offset[i],
                          "message %zu: the child handled it at %d@%lld, stored at %d@%lld", i,
                          cl->partition[i], (long long)cl->offset[i], p,
                          (long long)pub->offset[i]);
            } else if (first_unfinished < 0 || pub->offset[i] < first_unfinished) {
                first_unfinished = pub->offset[i];
            }
        }
        int64_t bound = first_unfinished >= 0 ? first_unfinished : end;
        printf("crash: partition %d: %zu messages, %zu finished by the child, committed %lld, "
               "first unfinished %lld\n",
               p, total, finished, (long long)committed[p], (long long)first_unfinished);
        cr_expect(committed[p] <= bound,
                  "partition %d: committed offset %lld passes the first unfinished message "
                  "(offset %lld)",
                  p, (long long)committed[p], (long long)bound);
    }
}

static child_log *child_log_new(void)
{
    child_log *cl = calloc(1, sizeof *cl);
    cr_assert_not_null(cl);
    pthread_mutex_init(&cl->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&cl->cv, &attr);
    pthread_condattr_destroy(&attr);
    return cl;
}

Test(kafka_crash, sigkill_commits_nothing_unfinished_and_loses_nothing, .timeout = 240,
     .fini = kill_child)
{
    const char *bootstrap = kt_real_broker();
    char topic[128], group[128];
    kt_unique(topic, sizeof topic, "crash");
    kt_unique(group, sizeof group, "crash-g");

    /* The child creates the topic when it subscribes. */
    child_log *cl = child_log_new();
    pid_t child = spawn_child(bootstrap, topic, group, false, &cl->fd);
    pthread_t reader;
    cr_assert_eq(pthread_create(&reader, NULL, read_child, cl), 0);
    cr_assert(child_reached(cl, is_ready, 60000), "the child did not get ready");

    eb_bus *pub_bus = kt_open(bootstrap, NULL, NULL, NULL);
    kt_tracker *pub = kt_tracker_new(N);
    for (size_t i = 0; i < N; i++) {
        char key[16];
        snprintf(key, sizeof key, "key-%zu", i % KEYS);
        int rc = kt_publish(pub_bus, pub, topic, i, key);
        cr_assert_eq(rc, 0, "publish %zu: %s", i, eb_err_name(rc));
        /* Paced at about 5,000/s, above what the child handles (~2,000/s):
         * its queue fills with every partition's messages interleaved,
         * rather than one partition's batch after another's. */
        if (i % 100 == 99)
            nanosleep(&(struct timespec){0, 20 * 1000000L}, NULL);
    }
    size_t all = N;
    cr_assert(kt_wait(pub, kt_reports_at_least, &all, 60000), "%zu of %d delivery reports",
              pub->n_reports, N);
    cr_assert_eq(pub->n_confirmed, N, "%zu of %d publishes confirmed", pub->n_confirmed, N);

    cr_assert(child_reached(cl, finished_enough, 60000), "the child finished %zu messages",
              cl->n_finished);
    cr_assert(child_committed_something(bootstrap, group, topic, cl, 20000),
              "the child committed no offset");
    cr_assert_eq(kill(child, SIGKILL), 0);
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    child_pid = 0;
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "the child ended by itself (status %#x)", status);
    pthread_join(reader, NULL); /* it read every line the child wrote */
    close(cl->fd);
    size_t in_progress = 0;
    for (size_t i = 0; i < N; i++)
        in_progress += cl->started[i] && !cl->finished[i];
    printf("crash: the child was killed after finishing %zu of %d messages (%zu started, "
           "%zu running)\n",
           cl->n_finished, N, cl->n_started, in_progress);
    cr_expect_eq(cl->bad_lines, 0, "the child wrote %zu unreadable lines", cl->bad_lines);
    cr_assert_lt(cl->n_finished, N, "the child finished everything before the kill");

    int64_t committed[PARTITIONS];
    kt_committed(bootstrap, group, topic, PARTITIONS, committed);
    check_commits(pub, cl, committed);

    /* A new member handles the rest, from the committed offsets. */
    member_ctx *mc = calloc(1, sizeof *mc);
    mc->t = kt_tracker_new(N);
    mc->committed = committed;
    eb_bus *bus = kt_open(bootstrap, NULL, kt_tracker_event, mc->t);
    eb_sub *sub = kt_subscribe_ready(bus, topic, group, handle_after_crash, mc, 30000);
    bool done = kt_wait(mc->t, nothing_left, cl, 90000);
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    size_t lost = 0, dup_child = 0;
    for (size_t i = 0; i < N; i++) {
        lost += !cl->finished[i] && !mc->t->handled[i];
        dup_child += cl->finished[i] && mc->t->handled[i];
    }
    printf("crash: the new member handled %zu messages; %zu lost; duplicates: %zu handled by "
           "both the child and the new member, %zu twice by the new member (%zu revokes)\n",
           mc->t->n_handled_distinct, lost, dup_child, kt_duplicates(mc->t), mc->t->n_revokes);
    cr_expect(done && lost == 0, "%zu messages handled by neither", lost);
    cr_expect_eq(atomic_load(&mc->below_committed), 0,
                 "the new member handled %zu messages below the committed offsets",
                 atomic_load(&mc->below_committed));

    eb_sub_destroy(sub);
    eb_bus_destroy(bus);
    cr_expect_eq(eb_bus_close(pub_bus, 10000), 0);
    eb_bus_destroy(pub_bus);
    kt_tracker_free(mc->t);
    free(mc);
    kt_tracker_free(pub);
    pthread_cond_destroy(&cl->cv);
    pthread_mutex_destroy(&cl->mu);
    free(cl);
}

/* Issue 7, defect 15: with librdkafka's default session (45 s) the
 * survivor waited 47 s; eventbus's default is 10 s. The bound leaves room
 * for the rebalance that follows the session's expiry. */
enum { TAKEOVER_BOUND_MS = 20000, TAKEOVER_MSGS = 200 };

Test(kafka_crash, a_survivor_takes_over_a_killed_member_within_the_default_session,
     .timeout = 120, .fini = kill_child)
{
    const char *bootstrap = kt_real_broker();
    char topic[128], group[128];
    kt_unique(topic, sizeof topic, "takeover");
    kt_unique(group, sizeof group, "takeover-g");
    child_log *cl = child_log_new();
    pid_t child = spawn_child(bootstrap, topic, group, true, &cl->fd);
    pthread_t reader;
    cr_assert_eq(pthread_create(&reader, NULL, read_child, cl), 0);
    cr_assert(child_reached(cl, is_ready, 60000), "the child did not get ready");

    /* The survivor joins; once it is ready the group holds both members. */
    kt_tracker *t = kt_tracker_new(TAKEOVER_MSGS);
    eb_bus *bus = kt_open(bootstrap, NULL, NULL, NULL);
    eb_sub *sub = kt_subscribe_ready(bus, topic, group, kt_handle, t, 60000);
    cr_assert_eq(kill(child, SIGKILL), 0);
    int64_t killed_at = kt_now_ms();
    cr_assert_eq(waitpid(child, NULL, 0), child);
    child_pid = 0;
    pthread_join(reader, NULL);
    close(cl->fd);

    /* Messages for every partition, the child's too: all handled once the
     * survivor has taken the child's partitions over. */
    for (size_t i = 0; i < TAKEOVER_MSGS; i++) {
        char key[16];
        snprintf(key, sizeof key, "key-%zu", i);
        cr_assert_eq(kt_publish(bus, t, topic, i, key), 0);
    }
    size_t all = TAKEOVER_MSGS;
    bool done = kt_wait(t, kt_handled_at_least, &all, 60000);
    int64_t took = kt_now_ms() - killed_at;
    printf("crash: the survivor handled every partition %lld ms after the kill\n",
           (long long)took);
    cr_expect(done, "%zu of %d handled", t->n_handled_distinct, TAKEOVER_MSGS);
    cr_expect_lt(took, TAKEOVER_BOUND_MS, "the take-over took %lld ms", (long long)took);
    eb_sub_destroy(sub);
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    eb_bus_destroy(bus);
    kt_tracker_free(t);
    pthread_cond_destroy(&cl->cv);
    pthread_mutex_destroy(&cl->mu);
    free(cl);
}
