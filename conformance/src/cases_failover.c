/*
 * cases_failover.c — fail-over groups (EB_FEATURE_FAILOVER_GROUPS): of two
 * members of one group, one is active and handles every message, the other
 * stands by and handles nothing, never while the active one is inside a
 * handler; when the active member closes, or its process is killed, the
 * standby takes over (EB_EVENT_ASSIGNED) with everything the group has not
 * acknowledged. What these cases assume is written in conformance.h
 * ("Groups").
 */
#include "eventbus/conformance.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------ two members */

/* One member's handler state; both share `group` (every message the group
 * handled) and see each other's in_handler. */
struct fo_member {
    struct fo_pair *pair;
    unsigned index;            /* 0: the member that joined first */
    eb_conf_recorder *own;     /* what this member handled */
    eb_conf_recorder *before;  /* member 0: what it finished before closing (may be NULL) */
    unsigned spin_us;
    atomic_int in_handler;
    atomic_ulong unparsable;
};

struct fo_pair {
    eb_conf_recorder *group;
    struct fo_member member[2];
    atomic_int closing;        /* member 0 is closing or closed */
    atomic_ulong overlaps;     /* a handler started while the other member was in one */
    atomic_ulong early;        /* member 1 handled a message before member 0 closed */
};

static struct fo_pair *fo_pair_new(eb_conf_ctx *ctx, unsigned nkeys, unsigned per_key)
{
    struct fo_pair *p = eb_conf_alloc(ctx, sizeof *p);
    p->group = eb_conf_recorder_new(ctx, nkeys, per_key);
    for (unsigned i = 0; i < 2; i++) {
        p->member[i].pair = p;
        p->member[i].index = i;
        p->member[i].own = eb_conf_recorder_new(ctx, nkeys, per_key);
    }
    return p;
}

/* Runs on a dispatch worker of either member's bus. */
static eb_result fo_handler(const eb_msg *msg, void *opaque)
{
    struct fo_member *m = opaque;
    struct fo_pair *p = m->pair;
    struct fo_member *other = &p->member[1 - m->index];
    atomic_fetch_add(&m->in_handler, 1);
    if (atomic_load(&other->in_handler) > 0)
        atomic_fetch_add(&p->overlaps, 1);
    if (m->index == 1 && !atomic_load(&p->closing))
        atomic_fetch_add(&p->early, 1);
    unsigned key, seq;
    if (eb_conf_msg_seq(msg, &key, &seq) == 0) {
        eb_conf_recorder_add(p->group, key, seq);
        eb_conf_recorder_add(m->own, key, seq);
        if (m->spin_us)
            eb_conf_spin_us(m->spin_us);
        /* Finished before member 0 began to close: acknowledged and
         * committed by that close at the latest. */
        if (m->before && !atomic_load(&p->closing))
            eb_conf_recorder_add(m->before, key, seq);
    } else {
        atomic_fetch_add(&m->unparsable, 1);
    }
    atomic_fetch_sub(&m->in_handler, 1);
    return EB_ACK;
}

static void fo_publish_range(eb_conf_ctx *ctx, eb_bus *bus, const char *topic,
                             eb_conf_deliveries *d, unsigned nkeys, unsigned from,
                             unsigned to)
{
    for (unsigned seq = from; seq < to; seq++)
        for (unsigned key = 0; key < nkeys; key++)
            eb_conf_publish_seq(ctx, bus, topic, key, seq, d, (size_t)seq * nkeys + key);
    eb_conf_flush_confirmed(ctx, bus, d);
}

/* ---------------------------------------------------- failover_one_active */

#define OA_KEYS 16
#define OA_PER_KEY 100

/*
 * Two members of one group, both ready before anything is published: the
 * one that joined first handles every message, once, in per-key order;
 * the other handles none.
 */
void eb_case_failover_one_active(eb_conf_ctx *ctx)
{
    const char *topic = eb_conf_name(ctx, "t");
    const char *group = eb_conf_name(ctx, "g");
    struct fo_pair *p = fo_pair_new(ctx, OA_KEYS, OA_PER_KEY);
    p->member[0].spin_us = p->member[1].spin_us = 20; /* handlers overlap in time */
    atomic_store(&p->closing, 1); /* nobody closes: "early" is not counted */

    eb_config *cfg = eb_conf_config(ctx);
    eb_bus *bus[2] = {eb_conf_open(ctx, cfg), eb_conf_open(ctx, cfg)};
    for (unsigned i = 0; i < 2; i++)
        eb_conf_subscribe(ctx, bus[i], topic, group, fo_handler, &p->member[i]);
    unsigned long revokes = eb_conf_event_count(ctx, EB_EVENT_REVOKED);

    eb_conf_deliveries *d = eb_conf_deliveries_new(ctx, OA_KEYS * OA_PER_KEY);
    fo_publish_range(ctx, bus[0], topic, d, OA_KEYS, 0, OA_PER_KEY);
    eb_conf_expect_all(ctx, p->group, OA_KEYS, OA_PER_KEY, "the group (two members)");
    unsigned long revoked = eb_conf_revokes_since(ctx, revokes);
    EB_CHECK_OK(eb_bus_close(bus[1], EB_CONF_CLOSE_MS));
    EB_CHECK_OK(eb_bus_close(bus[0], EB_CONF_CLOSE_MS));

    unsigned long n0 = eb_conf_recorder_unique(p->member[0].own);
    unsigned long n1 = eb_conf_recorder_unique(p->member[1].own);
    eb_conf_note(ctx, "first member handled %lu, second %lu", n0, n1);
    EB_CHECK(n0 == 0 || n1 == 0,
             "both members of a fail-over group handled messages (first %lu, second %lu): "
             "one member is active at a time", n0, n1);
    EB_CHECK(n1 == 0, "the member that joined second handled %lu message(s), the first "
             "none: the first member of a group becomes the active one", n1);
    EB_CHECK(atomic_load(&p->overlaps) == 0,
             "%lu handler(s) started while the other member was inside one",
             atomic_load(&p->overlaps));
    EB_CHECK_EQ(atomic_load(&p->member[0].unparsable) + atomic_load(&p->member[1].unparsable), 0);
    eb_conf_check_duplicates(ctx, eb_conf_recorder_duplicates(p->group), revoked,
                             "one active member");
    eb_conf_expect_order(ctx, p->group, 1, "one active member");
}

/* ------------------------------------------------ failover_close_takeover */

#define CT_KEYS 16
#define CT_FIRST 100 /* seqs of each key published before the active member closes */
#define CT_PER_KEY 200
#define CT_BEFORE_CLOSE 400 /* handled by the active member before it closes */

struct ct_assigned {
    eb_conf_ctx *ctx;
    unsigned long before;
};

static int ct_assigned_since(void *arg)
{
    struct ct_assigned *a = arg;
    return eb_conf_event_count(a->ctx, EB_EVENT_ASSIGNED) > a->before;
}

/* The first member handled its share before the close, or the second
 * wrongly handles. */
static int ct_first_member_handled(void *arg)
{
    struct fo_pair *p = arg;
    return eb_conf_recorder_unique(p->member[0].own) >= CT_BEFORE_CLOSE ||
           atomic_load(&p->early);
}

/*
 * The active member closes mid-stream (eb_bus_close: it finishes what it
 * holds and commits it); the standby takes over: it handles what the
 * active member left and what is published afterwards, nothing the active
 * member finished before it began to close, and nothing while the active
 * member was handling.
 */
void eb_case_failover_close_takeover(eb_conf_ctx *ctx)
{
    const char *topic = eb_conf_name(ctx, "t");
    const char *group = eb_conf_name(ctx, "g");
    struct fo_pair *p = fo_pair_new(ctx, CT_KEYS, CT_PER_KEY);
    p->member[0].spin_us = 100; /* slower than the publisher: it closes with work left */
    p->member[0].before = eb_conf_recorder_new(ctx, CT_KEYS, CT_PER_KEY);

    eb_config *cfg = eb_conf_config(ctx);
    eb_bus *pub = eb_conf_open(ctx, cfg);
    eb_bus *bus[2] = {eb_conf_open(ctx, cfg), eb_conf_open(ctx, cfg)};
    for (unsigned i = 0; i < 2; i++)
        eb_conf_subscribe(ctx, bus[i], topic, group, fo_handler, &p->member[i]);
    unsigned long revokes = eb_conf_event_count(ctx, EB_EVENT_REVOKED);

    eb_conf_deliveries *d = eb_conf_deliveries_new(ctx, CT_KEYS * CT_PER_KEY);
    fo_publish_range(ctx, pub, topic, d, CT_KEYS, 0, CT_FIRST);
    int handled = eb_conf_wait(ct_first_member_handled, p, EB_CONF_WAIT_MS);
    EB_CHECK(atomic_load(&p->early) == 0,
             "the member that joined second handled %lu message(s) while the first "
             "was open", atomic_load(&p->early));
    EB_CHECK(handled == 0, "the active member handled only %lu message(s) within %d ms",
             eb_conf_recorder_unique(p->member[0].own), EB_CONF_WAIT_MS);
    struct ct_assigned assigned = {ctx, eb_conf_event_count(ctx, EB_EVENT_ASSIGNED)};
    atomic_store(&p->closing, 1);
    EB_CHECK_OK(eb_bus_close(bus[0], EB_CONF_CLOSE_MS));
    unsigned long handled0 = eb_conf_recorder_unique(p->member[0].own);
    unsigned long finished_before = eb_conf_recorder_unique(p->member[0].before);

    fo_publish_range(ctx, pub, topic, d, CT_KEYS, CT_FIRST, CT_PER_KEY);
    eb_conf_expect_all(ctx, p->group, CT_KEYS, CT_PER_KEY, "after the standby took over");
    EB_CHECK(eb_conf_wait(ct_assigned_since, &assigned, EB_CONF_WAIT_MS) == 0,
             "the standby took over without an EB_EVENT_ASSIGNED");
    unsigned long revoked = eb_conf_revokes_since(ctx, revokes);
    EB_CHECK_OK(eb_bus_close(bus[1], EB_CONF_CLOSE_MS));

    /* Finished and acknowledged before the close began: never again. */
    unsigned long repeated = 0, in_flight = 0;
    char first[64] = "";
    for (unsigned k = 0; k < CT_KEYS; k++)
        for (unsigned s = 0; s < CT_PER_KEY; s++) {
            if (!eb_conf_recorder_count(p->member[0].own, k, s) ||
                !eb_conf_recorder_count(p->member[1].own, k, s))
                continue;
            if (eb_conf_recorder_count(p->member[0].before, k, s)) {
                if (repeated++ == 0)
                    snprintf(first, sizeof first, "key %u seq %u", k, s);
            } else {
                in_flight++;
            }
        }
    eb_conf_note(ctx, "the active member handled %lu (%lu before its close began), the "
                 "standby %lu; %lu handled by both, in flight at the close",
                 handled0, finished_before, eb_conf_recorder_unique(p->member[1].own),
                 in_flight);
    EB_CHECK(repeated == 0,
             "the standby handled %lu message(s) again that the active member had finished "
             "before it began to close (first: %s)", repeated, first);
    EB_CHECK(eb_conf_recorder_unique(p->member[1].own) > 0,
             "the standby handled nothing after the active member closed");
    EB_CHECK(atomic_load(&p->early) == 0,
             "the standby handled %lu message(s) while the active member was open",
             atomic_load(&p->early));
    EB_CHECK(atomic_load(&p->overlaps) == 0,
             "%lu handler(s) started while the other member was inside one",
             atomic_load(&p->overlaps));
    EB_CHECK_EQ(atomic_load(&p->member[0].unparsable) + atomic_load(&p->member[1].unparsable), 0);
    eb_conf_check_duplicates(ctx, eb_conf_recorder_duplicates(p->member[1].own), revoked,
                             "the standby, after it took over");
    eb_conf_expect_order(ctx, p->group, 0, "across the take-over");
}

/* ------------------------------------------------- failover_kill_takeover */

#define KT_KEYS 8
#define KT_FIRST 100 /* seqs of each key published before the kill */
#define KT_PER_KEY 200
#define KT_BEFORE_KILL 200 /* the child handles this many, then holds */

/* Shared with the child process (MAP_SHARED, set up before the fork). */
struct kt_shared {
    atomic_int ready;     /* 1: the child's member is ready; -1: it failed */
    char error[512];      /* why, when ready is -1 */
    atomic_uint handled;  /* messages the child handled */
    atomic_uint unparsable;
    atomic_uint counts[KT_KEYS * KT_PER_KEY]; /* per (key, seq) */
};

struct kt_state {
    struct kt_shared *shared;
    pid_t child;
    atomic_int child_killed;
    atomic_ulong early;   /* the standby handled a message while the child lived */
    eb_conf_recorder *standby;
    atomic_ulong unparsable;
};

/* Runs on a dispatch worker of the child's bus. After KT_BEFORE_KILL
 * messages every handler holds until the process is killed, so the kill
 * finds messages in flight. */
static eb_result kt_child_handler(const eb_msg *msg, void *opaque)
{
    struct kt_shared *sh = opaque;
    unsigned key, seq;
    if (eb_conf_msg_seq(msg, &key, &seq) != 0 || key >= KT_KEYS || seq >= KT_PER_KEY) {
        atomic_fetch_add(&sh->unparsable, 1);
        return EB_ACK;
    }
    if (atomic_load(&sh->handled) >= KT_BEFORE_KILL)
        for (;;)
            pause(); /* held in flight: the parent kills this process */
    atomic_fetch_add(&sh->counts[key * KT_PER_KEY + seq], 1);
    atomic_fetch_add(&sh->handled, 1);
    return EB_ACK;
}

static void kt_child_fail(struct kt_shared *sh, const char *what, int rc, const char *err)
{
    snprintf(sh->error, sizeof sh->error, "%s: %s: %s", what, eb_err_name(rc), err);
    atomic_store(&sh->ready, -1);
    _exit(1);
}

/* The child process: the group's first member. It must not use the checks
 * (they would unwind into the runner's copy in this process). */
static void kt_child(struct kt_shared *sh, const eb_config *cfg, const char *topic,
                     const char *group, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    alarm(600); /* a last guard: the parent kills it long before */
    char err[512] = "";
    eb_bus *bus = NULL;
    eb_sub *sub = NULL;
    int rc = eb_bus_open(cfg, &bus, err, sizeof err);
    if (rc != 0)
        kt_child_fail(sh, "eb_bus_open", rc, err);
    rc = eb_subscribe(bus, topic, group, kt_child_handler, sh, NULL, &sub, err, sizeof err);
    if (rc != 0)
        kt_child_fail(sh, "eb_subscribe", rc, err);
    rc = eb_sub_wait_ready(sub, EB_CONF_READY_MS);
    if (rc != 0)
        kt_child_fail(sh, "eb_sub_wait_ready", rc, "");
    atomic_store(&sh->ready, 1);
    for (;;)
        pause(); /* until the parent kills it */
}

/* Teardown: the child never outlives the case. Idempotent. */
static void kt_reap(void *arg)
{
    struct kt_state *st = arg;
    if (st->child <= 0)
        return;
    atomic_store(&st->child_killed, 1);
    kill(st->child, SIGKILL);
    while (waitpid(st->child, NULL, 0) < 0 && errno == EINTR)
        ;
    st->child = 0;
}

static void kt_unmap(void *arg) { munmap(arg, sizeof(struct kt_shared)); }

/* Runs on a dispatch worker of the standby's bus. */
static eb_result kt_standby_handler(const eb_msg *msg, void *opaque)
{
    struct kt_state *st = opaque;
    if (!atomic_load(&st->child_killed))
        atomic_fetch_add(&st->early, 1);
    unsigned key, seq;
    if (eb_conf_msg_seq(msg, &key, &seq) == 0)
        eb_conf_recorder_add(st->standby, key, seq);
    else
        atomic_fetch_add(&st->unparsable, 1);
    return EB_ACK;
}

static int kt_child_ready(void *arg)
{
    struct kt_state *st = arg;
    return atomic_load(&st->shared->ready) != 0;
}

/* The child holds its handlers, or the standby wrongly handles. */
static int kt_child_holding(void *arg)
{
    struct kt_state *st = arg;
    return atomic_load(&st->shared->handled) >= KT_BEFORE_KILL || atomic_load(&st->early);
}

static unsigned kt_handled(struct kt_state *st, unsigned k, unsigned s)
{
    return atomic_load(&st->shared->counts[k * KT_PER_KEY + s]) +
           eb_conf_recorder_count(st->standby, k, s);
}

static int kt_all_handled(void *arg)
{
    struct kt_state *st = arg;
    for (unsigned k = 0; k < KT_KEYS; k++)
        for (unsigned s = 0; s < KT_PER_KEY; s++)
            if (!kt_handled(st, k, s))
                return 0;
    return 1;
}

/* Forks the child member and waits until it is ready. */
static void kt_start_child(eb_conf_ctx *ctx, struct kt_state *st, const char *topic,
                           const char *group)
{
    eb_config *child_cfg = eb_conf_config(ctx);
    eb_conf_set(ctx, child_cfg, "dispatch.workers", "2"); /* holds 2 handlers, not a pool */
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    st->child = fork();
    EB_CHECK(st->child >= 0, "fork: %s", strerror(errno));
    if (st->child == 0)
        kt_child(st->shared, child_cfg, topic, group, parent);
    eb_conf_on_teardown(ctx, kt_reap, st);
    EB_CHECK(eb_conf_wait(kt_child_ready, st, EB_CONF_READY_MS) == 0,
             "the child member was not ready within %d ms", EB_CONF_READY_MS);
    EB_CHECK(atomic_load(&st->shared->ready) == 1, "the child member failed: %s",
             st->shared->error);
}

/*
 * The active member's process is killed (SIGKILL) with messages in flight;
 * the standby, in this process, takes over: every message is handled by
 * one or the other (those in flight at the kill possibly by both), the
 * standby handles nothing while the active member lives, and hears
 * EB_EVENT_ASSIGNED only when it takes over.
 */
void eb_case_failover_kill_takeover(eb_conf_ctx *ctx)
{
    const char *topic = eb_conf_name(ctx, "t");
    const char *group = eb_conf_name(ctx, "g");
    struct kt_state *st = eb_conf_alloc(ctx, sizeof *st);
    st->standby = eb_conf_recorder_new(ctx, KT_KEYS, KT_PER_KEY);
    void *shared = mmap(NULL, sizeof *st->shared, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    EB_CHECK(shared != MAP_FAILED, "mmap: %s", strerror(errno));
    eb_conf_defer_free(ctx, kt_unmap, shared);
    st->shared = shared;
    if (!atomic_is_lock_free(&st->shared->handled))
        EB_SKIP("atomic_uint is not lock-free here: it cannot be shared with a child process");

    /* Forked before this process opens a bus: no thread of ours is copied. */
    kt_start_child(ctx, st, topic, group);
    eb_config *cfg = eb_conf_config(ctx);
    eb_bus *standby = eb_conf_open(ctx, cfg);
    eb_conf_subscribe(ctx, standby, topic, group, kt_standby_handler, st);
    eb_bus *pub = eb_conf_open(ctx, cfg);
    unsigned long revokes = eb_conf_event_count(ctx, EB_EVENT_REVOKED);

    eb_conf_deliveries *d = eb_conf_deliveries_new(ctx, KT_KEYS * KT_PER_KEY);
    fo_publish_range(ctx, pub, topic, d, KT_KEYS, 0, KT_FIRST);
    int holding = eb_conf_wait(kt_child_holding, st, EB_CONF_WAIT_MS);
    EB_CHECK(atomic_load(&st->early) == 0,
             "the standby handled %lu message(s) while the active member (the child "
             "process, which joined first) lived", atomic_load(&st->early));
    EB_CHECK(holding == 0,
             "the active member (the child process) handled only %u of %d messages "
             "within %d ms (does the transport reach across processes?)",
             atomic_load(&st->shared->handled), KT_BEFORE_KILL, EB_CONF_WAIT_MS);
    EB_CHECK(eb_conf_event_count(ctx, EB_EVENT_ASSIGNED) == 0,
             "the standby heard EB_EVENT_ASSIGNED while the active member lived");
    unsigned child_handled = atomic_load(&st->shared->handled);
    kt_reap(st);

    fo_publish_range(ctx, pub, topic, d, KT_KEYS, KT_FIRST, KT_PER_KEY);
    if (eb_conf_wait(kt_all_handled, st, EB_CONF_WAIT_MS) != 0) {
        unsigned long missing = 0;
        char first[64] = "";
        for (unsigned k = 0; k < KT_KEYS; k++)
            for (unsigned s = 0; s < KT_PER_KEY; s++)
                if (!kt_handled(st, k, s) && missing++ == 0)
                    snprintf(first, sizeof first, "key %u seq %u", k, s);
        EB_FAIL("%lu of %d messages handled by neither member within %d ms after the "
                "kill (first: %s; the child handled %u, the standby %lu)",
                missing, KT_KEYS * KT_PER_KEY, EB_CONF_WAIT_MS, first, child_handled,
                eb_conf_recorder_unique(st->standby));
    }
    EB_CHECK(eb_conf_event_count(ctx, EB_EVENT_ASSIGNED) > 0,
             "the standby took over without an EB_EVENT_ASSIGNED");
    unsigned long revoked = eb_conf_revokes_since(ctx, revokes);
    EB_CHECK_OK(eb_bus_close(standby, EB_CONF_CLOSE_MS));

    unsigned long both = 0;
    for (unsigned k = 0; k < KT_KEYS; k++)
        for (unsigned s = 0; s < KT_PER_KEY; s++)
            both += atomic_load(&st->shared->counts[k * KT_PER_KEY + s]) &&
                    eb_conf_recorder_count(st->standby, k, s);
    eb_conf_note(ctx, "the child handled %u before the kill, the standby %lu after; %lu "
                 "handled by both (in flight or not yet committed at the kill)",
                 child_handled, eb_conf_recorder_unique(st->standby), both);
    EB_CHECK_EQ(atomic_load(&st->shared->unparsable), 0);
    EB_CHECK_EQ(atomic_load(&st->unparsable), 0);
    eb_conf_check_duplicates(ctx, eb_conf_recorder_duplicates(st->standby), revoked,
                             "the standby, after it took over");
    eb_conf_expect_order(ctx, st->standby, 1, "the member that took over");
}
