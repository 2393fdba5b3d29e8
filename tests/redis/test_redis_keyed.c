/*
 * test_redis_keyed.c — the Redis transport's keyed group mode through the
 * public API, against tests/servers/redis.sh's server (EB_REDIS_URL;
 * skipped without it), with tiny limits:
 *
 *  - members join and leave while messages flow (4 partitions, a lane
 *    bound of 4, a dispatch queue of 16): every message is handled once,
 *    each key's messages in publish order, and no two handlers of one key
 *    ever run at once, across the members;
 *  - a member killed with SIGKILL (a child process): its partitions wait
 *    for its leases to expire, then the other member finishes what it
 *    left pending before anything newer, so each key's order holds across
 *    the crash (each member handles a key's messages in increasing order,
 *    and together they handle all of them);
 *  - a publisher or member configured with another partition count than
 *    the topic's record is refused with a sentence, and nothing is stored
 *    where nobody reads; a keyed bus on a server that evicts keys is
 *    refused at open;
 *  - a member frozen (SIGSTOP) longer than its lease: the other member
 *    takes its partitions; handlers of one partition on two members never
 *    overlap unless one of them overran the revoke timeout (the frozen
 *    one's); nothing lost. Each handler's interval comes from the child
 *    members on CLOCK_MONOTONIC;
 *  - a handler slower than redis.claim.idle.ms runs once (keyed mode
 *    claims nothing by idle time);
 *  - an anonymous member reads every partition; entries other programs
 *    add to a partition stream are read by its owner.
 *
 * The take-over time goes to stderr ("recovery: ..."), for the issue note.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bus_stat.h"
#include "eventbus/eventbus.h"
#include "redis_test.h"
#include "test_wait.h"

#ifndef EB_REDIS_CRASH_CHILD_PATH
#error "EB_REDIS_CRASH_CHILD_PATH: the path of redis_crash_child (set by CMakeLists.txt)"
#endif

/* Command 1 s, revoke 1 s: the least lease is 3 x (1 + 1) = 6 s. */
enum { CAP = 20000, KEYS = 16, WAIT_MS = 30000, LEASE_MS = 6000 };

static const char *const KEYED[][2] = {
    {"transport", "redis"},
    {"redis.group.mode", "keyed"},
    {"redis.partitions", "4"},
    {"redis.command.timeout.ms", "1000"},
    {"redis.connect.timeout.ms", "500"},
    {"redis.block.ms", "300"},
    {"redis.backoff.min.ms", "50"},
    {"redis.backoff.max.ms", "500"},
    {"dispatch.revoke.timeout.ms", "1000"},
    {"dispatch.workers", "4"},
};
enum { N_KEYED = sizeof KEYED / sizeof *KEYED };

/* ---------------------------------------------------------------- state */

typedef struct tally {
    atomic_uchar handled[CAP];  /* times each seq was handled */
    atomic_long last[KEYS];     /* the last seq handled per key */
    atomic_int running[KEYS];   /* handlers of the key running now */
    atomic_ulong unique, duplicates, out_of_order, overlaps, confirmed;
} tally;

static tally *T;

static void setup(void)
{
    T = calloc(1, sizeof *T);
    cr_assert_not_null(T);
    for (int k = 0; k < KEYS; k++)
        atomic_init(&T->last[k], k - KEYS); /* key k's seqs: k, k + KEYS, ... */
}

static void teardown(void) { free(T); }

TestSuite(redis_keyed, .init = setup, .fini = teardown, .timeout = 120);

static const char *url(void)
{
    const char *u = getenv("EB_REDIS_URL");
    if (!u)
        cr_skip_test("EB_REDIS_URL is not set (tests/servers/redis.sh start)");
    return u;
}

static long payload_seq(const eb_msg *msg)
{
    size_t len;
    const char *p = eb_msg_payload(msg, &len);
    char buf[24];
    snprintf(buf, sizeof buf, "%.*s", (int)(len < sizeof buf - 1 ? len : sizeof buf - 1), p);
    return atol(buf);
}

static void count_handled(long seq)
{
    if (seq < 0 || seq >= CAP)
        return;
    if (atomic_fetch_add(&T->handled[seq], 1) == 0)
        atomic_fetch_add(&T->unique, 1);
    else
        atomic_fetch_add(&T->duplicates, 1);
}

/** Checks, across every member of the process, that the key's handlers
 *  never overlap and see its messages in publish order; works ~0.2 ms. */
static eb_result handle_ordered(const eb_msg *msg, void *opaque)
{
    (void)opaque;
    long seq = payload_seq(msg);
    int k = (int)(seq % KEYS);
    if (atomic_fetch_add(&T->running[k], 1) != 0)
        atomic_fetch_add(&T->overlaps, 1);
    long last = atomic_load(&T->last[k]);
    if (seq != last + KEYS) /* each key's seqs are k, k + KEYS, ... */
        atomic_fetch_add(&T->out_of_order, 1);
    atomic_store(&T->last[k], seq);
    struct timespec work = {0, 200000};
    nanosleep(&work, NULL); /* the handler's work: overlaps need a handler that lasts */
    count_handled(seq);
    atomic_fetch_sub(&T->running[k], 1);
    return EB_ACK;
}

static void delivered(int status, const char *id, void *opaque)
{
    (void)id;
    (void)opaque;
    if (status == 0)
        atomic_fetch_add(&T->confirmed, 1);
}

/** A keyed bus on the test server, then `extra` settings. */
static eb_bus *open_keyed(const char *const (*extra)[2], size_t n)
{
    char err[1024];
    eb_config *cfg = eb_config_new();
    cr_assert_eq(eb_config_set(cfg, "redis.url", url(), err, sizeof err), 0, "%s", err);
    for (size_t i = 0; i < N_KEYED; i++)
        cr_assert_eq(eb_config_set(cfg, KEYED[i][0], KEYED[i][1], err, sizeof err), 0, "%s",
                     err);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(eb_config_set(cfg, extra[i][0], extra[i][1], err, sizeof err), 0, "%s",
                     err);
    eb_bus *bus = NULL;
    cr_assert_eq(eb_bus_open(cfg, &bus, err, sizeof err), 0, "%s", err);
    eb_config_destroy(cfg);
    return bus;
}

static eb_sub *subscribe(eb_bus *bus, const char *topic, const char *group, eb_handler h)
{
    char err[512];
    eb_sub *sub = NULL;
    cr_assert_eq(eb_subscribe(bus, topic, group, h, NULL, NULL, &sub, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(eb_sub_wait_ready(sub, 15000), 0, "the subscription was not ready in 15 s");
    return sub;
}

static void leave(eb_bus *bus, eb_sub *sub)
{
    cr_assert_eq(eb_unsubscribe(sub), 0);
    eb_sub_destroy(sub);
    cr_assert_eq(eb_bus_close(bus, 5000), 0);
    eb_bus_destroy(bus);
}

static void publish_seq(eb_bus *bus, const char *topic, long seq)
{
    char payload[24], key[8];
    int plen = snprintf(payload, sizeof payload, "%ld", seq);
    int klen = snprintf(key, sizeof key, "k%ld", seq % KEYS);
    eb_outgoing m = {.topic = topic, .key = key, .key_len = (size_t)klen,
                     .payload = payload, .payload_len = (size_t)plen};
    cr_assert_eq(eb_publish(bus, &m, delivered, NULL), 0, "publish %ld", seq);
}

/** Publishes [from, end) and waits until all were confirmed. */
static void publish_range(eb_bus *bus, const char *topic, long from, long end)
{
    for (long s = from; s < end; s++)
        publish_seq(bus, topic, s);
    cr_assert_eq(eb_flush(bus, WAIT_MS), 0, "publishes not confirmed");
}

static bool unique_at_least(void *arg) { return atomic_load(&T->unique) >= *(unsigned long *)arg; }

static void wait_unique(unsigned long n, int timeout_ms, const char *what)
{
    cr_assert(test_wait_for(unique_at_least, &n, timeout_ms), "%s: %lu of %lu handled", what,
              atomic_load(&T->unique), n);
}

static void topic_name(char *out, size_t size, const char *what)
{
    rt_stream_name(out, size, what);
}

/* ------------------------------------------------- members come and go */

Test(redis_keyed, members_joining_and_leaving_keep_every_key_in_order)
{
    char topic[64];
    topic_name(topic, sizeof topic, "keyed-churn");
    const char *const tiny[][2] = {{"dispatch.lane.max.inflight", "4"},
                                   {"dispatch.queue.max", "16"}};
    eb_bus *producer = open_keyed(NULL, 0);
    eb_bus *a = open_keyed(tiny, 2);
    eb_sub *sa = subscribe(a, topic, "g", handle_ordered);
    cr_expect_str_eq(eb_bus_transport(a), "redis");
    cr_expect(eb_bus_features(a) & EB_FEATURE_KEY_ORDER, "a keyed bus says KEY_ORDER");

    enum { STEP = 1500 };
    publish_range(producer, topic, 0, STEP);
    eb_bus *b = open_keyed(tiny, 2); /* joins while a works through its backlog */
    eb_sub *sb = subscribe(b, topic, "g", handle_ordered);
    publish_range(producer, topic, STEP, 2 * STEP);
    wait_unique(2 * STEP, WAIT_MS, "two members");
    cr_expect_gt(bus_stat(b, "taken"), 0, "the member that joined took no partition");
    cr_expect_geq(bus_stat(b, "partition"), 0, "no partition in the stats");
    cr_expect_geq(bus_stat(b, "lag"), -1, "no lag in the stats");

    leave(a, sa); /* b takes a's partitions over */
    eb_bus *c = open_keyed(tiny, 2);
    eb_sub *sc = subscribe(c, topic, "g", handle_ordered);
    publish_range(producer, topic, 2 * STEP, 3 * STEP);
    wait_unique(3 * STEP, WAIT_MS, "after a left and c joined");
    fprintf(stderr, "keyed churn: %lu handled, %lu duplicates, %lu out of order, %lu overlaps\n",
            atomic_load(&T->unique), atomic_load(&T->duplicates),
            atomic_load(&T->out_of_order), atomic_load(&T->overlaps));
    cr_expect_eq(atomic_load(&T->overlaps), 0, "two handlers of one key ran at once");
    cr_expect_eq(atomic_load(&T->out_of_order), 0, "a key's messages ran out of order");
    cr_expect_eq(atomic_load(&T->duplicates), 0,
                 "graceful hand-overs acknowledge before they release: no duplicates");
    leave(b, sb);
    leave(c, sc);
    cr_assert_eq(eb_bus_close(producer, 5000), 0);
    eb_bus_destroy(producer);
}

/* ---------------------------------------------------------------- crash */

/** Per key, the seqs each member handled, in the order it handled them. */
typedef struct order_log {
    pthread_mutex_t mu;
    long *seqs[2][KEYS];
    size_t n[2][KEYS];
} order_log;

static order_log LOG = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void log_seq(int member, long seq)
{
    int k = (int)(seq % KEYS);
    pthread_mutex_lock(&LOG.mu);
    if (!LOG.seqs[member][k])
        LOG.seqs[member][k] = calloc(CAP, sizeof(long));
    if (LOG.n[member][k] < CAP)
        LOG.seqs[member][k][LOG.n[member][k]++] = seq;
    pthread_mutex_unlock(&LOG.mu);
    count_handled(seq);
}

static eb_result handle_logged(const eb_msg *msg, void *opaque)
{
    (void)opaque;
    log_seq(1, payload_seq(msg));
    return EB_ACK;
}

/** One handler run of a child member, on CLOCK_MONOTONIC. */
typedef struct interval {
    long long start, end;
    int member, partition;
} interval;

static struct {
    pthread_mutex_t mu;
    interval *v;
    size_t n, cap;
} IV = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void log_interval(int member, int partition, long long start, long long end)
{
    pthread_mutex_lock(&IV.mu);
    if (IV.n == IV.cap) {
        IV.cap = IV.cap ? 2 * IV.cap : 4096;
        IV.v = realloc(IV.v, IV.cap * sizeof *IV.v);
    }
    if (IV.v)
        IV.v[IV.n++] = (interval){start, end, member, partition};
    pthread_mutex_unlock(&IV.mu);
}

static void free_logs(void)
{
    for (int m = 0; m < 2; m++)
        for (int k = 0; k < KEYS; k++) {
            free(LOG.seqs[m][k]);
            LOG.seqs[m][k] = NULL;
            LOG.n[m][k] = 0;
        }
    free(IV.v);
    IV.v = NULL;
    IV.n = IV.cap = 0;
}

typedef struct child_report {
    FILE *in;
    pthread_t thread;
    int member;              /* its index in LOG and IV */
    atomic_bool ready;
    atomic_ulong finished;
    atomic_uint partitions_seen; /* bit p: handled an entry of partition p */
    atomic_llong last_start;     /* of its latest handler */
} child_report;

static void *read_reports(void *arg)
{
    child_report *r = arg;
    char line[192];
    while (fgets(line, sizeof line, r->in)) {
        if (strcmp(line, "ready\n") == 0) {
            atomic_store(&r->ready, true);
        } else if (strncmp(line, "finish ", 7) == 0) {
            long seq;
            int partition;
            long long start, end;
            if (sscanf(line + 7, "%ld %d@%*s %lld %lld", &seq, &partition, &start, &end) == 4) {
                log_interval(r->member, partition, start, end);
                atomic_fetch_or(&r->partitions_seen, 1u << partition);
                atomic_store(&r->last_start, start);
            } else {
                seq = atol(line + 7);
            }
            log_seq(r->member, seq);
            atomic_fetch_add(&r->finished, 1);
        }
    }
    return NULL;
}

static bool child_ready(void *arg) { return atomic_load(&((child_report *)arg)->ready); }

static bool child_busy(void *arg) { return atomic_load(&((child_report *)arg)->finished) >= 200; }

static pid_t start_child(const char *topic, child_report *rep, int member, bool intervals)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        close(fds[0]);
        char fd_arg[16];
        snprintf(fd_arg, sizeof fd_arg, "%d", fds[1]);
        const char *argv[9 + N_KEYED];
        int argc = 0;
        argv[argc++] = EB_REDIS_CRASH_CHILD_PATH;
        argv[argc++] = url();
        argv[argc++] = topic;
        argv[argc++] = "g";
        argv[argc++] = fd_arg;
        static char kv[N_KEYED][128];
        for (size_t i = 1; i < N_KEYED; i++) { /* all but transport, which it sets */
            snprintf(kv[i], sizeof kv[i], "%s=%s", KEYED[i][0], KEYED[i][1]);
            argv[argc++] = kv[i];
        }
        if (intervals)
            argv[argc++] = "report=intervals";
        argv[argc] = NULL;
        execv(EB_REDIS_CRASH_CHILD_PATH, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    *rep = (child_report){.in = fdopen(fds[0], "r"), .member = member};
    cr_assert_eq(pthread_create(&rep->thread, NULL, read_reports, rep), 0);
    return child;
}

/** Each member handled each key in increasing order, and together they
 *  handled every seq below n. */
static void expect_key_order_across(long n)
{
    for (int m = 0; m < 2; m++)
        for (int k = 0; k < KEYS; k++)
            for (size_t i = 1; i < LOG.n[m][k]; i++)
                cr_expect_gt(LOG.seqs[m][k][i], LOG.seqs[m][k][i - 1],
                             "member %d handled key %d's %ld after %ld", m, k,
                             LOG.seqs[m][k][i], LOG.seqs[m][k][i - 1]);
    for (long s = 0; s < n; s++)
        cr_expect_gt(atomic_load(&T->handled[s]), 0, "seq %ld was never handled", s);
}

Test(redis_keyed, a_killed_member_is_taken_over_after_its_leases_in_key_order)
{
    char topic[64];
    topic_name(topic, sizeof topic, "keyed-crash");
    child_report rep;
    pid_t child = start_child(topic, &rep, 0, false);
    cr_assert(test_wait_for(child_ready, &rep, 20000), "the child member was never ready");
    eb_bus *taker = open_keyed(NULL, 0);
    eb_sub *sub = subscribe(taker, topic, "g", handle_logged); /* half the partitions each */

    enum { N = 4000 };
    eb_bus *producer = open_keyed(NULL, 0);
    publish_range(producer, topic, 0, N);
    cr_assert(test_wait_for(child_busy, &rep, 20000), "the child handled too little");
    kill(child, SIGKILL);
    int64_t t_kill = test_now_ms();
    int status;
    waitpid(child, &status, 0);
    pthread_join(rep.thread, NULL);
    fclose(rep.in);
    unsigned long by_child = atomic_load(&rep.finished);
    wait_unique(N, WAIT_MS, "after the member was killed");
    int64_t t_all = test_now_ms();
    fprintf(stderr,
            "recovery: keyed mode, SIGKILL of a member: the other member handled the rest "
            "%lld ms after the kill (lease %d ms); child handled %lu of %d, %lu duplicates\n",
            (long long)(t_all - t_kill), LEASE_MS, by_child, N, atomic_load(&T->duplicates));
    cr_assert_lt(by_child, (unsigned long)N, "the child finished everything before the kill");
    expect_key_order_across(N);
    cr_expect_geq(bus_stat(taker, "taken"), 3, "the dead member's partitions were not taken");
    leave(taker, sub);
    cr_assert_eq(eb_bus_close(producer, 5000), 0);
    eb_bus_destroy(producer);
    free_logs();
}

/* ------------------------------------------------------- a frozen member */

typedef struct publisher {
    pthread_t thread;
    eb_bus *bus;
    const char *topic;
    atomic_bool stop;
    atomic_long next;
} publisher;

/** About one publish per millisecond until stop (pacing a stream, not
 *  waiting for anything). */
static void *publish_main(void *arg)
{
    publisher *p = arg;
    while (!atomic_load(&p->stop) && atomic_load(&p->next) < CAP) {
        publish_seq(p->bus, p->topic, atomic_fetch_add(&p->next, 1));
        struct timespec pace = {0, 1000000};
        nanosleep(&pace, NULL); /* pacing the stream, not waiting for anything */
    }
    return NULL;
}

static bool took_all(void *arg)
{
    return (atomic_load(&((child_report *)arg)->partitions_seen) & 0xf) == 0xf;
}

typedef struct since {
    child_report *rep;
    long long after_ns;
} since;

static bool handles_again(void *arg)
{
    since *w = arg;
    return atomic_load(&w->rep->last_start) > w->after_ns;
}

static long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static bool all_below_handled(void *arg)
{
    long end = *(long *)arg;
    for (long s = 0; s < end; s++)
        if (atomic_load(&T->handled[s]) == 0)
            return false;
    return true;
}

Test(redis_keyed, a_frozen_member_s_partitions_move_and_handlers_never_overlap_but_overruns)
{
    char topic[64];
    topic_name(topic, sizeof topic, "keyed-frozen");
    child_report rep[2];
    pid_t child[2];
    for (int m = 0; m < 2; m++) {
        child[m] = start_child(topic, &rep[m], m, true);
        cr_assert(test_wait_for(child_ready, &rep[m], 20000), "child %d was never ready", m);
    }
    eb_bus *producer = open_keyed(NULL, 0);
    publisher pub = {.bus = producer, .topic = topic};
    cr_assert_eq(pthread_create(&pub.thread, NULL, publish_main, &pub), 0);
    wait_unique(500, WAIT_MS, "before the freeze");

    /* Member 0 frozen: its renewals stop; member 1 takes every partition
     * once member 0's leases expired (L = 6 s). */
    kill(child[0], SIGSTOP);
    long long t_stop = mono_ns();
    atomic_store(&rep[1].partitions_seen, 0);
    bool took = test_wait_for(took_all, &rep[1], LEASE_MS + 10000);
    long long t_took = mono_ns();
    kill(child[0], SIGCONT);
    long long t_cont = mono_ns();
    cr_assert(took, "member 1 never handled every partition while member 0 was frozen");
    since back = {&rep[0], t_cont + 100000000LL};
    bool again = test_wait_for(handles_again, &back, 20000);
    atomic_store(&pub.stop, true);
    pthread_join(pub.thread, NULL);
    long end = atomic_load(&pub.next);
    cr_assert_eq(eb_flush(producer, WAIT_MS), 0);
    cr_assert_eq((long)atomic_load(&T->confirmed), end, "publishes not confirmed");
    bool all = test_wait_for(all_below_handled, &end, WAIT_MS);
    for (int m = 0; m < 2; m++) {
        kill(child[m], SIGKILL);
        waitpid(child[m], NULL, 0);
        pthread_join(rep[m].thread, NULL);
        fclose(rep[m].in);
    }
    cr_assert(again, "the frozen member never handled anything again after SIGCONT");
    cr_assert(all, "%lu of %ld published messages handled", atomic_load(&T->unique), end);

    /* Two members' handlers of one partition may overlap only when one of
     * them overran the revoke timeout (the frozen member's, stopped in the
     * middle). */
    const long long overrun_ns = 1000LL * 1000000; /* dispatch.revoke.timeout.ms */
    unsigned long overlaps = 0, overrun_overlaps = 0;
    for (size_t i = 0; i < IV.n; i++)
        for (size_t j = i + 1; j < IV.n; j++) {
            const interval *a = &IV.v[i], *b = &IV.v[j];
            if (a->member == b->member || a->partition != b->partition ||
                a->end <= b->start || b->end <= a->start)
                continue;
            if (a->end - a->start > overrun_ns || b->end - b->start > overrun_ns)
                overrun_overlaps++;
            else if (overlaps++ < 5)
                cr_log_error("partition %d: member %d ran [%lld, %lld] ms, member %d [%lld, "
                             "%lld] ms (from the freeze)",
                             a->partition, a->member, (a->start - t_stop) / 1000000,
                             (a->end - t_stop) / 1000000, b->member,
                             (b->start - t_stop) / 1000000, (b->end - t_stop) / 1000000);
        }
    fprintf(stderr,
            "recovery: keyed mode, a member frozen (SIGSTOP): the other handled every "
            "partition %lld ms after the freeze (lease %d ms); %zu handler runs, %lu overlaps "
            "with an overrun, %lu other overlaps; %lu duplicates\n",
            (t_took - t_stop) / 1000000, LEASE_MS, IV.n, overrun_overlaps, overlaps,
            atomic_load(&T->duplicates));
    cr_expect_eq(overlaps, 0, "handlers of one partition overlapped on two members");
    cr_assert_eq(eb_bus_close(producer, 5000), 0);
    eb_bus_destroy(producer);
    free_logs();
}

/* ---------------------------------------------------------- slow handler */

static atomic_int slow_runs, slow_done;

static eb_result handle_slow(const eb_msg *msg, void *opaque)
{
    (void)opaque;
    size_t len;
    const char *p = eb_msg_payload(msg, &len);
    if (len == 4 && memcmp(p, "slow", 4) == 0) {
        atomic_fetch_add(&slow_runs, 1);
        struct timespec work = {4, 0};
        nanosleep(&work, NULL); /* the handler's work, longer than a claim idle time */
        atomic_fetch_add(&slow_done, 1);
        return EB_ACK;
    }
    count_handled(payload_seq(msg));
    return EB_ACK;
}

static bool slow_finished(void *arg)
{
    (void)arg;
    return atomic_load(&slow_done) >= 1;
}

Test(redis_keyed, a_handler_slower_than_the_claim_idle_time_is_never_handed_over)
{
    char topic[64];
    topic_name(topic, sizeof topic, "keyed-slow");
    const char *const claim[][2] = {{"redis.claim.idle.ms", "3000"}};
    eb_bus *a = open_keyed(claim, 1), *b = open_keyed(claim, 1);
    eb_sub *sa = subscribe(a, topic, "g", handle_slow);
    eb_sub *sb = subscribe(b, topic, "g", handle_slow);
    eb_outgoing m = {.topic = topic, .key = "k1", .key_len = 2, .payload = "slow",
                     .payload_len = 4};
    cr_assert_eq(eb_publish(a, &m, NULL, NULL), 0);
    publish_range(a, topic, 0, 200);
    cr_assert(test_wait_for(slow_finished, NULL, WAIT_MS), "the slow handler never finished");
    wait_unique(200, WAIT_MS, "beside the slow handler");
    leave(a, sa);
    leave(b, sb);
    cr_expect_eq(atomic_load(&slow_runs), 1, "the slow entry ran %d times",
                 atomic_load(&slow_runs));
}

/* ------------------------------------------------------------ bad input */

static atomic_int refused_publishes;

static void delivered_refused(int status, const char *id, void *opaque)
{
    (void)id;
    (void)opaque;
    if (status == EB_ERR_CONFIG)
        atomic_fetch_add(&refused_publishes, 1);
}

Test(redis_keyed, another_partition_count_than_the_topics_is_refused_with_a_sentence)
{
    char topic[64];
    topic_name(topic, sizeof topic, "keyed-count");
    eb_bus *four = open_keyed(NULL, 0);
    publish_range(four, topic, 0, 8); /* records 4 partitions */
    const char *const eight[][2] = {{"redis.partitions", "8"}};
    eb_bus *other = open_keyed(eight, 1);

    char err[1024] = "";
    eb_sub *sub = NULL;
    int rc = eb_subscribe(other, topic, "g", handle_ordered, NULL, NULL, &sub, err, sizeof err);
    cr_expect_eq(rc, EB_ERR_CONFIG, "subscribe: %s (%s)", eb_err_name(rc), err);
    cr_expect(strstr(err, "4") && strstr(err, "redis.partitions"), "no sentence: %s", err);

    eb_outgoing m = {.topic = topic, .key = "k", .key_len = 1, .payload = "x", .payload_len = 1};
    cr_assert_eq(eb_publish(other, &m, delivered_refused, NULL), 0);
    eb_flush(other, WAIT_MS);
    cr_expect_eq(atomic_load(&refused_publishes), 1,
                 "a publish to a topic of another partition count was not refused");
    rd_url u = rt_server_url();
    rd_conn c = {0};
    rt_connect(&c, &u);
    for (int p = 4; p < 8; p++) { /* the streams only an 8-partition member would read */
        char stream[96];
        snprintf(stream, sizeof stream, "%s:%d", topic, p);
        const char *argv[] = {"EXISTS", stream};
        redisReply *r = rt_run(&c, 2, argv);
        cr_expect_eq(r->integer, 0, "%s was written", stream);
        freeReplyObject(r);
    }
    rd_conn_close(&c);
    cr_assert_eq(eb_bus_close(other, 5000), 0);
    eb_bus_destroy(other);
    cr_assert_eq(eb_bus_close(four, 5000), 0);
    eb_bus_destroy(four);
}

Test(redis_keyed, a_server_that_evicts_keys_is_refused_at_open_with_a_sentence)
{
    rd_url u = rt_server_url();
    rd_conn c = {0};
    rt_connect(&c, &u);
    const char *evict[] = {"CONFIG", "SET", "maxmemory-policy", "volatile-lru"};
    rt_do(&c, 4, evict);
    char err[1024] = "";
    eb_config *cfg = eb_config_new();
    eb_config_set(cfg, "redis.url", url(), err, sizeof err);
    for (size_t i = 0; i < N_KEYED; i++)
        eb_config_set(cfg, KEYED[i][0], KEYED[i][1], err, sizeof err);
    eb_bus *bus = NULL;
    int rc = eb_bus_open(cfg, &bus, err, sizeof err);
    const char *back[] = {"CONFIG", "SET", "maxmemory-policy", "noeviction"};
    rt_do(&c, 4, back); /* before any assertion: the other suites share the server */
    rd_conn_close(&c);
    eb_config_destroy(cfg);
    if (bus)
        eb_bus_destroy(bus);
    cr_expect_eq(rc, EB_ERR_CONFIG, "open: %s (%s)", eb_err_name(rc), err);
    cr_expect(strstr(err, "volatile-lru") && strstr(err, "noeviction"), "no sentence: %s", err);
}

/* ----------------------------------------------- anonymous, other writers */

static eb_result handle_count(const eb_msg *msg, void *opaque)
{
    (void)opaque;
    count_handled(payload_seq(msg));
    return EB_ACK;
}

Test(redis_keyed, an_anonymous_member_reads_every_partition)
{
    char topic[64];
    topic_name(topic, sizeof topic, "keyed-anon");
    eb_bus *bus = open_keyed(NULL, 0);
    eb_sub *sub = subscribe(bus, topic, NULL, handle_count);
    publish_range(bus, topic, 0, 400);
    wait_unique(400, WAIT_MS, "anonymous");
    leave(bus, sub);
}

Test(redis_keyed, entries_other_programs_add_to_a_partition_stream_are_read)
{
    char topic[64];
    topic_name(topic, sizeof topic, "keyed-interop");
    eb_bus *bus = open_keyed(NULL, 0);
    eb_sub *sub = subscribe(bus, topic, "g", handle_count);
    rd_url u = rt_server_url();
    rd_conn c = {0};
    rt_connect(&c, &u);
    for (int p = 0; p < 4; p++) {
        char stream[96], seq[8];
        snprintf(stream, sizeof stream, "%s:%d", topic, p);
        snprintf(seq, sizeof seq, "%d", p);
        const char *argv[] = {"XADD", stream, "*", "p", seq};
        rt_do(&c, 5, argv);
    }
    rd_conn_close(&c);
    wait_unique(4, WAIT_MS, "entries added by XADD");
    leave(bus, sub);
}
