/*
 * test_kafka_freeze.c — the real broker frozen with SIGSTOP (it keeps its
 * connections but answers nothing) while a publishing bus publishes and a
 * subscribing bus handles: eb_bus_health() and the CONNECTED/DISCONNECTED
 * events must see it (issue 7, defect 13).
 *
 * Needs EB_KAFKA_BOOTSTRAP, EB_KAFKA_CTL and EB_KAFKA_RUN_DIR (exported by
 * `kafka.sh start`); skipped otherwise. It freezes the broker other suites
 * use: ctest runs it alone (RUN_SERIAL), and `kafka.sh freeze` wakes the
 * broker whatever happens to the test (its fini stops the freeze early).
 *
 * Before the freeze both buses stay OK for IDLE_WATCH_MS: the subscribing
 * bus publishes nothing, so only its probes answered keep it OK. The
 * outage has a fixed length, OUTAGE_S. Within it, both buses must report
 * DEGRADED within 10 s and DOWN within 20 s and raise DISCONNECTED; after
 * it, become OK by themselves and raise CONNECTED within RECOVERY_MS. Every
 * publish confirmed (the producer's message.timeout.ms outlasts the
 * outage) must be handled.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "kafka_helpers.h"

enum {
    CAPACITY = 20000,
    IDLE_WATCH_MS = 6000,
    OUTAGE_S = 22,
    DEGRADED_WITHIN_MS = 10000,
    DOWN_WITHIN_MS = 20000,
    RECOVERY_MS = 15000,
    SAMPLE_MS = 50,
};

/* ------------------------------------------------------------- the broker */

static pid_t freezer = -1; /* the running `kafka.sh freeze` */

static void require_broker_ctl(void)
{
    const char *ctl = getenv("EB_KAFKA_CTL");
    const char *run_dir = getenv("EB_KAFKA_RUN_DIR");
    if (!ctl || !*ctl || !run_dir || !*run_dir)
        cr_skip_test("EB_KAFKA_CTL and EB_KAFKA_RUN_DIR are not set (kafka.sh start exports "
                     "them)");
}

static pid_t broker_pid(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/kafka.pid", getenv("EB_KAFKA_RUN_DIR"));
    size_t len;
    char *text = kt_read_file(path, &len);
    pid_t pid = (pid_t)atol(text);
    free(text);
    cr_assert_gt(pid, 0, "no pid in %s", path);
    return pid;
}

/** The process state letter of /proc/<pid>/stat ('T': stopped). */
static char process_state(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "the broker (pid %d) is gone", (int)pid);
    char *got = fgets(line, sizeof line, f);
    fclose(f);
    char *after_name = got ? strrchr(line, ')') : NULL;
    cr_assert(after_name && after_name[1] == ' ', "cannot read %s", path);
    return after_name[2];
}

static void pause_ms(int ms)
{
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
}

/** Waits (at most timeout_ms) until the broker is stopped or not.
 *  @returns whether it got there. */
static bool wait_broker_stopped(pid_t pid, bool stopped, int timeout_ms)
{
    int64_t deadline = kt_now_ms() + timeout_ms;
    while ((process_state(pid) == 'T') != stopped)
        if (kt_now_ms() >= deadline)
            return false;
        else
            pause_ms(5);
    return true;
}

/* Whatever happened, the other suites get their broker back. */
static void broker_awake(void)
{
    if (freezer > 0) {
        kill(freezer, SIGTERM); /* kafka.sh wakes the broker on its way out */
        kt_reap(freezer);
        freezer = -1;
    }
}

/* ----------------------------------------------------- events and health */

/** A bus's CONNECTED/DISCONNECTED events, and the first time (ms on
 *  kt_now_ms()) each health state was seen since `since_ms`. */
typedef struct link_watch {
    const char *name;
    eb_bus *bus;
    kt_tracker *t; /* revokes are counted there */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int disconnected, connected; /* events so far */
    int64_t since_ms;
    int64_t first_seen_ms[EB_HEALTH_CLOSED + 1]; /* -1: not seen since since_ms */
    eb_health last;
} link_watch;

static void link_watch_init(link_watch *w, const char *name, kt_tracker *t)
{
    memset(w, 0, sizeof *w);
    w->name = name;
    w->t = t;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
}

static void link_watch_destroy(link_watch *w)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

static void on_event(eb_bus *bus, const eb_event *event, void *opaque)
{
    link_watch *w = opaque;
    if (w->t)
        kt_tracker_event(bus, event, w->t);
    if (event->type != EB_EVENT_CONNECTED && event->type != EB_EVENT_DISCONNECTED)
        return;
    printf("freeze: %s bus: %s at %lld ms: %s\n", w->name,
           event->type == EB_EVENT_CONNECTED ? "CONNECTED" : "DISCONNECTED",
           (long long)kt_now_ms(), event->detail);
    pthread_mutex_lock(&w->mu);
    if (event->type == EB_EVENT_CONNECTED)
        w->connected++;
    else
        w->disconnected++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int events_of(link_watch *w, eb_event_type type)
{
    pthread_mutex_lock(&w->mu);
    int n = type == EB_EVENT_CONNECTED ? w->connected : w->disconnected;
    pthread_mutex_unlock(&w->mu);
    return n;
}

static void health_watch_from(link_watch *w, int64_t since_ms)
{
    w->since_ms = since_ms;
    for (int s = 0; s <= EB_HEALTH_CLOSED; s++)
        w->first_seen_ms[s] = -1;
}

static void sample_health(link_watch *w)
{
    cr_assert_eq(eb_bus_health(w->bus, &w->last), 0);
    if (w->first_seen_ms[w->last.state] < 0)
        w->first_seen_ms[w->last.state] = kt_now_ms() - w->since_ms;
}

/** Milliseconds after since_ms when `state` was first seen; -1: never. */
static int64_t seen_after(const link_watch *w, eb_health_state state)
{
    return w->first_seen_ms[state];
}

typedef bool (*watch_done_fn)(link_watch *w);

/**
 * Samples both buses' health every SAMPLE_MS until done() holds for both
 * or until deadline_ms (kt_now_ms() clock). Health has no notification of
 * its own: sampling is the only way to see DEGRADED.
 * @returns whether done() held for both.
 */
static bool watch_until(link_watch *a, link_watch *b, watch_done_fn done, int64_t deadline_ms)
{
    for (;;) {
        sample_health(a);
        sample_health(b);
        if (done(a) && done(b))
            return true;
        if (kt_now_ms() >= deadline_ms)
            return false;
        pause_ms(SAMPLE_MS);
    }
}

static bool never_done(link_watch *w)
{
    (void)w;
    return false;
}

static bool down_and_disconnected(link_watch *w)
{
    return seen_after(w, EB_HEALTH_DOWN) >= 0 && events_of(w, EB_EVENT_DISCONNECTED) > 0;
}

static bool ok_and_connected(link_watch *w)
{
    return w->last.state == EB_HEALTH_OK && events_of(w, EB_EVENT_CONNECTED) > 0;
}

/* ------------------------------------------------------------------ test */

static void expect_outage_seen(const link_watch *w)
{
    int64_t degraded = seen_after(w, EB_HEALTH_DEGRADED), down = seen_after(w, EB_HEALTH_DOWN);
    printf("freeze: %s bus: DEGRADED %lld ms, DOWN %lld ms after the freeze\n", w->name,
           (long long)degraded, (long long)down);
    cr_expect(degraded >= 0 && degraded <= DEGRADED_WITHIN_MS,
              "%s bus: DEGRADED %lld ms after the freeze (at most %d; -1: never); health now: "
              "%s",
              w->name, (long long)degraded, DEGRADED_WITHIN_MS, w->last.detail);
    cr_expect(down >= 0 && down <= DOWN_WITHIN_MS,
              "%s bus: DOWN %lld ms after the freeze (at most %d; -1: never)", w->name,
              (long long)down, DOWN_WITHIN_MS);
}

Test(kafka_freeze, health_sees_a_frozen_broker_and_its_return, .timeout = 150,
     .fini = broker_awake)
{
    const char *bootstrap = kt_real_broker();
    require_broker_ctl();
    pid_t broker = broker_pid();
    char topic[128], group[128];
    kt_unique(topic, sizeof topic, "freeze");
    kt_unique(group, sizeof group, "freeze-g");
    kt_tracker *t = kt_tracker_new(CAPACITY);
    link_watch sub_side, pub_side;
    link_watch_init(&sub_side, "subscribing", t);
    link_watch_init(&pub_side, "publishing", NULL);

    const kt_setting consumer_settings[] = {{"kafka.topic.partitions", "2"}, {NULL, NULL}};
    sub_side.bus = kt_open(bootstrap, consumer_settings, on_event, &sub_side);
    eb_sub *sub = kt_subscribe_ready(sub_side.bus, topic, group, kt_handle, t, 30000);
    const kt_setting producer_settings[] = {{"kafka.message.timeout.ms", "60000"},
                                            {NULL, NULL}};
    pub_side.bus = kt_open(bootstrap, producer_settings, on_event, &pub_side);

    kt_stream p = {.bus = pub_side.bus, .t = t, .topic = topic, .keys = 50, .period_ms = 10,
                   .retry_refused = true};
    kt_stream_start(&p);
    size_t warm = 100;
    cr_assert(kt_wait(t, kt_handled_at_least, &warm, 30000), "handled %zu before the freeze",
              t->n_handled_distinct);

    /* A fixed-length watch: the buses must stay OK while the broker
     * answers, the subscribing one kept so by its probes alone. */
    int64_t watch_start = kt_now_ms();
    health_watch_from(&sub_side, watch_start);
    health_watch_from(&pub_side, watch_start);
    watch_until(&sub_side, &pub_side, never_done, watch_start + IDLE_WATCH_MS);
    link_watch *both[] = {&sub_side, &pub_side};
    for (size_t i = 0; i < 2; i++) {
        cr_assert_eq(seen_after(both[i], EB_HEALTH_DEGRADED), -1,
                     "%s bus DEGRADED before the freeze: %s", both[i]->name,
                     both[i]->last.detail);
        cr_assert_eq(seen_after(both[i], EB_HEALTH_DOWN), -1, "%s bus DOWN before the freeze",
                     both[i]->name);
        cr_assert_eq(events_of(both[i], EB_EVENT_DISCONNECTED), 0,
                     "%s bus DISCONNECTED before the freeze", both[i]->name);
    }

    /* The outage: the broker stays stopped OUTAGE_S seconds. */
    char seconds[16];
    snprintf(seconds, sizeof seconds, "%d", OUTAGE_S);
    const char *argv[] = {"bash", getenv("EB_KAFKA_CTL"), "freeze", seconds, NULL};
    freezer = kt_spawn(argv, NULL, NULL, OUTAGE_S + 60);
    cr_assert(wait_broker_stopped(broker, true, 30000), "the broker was not stopped");
    int64_t frozen_at = kt_now_ms();
    size_t frozen_from = atomic_load(&p.next);
    health_watch_from(&sub_side, frozen_at);
    health_watch_from(&pub_side, frozen_at);
    watch_until(&sub_side, &pub_side, down_and_disconnected, frozen_at + DOWN_WITHIN_MS);
    expect_outage_seen(&sub_side);
    expect_outage_seen(&pub_side);
    cr_expect_gt(events_of(&sub_side, EB_EVENT_DISCONNECTED), 0, "no DISCONNECTED (subscribing)");
    cr_expect_gt(events_of(&pub_side, EB_EVENT_DISCONNECTED), 0, "no DISCONNECTED (publishing)");

    int freeze_status = kt_reap(freezer);
    freezer = -1;
    cr_assert_eq(freeze_status, 0, "kafka.sh freeze failed");
    cr_assert(wait_broker_stopped(broker, false, 1000), "the broker still stopped");
    int64_t woken_at = kt_now_ms();
    size_t woken_from = atomic_load(&p.next);
    printf("freeze: the broker was stopped for %lld ms; messages %zu..%zu published meanwhile\n",
           (long long)(woken_at - frozen_at), frozen_from, woken_from);

    health_watch_from(&sub_side, woken_at);
    health_watch_from(&pub_side, woken_at);
    bool back = watch_until(&sub_side, &pub_side, ok_and_connected, woken_at + RECOVERY_MS);
    printf("freeze: OK again %lld ms (subscribing) and %lld ms (publishing) after the wake-up\n",
           (long long)seen_after(&sub_side, EB_HEALTH_OK),
           (long long)seen_after(&pub_side, EB_HEALTH_OK));
    cr_expect(back, "not OK and CONNECTED within %d ms of the wake-up: subscribing %s (%d "
              "CONNECTED), publishing %s (%d CONNECTED)",
              RECOVERY_MS, sub_side.last.detail, events_of(&sub_side, EB_EVENT_CONNECTED),
              pub_side.last.detail, events_of(&pub_side, EB_EVENT_CONNECTED));

    /* Nothing confirmed is lost: the consumer resumes by itself. */
    cr_assert(kt_wait(t, kt_handled_from, &woken_from, 60000),
              "nothing published after the wake-up was handled");
    kt_stream_join(&p, true);
    size_t total = atomic_load(&p.next);
    cr_expect_eq(eb_flush(pub_side.bus, 60000), 0, "not every delivery callback ran");
    cr_assert(kt_wait(t, kt_reports_at_least, &total, 1000), "%zu of %zu delivery callbacks",
              t->n_reports, total);
    bool all = kt_wait(t, kt_all_confirmed_handled, NULL, 60000);
    cr_expect_eq(eb_bus_close(sub_side.bus, 10000), 0);
    cr_expect_eq(eb_bus_close(pub_side.bus, 10000), 0);
    size_t lost = 0;
    for (size_t i = 0; i < total; i++)
        lost += t->status[i] == 0 && t->handled[i] == 0;
    printf("freeze: %zu published, %zu confirmed, %zu handled, %zu lost, %zu duplicates after "
           "%zu revokes\n",
           total, t->n_confirmed, t->n_handled_distinct, lost, kt_duplicates(t), t->n_revokes);
    cr_expect(all && lost == 0, "%zu confirmed publishes were never handled (first: %zu)", lost,
              kt_first_lost(t));

    eb_sub_destroy(sub);
    eb_bus_destroy(sub_side.bus);
    eb_bus_destroy(pub_side.bus);
    link_watch_destroy(&sub_side);
    link_watch_destroy(&pub_side);
    kt_tracker_free(t);
}

/* ------------------------------------------------- close while frozen */

/* Issue 7, defect 14: eb_bus_close(bus, 2000) on a subscribing bus with a
 * frozen broker returned EB_OK after 15.7 s: the final commit and the
 * group's LeaveGroup were bounded by the revoke timeout plus 5 s, not by
 * the close deadline. Now the leave ends at the deadline (the handlers
 * finished long before) plus the 500 ms leave margin; then librdkafka
 * 2.0.2 stops its consumer only once its requests to the coordinator fail,
 * at the latest when the heartbeat in flight times out (session.timeout.ms
 * after it was sent: 3 s in the tests). The bound adds both and 1 s for
 * joining threads. Two subscriptions of one member: the first to leave
 * waits for its revoke (defect 9: it could wait for ever when the close
 * gave up). */
enum { CLOSE_DEADLINE_MS = 2000, TEST_SESSION_MS = 3000,
       CLOSE_BOUND_MS = CLOSE_DEADLINE_MS + 500 + TEST_SESSION_MS + 1000,
       CLOSE_OUTAGE_S = 40, CLOSE_MSGS = 20 };

Test(kafka_freeze, close_with_a_frozen_broker_keeps_its_deadline, .timeout = 120,
     .fini = broker_awake)
{
    const char *bootstrap = kt_real_broker();
    require_broker_ctl();
    pid_t broker = broker_pid();
    char first[128], second[128], group[128];
    kt_unique(first, sizeof first, "freeze-close-a");
    kt_unique(second, sizeof second, "freeze-close-b");
    kt_unique(group, sizeof group, "freeze-close-g");
    kt_tracker *a = kt_tracker_new(CLOSE_MSGS), *b = kt_tracker_new(CLOSE_MSGS);
    const kt_setting s[] = {{"kafka.topic.partitions", "2"}, {NULL, NULL}};
    eb_bus *bus = kt_open(bootstrap, s, NULL, NULL);
    kt_subscribe_ready(bus, first, group, kt_handle, a, 30000);
    kt_subscribe_ready(bus, second, group, kt_handle, b, 30000);
    for (size_t i = 0; i < CLOSE_MSGS; i++) {
        cr_assert_eq(kt_publish(bus, a, first, i, NULL), 0);
        cr_assert_eq(kt_publish(bus, b, second, i, NULL), 0);
    }
    size_t all = CLOSE_MSGS;
    cr_assert(kt_wait(a, kt_handled_at_least, &all, 30000), "first topic not handled");
    cr_assert(kt_wait(b, kt_handled_at_least, &all, 30000), "second topic not handled");

    char seconds[16];
    snprintf(seconds, sizeof seconds, "%d", CLOSE_OUTAGE_S);
    const char *argv[] = {"bash", getenv("EB_KAFKA_CTL"), "freeze", seconds, NULL};
    freezer = kt_spawn(argv, NULL, NULL, CLOSE_OUTAGE_S + 60);
    cr_assert(wait_broker_stopped(broker, true, 30000), "the broker was not stopped");

    int64_t start = kt_now_ms();
    int rc = eb_bus_close(bus, CLOSE_DEADLINE_MS);
    int64_t took = kt_now_ms() - start;
    eb_bus_destroy(bus);
    int64_t destroyed = kt_now_ms() - start;
    broker_awake(); /* before the checks: the other suites need it */
    printf("freeze: close with the broker frozen took %lld ms (%s), destroy %lld ms more\n",
           (long long)took, eb_err_name(rc), (long long)(destroyed - took));
    cr_expect_eq(rc, EB_ERR_TIMEOUT, "close said %s: the final commit cannot have been "
                 "answered", eb_err_name(rc));
    cr_expect_lt(took, CLOSE_BOUND_MS, "eb_bus_close(bus, %d) took %lld ms", CLOSE_DEADLINE_MS,
                 (long long)took);
    kt_tracker_free(a);
    kt_tracker_free(b);
}
