/*
 * member.c — one Kafka consumer per group member (bus, group), shared by
 * every subscription of that group in the bus.
 *
 * Divisions, in order:
 *   messages   wrapping an rd_kafka_message_t as an eb_msg
 *   lanes      per (subscription, partition): generation and in-flight FIFO
 *   inbox      acks and releases recorded by dispatch threads
 *   rebalance  assign (positions for "latest" and anonymous members) and
 *              revoke (handlers finish, offsets stored and committed)
 *   fetch      rd_kafka_consumer_poll() batches handed to the core; pause
 *              when the core refuses, resume when it asks
 *   thread     the poll thread: the only caller of assign, pause, resume,
 *              subscribe and close on the handle (librdkafka 2.0.2 rules)
 *   lifecycle  start, stop, free
 *
 * The poll thread sleeps in poll(2) on a pipe that librdkafka writes when
 * its consumer queue gets something (rd_kafka_queue_io_event_enable) and
 * that ack/release/resume write to wake it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json_out.h"
#include "kafka.h"
#include "lane_fifo.h"

enum { FETCH_BATCH = 256, POLL_IDLE_MS = 200, ASSIGN_TIMEOUT_MS = 10000 };
/* How long a lane that had no memory to wrap a message waits before it
 * fetches it again. */
enum { OUT_OF_MEMORY_HOLD_MS = 100 };
/* Message wrappers: headers up to this many live inside the wrapper; the
 * poll thread keeps up to SPARE_MSGS_MAX freed wrappers for reuse. */
enum { MSG_INLINE_HEADERS = 4, SPARE_MSGS_MAX = 8192 };
/* A lane whose FIFO is full keeps up to LANE_WAIT_MAX messages fetched
 * after it (its "waiting" list) and pauses its partition only then,
 * resuming it once the list is down to LANE_WAIT_RESUME. Pausing on every
 * full FIFO made a small dispatch.lane.max.inflight cost a whole fetch
 * round trip (up to fetch.wait.max.ms, 500 ms) per message: a lane bound
 * of 1 handled about 2 messages a second. */
enum { LANE_WAIT_MAX = 128, LANE_WAIT_RESUME = LANE_WAIT_MAX / 2 };

typedef struct lane {
    bool assigned;           /* written under m->mu (stats read it) */
    /* Poll thread: the pause state librdkafka was last given (set for
     * every partition after each assign: librdkafka keeps an application
     * pause across unassign and assign). */
    bool rk_paused;
    /* Poll thread: a rewind (see rewind_lane) whose seek librdkafka has not
     * taken yet: the lane stays paused until it has. */
    bool seek_pending;
    int64_t rewind_offset;   /* the offset to fetch again; -1: none */
    /* Poll thread: the offset after the last message the lane took; -1:
     * none since its assign or rewind (see wake_fetchers). */
    int64_t next_offset;
    int64_t hold_until_ns;   /* out of memory: fetch again after this */
    uint64_t generation;
    eb_lane_fifo fifo;
    /* Poll thread: fetched after the FIFO filled, in offset order, not in
     * the FIFO nor in the core yet; they enter as the FIFO makes room. */
    struct kf_msg *wait_head, *wait_tail;
    size_t n_waiting;
    /* The first offset not yet finished (-1: unknown), for the lag. */
    atomic_int_fast64_t unfinished;
    /* Times its partition was paused while assigned, for the stats. */
    atomic_long pauses;
} lane;

struct kf_sub {
    kf_sub *next;            /* m->subs, under m->mu */
    kf_member *m;
    eb_host_sub *hs;
    char *topic;
    eb_start_position start;
    uint32_t lane_max;
    /* poll thread only */
    lane *lanes;
    int n_lanes;
    eb_msg **pending;        /* refused by the core, in order */
    size_t n_pending, cap_pending;
    bool paused;
    bool ready_sent;
    bool in_subscription;    /* its topic was in the last rd_kafka_subscribe */
    /* under m->mu */
    bool resume_requested;
    bool leaving;            /* unsubscribe asked */
    bool left;               /* its lanes are revoked and it is off the list */
    kf_sub *next_dead;       /* m->graveyard, under m->mu */
};

typedef struct kf_msg {
    eb_msg base;
    rd_kafka_message_t *rkm;
    kf_sub *sub;
    uint64_t seq;
    struct kf_msg *next;     /* inbox, or the member's spares */
    bool acked;
    char id[32];
    eb_header inline_headers[MSG_INLINE_HEADERS];
} kf_msg;

struct kf_member {
    kf_member *next;         /* kb->members, under kb->mu */
    kf_bus *kb;
    char *group;             /* NULL: anonymous */
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    pthread_t thread;
    int wake[2];             /* pipe: [0] read by the poll thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* unsubscribers wait for `left` */
    kf_sub *subs;
    kf_msg *inbox;
    /* Subs destroyed while the poll thread may still read them (an ack
     * taken from the inbox just before): freed by that thread, after the
     * inbox taken with them is served. */
    kf_sub *graveyard;
    bool exited;             /* the poll thread is done: nothing holds lanes */
    bool topics_changed;
    /* Poll thread: a join of the group is under way (from our subscribe,
     * or the rejoin that follows a revoke) and its assign has not run.
     * librdkafka 2.0.2 discards the JoinGroup response when the
     * subscription changes meanwhile (its issue 5569): the broker then
     * keeps a phantom member for a whole session and every rebalance
     * waits for it (issue 7, defect 11). Topic changes wait for the
     * assign. */
    bool join_pending;
    int64_t subscribed_ns;   /* poll thread: the last rd_kafka_subscribe */
    bool stopping;
    /* Under mu: the earliest deadline of the subs leaving now (0: none):
     * the revokes and commits their leave causes end by then, and the
     * close (final revoke, commit, leaving the group) when the last one
     * leaves; without one, the revoke timeout (plus CLOSE_SLACK_MS for
     * the close). */
    int64_t leave_by_ns;
    /* Poll thread: the final commit or the close that the leave deadline
     * cut short (what was not committed goes to the next owner); read
     * after join. */
    bool leave_cut_short;
    uint64_t generations;
    int n_subs;              /* subs not yet freed; the last frees the member */
    bool closed;             /* librdkafka finished closing the consumer */
    /* A close given up at its deadline: its queue, kept for member_free to
     * see the close through (see finish_abandoned_close). */
    rd_kafka_queue_t *abandoned_close;
    /* Poll thread: the sub of the last message's topic handle. */
    rd_kafka_topic_t *last_rkt;
    kf_sub *last_sub;
    /* Poll thread: freed wrappers, reused by wrap() (both ends of a
     * message's life are on this thread, so no lock and no heap). */
    kf_msg *spare;
    size_t n_spare;
};

static void wake(kf_member *m)
{
    char c = 1;
    ssize_t n = write(m->wake[1], &c, 1);
    (void)n; /* a full pipe already wakes the thread */
}

static void log_m(kf_member *m, eb_log_level level, const char *what, const char *detail)
{
    m->kb->host->log(m->kb->hb, level, "consumer %s: %s: %s",
                     m->group ? m->group : "(anonymous)", what, detail);
}

/* ------------------------------------------------------------ messages */

/** Any thread: the wrapper and its message back to the heap. */
static void msg_free(kf_msg *km)
{
    rd_kafka_message_destroy(km->rkm);
    if (km->base.headers != km->inline_headers)
        free((void *)km->base.headers);
    free(km);
}

/** Poll thread: like msg_free, keeping the wrapper for reuse. */
static void msg_recycle(kf_member *m, kf_msg *km)
{
    if (m->n_spare >= SPARE_MSGS_MAX || km->base.headers != km->inline_headers) {
        msg_free(km);
        return;
    }
    rd_kafka_message_destroy(km->rkm);
    km->next = m->spare;
    m->spare = km;
    m->n_spare++;
}

static void free_spares(kf_member *m)
{
    for (kf_msg *next; m->spare; m->spare = next) {
        next = m->spare->next;
        free(m->spare);
    }
    m->n_spare = 0;
}

static kf_msg *msg_alloc(kf_member *m)
{
    kf_msg *km = m->spare;
    if (!km)
        return malloc(sizeof *km);
    m->spare = km->next;
    m->n_spare--;
    return km;
}

/** Writes "partition@offset" without snprintf (a hot path both ways). */
void kf_format_id(char *out, int32_t partition, int64_t offset)
{
    char digits[24];
    int n = 0;
    uint64_t v = (uint64_t)partition;
    do
        digits[n++] = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    while (n > 0)
        *out++ = digits[--n];
    *out++ = '@';
    v = (uint64_t)offset;
    do
        digits[n++] = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    while (n > 0)
        *out++ = digits[--n];
    *out = '\0';
}

#ifdef EB_KAFKA_FAULTS
/* Test builds only (eventbus-kafka-faults, tests/kafka/CMakeLists.txt):
 * every Nth wrap fails as if out of memory, N from the environment
 * variable EB_KAFKA_FAULT_WRAP_EVERY (unset or 0: never). Poll thread. */
static bool wrap_fails(void)
{
    static unsigned long calls;
    const char *every = getenv("EB_KAFKA_FAULT_WRAP_EVERY");
    unsigned long n = every ? strtoul(every, NULL, 10) : 0;
    return n > 0 && ++calls % n == 0;
}
/* Test builds only: EB_KAFKA_FAULT_CLOSE_GIVES_UP set makes the consumer
 * close give up at once, before librdkafka's final revoke (as a close that
 * runs out of time does). Poll thread. */
static bool close_gives_up(void) { return getenv("EB_KAFKA_FAULT_CLOSE_GIVES_UP") != NULL; }
#else
static inline bool wrap_fails(void) { return false; }
static inline bool close_gives_up(void) { return false; }
#endif

/** Poll thread: wraps rkm for the core. NULL when out of memory. */
static kf_msg *wrap(kf_member *m, kf_sub *s, rd_kafka_message_t *rkm, const lane *l)
{
    rd_kafka_headers_t *hdrs = NULL;
    size_t count = 0;
    if (rd_kafka_message_headers(rkm, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
        count = rd_kafka_header_cnt(hdrs);
    kf_msg *km = wrap_fails() ? NULL : msg_alloc(m);
    if (!km)
        return NULL;
    eb_header *headers = km->inline_headers;
    if (count > MSG_INLINE_HEADERS && !(headers = malloc(count * sizeof *headers))) {
        free(km);
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        const char *name;
        const void *value;
        size_t size;
        rd_kafka_header_get_all(hdrs, i, &name, &value, &size);
        headers[i] = (eb_header){name, value ? value : "", value ? size : 0};
    }
    km->rkm = rkm;
    km->sub = s;
    km->next = NULL;
    km->acked = false;
    kf_format_id(km->id, rkm->partition, rkm->offset);
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(rkm, &tstype);
    km->base = (eb_msg){.topic = s->topic, .key = rkm->key, .key_len = rkm->key_len,
                        .payload = rkm->payload ? rkm->payload : "",
                        .payload_len = rkm->payload ? rkm->len : 0,
                        .headers = headers, .header_count = count, .id = km->id,
                        .timestamp_ms = ts > 0 ? ts : 0, .delivery_count = 0,
                        .lane = (uint32_t)rkm->partition,
                        .lane_generation = l->generation};
    return km;
}

/* --------------------------------------------------------------- lanes */

/** Poll thread: the lane of `partition`, grown on demand. NULL when out
 *  of memory. Its FIFO is allocated when it is first assigned: a member
 *  holding a few partitions of a topic with many keeps a FIFO for those
 *  only, not for every index below them. */
static lane *lane_of(kf_sub *s, int32_t partition)
{
    if (partition < s->n_lanes)
        return &s->lanes[partition];
    int n = partition + 1;
    pthread_mutex_lock(&s->m->mu); /* stats walk the lanes under it */
    lane *lanes = realloc(s->lanes, (size_t)n * sizeof *lanes);
    if (lanes) {
        s->lanes = lanes;
        for (; s->n_lanes < n; s->n_lanes++) {
            lanes[s->n_lanes] = (lane){.rewind_offset = -1, .next_offset = -1};
            atomic_init(&lanes[s->n_lanes].unfinished, -1);
        }
    }
    pthread_mutex_unlock(&s->m->mu);
    return partition < s->n_lanes ? &s->lanes[partition] : NULL;
}

/** Poll thread: the lane's first unfinished offset after a push or pop. */
static void note_unfinished(lane *l, int64_t if_empty)
{
    const eb_lane_fifo *f = &l->fifo;
    int64_t head = eb_lane_fifo_len(f) ? (int64_t)eb_lane_fifo_head_offset(f) : if_empty;
    atomic_store_explicit(&l->unfinished, head, memory_order_relaxed);
}

static void set_assigned(kf_member *m, lane *l, bool assigned)
{
    pthread_mutex_lock(&m->mu);
    l->assigned = assigned;
    pthread_mutex_unlock(&m->mu);
    atomic_store(&l->unfinished, -1);
}

static kf_sub *subs_head(kf_member *m);

/** Poll thread: offsets of finished FIFO heads go to librdkafka (the next
 *  offset to consume, as rd_kafka_offsets_store wants). */
static void store_finished(kf_member *m)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);
    for (kf_sub *s = subs_head(m); s; s = s->next) {
        for (int p = 0; p < s->n_lanes; p++) {
            uint64_t last;
            if (s->lanes[p].assigned && eb_lane_fifo_pop_done(&s->lanes[p].fifo, &last)) {
                rd_kafka_topic_partition_list_add(list, s->topic, p)->offset =
                    (int64_t)last + 1;
                note_unfinished(&s->lanes[p], (int64_t)last + 1);
            }
        }
    }
    if (list->cnt > 0 && m->group) { /* an anonymous member commits nothing */
        rd_kafka_resp_err_t err = rd_kafka_offsets_store(m->rk, list);
        if (err)
            log_m(m, EB_LOG_WARN, "storing offsets", rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* --------------------------------------------------------------- inbox */

static void inbox_add(kf_sub *s, eb_msg *const *msgs, size_t n, bool acked)
{
    kf_member *m = s->m;
    pthread_mutex_lock(&m->mu);
    bool was_empty = !m->inbox;
    for (size_t i = 0; i < n; i++) {
        kf_msg *km = (kf_msg *)msgs[i];
        km->acked = acked;
        km->next = m->inbox;
        m->inbox = km;
    }
    pthread_mutex_unlock(&m->mu);
    if (was_empty)
        wake(m);
}

void kf_sub_ack(kf_sub *s, eb_msg *const *msgs, size_t n) { inbox_add(s, msgs, n, true); }

void kf_sub_release(kf_sub *s, eb_msg *const *msgs, size_t n)
{
    /* Released messages stay unfinished in their FIFO: the commit stops
     * before them and the lane's next owner gets them again. */
    inbox_add(s, msgs, n, false);
}

static void sub_free_now(kf_sub *s);

/** Poll thread: marks acked messages done (if their lane generation still
 *  holds), frees every returned message, stores what finished. Subs
 *  destroyed meanwhile are freed last: the core returned all of a sub's
 *  messages before destroying it, so those are in the inbox taken with
 *  it (issue 7, defect 3: a sub freed while this loop read it). */
static void drain_inbox(kf_member *m)
{
    pthread_mutex_lock(&m->mu);
    kf_msg *km = m->inbox;
    m->inbox = NULL;
    kf_sub *dead = m->graveyard;
    m->graveyard = NULL;
    pthread_mutex_unlock(&m->mu);
    bool any = km != NULL;
    for (kf_msg *next; km; km = next) {
        next = km->next;
        kf_sub *s = km->sub;
        lane *l = km->base.lane < (uint32_t)s->n_lanes ? &s->lanes[km->base.lane] : NULL;
        if (km->acked && l && l->assigned && l->generation == km->base.lane_generation)
            eb_lane_fifo_mark_done(&l->fifo, km->seq);
        msg_recycle(m, km);
    }
    for (kf_sub *next; dead; dead = next) {
        next = dead->next_dead;
        sub_free_now(dead);
    }
    if (any)
        store_finished(m);
}

/* ----------------------------------------------------------- rebalance */

/**
 * Poll thread: the list of subs to walk without m->mu. Subscribe only
 * prepends (under m->mu) and only this thread unlinks, so the nodes from
 * this head on stay put while it walks them.
 */
static kf_sub *subs_head(kf_member *m)
{
    pthread_mutex_lock(&m->mu);
    kf_sub *head = m->subs;
    pthread_mutex_unlock(&m->mu);
    return head;
}

static kf_sub *sub_of_topic(kf_member *m, const char *topic)
{
    for (kf_sub *s = subs_head(m); s; s = s->next)
        if (strcmp(s->topic, topic) == 0)
            return s;
    return NULL;
}

/** Poll thread: should librdkafka stop fetching this lane? While the core
 *  refuses its sub, while its waiting list is full (until it is down to
 *  LANE_WAIT_RESUME), and while a rewind waits. */
static bool lane_wants_pause(const kf_sub *s, const lane *l, int64_t now_ns)
{
    size_t most_waiting = l->rk_paused ? LANE_WAIT_RESUME : LANE_WAIT_MAX - 1;
    return s->paused || l->n_waiting > most_waiting || l->seek_pending ||
           now_ns < l->hold_until_ns;
}

/** Poll thread: the lane's waiting list back to the heap (its lane is
 *  let go, or its sub freed). */
static void drop_waiting(kf_member *m, lane *l)
{
    for (kf_msg *next; l->wait_head; l->wait_head = next) {
        next = l->wait_head->next;
        if (m)
            msg_recycle(m, l->wait_head);
        else
            msg_free(l->wait_head);
    }
    l->wait_tail = NULL;
    l->n_waiting = 0;
}

/** Adds (topic, p) to *list, made on first use. @returns the entry. */
static rd_kafka_topic_partition_t *add_to(rd_kafka_topic_partition_list_t **list,
                                          const char *topic, int32_t p)
{
    if (!*list)
        *list = rd_kafka_topic_partition_list_new(4);
    return rd_kafka_topic_partition_list_add(*list, topic, p);
}

static void seek_rewound(kf_member *m, kf_sub *s, int32_t partition);

/**
 * Poll thread: librdkafka 2.0.2 resumes a partition without waking the
 * broker thread that fetches it, which, with every partition it serves
 * paused, sleeps up to rd_kafka_max_block_ms (1 s) before it looks again.
 * Every pause of a full pool then stopped fetching for up to a second:
 * 64 workers with 1 ms handlers handled a 200,000-message backlog at 22k
 * msgs/s, 43k with this; a rewound lane (out of memory) took a second
 * per rewind. A seek wakes that thread. It goes only where the partition
 * must be fetched from anyway, so it can never skip or repeat a message:
 * a rewound lane's rewind offset (nothing at or after it was taken
 * since), or else the lane's own next offset (the last message it took
 * + 1) when librdkafka's position (the last message polled + 1) is the
 * same. A lane nothing was taken from since its assign is left to its
 * resume (whose fetch start, for a partition without a position, wakes
 * the thread itself).
 */
static void wake_fetchers(kf_member *m, kf_sub *s, rd_kafka_topic_partition_list_t *resumed)
{
    if (rd_kafka_position(m->rk, resumed) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    rd_kafka_topic_partition_list_t *seek = NULL;
    for (int i = 0; i < resumed->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &resumed->elems[i];
        const lane *l = p->partition < s->n_lanes ? &s->lanes[p->partition] : NULL;
        int64_t at = !l                     ? -1
                     : l->rewind_offset >= 0 ? l->rewind_offset
                     : !p->err && l->next_offset == p->offset ? l->next_offset
                                                              : -1;
        if (at >= 0)
            add_to(&seek, p->topic, p->partition)->offset = at;
    }
    if (!seek)
        return;
    rd_kafka_error_t *error = rd_kafka_seek_partitions(m->rk, seek, 0);
    if (error) { /* the resume stands; its fetch only starts later */
        log_m(m, EB_LOG_DEBUG, "waking the fetcher of a resumed partition",
              rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    rd_kafka_topic_partition_list_destroy(seek);
}

/**
 * Poll thread: gives librdkafka the pause state each assigned lane of `s`
 * should have: the lanes whose state changed, or (`every`) all of them.
 * The one place that pauses and resumes: librdkafka keeps an application
 * pause across unassign and assign, and a flag of ours that drifted from
 * it left a partition paused for good (issue 7, defect 2).
 */
static void sync_pauses(kf_member *m, kf_sub *s, bool every)
{
    int64_t now = m->kb->host->now_ns();
    rd_kafka_topic_partition_list_t *pause = NULL, *resume = NULL;
    for (int p = 0; p < s->n_lanes; p++) {
        lane *l = &s->lanes[p];
        if (!l->assigned)
            continue;
        if (l->seek_pending)
            seek_rewound(m, s, p);
        bool want = lane_wants_pause(s, l, now);
        if (want && !l->rk_paused)
            atomic_fetch_add_explicit(&l->pauses, 1, memory_order_relaxed);
        if (every || want != l->rk_paused)
            add_to(want ? &pause : &resume, s->topic, p);
        l->rk_paused = want;
    }
    if (pause) {
        rd_kafka_pause_partitions(m->rk, pause);
        rd_kafka_topic_partition_list_destroy(pause);
    }
    if (resume) {
        rd_kafka_resume_partitions(m->rk, resume);
        if (!every) /* after an assign, positions are the assign's to set */
            wake_fetchers(m, s, resume);
        rd_kafka_topic_partition_list_destroy(resume);
    }
}

/** Poll thread: the core refused `s` (paused) or asked for more. */
static void set_paused(kf_member *m, kf_sub *s, bool paused)
{
    s->paused = paused;
    sync_pauses(m, s, false);
}

/** Does `s` start at the latest offset where its group has no commit? */
static bool starts_at_latest(const kf_member *m, const kf_sub *s)
{
    return s && (s->start == EB_START_LATEST || (s->start == EB_START_DEFAULT && !m->group));
}

/**
 * Poll thread, in the assign callback: the partitions of subs starting at
 * the latest that have no committed offset get the high watermark, so that
 * a message published after ready is handled. A group member also stores
 * that position (committed with the next commit): a later assignment that
 * resolved "latest" again would skip what was published in between.
 * When the committed offsets cannot be read, the partitions keep
 * librdkafka's start (the committed offset, else auto.offset.reset,
 * earliest): a failure redelivers, it never skips (issue 7, defect 5).
 * The broker round trips (each bounded by ASSIGN_TIMEOUT_MS) happen in the
 * callback so that ready means positioned; only such subs pay for them.
 * @returns the positions to store once assigned, or NULL.
 */
static rd_kafka_topic_partition_list_t *position_at_latest(kf_member *m,
                                                           rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *latest = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++)
        if (starts_at_latest(m, sub_of_topic(m, parts->elems[i].topic)))
            rd_kafka_topic_partition_list_add(latest, parts->elems[i].topic,
                                              parts->elems[i].partition);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (latest->cnt > 0 && m->group)
        err = rd_kafka_committed(m->rk, latest, ASSIGN_TIMEOUT_MS);
    if (err)
        log_m(m, EB_LOG_WARN, "reading committed offsets (starting from the group's commits, "
              "else the earliest)", rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_t *store = NULL;
    for (int i = 0; i < latest->cnt && !err; i++) {
        rd_kafka_topic_partition_t *tp = &latest->elems[i];
        if (m->group && (tp->err || tp->offset >= 0))
            continue; /* committed, or unknown: librdkafka's start */
        int64_t low, high;
        rd_kafka_resp_err_t werr = rd_kafka_query_watermark_offsets(
            m->rk, tp->topic, tp->partition, &low, &high, ASSIGN_TIMEOUT_MS);
        if (werr) {
            log_m(m, EB_LOG_WARN, "reading the latest offset (starting from the earliest)",
                  rd_kafka_err2str(werr));
            continue;
        }
        rd_kafka_topic_partition_list_find(parts, tp->topic, tp->partition)->offset = high;
        if (m->group)
            add_to(&store, tp->topic, tp->partition)->offset = high;
    }
    rd_kafka_topic_partition_list_destroy(latest);
    return store;
}

static void assign(kf_member *m, rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *store = position_at_latest(m, parts);
    for (int i = 0; i < parts->cnt; i++) {
        kf_sub *s = sub_of_topic(m, parts->elems[i].topic);
        lane *l = s ? lane_of(s, parts->elems[i].partition) : NULL;
        if (l && !l->fifo.offsets && eb_lane_fifo_init(&l->fifo, s->lane_max) != 0)
            l = NULL;
        if (!l) {
            if (s) /* no sub: a topic being left, not ours any more */
                log_m(m, EB_LOG_ERROR, "assign",
                      "out of memory for a partition's lane: it is not consumed until the "
                      "next rebalance");
            continue;
        }
        set_assigned(m, l, true);
        l->seek_pending = false;
        l->rewind_offset = -1;
        l->next_offset = -1;
        l->hold_until_ns = 0;
        l->generation = ++m->generations;
        eb_lane_fifo_reset(&l->fifo);
        drop_waiting(m, l);
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(m->rk, parts);
    if (err)
        log_m(m, EB_LOG_ERROR, "assign", rd_kafka_err2str(err));
    if (store) {
        if (!err && (err = rd_kafka_offsets_store(m->rk, store)))
            log_m(m, EB_LOG_WARN, "storing the latest offsets", rd_kafka_err2str(err));
        rd_kafka_topic_partition_list_destroy(store);
    }
    m->join_pending = false;
    for (kf_sub *s = subs_head(m); s; s = s->next) {
        sync_pauses(m, s, true); /* whatever librdkafka remembers */
        /* Ready once a join that included its topic has assigned, with or
         * without partitions of it (more members than partitions is
         * normal); an anonymous member assigns its one topic itself. */
        bool joined = !m->group || s->in_subscription;
        if (joined && !s->ready_sent && !s->leaving) {
            s->ready_sent = true;
            m->kb->host->ready(s->hs);
        }
    }
    char detail[64];
    snprintf(detail, sizeof detail, "%d partition(s) assigned", parts->cnt);
    m->kb->host->event(m->kb->hb, EB_EVENT_ASSIGNED, NULL, m->group, 0, detail);
}

/** Poll thread: refused messages of revoked lanes never reached the core. */
static void drop_pending_of_unassigned(kf_sub *s)
{
    size_t keep = 0;
    for (size_t i = 0; i < s->n_pending; i++) {
        kf_msg *km = (kf_msg *)s->pending[i];
        lane *l = &s->lanes[km->base.lane];
        if (l->assigned && l->generation == km->base.lane_generation)
            s->pending[keep++] = &km->base;
        else
            msg_free(km);
    }
    s->n_pending = keep;
}

/** Poll thread: host->revoke_until where the core has it (ABI 1.1). */
static void host_revoke(kf_member *m, kf_sub *s, const eb_lane_ref *refs, size_t n,
                        int64_t deadline_ns, unsigned flags)
{
    const eb_host *host = m->kb->host;
    if (host->struct_size >= offsetof(eb_host, revoke_until) + sizeof host->revoke_until &&
        host->revoke_until)
        host->revoke_until(s->hs, refs, n, deadline_ns, flags);
    else
        host->revoke(s->hs, refs, n);
}

/** Poll thread: the core lets go of `s`'s lanes in `parts`. */
static void revoke_sub(kf_member *m, kf_sub *s, rd_kafka_topic_partition_list_t *parts,
                       int64_t deadline_ns, unsigned flags)
{
    eb_lane_ref refs[parts->cnt > 0 ? parts->cnt : 1];
    size_t n = 0;
    for (int i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        if (strcmp(parts->elems[i].topic, s->topic) == 0 && p < s->n_lanes &&
            s->lanes[p].assigned)
            refs[n++] = (eb_lane_ref){(uint32_t)p, s->lanes[p].generation};
    }
    if (n) /* handlers finish (unless lost), acks arrive */
        host_revoke(m, s, refs, n, deadline_ns, flags);
}

/**
 * Poll thread: commits the stored offsets and waits for the answer until
 * `deadline_ns`, or KF_COMMIT_MIN_MS if that is sooner (an answer needs a
 * round trip to the broker), except when closing: the close deadline is
 * not extended (issue 7, defect 14). A synchronous rd_kafka_commit() waits
 * forever, and librdkafka 2.0.2 was seen never to answer one made while
 * the consumer closes (a lifecycle run under valgrind hung there for
 * minutes). An unanswered commit only means redelivery to the next owner.
 */
static void commit_stored(kf_member *m, int64_t deadline_ns, bool leaving)
{
    int64_t left_ms = (deadline_ns - m->kb->host->now_ns()) / 1000000;
    int least_ms = leaving ? 0 : KF_COMMIT_MIN_MS;
    int wait_ms = left_ms > least_ms ? (int)left_ms : least_ms;
    rd_kafka_queue_t *q = rd_kafka_queue_new(m->rk);
    rd_kafka_resp_err_t err = rd_kafka_commit_queue(m->rk, NULL, q, NULL, NULL);
    if (!err) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, wait_ms);
        err = ev ? rd_kafka_event_error(ev) : RD_KAFKA_RESP_ERR__TIMED_OUT;
        if (ev)
            rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        log_m(m, EB_LOG_WARN, "commit on revoke", rd_kafka_err2str(err));
        m->leave_cut_short |= leaving;
    }
}

/** Poll thread: the deadline of the subs leaving now, 0 if none. */
static int64_t leave_deadline(kf_member *m)
{
    pthread_mutex_lock(&m->mu);
    int64_t by = m->leave_by_ns;
    pthread_mutex_unlock(&m->mu);
    return by;
}

/**
 * Poll thread: handlers of the revoked lanes finish (the core waits for
 * them), their offsets are stored and committed, the lanes let go. One
 * deadline for every sub of the member (the revoke timeout, or the
 * deadline of the subs leaving if sooner: the revoke that their leaving
 * causes must not outlast it); the commit gets what is left of it. A lost
 * assignment (the group moved on without this member: another may handle
 * the lanes already) waits for no handler and commits nothing: the
 * broker would refuse the commit of a generation that is gone.
 */
static void revoke_all(kf_member *m, rd_kafka_topic_partition_list_t *parts, bool lost)
{
    int64_t deadline_ns = m->kb->host->now_ns() + m->kb->revoke_timeout_ms * 1000000;
    int64_t leave_by = leave_deadline(m);
    if (leave_by && leave_by < deadline_ns)
        deadline_ns = leave_by;
    kf_sub *subs = subs_head(m);
    for (kf_sub *s = subs; s; s = s->next)
        revoke_sub(m, s, parts, deadline_ns, lost ? EB_REVOKE_LOST : 0);
    drain_inbox(m);
    if (m->group && !lost)
        commit_stored(m, deadline_ns, leave_by != 0);
    for (kf_sub *s = subs; s; s = s->next) {
        for (int p = 0; p < s->n_lanes; p++) {
            set_assigned(m, &s->lanes[p], false);
            eb_lane_fifo_reset(&s->lanes[p].fifo);
            drop_waiting(m, &s->lanes[p]);
        }
        drop_pending_of_unassigned(s);
    }
    rd_kafka_assign(m->rk, NULL);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    kf_member *m = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        assign(m, parts);
    } else {
        if (rd_kafka_assignment_lost(rk))
            log_m(m, EB_LOG_WARN, "rebalance",
                  "the assignment was lost (session expired?): handlers of its partitions "
                  "may run on as another member gets them");
        revoke_all(m, parts, rd_kafka_assignment_lost(rk));
        m->join_pending = true; /* librdkafka rejoins once this returns */
    }
}

/* --------------------------------------------------------------- fetch */

/** Poll thread: hands `msgs` to the core; keeps and pauses on refusal. */
static void deliver(kf_member *m, kf_sub *s, eb_msg **msgs, size_t n)
{
    size_t k = m->kb->host->deliver(s->hs, msgs, n);
    if (k == n)
        return;
    size_t rest = n - k;
    if (s->n_pending + rest > s->cap_pending) {
        size_t cap = s->n_pending + rest + FETCH_BATCH;
        eb_msg **p = realloc(s->pending, cap * sizeof *p);
        if (!p) { /* out of memory: drop them unacked; revoke redelivers */
            for (size_t i = k; i < n; i++)
                msg_free((kf_msg *)msgs[i]);
            return;
        }
        s->pending = p;
        s->cap_pending = cap;
    }
    memcpy(s->pending + s->n_pending, msgs + k, rest * sizeof *msgs);
    s->n_pending += rest;
    if (!s->paused)
        set_paused(m, s, true);
}

typedef struct batch {
    kf_sub *sub;
    eb_msg *msgs[FETCH_BATCH];
    size_t n;
} batch;

static void flush_batch(kf_member *m, batch *b)
{
    if (b->n == 0)
        return;
    if (b->sub->paused) { /* fetched before the pause took effect */
        size_t need = b->sub->n_pending + b->n;
        if (need > b->sub->cap_pending) {
            eb_msg **p = realloc(b->sub->pending, need * sizeof *p);
            if (!p) {
                for (size_t i = 0; i < b->n; i++)
                    msg_free((kf_msg *)b->msgs[i]);
                b->n = 0;
                return;
            }
            b->sub->pending = p;
            b->sub->cap_pending = need;
        }
        memcpy(b->sub->pending + b->sub->n_pending, b->msgs, b->n * sizeof *b->msgs);
        b->sub->n_pending += b->n;
    } else {
        deliver(m, b->sub, b->msgs, b->n);
    }
    b->n = 0;
}

/* How long after a subscribe "Subscribed topic not available" is taken
 * for what it is in librdkafka 2.0.2: a topic that exists (subscribe
 * checked it) still a metadata placeholder. */
enum { NEW_TOPIC_GRACE_MS = 10000 };

/** Poll thread: is `rkm` the false "topic not available" of a topic the
 *  bus has just confirmed? */
static bool just_confirmed_topic(kf_member *m, const rd_kafka_message_t *rkm)
{
    if ((rkm->err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART &&
         rkm->err != RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) || !rkm->rkt)
        return false;
    int64_t since_ms = (m->kb->host->now_ns() - m->subscribed_ns) / 1000000;
    return since_ms < NEW_TOPIC_GRACE_MS && sub_of_topic(m, rd_kafka_topic_name(rkm->rkt));
}

static void consumer_error(kf_member *m, rd_kafka_message_t *rkm)
{
    const char *why = rd_kafka_message_errstr(rkm);
    if (just_confirmed_topic(m, rkm)) {
        log_m(m, EB_LOG_DEBUG, "consume (a topic just subscribed to)", why);
        rd_kafka_message_destroy(rkm);
        return;
    }
    log_m(m, EB_LOG_WARN, "consume", why);
    m->kb->host->event(m->kb->hb, EB_EVENT_ERROR,
                       rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : NULL, m->group,
                       kf_error_of(rkm->err), why);
    rd_kafka_message_destroy(rkm);
}

/** Poll thread: asks librdkafka to fetch the lane from its rewind offset
 *  again (asynchronously: the partition is paused meanwhile). */
static void seek_rewound(kf_member *m, kf_sub *s, int32_t partition)
{
    lane *l = &s->lanes[partition];
    rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(one, s->topic, partition)->offset = l->rewind_offset;
    rd_kafka_error_t *error = rd_kafka_seek_partitions(m->rk, one, 0);
    /* Asynchronous (timeout 0): a seek under way reports _IN_PROGRESS. */
    rd_kafka_resp_err_t err = one->elems[0].err;
    const char *why = error ? rd_kafka_error_string(error)
                      : err && err != RD_KAFKA_RESP_ERR__IN_PROGRESS ? rd_kafka_err2str(err)
                                                                      : NULL;
    if (why)
        log_m(m, EB_LOG_WARN, "rewinding a partition (tried again while it stays paused)",
              why);
    l->seek_pending = why != NULL;
    if (error)
        rd_kafka_error_destroy(error);
    rd_kafka_topic_partition_list_destroy(one);
}

/**
 * Poll thread: the message at `offset` cannot enter its lane now (the FIFO
 * is full, or there is no memory to wrap it), and nothing after it may,
 * or the committed position would pass it (issue 7, defects 1 and 10).
 * The partition is paused, which makes librdkafka drop what it fetched of
 * it, and its position set back to `offset`, fetched again once the lane
 * may resume: when the FIFO has room, and not before `hold_ms`.
 */
static void rewind_lane(kf_member *m, kf_sub *s, int32_t partition, int64_t offset,
                        int hold_ms)
{
    lane *l = &s->lanes[partition];
    l->rewind_offset = offset;
    l->next_offset = -1;
    l->seek_pending = true;
    l->hold_until_ns = hold_ms ? m->kb->host->now_ns() + (int64_t)hold_ms * 1000000 : 0;
    if (hold_ms)
        log_m(m, EB_LOG_WARN, "out of memory", "a partition is rewound and paused briefly");
    sync_pauses(m, s, false);
}

/** Poll thread: one message into its sub's batch. */
static void take(kf_member *m, rd_kafka_message_t *rkm, batch *b)
{
    if (rkm->err) {
        consumer_error(m, rkm);
        return;
    }
    /* One lookup per topic, not per message: librdkafka keeps one topic
     * handle per topic; the cache is dropped whenever a sub is let go. */
    if (rkm->rkt != m->last_rkt) {
        m->last_rkt = rkm->rkt;
        m->last_sub = sub_of_topic(m, rd_kafka_topic_name(rkm->rkt));
    }
    kf_sub *s = m->last_sub;
    lane *l = s && rkm->partition < s->n_lanes ? &s->lanes[rkm->partition] : NULL;
    if (!l || !l->assigned) {
        rd_kafka_message_destroy(rkm); /* not ours any more */
        return;
    }
    int32_t partition = rkm->partition;
    int64_t offset = rkm->offset;
    if (l->rewind_offset >= 0 && offset < l->rewind_offset) {
        rd_kafka_message_destroy(rkm); /* fetched before the rewind */
        return;
    }
    l->rewind_offset = -1;
    if (b->sub != s)
        flush_batch(m, b);
    b->sub = s;
    kf_msg *km = wrap(m, s, rkm, l);
    if (!km) {
        rd_kafka_message_destroy(rkm);
        rewind_lane(m, s, partition, offset, OUT_OF_MEMORY_HOLD_MS);
        return;
    }
    if (l->n_waiting == 0 && eb_lane_fifo_push(&l->fifo, (uint64_t)offset, &km->seq)) {
        if (eb_lane_fifo_len(&l->fifo) == 1)
            note_unfinished(l, offset);
        l->next_offset = offset + 1;
        b->msgs[b->n++] = &km->base;
        if (b->n == FETCH_BATCH)
            flush_batch(m, b);
        return;
    }
    if (l->n_waiting == LANE_WAIT_MAX) {
        msg_recycle(m, km); /* fetched before the lane's pause took effect */
        rewind_lane(m, s, partition, offset, 0);
        return;
    }
    km->next = NULL;
    if (l->wait_tail)
        l->wait_tail->next = km;
    else
        l->wait_head = km;
    l->wait_tail = km;
    l->next_offset = offset + 1;
    /* Paused now, not after the batch: librdkafka hands out nothing more
     * of a partition once its pause is asked for, and fetches again from
     * the next offset on resume. */
    if (++l->n_waiting == LANE_WAIT_MAX)
        sync_pauses(m, s, false);
}

/** Poll thread: waiting messages enter their lane's FIFO as it makes
 *  room, and go to the core (or, while it refuses their sub, to its
 *  pending list, behind what is there). */
static void admit_waiting(kf_member *m)
{
    batch b = {0};
    for (kf_sub *s = subs_head(m); s; s = s->next) {
        for (int p = 0; p < s->n_lanes; p++) {
            lane *l = &s->lanes[p];
            while (l->wait_head && !eb_lane_fifo_full(&l->fifo)) {
                kf_msg *km = l->wait_head;
                if (b.sub != s || b.n == FETCH_BATCH)
                    flush_batch(m, &b);
                b.sub = s;
                bool pushed = eb_lane_fifo_push(&l->fifo, (uint64_t)km->rkm->offset, &km->seq);
                (void)pushed; /* not full: checked above */
                if (eb_lane_fifo_len(&l->fifo) == 1)
                    note_unfinished(l, km->rkm->offset);
                l->wait_head = km->next;
                km->next = NULL;
                l->n_waiting--;
                b.msgs[b.n++] = &km->base;
            }
            if (!l->wait_head)
                l->wait_tail = NULL;
        }
    }
    flush_batch(m, &b);
}

/** Poll thread: lanes whose FIFO filled stop fetching, lanes acks made
 *  room in (or whose rewind is due) fetch again. */
static void update_lane_pauses(kf_member *m)
{
    for (kf_sub *s = subs_head(m); s; s = s->next)
        sync_pauses(m, s, false);
}

/** Poll thread: up to FETCH_BATCH messages. @returns how many. */
static size_t fetch(kf_member *m)
{
    batch b = {0};
    size_t got = 0;
    rd_kafka_message_t *rkm;
    while (got < FETCH_BATCH && (rkm = rd_kafka_consumer_poll(m->rk, 0))) {
        take(m, rkm, &b);
        got++;
    }
    flush_batch(m, &b);
    return got;
}

/* ------------------------------------------------------------- requests */

/** Poll thread: subs the core asked to resume get their refused messages
 *  first, then their partitions back. */
static void serve_resumes(kf_member *m)
{
    for (kf_sub *s = subs_head(m); s; s = s->next) {
        pthread_mutex_lock(&m->mu);
        bool asked = s->resume_requested;
        s->resume_requested = false;
        pthread_mutex_unlock(&m->mu);
        if (!asked || !s->paused)
            continue;
        drop_pending_of_unassigned(s);
        size_t k = m->kb->host->deliver(s->hs, s->pending, s->n_pending);
        memmove(s->pending, s->pending + k, (s->n_pending - k) * sizeof *s->pending);
        s->n_pending -= k;
        if (s->n_pending == 0)
            set_paused(m, s, false);
    }
}

/** Poll thread: an anonymous member takes every partition of its topic
 *  itself (there is no group to assign them), at the latest offsets. */
static void assign_anonymous(kf_member *m, const char *topic)
{
    const rd_kafka_metadata_t *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(m->rk, topic, NULL);
    rd_kafka_resp_err_t err = rd_kafka_metadata(m->rk, 0, rkt, &md, ASSIGN_TIMEOUT_MS);
    rd_kafka_topic_destroy(rkt);
    if (err) {
        log_m(m, EB_LOG_ERROR, "metadata for the anonymous member", rd_kafka_err2str(err));
        m->kb->host->event(m->kb->hb, EB_EVENT_ERROR, topic, NULL, kf_error_of(err),
                           "cannot read the topic's partitions; not ready");
        return;
    }
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(4);
    for (int i = 0; i < md->topic_cnt; i++)
        for (int j = 0; j < md->topics[i].partition_cnt; j++)
            rd_kafka_topic_partition_list_add(parts, topic, md->topics[i].partitions[j].id);
    rd_kafka_metadata_destroy(md);
    assign(m, parts);
    rd_kafka_topic_partition_list_destroy(parts);
}

/** Poll thread: the topic list changed (a sub joined or is leaving); a
 *  group member changes its subscription only between joins, so the subs
 *  that come while one is under way go together into the next. */
static void resubscribe(kf_member *m)
{
    if (m->group && m->join_pending)
        return;
    pthread_mutex_lock(&m->mu);
    bool changed = m->topics_changed;
    m->topics_changed = false;
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(4);
    for (kf_sub *s = m->subs; s; s = s->next) {
        s->in_subscription = !s->leaving;
        if (!s->leaving)
            rd_kafka_topic_partition_list_add(topics, s->topic, RD_KAFKA_PARTITION_UA);
    }
    pthread_mutex_unlock(&m->mu);
    if (changed && topics->cnt > 0 && !m->group) {
        assign_anonymous(m, topics->elems[0].topic);
    } else if (changed && topics->cnt > 0) {
        rd_kafka_resp_err_t err = rd_kafka_subscribe(m->rk, topics);
        if (err) {
            log_m(m, EB_LOG_ERROR, "subscribe", rd_kafka_err2str(err));
        } else {
            m->join_pending = true;
            m->subscribed_ns = m->kb->host->now_ns();
        }
    }
    rd_kafka_topic_partition_list_destroy(topics);
}

/** Poll thread: leaving subs whose lanes are all revoked are let go. */
static void let_go_of_leavers(kf_member *m)
{
    pthread_mutex_lock(&m->mu);
    for (kf_sub **pp = &m->subs; *pp;) {
        kf_sub *s = *pp;
        bool holds = false;
        for (int p = 0; p < s->n_lanes; p++)
            holds |= s->lanes[p].assigned;
        if (s->leaving && !holds) {
            m->last_rkt = NULL; /* the lookup cache may point at it */
            *pp = s->next;
            s->left = true;
            pthread_cond_broadcast(&m->cv);
        } else {
            pp = &s->next;
        }
    }
    bool still_leaving = false;
    for (kf_sub *s = m->subs; s; s = s->next)
        still_leaving |= s->leaving;
    if (!still_leaving)
        m->leave_by_ns = 0;
    pthread_mutex_unlock(&m->mu);
}

/* -------------------------------------------------------------- thread */

static void wait_for_work(kf_member *m)
{
    struct pollfd pfd = {.fd = m->wake[0], .events = POLLIN};
    if (poll(&pfd, 1, POLL_IDLE_MS) > 0) {
        char buf[64];
        while (read(m->wake[0], buf, sizeof buf) > 0)
            ;
    }
}

enum { CLOSE_SLACK_MS = 5000 };

/**
 * Poll thread, closing: one event of the close queue. Fetched messages can
 * land there too (rd_kafka_queue_poll_callback() would assert on them), so
 * the queue is read as events: the final rebalance is served by hand, and
 * messages are dropped unacknowledged (their lanes are being revoked; the
 * group's next owner gets them).
 */
static void serve_close_event(kf_member *m, rd_kafka_event_t *ev)
{
    switch (rd_kafka_event_type(ev)) {
    case RD_KAFKA_EVENT_REBALANCE:
        rebalance_cb(m->rk, rd_kafka_event_error(ev), rd_kafka_event_topic_partition_list(ev),
                     m);
        break;
    case RD_KAFKA_EVENT_ERROR: /* what error_cb gets outside the close */
        kf_health_error(m->kb, rd_kafka_event_error(ev), rd_kafka_event_error_string(ev));
        log_m(m, EB_LOG_WARN, "close", rd_kafka_event_error_string(ev));
        break;
    default:
        break;
    }
    rd_kafka_event_destroy(ev);
}

/**
 * Poll thread: the final revoke runs here (handlers finish, offsets are
 * stored and committed), then the member leaves its group. Unsubscribe
 * first: librdkafka 2.0.2 asserts at destroy when a subscribe issued just
 * before close is processed during it. The close is asynchronous and
 * bounded by the deadline the core gave (eb_bus_close's, or what is left
 * of eb_unsubscribe's revoke timeout), else the revoke timeout plus a
 * margin: a close that librdkafka does not finish by then (a frozen
 * broker; seen under valgrind with a topic its metadata had not caught up
 * with) is abandoned, and the handle is then destroyed without it.
 */
/**
 * Poll thread, closing: a join under way is let finish (until
 * `deadline_ns`) before the member unsubscribes: a subscription changed
 * during a join leaves a phantom member on the broker (see join_pending).
 * Messages fetched meanwhile are dropped unacknowledged: the member is
 * leaving, and its lanes' next owner gets them.
 */
static void settle_join(kf_member *m, int64_t deadline_ns)
{
    while (m->group && m->join_pending && m->kb->host->now_ns() < deadline_ns) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(m->rk, 100);
        if (rkm)
            rd_kafka_message_destroy(rkm);
    }
}

static void close_consumer(kf_member *m)
{
    int64_t deadline = leave_deadline(m);
    if (!deadline)
        deadline = m->kb->host->now_ns() +
                   (m->kb->revoke_timeout_ms + CLOSE_SLACK_MS) * 1000000;
    if (close_gives_up())
        deadline = m->kb->host->now_ns();
    m->leave_cut_short = false; /* what counts now: the final commit, the close */
    settle_join(m, deadline);
    if (m->group)
        rd_kafka_unsubscribe(m->rk);
    rd_kafka_queue_t *q = rd_kafka_queue_new(m->rk);
    rd_kafka_error_t *error = rd_kafka_consumer_close_queue(m->rk, q);
    if (error) {
        log_m(m, EB_LOG_WARN, "close", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    while (!rd_kafka_consumer_closed(m->rk) && m->kb->host->now_ns() < deadline) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 100);
        if (ev)
            serve_close_event(m, ev);
    }
    m->closed = rd_kafka_consumer_closed(m->rk);
    if (!m->closed) {
        log_m(m, EB_LOG_ERROR, "close",
              "librdkafka did not finish closing the consumer in time; leaving without it");
        m->leave_cut_short = true;
        m->abandoned_close = q;
    } else {
        rd_kafka_queue_destroy(q);
    }
}

/* member_free serves a close given up until it is closed, or until its
 * queue stays quiet this long (what is left is requests the coordinator
 * does not answer, which destroy waits for anyway), or at most the cap. */
enum { ABANDONED_CLOSE_QUIET_MS = 300, ABANDONED_CLOSE_CAP_MS = 10000 };

/**
 * Freeing the member (any thread; the poll thread has ended): a close
 * given up at its deadline has its pending rebalance events served the
 * short way before rd_kafka_destroy() (the lanes were let go already:
 * nothing is waited for or committed). librdkafka 2.0.2's destroy spins
 * for ever on a close whose final rebalance nobody serves (found by
 * kafka_faults: the bus's close hung at 100% CPU).
 */
static void finish_abandoned_close(kf_member *m)
{
    int64_t now = m->kb->host->now_ns();
    int64_t cap = now + (int64_t)ABANDONED_CLOSE_CAP_MS * 1000000;
    int64_t quiet_until = now + (int64_t)ABANDONED_CLOSE_QUIET_MS * 1000000;
    while (!rd_kafka_consumer_closed(m->rk) && (now = m->kb->host->now_ns()) < cap &&
           now < quiet_until) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(m->abandoned_close, 50);
        if (!ev)
            continue;
        if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
            rd_kafka_assign(m->rk, NULL);
        rd_kafka_event_destroy(ev);
        quiet_until = m->kb->host->now_ns() + (int64_t)ABANDONED_CLOSE_QUIET_MS * 1000000;
    }
    m->closed = rd_kafka_consumer_closed(m->rk);
    rd_kafka_queue_destroy(m->abandoned_close);
    m->abandoned_close = NULL;
}

static void *poll_main(void *arg)
{
    kf_member *m = arg;
    pthread_setname_np(pthread_self(), "eb-kafka-cons");
    for (;;) {
        pthread_mutex_lock(&m->mu);
        bool stopping = m->stopping;
        pthread_mutex_unlock(&m->mu);
        if (stopping)
            break;
        resubscribe(m);
        drain_inbox(m);
        serve_resumes(m);
        admit_waiting(m);
        size_t got = fetch(m);
        update_lane_pauses(m);
        let_go_of_leavers(m);
        if (got == 0)
            wait_for_work(m);
    }
    close_consumer(m);
    drain_inbox(m);
    /* The consumer is closed, with or without its final revoke: no lane is
     * held any more, and every sub still waiting to leave may (issue 7,
     * defect 9: a close that gave up left them waiting for ever). */
    for (kf_sub *s = subs_head(m); s; s = s->next)
        for (int p = 0; p < s->n_lanes; p++)
            set_assigned(m, &s->lanes[p], false);
    let_go_of_leavers(m);
    pthread_mutex_lock(&m->mu);
    m->exited = true;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* ----------------------------------------------------------- lifecycle */

/** After the poll thread was joined. */
static void member_free(kf_member *m)
{
    for (kf_msg *next; m->inbox; m->inbox = next) {
        next = m->inbox->next;
        msg_free(m->inbox);
    }
    for (kf_sub *next; m->graveyard; m->graveyard = next) {
        next = m->graveyard->next_dead;
        sub_free_now(m->graveyard);
    }
    free_spares(m);
    if (m->abandoned_close)
        finish_abandoned_close(m);
    if (m->queue)
        rd_kafka_queue_destroy(m->queue);
    if (m->rk) /* joins librdkafka's threads */
        rd_kafka_destroy_flags(m->rk, m->closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    for (int i = 0; i < 2; i++)
        if (m->wake[i] >= 0)
            close(m->wake[i]);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m->group);
    free(m);
}

static int make_consumer(kf_member *m, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf;
    int rc = kf_config_build(m->kb, "consumer", &conf, errstr, errstr_size);
    if (rc != 0)
        return rc;
    char err[512], anonymous[96];
    /* librdkafka assigns through a consumer group even when the
     * application assigns by hand: an anonymous member gets a private group
     * id that never joins (assign, not subscribe) and never commits, so it
     * leaves nothing on the server. */
    static atomic_uint anonymous_seq;
    snprintf(anonymous, sizeof anonymous, "eventbus-anonymous-%d-%u-%p", (int)getpid(),
             atomic_fetch_add(&anonymous_seq, 1), (void *)m);
    const char *group_id = m->group ? m->group : anonymous;
    if (rd_kafka_conf_set(conf, "group.id", group_id, err, sizeof err) ||
        (!m->group && rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err))) {
        snprintf(errstr, errstr_size, "%s", err);
        rd_kafka_conf_destroy(conf);
        return EB_ERR_CONFIG;
    }
    rd_kafka_conf_set_opaque(conf, m);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    if (!(m->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err))) {
        snprintf(errstr, errstr_size, "cannot create the consumer: %s", err);
        return EB_ERR_TRANSPORT;
    }
    rd_kafka_poll_set_consumer(m->rk);
    m->queue = rd_kafka_queue_get_consumer(m->rk);
    rd_kafka_queue_io_event_enable(m->queue, m->wake[1], "1", 1);
    return 0;
}

static kf_member *member_new(kf_bus *kb, const char *group, char *errstr, size_t size)
{
    kf_member *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->kb = kb;
    m->wake[0] = m->wake[1] = -1;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    bool ok = (!group || (m->group = strdup(group))) && pipe2(m->wake, O_NONBLOCK | O_CLOEXEC) == 0 &&
              make_consumer(m, errstr, size) == 0 &&
              pthread_create(&m->thread, NULL, poll_main, m) == 0;
    if (!ok) {
        if (!errstr[0])
            snprintf(errstr, size, "cannot start a Kafka consumer: %s", strerror(errno));
        member_free(m);
        return NULL;
    }
    return m;
}

/** Under kb->mu: the member of `group` (anonymous subs get their own). */
static kf_member *find_member(kf_bus *kb, const char *group)
{
    for (kf_member *m = kb->members; m && group; m = m->next)
        if (m->group && strcmp(m->group, group) == 0)
            return m;
    return NULL;
}

static kf_sub *sub_new(kf_member *m, eb_host_sub *hs, const eb_sub_params *p)
{
    kf_sub *s = calloc(1, sizeof *s);
    if (!s || !(s->topic = strdup(p->topic))) {
        free(s);
        return NULL;
    }
    s->m = m;
    s->hs = hs;
    s->start = p->start;
    s->lane_max = p->lane_max_inflight;
    return s;
}

int kf_sub_start(kf_bus *kb, eb_host_sub *hs, const eb_sub_params *p, kf_sub **out,
                 char *errstr, size_t errstr_size)
{
    errstr[0] = '\0';
    rd_kafka_t *rk = kf_producer_handle(kb->producer);
    int rc = kf_topic_ensure_once(kb, rk, p->topic, ASSIGN_TIMEOUT_MS, errstr, errstr_size);
    if (rc == 0 && p->dlq_topic)
        rc = kf_topic_ensure_once(kb, rk, p->dlq_topic, ASSIGN_TIMEOUT_MS, errstr,
                                  errstr_size);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&kb->mu);
    kf_member *m = find_member(kb, p->group);
    bool created = !m;
    if (created && (m = member_new(kb, p->group, errstr, errstr_size))) {
        m->next = kb->members;
        kb->members = m;
        kb->refs++; /* dropped in kf_sub_free with the member */
    }
    kf_sub *s = m ? sub_new(m, hs, p) : NULL;
    if (s) {
        pthread_mutex_lock(&m->mu);
        s->next = m->subs;
        m->subs = s;
        m->n_subs++;
        m->topics_changed = true;
        pthread_mutex_unlock(&m->mu);
    }
    pthread_mutex_unlock(&kb->mu);
    if (!s)
        return m ? EB_ERR_NOMEM : EB_ERR_TRANSPORT;
    wake(m);
    *out = s;
    return 0;
}

void kf_sub_resume(kf_sub *s)
{
    pthread_mutex_lock(&s->m->mu);
    s->resume_requested = true;
    pthread_mutex_unlock(&s->m->mu);
    wake(s->m);
}

/** Under kb->mu and m->mu: subs still staying. */
static int staying(const kf_member *m)
{
    int n = 0;
    for (const kf_sub *s = m->subs; s; s = s->next)
        n += !s->leaving;
    return n;
}

int kf_sub_stop(kf_sub *s, int64_t deadline_ns)
{
    kf_member *m = s->m;
    kf_bus *kb = m->kb;
    pthread_mutex_lock(&kb->mu);
    pthread_mutex_lock(&m->mu);
    s->leaving = true;
    m->topics_changed = true;
    if (deadline_ns && (!m->leave_by_ns || deadline_ns < m->leave_by_ns))
        m->leave_by_ns = deadline_ns;
    bool last = staying(m) == 0;
    if (last) { /* nobody may join a member that is closing */
        kf_member **pp = &kb->members;
        while (*pp != m)
            pp = &(*pp)->next;
        *pp = m->next;
        m->stopping = true;
    }
    pthread_mutex_unlock(&m->mu);
    pthread_mutex_unlock(&kb->mu);
    wake(m);
    if (last) {
        pthread_join(m->thread, NULL);
        return m->leave_cut_short ? EB_ERR_TIMEOUT : 0;
    }
    pthread_mutex_lock(&m->mu);
    while (!s->left && !m->exited)
        pthread_cond_wait(&m->cv, &m->mu);
    pthread_mutex_unlock(&m->mu);
    return 0;
}

/** Under m->mu: takes the sub's messages out of the inbox (acks that came
 *  after its lanes were revoked). */
static kf_msg *take_inbox_of(kf_member *m, kf_sub *s)
{
    kf_msg *mine = NULL;
    for (kf_msg **pp = &m->inbox; *pp;) {
        kf_msg *km = *pp;
        if (km->sub == s) {
            *pp = km->next;
            km->next = mine;
            mine = km;
        } else {
            pp = &km->next;
        }
    }
    return mine;
}

/** The sub's memory, once nothing reads it. */
static void sub_free_now(kf_sub *s)
{
    for (size_t i = 0; i < s->n_pending; i++)
        msg_free((kf_msg *)s->pending[i]);
    for (int i = 0; i < s->n_lanes; i++) {
        eb_lane_fifo_free(&s->lanes[i].fifo);
        drop_waiting(NULL, &s->lanes[i]);
    }
    free(s->lanes);
    free(s->pending);
    free(s->topic);
    free(s);
}

/**
 * The core holds none of the sub's messages any more. A sub that is not
 * the member's last may still be read by the poll thread (it took acks of
 * the sub from the inbox just before): it goes to the graveyard, which
 * that thread empties; the last sub frees the member, whose thread is
 * joined by then, and with it what the graveyard still holds.
 */
void kf_sub_free(kf_sub *s)
{
    kf_member *m = s->m;
    pthread_mutex_lock(&m->mu);
    kf_msg *late = take_inbox_of(m, s);
    bool last = --m->n_subs == 0;
    if (!last) {
        s->next_dead = m->graveyard;
        m->graveyard = s;
    }
    pthread_mutex_unlock(&m->mu);
    for (kf_msg *next; late; late = next) {
        next = late->next;
        msg_free(late);
    }
    if (!last) {
        wake(m);
        return;
    }
    sub_free_now(s);
    kf_bus *kb = m->kb;
    member_free(m);
    kf_bus_unref(kb); /* librdkafka may log until rd_kafka_destroy returned */
}

/* --------------------------------------------------------------- stats */

/** Lag per assigned partition: the high watermark minus the first offset
 *  not yet finished (handled and acknowledged), or -1 when not known yet. */
static void member_stats(eb_json_out *o, kf_member *m)
{
    eb_json_printf(o, "{\"group\":");
    eb_json_string(o, m->group ? m->group : "");
    eb_json_printf(o, ",\"partitions\":[");
    bool first = true;
    pthread_mutex_lock(&m->mu);
    for (kf_sub *s = m->subs; s; s = s->next) {
        for (int p = 0; p < s->n_lanes; p++) {
            if (!s->lanes[p].assigned)
                continue;
            int64_t low = -1, high = -1;
            rd_kafka_get_watermark_offsets(m->rk, s->topic, p, &low, &high);
            int64_t unfinished = atomic_load(&s->lanes[p].unfinished);
            int64_t lag = unfinished >= 0 && high >= unfinished ? high - unfinished : -1;
            long pauses = atomic_load_explicit(&s->lanes[p].pauses, memory_order_relaxed);
            eb_json_printf(o,
                           "%s{\"topic\":\"%s\",\"partition\":%d,\"lag\":%" PRId64
                           ",\"pauses\":%ld}",
                           first ? "" : ",", s->topic, p, lag, pauses);
            first = false;
        }
    }
    pthread_mutex_unlock(&m->mu);
    eb_json_printf(o, "]}");
}

int kf_members_stats(kf_bus *kb, char *buf, size_t size)
{
    eb_json_out o = {buf, size, 0};
    eb_json_printf(&o, "[");
    pthread_mutex_lock(&kb->mu);
    for (kf_member *m = kb->members; m; m = m->next) {
        member_stats(&o, m);
        eb_json_printf(&o, "%s", m->next ? "," : "");
    }
    pthread_mutex_unlock(&kb->mu);
    eb_json_printf(&o, "]");
    return (int)o.len;
}
