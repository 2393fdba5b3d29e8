/*
 * progress.c — the stall watchdog of check 4 (see progress.h). Outstanding
 * means confirmed and not yet ACKed or dead-lettered; a partition (a lane:
 * for Redis the topic's one stream) where a handler runs is excused (its
 * lane may legitimately wait behind it: a key waits for its head, a full
 * lane pauses), as is everything while a join or leave is in progress or
 * no member is live. So is everything while a
 * member has every worker inside a handler (a fixed pool that blocked
 * handlers fill runs nothing else, and the driver does not know which
 * partitions it holds); a stall beyond that is
 * head-of-line blocking, which the key-scheduling dispatcher (issue 8)
 * removed: a failure unless --allow-hol-blocking.
 */
#include "progress.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { LOOK_EVERY_MS = 50, MAX_PARTITIONS = 64 };

struct progress_monitor {
    recorder *r;
    const scenario *s;
    bool allow_hol;
    progress_hooks hooks;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    int64_t pending_since_ns; /* 0: nothing outstanding at the last look */
};

/** What one look saw, under r->mu. */
typedef struct look {
    long pending[FAULT_MAX_TOPICS]; /* outstanding, on partitions without a handler */
    bool any_pending;
    int64_t last_activity_ns;
    int64_t longest_running_ns;     /* age of the oldest running handler */
    long example[FAULT_MAX_TOPICS]; /* one outstanding message per topic */
    fault_pos example_pos[FAULT_MAX_TOPICS];
} look;

static void take_look(progress_monitor *pm, look *lk, int64_t now)
{
    recorder *r = pm->r;
    memset(lk, 0, sizeof *lk);
    bool excused[FAULT_MAX_TOPICS][MAX_PARTITIONS] = {{false}};
    pthread_mutex_lock(&r->mu);
    lk->last_activity_ns = r->last_activity_ns;
    if (r->live_members > 0 && r->transitions == 0) {
        int running[FAULT_MAX_INCARNATIONS] = {0};
        for (size_t i = 0; i < r->n_calls; i++) {
            const call_record *c = &r->calls[i];
            if (c->finished)
                continue;
            if (c->incarnation >= 0 && c->incarnation < FAULT_MAX_INCARNATIONS)
                running[c->incarnation]++;
            if (c->pos.lane >= 0 && c->pos.lane < MAX_PARTITIONS)
                excused[c->topic][c->pos.lane] = true;
            if (now - c->start_ns > lk->longest_running_ns)
                lk->longest_running_ns = now - c->start_ns;
        }
        /* A member whose every worker is inside a handler runs nothing
         * else; the driver does not know which partitions it holds. */
        bool pool_full = false;
        for (int inc = 0; inc < r->n_incarnations && inc < FAULT_MAX_INCARNATIONS; inc++) {
            int member = r->incarnations[inc].member;
            const member_plan *plan = member >= 0 ? &pm->s->members[member] : NULL;
            int workers = !plan ? 0 : plan->workers ? plan->workers : plan->workers_max;
            pool_full |= workers > 0 && running[inc] >= workers;
        }
        if (pool_full)
            memset(excused, true, sizeof excused);
        for (long i = 0; i < r->n_published; i++) {
            const msg_state *m = &r->msgs[i];
            if (m->publish != PUB_CONFIRMED || msg_finished(m) ||
                (m->pos.lane < MAX_PARTITIONS && excused[m->topic][m->pos.lane]))
                continue;
            if (lk->pending[m->topic]++ == 0) {
                lk->example[m->topic] = i;
                lk->example_pos[m->topic] = m->pos;
            }
            lk->any_pending = true;
        }
    }
    pthread_mutex_unlock(&r->mu);
}

/** Outstanding work beyond what retention is known to have lost. */
static bool beyond_losses(progress_monitor *pm, const look *lk, char *what, size_t size)
{
    size_t at = 0;
    bool stalled = false;
    for (int t = 0; t < pm->s->n_topics; t++) {
        if (lk->pending[t] == 0)
            continue;
        long lost = pm->hooks.lost(pm->hooks.ctx, t);
        if (lk->pending[t] <= lost)
            continue;
        stalled = true;
        char pos[FAULT_POS_TEXT];
        at += (size_t)snprintf(what + at, at < size ? size - at : 0,
                               "%stopic %d: %ld outstanding (%ld lost to retention), e.g. "
                               "message %ld at %s",
                               at ? "; " : "", t, lk->pending[t], lost, lk->example[t],
                               fault_pos_text(lk->example_pos[t], pos, sizeof pos));
    }
    return stalled;
}

static void report_stall(progress_monitor *pm, const look *lk, const char *what, int64_t quiet_ns)
{
    int limit = scenario_stall_limit_ms(pm->s);
    if (lk->longest_running_ns >= (int64_t)limit * 1000000) {
        if (pm->allow_hol) {
            recorder_note(pm->r, "head-of-line blocking (issue 7 defect 6, fixed by issue 8); "
                          "a failure without --allow-hol-blocking", "nothing handled for %lld ms while a handler has run "
                              "for %lld ms: %s", (long long)(quiet_ns / 1000000),
                              (long long)(lk->longest_running_ns / 1000000), what);
            return;
        }
    }
    size_t size = 16384;
    char *stats = malloc(size);
    if (stats)
        pm->hooks.describe(pm->hooks.ctx, stats, size);
    recorder_fail(pm->r, CHECK_PROGRESS,
                  "nothing handled for %lld ms (limit %d ms) with messages outstanding; "
                  "longest running handler %lld ms: %s\n  stats: %s",
                  (long long)(quiet_ns / 1000000), limit,
                  (long long)(lk->longest_running_ns / 1000000), what, stats ? stats : "?");
    free(stats);
}

static void look_once(progress_monitor *pm)
{
    int64_t now = fault_now_ns();
    look lk;
    take_look(pm, &lk, now);
    if (!lk.any_pending) {
        pm->pending_since_ns = 0;
        return;
    }
    if (pm->pending_since_ns == 0)
        pm->pending_since_ns = now;
    int64_t quiet_from = lk.last_activity_ns > pm->pending_since_ns ? lk.last_activity_ns
                                                                    : pm->pending_since_ns;
    if (now - quiet_from <= (int64_t)scenario_stall_limit_ms(pm->s) * 1000000)
        return;
    char what[1024];
    if (beyond_losses(pm, &lk, what, sizeof what))
        report_stall(pm, &lk, what, now - quiet_from);
    pm->pending_since_ns = now; /* the next report needs another full limit */
}

static void *monitor_main(void *arg)
{
    progress_monitor *pm = arg;
    pthread_mutex_lock(&pm->mu);
    while (!pm->stop) {
        int64_t next = fault_now_ns() + LOOK_EVERY_MS * 1000000LL;
        struct timespec ts = {.tv_sec = next / 1000000000, .tv_nsec = next % 1000000000};
        pthread_cond_timedwait(&pm->cv, &pm->mu, &ts);
        if (pm->stop)
            break;
        pthread_mutex_unlock(&pm->mu);
        look_once(pm);
        pthread_mutex_lock(&pm->mu);
    }
    pthread_mutex_unlock(&pm->mu);
    return NULL;
}

progress_monitor *progress_start(recorder *r, const scenario *s, bool allow_hol,
                                 progress_hooks hooks)
{
    progress_monitor *pm = calloc(1, sizeof *pm);
    if (!pm)
        return NULL;
    *pm = (progress_monitor){.r = r, .s = s, .allow_hol = allow_hol, .hooks = hooks};
    pthread_mutex_init(&pm->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&pm->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&pm->thread, NULL, monitor_main, pm) != 0) {
        pthread_cond_destroy(&pm->cv);
        pthread_mutex_destroy(&pm->mu);
        free(pm);
        return NULL;
    }
    return pm;
}

void progress_stop(progress_monitor *pm)
{
    if (!pm)
        return;
    pthread_mutex_lock(&pm->mu);
    pm->stop = true;
    pthread_cond_signal(&pm->cv);
    pthread_mutex_unlock(&pm->mu);
    pthread_join(pm->thread, NULL);
    pthread_cond_destroy(&pm->cv);
    pthread_mutex_destroy(&pm->mu);
    free(pm);
}
