/*
 * keyed.c — a subscription in keyed group mode (see member.h): each
 * partition stream is a lane, owned while this member holds its lease
 * (leaser.c), so one key's entries are handled by one member at a time,
 * in order, across the group's members.
 *
 *  - gained: the lane first finishes what earlier owners left pending
 *    (XAUTOCLAIM from 0 with min idle 0, in id order), then reads new
 *    entries; every read goes through the lease-checked script (fenced.c),
 *    and a caught-up lane waits in the reader's plain XREAD BLOCK;
 *  - unwanted (another member should own it): revoked (handlers get
 *    dispatch.revoke.timeout.ms), its XACKs sent, then its lease released;
 *  - lost (answered "not yours", or not renewed in time): revoked at once
 *    with the lost flag; what it held goes to the next owner.
 * The member is ready once it holds its share of the partitions (the
 * others gave theirs up), as a Kafka member is once it was assigned.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "claim.h"
#include "fenced.h"
#include "member.h"

enum { LEASER_TURN_MS = 1000 };

/** The leaser's news (its thread): wake the reader, or end its BLOCK. */
static void leases_changed(void *ctx)
{
    rd_sub *s = ctx;
    pthread_mutex_lock(&s->mu);
    s->leases_changed = true;
    if (s->reader_blocking) {
        s->unblock_wanted = true;
        pthread_cond_signal(&s->keeper_cv);
    }
    pthread_cond_signal(&s->reader_cv);
    pthread_mutex_unlock(&s->mu);
}

int rd_keyed_start(rd_sub *s, char *errstr, size_t errstr_size)
{
    unsigned n = s->n_lanes;
    s->view_mem = calloc(3, n);
    if (!s->view_mem)
        return EB_ERR_NOMEM;
    s->view = (rd_lease_view){.held = s->view_mem,
                              .lost = s->view_mem + n,
                              .unwanted = s->view_mem + 2 * (size_t)n};
    /* One token per subscription, even under a stable consumer name. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(s->token, sizeof s->token, "%s/%llx%p", s->rb->settings.consumer,
             (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec,
             (void *)s);
    const rd_settings *set = s->set;
    rd_leaser_config cfg = {.url = &set->url,
                            .timeouts = set->timeouts,
                            .backoff_min_ms = set->backoff_min_ms,
                            .backoff_max_ms = set->backoff_max_ms,
                            .topic = s->topic,
                            .group = s->group,
                            .token = s->token,
                            .partitions = n,
                            .lease_ms = set->lease_ms,
                            .revoke_ms = set->revoke_ms,
                            .margin_ms = set->timeouts.command_ms,
                            .turn_ms = LEASER_TURN_MS,
                            .changed = leases_changed,
                            .ctx = s,
                            .health = &s->rb->health};
    s->leaser = rd_leaser_start(s->host, s->rb->hb, &cfg);
    if (!s->leaser) {
        snprintf(errstr, errstr_size,
                 "redis transport: cannot subscribe to '%s': no lease thread", s->topic);
        return EB_ERR_NOMEM;
    }
    return 0;
}

void rd_keyed_stop(rd_sub *s)
{
    rd_leaser_stop(s->leaser);
    s->leaser = NULL;
}

static void set_owned(rd_sub *s, rd_lane *ln, bool owned)
{
    pthread_mutex_lock(&s->mu);
    ln->owned = owned;
    pthread_mutex_unlock(&s->mu);
}

static void lose(rd_sub *s, unsigned p, const char *why)
{
    rd_member_revoke(s, p, EB_REVOKE_LOST, 0);
    set_owned(s, &s->lanes[p], false);
    s->host->log(s->rb->hb, EB_LOG_WARN,
                 "redis: partition %u of '%s' (stream %s): %s; what it held goes to the next "
                 "owner",
                 p, s->topic, s->lanes[p].stream, why);
}

/** Another member should own lane p: its handlers finish (within the
 *  revoke timeout), its XACKs go out, then the lease is released. */
static void give_up(rd_sub *s, unsigned p)
{
    rd_lane *ln = &s->lanes[p];
    rd_member_revoke(s, p, 0, rd_member_now_ns(s) + s->set->revoke_ms * 1000000);
    int64_t deadline = rd_member_now_ns(s) + (int64_t)s->set->timeouts.command_ms * 1000000;
    pthread_mutex_lock(&s->mu);
    pthread_cond_signal(&s->keeper_cv);
    while ((ln->acks.n || ln->acking.n) && !s->reader_stop && rd_member_now_ns(s) < deadline)
        rd_member_wait(s, &s->reader_cv, deadline);
    ln->owned = false;
    pthread_mutex_unlock(&s->mu);
    rd_leaser_release(s->leaser, p);
}

static void gain(rd_sub *s, unsigned p)
{
    rd_lane *ln = &s->lanes[p];
    pthread_mutex_lock(&s->mu);
    ln->owned = true;
    ln->phase = RD_LANE_CLAIM; /* what earlier owners left comes first */
    snprintf(ln->cursor, sizeof ln->cursor, "0-0");
    pthread_mutex_unlock(&s->mu);
    char detail[RD_NAME_MAX + 64];
    snprintf(detail, sizeof detail, "partition %u (stream %s)", p, ln->stream);
    s->host->event(s->rb->hb, EB_EVENT_ASSIGNED, s->topic, s->group, 0, detail);
}

void rd_keyed_apply_leases(rd_sub *s)
{
    pthread_mutex_lock(&s->mu);
    s->leases_changed = false;
    pthread_mutex_unlock(&s->mu);
    rd_lease_view *v = &s->view;
    rd_leaser_view(s->leaser, v);
    for (unsigned p = 0; p < s->n_lanes; p++) {
        bool owned = s->lanes[p].owned; /* only this thread writes it */
        if (owned && (v->lost[p] || !v->held[p])) {
            lose(s, p, "its lease was lost (not renewed in time, or taken)");
            owned = false;
        } else if (owned && v->unwanted[p]) {
            give_up(s, p);
            continue;
        }
        if (!owned && v->held[p] && !v->lost[p]) {
            if (v->unwanted[p])
                rd_leaser_release(s->leaser, p); /* taken, and wanted elsewhere since */
            else
                gain(s, p);
        }
    }
    if (v->settled && !s->ready_sent) {
        s->ready_sent = true;
        s->host->ready(s->hs);
    }
}

/** Makes the lane's group (at the start position the first time). */
static int ensure_group(rd_sub *s, rd_lane *ln, char *err, size_t err_size)
{
    if (ln->group_made)
        return 0;
    if (rd_group_ensure(&ln->grp, err, err_size) != 0)
        return -1;
    ln->group_made = true;
    ln->grp.start_id = "0"; /* made again after a deletion: read all there is */
    uint64_t recreated = 0;
    for (unsigned i = 0; i < s->n_lanes; i++)
        recreated += s->lanes[i].grp.recreated;
    atomic_store(&s->recreated, recreated);
    return 0;
}

/** A claim page's entries, with their delivery counts, to the core. */
static int deliver_claimed(rd_sub *s, unsigned p, rd_fenced *f, char *err, size_t err_size)
{
    rd_lane *ln = &s->lanes[p];
    rd_member_count_deleted(s, p, f->deleted);
    uint32_t *counts = NULL;
    if (f->entries->elements) {
        counts = calloc(f->entries->elements, sizeof *counts);
        if (!counts || rd_pending_deliveries(&s->rconn, ln->stream, s->group, f->entries,
                                             counts, err, err_size) != 0) {
            if (!counts)
                snprintf(err, err_size, "redis: out of memory");
            free(counts);
            rd_fenced_free(f); /* claimed: the page is claimed again from the same cursor */
            return -1;
        }
    }
    atomic_fetch_add(&s->claimed, f->entries->elements);
    snprintf(ln->cursor, sizeof ln->cursor, "%s", f->next);
    if (strcmp(f->next, "0-0") == 0)
        ln->phase = RD_LANE_NEW;
    redisReply *reply = f->reply;
    f->reply = NULL;
    rd_member_deliver_entries(s, p, reply, f->entries, counts, 0, true);
    free(counts);
    return 0;
}

int rd_keyed_read_lane(rd_sub *s, unsigned p, size_t room, char *err, size_t err_size)
{
    rd_lane *ln = &s->lanes[p];
    if (ensure_group(s, ln, err, err_size) != 0)
        return -1;
    bool claim = ln->phase == RD_LANE_CLAIM;
    rd_fenced f;
    int rc = rd_fenced_read(&s->rconn, claim ? RD_FENCED_CLAIM : RD_FENCED_NEW, ln->stream,
                            ln->lease_key, s->token, s->group, s->rb->settings.consumer,
                            ln->cursor, room, &f, err, err_size);
    if (rc == RD_NOT_OWNER) { /* expired, or the server lost it (a restart) */
        atomic_fetch_add(&s->not_owner, 1);
        rd_leaser_lost(s->leaser, p);
        lose(s, p, "the server says its lease is not this member's");
        return 0;
    }
    if (rc != 0) {
        if (!s->rconn.ctx || !strstr(err, "NOGROUP"))
            return -1;
        ln->group_made = false; /* deleted: made again (and counted) by the next read */
        return 0;
    }
    if (claim)
        return deliver_claimed(s, p, &f, err, err_size);
    if (f.entries->elements < room) { /* caught up as of f.last */
        ln->phase = RD_LANE_WAIT;
        snprintf(ln->last, sizeof ln->last, "%s", f.last);
    }
    redisReply *reply = f.reply;
    f.reply = NULL;
    rd_member_deliver_entries(s, p, reply, f.entries, NULL, 1, false);
    return 0;
}

void rd_keyed_stats(rd_sub *s, eb_json_out *o)
{
    eb_json_printf(o, ",\"partitions\":[");
    bool first = true;
    pthread_mutex_lock(&s->mu);
    for (unsigned p = 0; p < s->n_lanes; p++) {
        const rd_lane *ln = &s->lanes[p];
        if (!ln->owned)
            continue;
        eb_json_printf(o, "%s{\"partition\":%u,\"stream\":", first ? "" : ",", p);
        eb_json_string(o, ln->stream);
        eb_json_printf(o, ",\"held\":%zu,\"lag\":%lld,\"pending\":%lld}", ln->held,
                       atomic_load(&ln->lag), atomic_load(&ln->pending));
        first = false;
    }
    pthread_mutex_unlock(&s->mu);
    uint64_t taken = 0, lost = 0, released = 0;
    if (s->leaser)
        rd_leaser_counts(s->leaser, &taken, &lost, &released);
    eb_json_printf(o,
                   "],\"leases\":{\"taken\":%llu,\"lost\":%llu,\"released\":%llu,"
                   "\"not_owner\":%llu}",
                   (unsigned long long)taken, (unsigned long long)lost,
                   (unsigned long long)released,
                   (unsigned long long)atomic_load(&s->not_owner));
}
