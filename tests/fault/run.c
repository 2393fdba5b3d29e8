/*
 * run.c — one run (see run.h). Divisions, in order:
 *   sinks        members in this process report straight to the recorder
 *   schedule     waits on the run's clock (join/leave times, the tail)
 *   members      a thread per planned member: in process, or a child;
 *                one after another when the scenario has one at a time
 *   observer     the publisher and the dead-letter collector
 *   hooks        what the progress check asks of the run
 *   phases       churn, settle, tail, verify, checks
 */
#include "run.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checks.h"
#include "child.h"
#include "env.h"
#include "member.h"
#include "proc_threads.h"
#include "progress.h"
#include "recorder.h"
#include "rng.h"

typedef struct run run;

typedef struct member_slot {
    run *rn;
    int index;             /* in the scenario; -1: the verifying member */
    int incarnation;
    member m;
    child_member child;
    pthread_t thread;
    bool started;
    bool gone;             /* left, or killed and reaped (under run.mu) */
} member_slot;

typedef struct publish_slot {
    recorder *r;
    long message;
} publish_slot;

struct run {
    const run_options *o;
    scenario s;
    fault_env env;
    recorder *r;
    char run_id[64];
    eb_bus *observer;
    eb_sub *dlq_subs[FAULT_MAX_TOPICS];
    publish_slot *publish_slots;
    fault_rng publish_rng;
    int64_t churn_start_ns;

    pthread_mutex_t mu;    /* tail_go, slots[].gone */
    pthread_cond_t cv;
    bool tail_go;

    pthread_mutex_t buses_mu; /* live member buses, for the stats of a report */
    eb_bus *buses[FAULT_MAX_MEMBERS + 1];

    member_slot slots[FAULT_MAX_MEMBERS];
    member_slot verifier;
};

/* ------------------------------------------------------------------ sinks */

static long sink_call_start(void *ctx, const call_record *c)
{
    member_slot *ms = ctx;
    call_record k = *c;
    k.incarnation = ms->incarnation;
    return (long)recorder_call_start(ms->rn->r, &k);
}

static void sink_call_end(void *ctx, long call, eb_result result, int64_t end_ns)
{
    member_slot *ms = ctx;
    recorder_call_end(ms->rn->r, (size_t)call, result, end_ns);
}

static void sink_revoked(void *ctx, int topic)
{
    member_slot *ms = ctx;
    recorder_revoked(ms->rn->r, ms->incarnation, topic);
}

static void sink_leave(void *ctx, const leave_record *l)
{
    member_slot *ms = ctx;
    leave_record k = *l;
    k.incarnation = ms->incarnation;
    recorder_leave(ms->rn->r, &k);
}

static void sink_fail(void *ctx, fault_check check, const char *text)
{
    member_slot *ms = ctx;
    recorder_fail(ms->rn->r, check, "%s", text);
}

/* --------------------------------------------------------------- schedule */

static int64_t ms_to_ns(int64_t ms) { return ms * 1000000; }

/** Waits until `at_ns`, or until the tail starts when until_tail. */
static void wait_until(run *rn, int64_t at_ns, bool until_tail)
{
    struct timespec ts = {.tv_sec = at_ns / 1000000000, .tv_nsec = at_ns % 1000000000};
    pthread_mutex_lock(&rn->mu);
    while (!(until_tail && rn->tail_go) && (until_tail || fault_now_ns() < at_ns)) {
        if (until_tail)
            pthread_cond_wait(&rn->cv, &rn->mu);
        else
            pthread_cond_timedwait(&rn->cv, &rn->mu, &ts);
    }
    pthread_mutex_unlock(&rn->mu);
}

static bool tail_started(run *rn)
{
    pthread_mutex_lock(&rn->mu);
    bool go = rn->tail_go;
    pthread_mutex_unlock(&rn->mu);
    return go;
}

/** One member at a time (Redis): waits until the member before this one
 *  has gone, so that no two members of the group ever run at once (they
 *  share one consumer name). @returns when the member is to leave: as
 *  planned, moved by as much as its join was held up. */
static int64_t wait_for_turn(run *rn, int index)
{
    const member_plan *p = &rn->s.members[index];
    int64_t leave_ns = rn->churn_start_ns + ms_to_ns(p->leave_ms);
    if (!rn->s.one_member_at_a_time || index == 0)
        return leave_ns;
    pthread_mutex_lock(&rn->mu);
    while (!rn->slots[index - 1].gone)
        pthread_cond_wait(&rn->cv, &rn->mu);
    pthread_mutex_unlock(&rn->mu);
    int64_t late = fault_now_ns() - (rn->churn_start_ns + ms_to_ns(p->join_ms));
    return late > 0 ? leave_ns + late : leave_ns;
}

static void member_gone(run *rn, member_slot *ms)
{
    pthread_mutex_lock(&rn->mu);
    ms->gone = true;
    pthread_cond_broadcast(&rn->cv);
    pthread_mutex_unlock(&rn->mu);
}

static void set_bus(run *rn, int slot, eb_bus *bus)
{
    pthread_mutex_lock(&rn->buses_mu);
    rn->buses[slot] = bus;
    pthread_mutex_unlock(&rn->buses_mu);
}

/* ---------------------------------------------------------------- members */

static void member_init(run *rn, member_slot *ms, int index, const member_plan *p)
{
    ms->incarnation = recorder_incarnation_new(rn->r, index, false);
    ms->m = (member){.s = &rn->s, .env = &rn->env, .index = index, .workers = p->workers,
                     .workers_max = p->workers_max, .workers_idle_ms = p->workers_idle_ms,
                     .sink = {ms, sink_call_start, sink_call_end, sink_revoked, sink_leave,
                              sink_fail}};
}

/** A member in this process, from its join to its destroy. */
static void *member_thread(void *arg)
{
    member_slot *ms = arg;
    run *rn = ms->rn;
    const member_plan *p = &rn->s.members[ms->index];
    wait_until(rn, rn->churn_start_ns + ms_to_ns(p->join_ms), false);
    int64_t leave_ns = wait_for_turn(rn, ms->index);
    member_init(rn, ms, ms->index, p);
    recorder_transition(rn->r, 1);
    bool joined = member_join(&ms->m) == 0;
    set_bus(rn, ms->index, ms->m.bus);
    recorder_transition(rn->r, -1);
    if (joined)
        recorder_live(rn->r, 1);
    wait_until(rn, leave_ns, p->leave_ms < 0);
    if (joined)
        recorder_live(rn->r, -1);
    recorder_transition(rn->r, 1);
    member_leave(&ms->m, p->leave, p->close_deadline_ms);
    set_bus(rn, ms->index, NULL);
    member_destroy(&ms->m);
    recorder_transition(rn->r, -1);
    member_gone(rn, ms);
    return NULL;
}

/** A member in a child process (real Kafka, Redis), from its start to its
 *  end. */
static void *child_thread(void *arg)
{
    member_slot *ms = arg;
    run *rn = ms->rn;
    recorder *r = rn->r;
    const member_plan *p = &rn->s.members[ms->index];
    wait_until(rn, rn->churn_start_ns + ms_to_ns(p->join_ms), false);
    int64_t leave_ns = wait_for_turn(rn, ms->index);
    ms->incarnation = recorder_incarnation_new(r, ms->index, true);
    if (child_spawn(&ms->child, rn->o->self_path, &rn->s, &rn->env, ms->index,
                    rn->run_id) != 0) {
        recorder_fail(r, CHECK_SETUP, "member %d: cannot start a child process", ms->index);
        member_gone(rn, ms);
        return NULL;
    }
    child_member *c = &ms->child;
    c->incarnation = ms->incarnation;
    recorder_transition(r, 1);
    int64_t ready_by = fault_now_ns() + ms_to_ns(member_ready_timeout_ms(&rn->s) + 5000);
    bool joined = child_pump(c, r, ready_by, true) == 1;
    recorder_transition(r, -1);
    if (joined)
        recorder_live(r, 1);
    bool alive = true;
    if (p->leave_ms >= 0)
        alive = child_pump(c, r, leave_ns, false) >= 0;
    while (alive && p->leave_ms < 0 && !tail_started(rn))
        alive = child_pump(c, r, fault_now_ns() + ms_to_ns(100), false) >= 0;
    if (joined)
        recorder_live(r, -1);
    bool kill_it = p->leave == LEAVE_KILL && p->leave_ms >= 0;
    if (kill_it) {
        child_kill(c);
        recorder_killed(r, ms->incarnation);
    }
    recorder_transition(r, 1);
    int64_t bound = p->close_deadline_ms + rn->s.n_topics * rn->s.revoke_timeout_ms + 30000;
    child_finish(c, r, fault_now_ns() + ms_to_ns(bound), kill_it);
    recorder_transition(r, -1);
    member_gone(rn, ms);
    return NULL;
}

static void start_members(run *rn)
{
    for (int i = 0; i < rn->s.n_members; i++) {
        member_slot *ms = &rn->slots[i];
        ms->rn = rn;
        ms->index = i;
        bool child = rn->s.members[i].in_child;
        ms->started = pthread_create(&ms->thread, NULL, child ? child_thread : member_thread,
                                     ms) == 0;
        if (!ms->started) {
            recorder_fail(rn->r, CHECK_SETUP, "cannot start member %d's thread", i);
            member_gone(rn, ms);
        }
    }
}

static void join_members(run *rn)
{
    for (int i = 0; i < rn->s.n_members; i++)
        if (rn->slots[i].started)
            pthread_join(rn->slots[i].thread, NULL);
}

/* --------------------------------------------------------------- observer */

static void on_delivery(int status, const char *id, void *opaque)
{
    publish_slot *ps = opaque;
    recorder_delivery(ps->r, ps->message, status, id);
}

/** How long a publisher tries a message the transport keeps refusing as
 *  full (memory retention held by a group) before it gives up on it. */
enum { PUBLISH_GIVE_UP_MS = 3000 };

static void publish_message(run *rn)
{
    fault_rng *g = &rn->publish_rng;
    int topic = (int)fault_rng_range(g, 0, rn->s.n_topics - 1);
    int key = fault_rng_chance(g, rn->s.null_key_percent) ? -1
              : (int)fault_rng_range(g, 0, rn->s.n_keys - 1);
    long i = recorder_next_message(rn->r, topic, key);
    if (i < 0)
        return;
    char payload[24], key_text[16];
    int payload_len = snprintf(payload, sizeof payload, "%ld", i);
    int key_len = snprintf(key_text, sizeof key_text, "k%d", key);
    eb_outgoing m = {.topic = rn->env.topics[topic], .key = key >= 0 ? key_text : NULL,
                     .key_len = key >= 0 ? (size_t)key_len : 0, .payload = payload,
                     .payload_len = (size_t)payload_len};
    rn->publish_slots[i] = (publish_slot){rn->r, i};
    int64_t give_up = fault_now_ns() + ms_to_ns(PUBLISH_GIVE_UP_MS);
    int rc;
    while ((rc = eb_publish(rn->observer, &m, on_delivery, &rn->publish_slots[i])) ==
               EB_ERR_FULL && fault_now_ns() < give_up)
        ;
    if (rc == 0)
        recorder_accepted(rn->r, i);
    else if (rc != EB_ERR_FULL)
        recorder_fail(rn->r, CHECK_SETUP, "eb_publish(message %ld): %s", i, eb_err_name(rc));
}

/** Publishes the churn phase's messages in bursts and pauses. */
static void *publisher_thread(void *arg)
{
    run *rn = arg;
    fault_rng *g = &rn->publish_rng;
    for (int sent = 0; sent < rn->s.n_churn_messages;) {
        int burst = (int)fault_rng_range(g, 1, rn->s.burst_max);
        for (int k = 0; k < burst && sent < rn->s.n_churn_messages; k++, sent++)
            publish_message(rn);
        wait_until(rn, fault_now_ns() + ms_to_ns(fault_rng_range(g, 0, rn->s.pause_max_ms)),
                   false);
    }
    return NULL;
}

static eb_result collect_dead_letter(const eb_msg *msg, void *opaque)
{
    run *rn = opaque;
    size_t len;
    const char *payload = eb_msg_payload(msg, &len);
    char text[24];
    long i = -1;
    if (len > 0 && len < sizeof text) {
        memcpy(text, payload, len);
        text[len] = '\0';
        char *end;
        i = strtol(text, &end, 10);
        if (*end != '\0')
            i = -1;
    }
    recorder_dead_letter(rn->r, i);
    return EB_ACK;
}

static eb_result unexpected_message(const eb_msg *msg, void *opaque)
{
    run *rn = opaque;
    recorder_fail(rn->r, CHECK_SETUP, "a message (%s) reached the group before anything "
                  "was published", eb_msg_id(msg));
    return EB_RETRY;
}

/** Memory: a group that does not exist yet starts at the earliest message
 *  retained when it is created, and what retention dropped before is
 *  counted nowhere. A subscription made and dropped before the first
 *  publish creates the group at offset 0, so every later loss is counted
 *  in its `lost`. */
static int found_group(run *rn)
{
    char err[1024];
    for (int t = 0; t < rn->s.n_topics; t++) {
        eb_sub *sub = NULL;
        int rc = eb_subscribe(rn->observer, rn->env.topics[t], rn->env.group,
                              unexpected_message, rn, NULL, &sub, err, sizeof err);
        if (rc == 0 && (rc = eb_sub_wait_ready(sub, member_ready_timeout_ms(&rn->s))) == 0)
            rc = eb_unsubscribe(sub);
        eb_sub_destroy(sub);
        if (rc != 0) {
            recorder_fail(rn->r, CHECK_SETUP, "observer: founding the group on %s: %s",
                          rn->env.topics[t], eb_err_name(rc));
            return -1;
        }
    }
    return 0;
}

/** Opens the bus that publishes and collects dead letters; for memory it
 *  also keeps the broker (and its messages) alive through the run. */
static int observer_open(run *rn)
{
    char err[1024];
    eb_config *cfg = env_bus_config(&rn->env, &rn->s, 2, 0, 0, NULL, NULL);
    int rc = cfg ? eb_bus_open(cfg, &rn->observer, err, sizeof err) : EB_ERR_CONFIG;
    eb_config_destroy(cfg);
    if (rc != 0) {
        recorder_fail(rn->r, CHECK_SETUP, "observer: eb_bus_open: %s: %s", eb_err_name(rc),
                      cfg ? err : "settings refused");
        return -1;
    }
    /* What check 3 may ask of the members (one transport, one config). */
    rn->r->features = eb_bus_features(rn->observer);
    if (rn->s.transport == FAULT_REDIS_KEYED && !(rn->r->features & EB_FEATURE_KEY_ORDER)) {
        recorder_fail(rn->r, CHECK_SETUP, "observer: a keyed Redis bus does not report "
                      "EB_FEATURE_KEY_ORDER: check 3 would ask less than keyed mode promises");
        return -1;
    }
    for (int t = 0; t < rn->s.n_topics; t++) {
        rc = eb_subscribe(rn->observer, rn->env.dlq_topics[t], rn->env.dlq_group,
                          collect_dead_letter, rn, NULL, &rn->dlq_subs[t], err, sizeof err);
        if (rc == 0)
            rc = eb_sub_wait_ready(rn->dlq_subs[t], member_ready_timeout_ms(&rn->s));
        if (rc != 0) {
            recorder_fail(rn->r, CHECK_SETUP, "observer: subscribing to %s: %s: %s",
                          rn->env.dlq_topics[t], eb_err_name(rc), err);
            return -1;
        }
    }
    return rn->s.transport == FAULT_MEMORY ? found_group(rn) : 0;
}

static void observer_close(run *rn)
{
    if (!rn->observer)
        return;
    int rc = eb_bus_close(rn->observer, 10000);
    if (rc != 0)
        recorder_fail(rn->r, CHECK_CLOSE, "observer: eb_bus_close: %s", eb_err_name(rc));
    for (int t = 0; t < FAULT_MAX_TOPICS; t++)
        eb_sub_destroy(rn->dlq_subs[t]);
    eb_bus_destroy(rn->observer);
    rn->observer = NULL;
}

/** Waits for every delivery callback of what was published. */
static void observer_flush(run *rn)
{
    int rc = eb_flush(rn->observer, 30000);
    if (rc != 0)
        recorder_fail(rn->r, CHECK_SETUP, "eb_flush: %s", eb_err_name(rc));
}

/* ------------------------------------------------------------------ hooks */

/** The memory broker's count of messages `topic` lost for the group (the
 *  observer's stats show every group of its broker). */
static long lost_to_retention(void *ctx, int topic)
{
    run *rn = ctx;
    if (rn->s.transport != FAULT_MEMORY || rn->s.retention_messages == 0)
        return 0;
    char *json = NULL;
    if (eb_bus_stats(rn->observer, &json) != 0)
        return 0;
    char needle[256];
    long lost = 0;
    snprintf(needle, sizeof needle, "{\"name\":\"%s\",\"partitions\"", rn->env.topics[topic]);
    const char *at = strstr(json, needle);
    const char *next_topic = at ? strstr(at + strlen(needle), "\"partitions\"") : NULL;
    snprintf(needle, sizeof needle, "{\"name\":\"%s\",\"members\"", rn->env.group);
    const char *group = at ? strstr(at, needle) : NULL;
    if (group && (!next_topic || group < next_topic)) {
        const char *field = strstr(group, "\"lost\":");
        if (field)
            lost = strtol(field + 7, NULL, 10);
    }
    eb_free(json);
    return lost;
}

static void describe_buses(void *ctx, char *buf, size_t size)
{
    run *rn = ctx;
    size_t at = 0;
    buf[0] = '\0';
    pthread_mutex_lock(&rn->buses_mu);
    for (int i = 0; i <= FAULT_MAX_MEMBERS && at + 1 < size; i++) {
        char *json = NULL;
        if (!rn->buses[i] || eb_bus_stats(rn->buses[i], &json) != 0)
            continue;
        at += (size_t)snprintf(buf + at, size - at, "\n  member %d: %s", i, json);
        eb_free(json);
    }
    pthread_mutex_unlock(&rn->buses_mu);
}

static void read_losses(run *rn, long *lost)
{
    for (int t = 0; t < FAULT_MAX_TOPICS; t++)
        lost[t] = t < rn->s.n_topics ? lost_to_retention(rn, t) : 0;
}

/* ----------------------------------------------------------------- phases */

/* How long settling and verifying may take before what is left counts as
 * a failure: far above what a healthy run needs. A lane of a few messages
 * behind retries of over a second drains slowly but steadily on Kafka
 * (several seconds a hundred messages); a stall is the progress check's
 * to report, long before this. */
static int64_t phase_limit_ns(const scenario *s)
{
    return ms_to_ns(s->transport == FAULT_MEMORY ? 30000 : 120000);
}

typedef struct settle_goal {
    const long *lost;
    int progress_failures; /* before settling: a new one ends the wait */
} settle_goal;

static bool all_handled(recorder *r, void *arg)
{
    const settle_goal *g = arg;
    if (r->failures[CHECK_PROGRESS] > g->progress_failures)
        return true;
    for (int t = 0; t < r->s->n_topics; t++)
        if (r->confirmed_unfinished[t] > g->lost[t])
            return false;
    return true;
}

static bool all_redelivered(recorder *r, void *arg)
{
    const long *lost = arg;
    for (int t = 0; t < r->s->n_topics; t++)
        if (r->unresolved[t] > lost[t])
            return false;
    return true;
}

/** Waits for pred, reading retention losses again every 250 ms. */
static void wait_with_losses(run *rn, bool (*pred)(recorder *, void *), void *arg, long *lost,
                             int64_t deadline_ns)
{
    for (;;) {
        read_losses(rn, lost);
        int64_t now = fault_now_ns(), slice = now + ms_to_ns(250);
        if (recorder_wait(rn->r, pred, arg, slice < deadline_ns ? slice : deadline_ns) ||
            fault_now_ns() >= deadline_ns)
            return;
    }
}

/** The members that stay handle everything outstanding; marks what is
 *  still unfinished at the end in `unfinished`. */
static void settle(run *rn, bool *unfinished, long *lost)
{
    recorder *r = rn->r;
    pthread_mutex_lock(&r->mu);
    settle_goal g = {lost, r->failures[CHECK_PROGRESS]};
    pthread_mutex_unlock(&r->mu);
    wait_with_losses(rn, all_handled, &g, lost, fault_now_ns() + phase_limit_ns(&rn->s));
    pthread_mutex_lock(&r->mu);
    for (long i = 0; i < r->n_published; i++)
        unfinished[i] = r->msgs[i].publish == PUB_CONFIRMED && !msg_finished(&r->msgs[i]);
    pthread_mutex_unlock(&r->mu);
}

/** A last burst, then every member still there closes with its deadline. */
static void tail(run *rn)
{
    for (int k = 0; k < rn->s.n_tail_messages; k++)
        publish_message(rn);
    wait_until(rn, fault_now_ns() + ms_to_ns(rn->s.tail_wait_ms), false);
    pthread_mutex_lock(&rn->mu);
    rn->tail_go = true;
    pthread_cond_broadcast(&rn->cv);
    pthread_mutex_unlock(&rn->mu);
    join_members(rn);
    observer_flush(rn);
}

/** A fresh member of the group must get every message not finished. */
static void verify(run *rn, long *lost)
{
    member_slot *v = &rn->verifier;
    v->rn = rn;
    v->index = -1;
    member_init(rn, v, -1, &(member_plan){.workers = 2});
    if (member_join(&v->m) == 0) {
        set_bus(rn, FAULT_MAX_MEMBERS, v->m.bus);
        wait_with_losses(rn, all_redelivered, lost, lost, fault_now_ns() + phase_limit_ns(&rn->s));
    }
    member_leave(&v->m, LEAVE_CLOSE, 5000);
    set_bus(rn, FAULT_MAX_MEMBERS, NULL);
    member_destroy(&v->m);
}

/* --------------------------------------------------------------- watchdog */

/* A run that hangs (a close that never returns, a join that never ends)
 * still names its seed: after a generous limit the process says so and
 * exits. */
typedef struct watchdog {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int64_t deadline_ns;
    const scenario *s;
} watchdog;

static void *watchdog_main(void *arg)
{
    watchdog *w = arg;
    struct timespec ts = {.tv_sec = w->deadline_ns / 1000000000,
                          .tv_nsec = w->deadline_ns % 1000000000};
    pthread_mutex_lock(&w->mu);
    while (!w->done && fault_now_ns() < w->deadline_ns)
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    bool hung = !w->done;
    pthread_mutex_unlock(&w->mu);
    if (hung) {
        fprintf(stderr, "FAIL seed %llu (%s): the run did not end within its limit: a hang "
                "(replay with --seed %llu --transport %s --verbose)\n",
                (unsigned long long)w->s->seed, fault_transport_name(w->s->transport),
                (unsigned long long)w->s->seed, fault_transport_name(w->s->transport));
        scenario_print(w->s, stderr);
        _exit(1);
    }
    return NULL;
}

static void watchdog_start(watchdog *w, const scenario *s)
{
    int64_t limit_s = s->transport == FAULT_MEMORY ? 120 : 400;
    *w = (watchdog){.deadline_ns = fault_now_ns() + limit_s * 1000000000, .s = s};
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&w->thread, NULL, watchdog_main, w) != 0) {
        fprintf(stderr, "fault: cannot start the watchdog thread\n");
        exit(2);
    }
}

static void watchdog_stop(watchdog *w)
{
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

/* ------------------------------------------------------------------- run */

static void summarize(run *rn, run_result *out)
{
    recorder *r = rn->r;
    for (long i = 0; i < r->n_published; i++) {
        const msg_state *m = &r->msgs[i];
        out->published += m->publish != PUB_NONE;
        out->confirmed += m->publish == PUB_CONFIRMED;
        out->handler_calls += m->calls;
        out->dead_letters += m->dead_letters > 0;
        out->redelivered += m->verify_calls > 0;
    }
    out->notes = r->notes;
    out->failures = recorder_failure_total(r);
}

static void report(run *rn, const run_result *res)
{
    const scenario *s = &rn->s;
    const char *t = fault_transport_name(s->transport);
    recorder *r = rn->r;
    if (res->failures > 0 || rn->o->verbose || r->n_failure_lines > 0) {
        if (res->failures > 0 || rn->o->verbose)
            scenario_print(s, stdout);
        for (int i = 0; i < r->n_failure_lines; i++)
            printf("seed %llu (%s): %s\n", (unsigned long long)s->seed, t, r->failure_lines[i]);
    }
    printf("%s seed %llu (%s): %ld published, %ld confirmed, %ld handler calls, %ld dead "
           "letters, %ld redelivered to the fresh member; %d failure(s), %d note(s)\n",
           res->failures ? "FAIL" : "ok", (unsigned long long)s->seed, t, res->published,
           res->confirmed, res->handler_calls, res->dead_letters, res->redelivered,
           res->failures, res->notes);
    if (res->failures)
        printf("replay: %s --transport %s --seed %llu --verbose%s%s\n", rn->o->self_path, t,
               (unsigned long long)s->seed, rn->o->allow_hol ? " --allow-hol-blocking" : "",
               rn->o->allow_slow_kafka_leave ? "" : " --no-allow-slow-kafka-leave");
    fflush(stdout);
}

/** Redis: cuts every connection at the scenario's times in the churn. */
static void *cutter_thread(void *arg)
{
    run *rn = arg;
    for (int i = 0; i < rn->s.n_cuts; i++) {
        wait_until(rn, rn->churn_start_ns + ms_to_ns(rn->s.cut_ms[i]), false);
        char why[256];
        if (!env_cut_connections(&rn->env, why, sizeof why))
            recorder_fail(rn->r, CHECK_SETUP, "cutting the connections: %s", why);
        else if (rn->o->verbose)
            printf("cut every connection at %d ms\n", rn->s.cut_ms[i]);
    }
    return NULL;
}

/** The phases, between the observer's open and its close. */
static void play(run *rn, bool *unfinished_at_settle, long *lost_at_settle, long *lost)
{
    pthread_t publisher;
    progress_monitor *pm = progress_start(rn->r, &rn->s, rn->o->allow_hol,
                                          (progress_hooks){rn, lost_to_retention,
                                                           describe_buses});
    rn->churn_start_ns = fault_now_ns();
    start_members(rn);
    bool publishing = pthread_create(&publisher, NULL, publisher_thread, rn) == 0;
    if (!publishing)
        recorder_fail(rn->r, CHECK_SETUP, "cannot start the publisher thread");
    pthread_t cutter;
    bool cutting = rn->s.n_cuts > 0 && pthread_create(&cutter, NULL, cutter_thread, rn) == 0;
    if (rn->s.n_cuts > 0 && !cutting)
        recorder_fail(rn->r, CHECK_SETUP, "cannot start the thread that cuts connections");
    wait_until(rn, rn->churn_start_ns + ms_to_ns(rn->s.churn_ms), false);
    if (publishing)
        pthread_join(publisher, NULL);
    if (cutting)
        pthread_join(cutter, NULL);
    observer_flush(rn);
    int64_t settle_start = fault_now_ns();
    settle(rn, unfinished_at_settle, lost_at_settle);
    progress_stop(pm);
    int64_t tail_start = fault_now_ns();
    tail(rn);
    int64_t verify_start = fault_now_ns();
    verify(rn, lost);
    if (rn->o->verbose)
        printf("phases: churn %lld ms, settle %lld ms, tail %lld ms, verify %lld ms\n",
               (long long)(settle_start - rn->churn_start_ns) / 1000000,
               (long long)(tail_start - settle_start) / 1000000,
               (long long)(verify_start - tail_start) / 1000000,
               (long long)(fault_now_ns() - verify_start) / 1000000);
}

int run_one(const run_options *o, run_result *out)
{
    memset(out, 0, sizeof *out);
    run *rn = calloc(1, sizeof *rn);
    if (!rn)
        return 1;
    rn->o = o;
    scenario_generate(o->seed, o->transport, &rn->s);
    rn->env = (fault_env){.transport = o->transport, .verbose = o->verbose};
    static int serial;
    snprintf(rn->run_id, sizeof rn->run_id, "%d-%" PRIu64 "-%d", (int)getpid(), o->seed,
             ++serial);
    printf("run seed %llu (%s)\n", (unsigned long long)o->seed,
           fault_transport_name(o->transport));
    fflush(stdout);

    int threads_before = proc_thread_count();
    watchdog dog;
    watchdog_start(&dog, &rn->s);
    rn->r = recorder_new(&rn->s);
    rn->publish_slots = calloc((size_t)rn->r->n_messages, sizeof *rn->publish_slots);
    bool *unfinished_at_settle = calloc((size_t)rn->r->n_messages, sizeof(bool));
    pthread_mutex_init(&rn->mu, NULL);
    pthread_mutex_init(&rn->buses_mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&rn->cv, &attr);
    pthread_condattr_destroy(&attr);
    rn->publish_rng = fault_rng_for(o->seed, 1, 0);
    member_release_work(false);

    char why[512];
    int rc = 0, env = env_open(&rn->env, &rn->s, rn->run_id, why, sizeof why);
    if (env > 0) {
        printf("skip seed %llu (%s): %s\n", (unsigned long long)o->seed,
               fault_transport_name(o->transport), why);
        out->skipped = true;
    } else if (env < 0) {
        recorder_fail(rn->r, CHECK_SETUP, "%s", why);
    } else if (observer_open(rn) == 0) {
        long lost_at_settle[FAULT_MAX_TOPICS] = {0}, lost[FAULT_MAX_TOPICS] = {0};
        play(rn, unfinished_at_settle, lost_at_settle, lost);
        check_redelivery(rn->r, lost);
        check_handled(rn->r, unfinished_at_settle, lost_at_settle);
        check_order(rn->r);
        check_close(rn->r, o->allow_slow_kafka_leave);
    }
    observer_close(rn);
    env_close(&rn->env);
    watchdog_stop(&dog);
    int threads_after = proc_thread_count_settled(threads_before);
    if (threads_after != threads_before)
        recorder_fail(rn->r, CHECK_THREADS, "%d threads before the run, %d after",
                      threads_before, threads_after);
    if (!out->skipped) {
        summarize(rn, out);
        report(rn, out);
        rc = out->failures > 0;
    }
    pthread_cond_destroy(&rn->cv);
    pthread_mutex_destroy(&rn->buses_mu);
    pthread_mutex_destroy(&rn->mu);
    free(unfinished_at_settle);
    free(rn->publish_slots);
    recorder_free(rn->r);
    free(rn);
    return rc;
}
