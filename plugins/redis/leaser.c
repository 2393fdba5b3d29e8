/*
 * leaser.c — a subscription's partition leases in keyed mode (see
 * leaser.h): announce, renew, take, give up, release, on a thread and a
 * connection of its own.
 */
#include "leaser.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lease.h"
#include "members.h"
#include "partitions.h"

enum { ERR_SIZE = RD_URL_MAX + 512 };

struct rd_leaser {
    const eb_host *host;
    eb_host_bus *hb;
    rd_leaser_config cfg;
    char *topic, *group, *token;
    char members_key[RD_NAME_MAX];
    char (*lease_keys)[RD_NAME_MAX];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* CLOCK_MONOTONIC: releases, stop */
    /* under mu */
    unsigned char *held, *lost, *unwanted, *release;
    bool stopping, wake, settled;
    uint64_t taken, lost_count, released;
    /* the thread's */
    rd_conn conn;
    int link;
    int64_t *last_ok_boot;    /* per partition: send time of the last renewal that held */
    unsigned char *wanted;
    char run_id[64];
    int64_t quarantine_until; /* monotonic ns: take nothing before */
};

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void set_link(rd_leaser *l, int up, const char *why)
{
    if (l->cfg.health)
        rd_health_link(l->cfg.health, &l->link, up, why);
}

/** The server's run_id (INFO server), or "" when it cannot be read. */
static void read_run_id(rd_leaser *l, char *out, size_t size)
{
    char err[ERR_SIZE];
    const char *argv[] = {"INFO", "server"};
    redisReply *r = rd_conn_command(&l->conn, 2, argv, NULL, err, sizeof err);
    out[0] = '\0';
    if (!r)
        return;
    const char *at = r->type == REDIS_REPLY_STRING ? strstr(r->str, "run_id:") : NULL;
    if (at)
        snprintf(out, size, "%.*s", (int)strcspn(at + 7, "\r\n"), at + 7);
    freeReplyObject(r);
}

static int connect_server(rd_leaser *l)
{
    char err[ERR_SIZE];
    if (rd_conn_open(&l->conn, l->cfg.url, l->cfg.timeouts, err, sizeof err) != 0) {
        set_link(l, RD_LINK_DOWN, err);
        return -1;
    }
    char run_id[64];
    read_run_id(l, run_id, sizeof run_id);
    if (l->run_id[0] && run_id[0] && strcmp(run_id, l->run_id) != 0) {
        /* A restarted server may have lost every lease: an owner that
         * still believes in one gives it up within a lease time. */
        l->quarantine_until = clock_ns(CLOCK_MONOTONIC) + l->cfg.lease_ms * 1000000;
        l->host->log(l->hb, EB_LOG_WARN,
                     "redis %s: the server restarted (run_id %s, was %s): taking no lease of "
                     "'%s' for %lld ms",
                     l->cfg.url->display, run_id, l->run_id, l->topic,
                     (long long)l->cfg.lease_ms);
    }
    if (run_id[0])
        snprintf(l->run_id, sizeof l->run_id, "%s", run_id);
    char up[RD_URL_MAX + 64];
    snprintf(up, sizeof up, "redis %s: leaser of %s connected", l->cfg.url->display, l->topic);
    set_link(l, RD_LINK_UP, up);
    return 0;
}

/** Under mu: leases whose local deadline passed are lost. @returns
 *  whether any was. */
static bool expire_leases(rd_leaser *l)
{
    int64_t now = clock_ns(CLOCK_BOOTTIME);
    int64_t keep_ns = (l->cfg.lease_ms - l->cfg.revoke_ms - l->cfg.margin_ms) * 1000000;
    bool any = false;
    for (unsigned p = 0; p < l->cfg.partitions; p++)
        if (l->held[p] && now >= l->last_ok_boot[p] + keep_ns) {
            l->held[p] = 0;
            l->lost[p] = 1;
            l->unwanted[p] = 0;
            l->lost_count++;
            any = true;
        }
    return any;
}

/** Applies `op` to the partitions marked in `which`; ours[] gets the
 *  answers (by partition). @returns 0, or -1 (connection). */
static int apply(rd_leaser *l, rd_lease_op op, const unsigned char *which, unsigned char *ours)
{
    char err[ERR_SIZE];
    const char *keys[RD_PARTITIONS_MAX];
    unsigned index[RD_PARTITIONS_MAX];
    size_t n = 0;
    for (unsigned p = 0; p < l->cfg.partitions; p++)
        if (which[p]) {
            index[n] = p;
            keys[n++] = l->lease_keys[p];
        }
    memset(ours, 0, l->cfg.partitions);
    if (n == 0)
        return 0;
    unsigned char answers[RD_PARTITIONS_MAX];
    if (rd_lease_apply(&l->conn, op, keys, n, l->token, l->cfg.lease_ms, answers, err,
                       sizeof err) != 0) {
        if (!l->conn.ctx)
            set_link(l, RD_LINK_DOWN, err);
        else
            l->host->log(l->hb, EB_LOG_WARN, "%s", err);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        ours[index[i]] = answers[i];
    return 0;
}

/** One turn: announce, renew, release, take. @returns whether the state
 *  changed; *failed when the connection failed. */
static bool turn(rd_leaser *l, bool *failed)
{
    char err[ERR_SIZE];
    unsigned n = l->cfg.partitions;
    unsigned char held[RD_PARTITIONS_MAX], release[RD_PARTITIONS_MAX], ours[RD_PARTITIONS_MAX],
        take[RD_PARTITIONS_MAX];
    *failed = true;
    int64_t sent = clock_ns(CLOCK_BOOTTIME);
    redisReply *live = NULL;
    if (rd_members_announce(&l->conn, l->members_key, l->token, l->cfg.lease_ms, &live, err,
                            sizeof err) != 0) {
        if (!l->conn.ctx)
            set_link(l, RD_LINK_DOWN, err);
        return false;
    }
    rd_assign(live, l->token, n, l->wanted);
    freeReplyObject(live);

    bool changed = false;
    pthread_mutex_lock(&l->mu);
    memcpy(held, l->held, n); /* given up ones are not held any more: released below */
    memcpy(release, l->release, n);
    memset(l->release, 0, n);
    pthread_mutex_unlock(&l->mu);

    if (apply(l, RD_LEASE_RENEW, held, ours) != 0)
        goto give_back;
    pthread_mutex_lock(&l->mu);
    for (unsigned p = 0; p < n; p++) {
        if (!held[p] || !l->held[p])
            continue;
        if (ours[p]) {
            l->last_ok_boot[p] = sent;
        } else { /* expired and taken, or the server lost it */
            l->held[p] = 0;
            l->lost[p] = 1;
            l->unwanted[p] = 0;
            l->lost_count++;
            changed = true;
        }
    }
    pthread_mutex_unlock(&l->mu);

    if (apply(l, RD_LEASE_RELEASE, release, ours) != 0)
        goto give_back;
    pthread_mutex_lock(&l->mu);
    for (unsigned p = 0; p < n; p++)
        l->released += release[p] && ours[p];
    for (unsigned p = 0; p < n; p++)
        take[p] = l->wanted[p] && !l->held[p] && !l->release[p];
    pthread_mutex_unlock(&l->mu);

    if (clock_ns(CLOCK_MONOTONIC) >= l->quarantine_until) {
        if (apply(l, RD_LEASE_TAKE, take, ours) != 0)
            return changed;
        pthread_mutex_lock(&l->mu);
        for (unsigned p = 0; p < n; p++)
            if (take[p] && ours[p]) {
                l->held[p] = 1;
                l->last_ok_boot[p] = sent;
                l->taken++;
                changed = true;
            }
        pthread_mutex_unlock(&l->mu);
    }
    pthread_mutex_lock(&l->mu);
    for (unsigned p = 0; p < n; p++) {
        unsigned char unwanted = l->held[p] && !l->wanted[p];
        changed |= unwanted != l->unwanted[p];
        l->unwanted[p] = unwanted;
    }
    pthread_mutex_unlock(&l->mu);
    *failed = false;
    return changed;

give_back: /* the releases were not done: the next turn does them */
    pthread_mutex_lock(&l->mu);
    for (unsigned p = 0; p < n; p++)
        l->release[p] |= release[p];
    pthread_mutex_unlock(&l->mu);
    return changed;
}

/** Under mu: does the member hold exactly the partitions it should? */
static bool holds_its_share(const rd_leaser *l)
{
    for (unsigned p = 0; p < l->cfg.partitions; p++)
        if (!l->held[p] != !l->wanted[p])
            return false;
    return true;
}

/** Waits until deadline_ns (monotonic), a release request or stop. */
static void nap(rd_leaser *l, int64_t deadline_ns)
{
    struct timespec ts = {deadline_ns / 1000000000, deadline_ns % 1000000000};
    pthread_mutex_lock(&l->mu);
    while (!l->stopping && !l->wake && pthread_cond_timedwait(&l->cv, &l->mu, &ts) == 0)
        ;
    l->wake = false;
    pthread_mutex_unlock(&l->mu);
}

static void notify(rd_leaser *l)
{
    if (l->cfg.changed)
        l->cfg.changed(l->cfg.ctx);
}

static void *leaser_main(void *arg)
{
    rd_leaser *l = arg;
    pthread_setname_np(pthread_self(), "eb-redis-lease");
    int64_t renew_ns = l->cfg.lease_ms / 3 * 1000000;
    if (l->cfg.turn_ms > 0 && l->cfg.turn_ms * 1000000 < renew_ns)
        renew_ns = l->cfg.turn_ms * 1000000;
    int backoff = l->cfg.backoff_min_ms;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        bool stopping = l->stopping;
        pthread_mutex_unlock(&l->mu);
        if (stopping)
            break;
        int64_t start = clock_ns(CLOCK_MONOTONIC);
        bool changed = false, failed = true;
        if (l->conn.ctx || connect_server(l) == 0)
            changed = turn(l, &failed);
        pthread_mutex_lock(&l->mu);
        changed |= expire_leases(l);
        if (!failed && !l->settled && holds_its_share(l))
            changed = l->settled = true;
        pthread_mutex_unlock(&l->mu);
        if (changed)
            notify(l);
        if (failed) {
            rd_conn_close(&l->conn);
            int64_t next = start + (int64_t)backoff * 1000000;
            nap(l, next < start + renew_ns ? next : start + renew_ns);
            backoff = backoff * 2 > l->cfg.backoff_max_ms ? l->cfg.backoff_max_ms : backoff * 2;
        } else {
            backoff = l->cfg.backoff_min_ms;
            nap(l, start + renew_ns);
        }
    }
    /* Stopping: the member gave every partition up; release and leave. */
    char err[ERR_SIZE];
    unsigned char all[RD_PARTITIONS_MAX], ours[RD_PARTITIONS_MAX];
    pthread_mutex_lock(&l->mu);
    for (unsigned p = 0; p < l->cfg.partitions; p++)
        all[p] = l->held[p] || l->release[p];
    pthread_mutex_unlock(&l->mu);
    if (l->conn.ctx && apply(l, RD_LEASE_RELEASE, all, ours) == 0 && l->conn.ctx)
        rd_members_leave(&l->conn, l->members_key, l->token, err, sizeof err);
    rd_conn_close(&l->conn);
    if (l->cfg.health)
        rd_health_link_gone(l->cfg.health, &l->link);
    return NULL;
}

static void leaser_free(rd_leaser *l)
{
    free(l->held);
    free(l->lost);
    free(l->unwanted);
    free(l->release);
    free(l->wanted);
    free(l->last_ok_boot);
    free(l->lease_keys);
    free(l->topic);
    free(l->group);
    free(l->token);
    free(l);
}

rd_leaser *rd_leaser_start(const eb_host *host, eb_host_bus *hb, const rd_leaser_config *cfg)
{
    if (cfg->partitions == 0 || cfg->partitions > RD_PARTITIONS_MAX)
        return NULL;
    rd_leaser *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    unsigned n = cfg->partitions;
    l->host = host;
    l->hb = hb;
    l->cfg = *cfg;
    l->link = RD_LINK_UNKNOWN;
    l->topic = strdup(cfg->topic);
    l->group = strdup(cfg->group);
    l->token = strdup(cfg->token);
    l->held = calloc(n, 1);
    l->lost = calloc(n, 1);
    l->unwanted = calloc(n, 1);
    l->release = calloc(n, 1);
    l->wanted = calloc(n, 1);
    l->last_ok_boot = calloc(n, sizeof *l->last_ok_boot);
    l->lease_keys = calloc(n, sizeof *l->lease_keys);
    bool names = l->lease_keys && l->topic && l->group &&
                 rd_members_key(l->members_key, sizeof l->members_key, cfg->topic,
                                cfg->group) == 0;
    for (unsigned p = 0; names && p < n; p++)
        names = rd_lease_key(l->lease_keys[p], sizeof l->lease_keys[p], cfg->topic,
                             cfg->group, p) == 0;
    if (!names || !l->token || !l->held || !l->lost || !l->unwanted || !l->release ||
        !l->wanted || !l->last_ok_boot) {
        leaser_free(l);
        return NULL;
    }
    l->cfg.topic = l->topic;
    l->cfg.group = l->group;
    l->cfg.token = l->token;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&l->thread, NULL, leaser_main, l) != 0) {
        pthread_cond_destroy(&l->cv);
        pthread_mutex_destroy(&l->mu);
        leaser_free(l);
        return NULL;
    }
    return l;
}

void rd_leaser_view(rd_leaser *l, rd_lease_view *v)
{
    unsigned n = l->cfg.partitions;
    pthread_mutex_lock(&l->mu);
    expire_leases(l); /* as of now, not of the thread's last turn (a call may block it) */
    memcpy(v->held, l->held, n);
    memcpy(v->lost, l->lost, n);
    memcpy(v->unwanted, l->unwanted, n);
    v->settled = l->settled;
    memset(l->lost, 0, n);
    pthread_mutex_unlock(&l->mu);
}

void rd_leaser_release(rd_leaser *l, unsigned p)
{
    if (p >= l->cfg.partitions)
        return;
    pthread_mutex_lock(&l->mu);
    if (l->held[p]) { /* not the member's from now on; the lease goes next turn */
        l->held[p] = 0;
        l->unwanted[p] = 0;
        l->release[p] = 1;
        l->wake = true;
        pthread_cond_signal(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
}

void rd_leaser_lost(rd_leaser *l, unsigned p)
{
    if (p >= l->cfg.partitions)
        return;
    pthread_mutex_lock(&l->mu);
    if (l->held[p]) {
        l->held[p] = 0;
        l->unwanted[p] = 0;
        l->lost_count++;
        l->wake = true;
        pthread_cond_signal(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
}

void rd_leaser_counts(rd_leaser *l, uint64_t *taken, uint64_t *lost, uint64_t *released)
{
    pthread_mutex_lock(&l->mu);
    *taken = l->taken;
    *lost = l->lost_count;
    *released = l->released;
    pthread_mutex_unlock(&l->mu);
}

void rd_leaser_stop(rd_leaser *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->stopping = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    leaser_free(l);
}
