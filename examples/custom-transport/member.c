/*
 * member.c — one dirlog subscription. Its thread:
 *   - standing by (a group member without the group's lock): tries the lock
 *     every dirlog.poll.ms; ready() once it found the lock taken and the
 *     group's start recorded (<group>.pos exists);
 *   - becoming active (the lock taken, or an anonymous member starting):
 *     reads the start position, bumps the lane's generation, raises
 *     EB_EVENT_ASSIGNED, ready() if not yet;
 *   - active: reads frames from the log into the lane (at most
 *     dispatch.lane.max.inflight unacknowledged), hands them to the core,
 *     keeps what deliver() refuses until resume(), and writes <group>.pos
 *     when the lane's finished prefix moved;
 *   - leaving: revokes the lane, commits what finished, unlocks.
 * ack() marks lane entries finished; the contiguous finished prefix is the
 * committed position, so nothing is committed past an unfinished record.
 *
 * One lane (lane 0) holds the whole topic, read in stored order by one
 * member of a group at a time: per-key order holds across members.
 */
#include "dirlog.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { READ_BATCH = 256, READ_CHUNK = 64 * 1024 };

/** The lane's unacknowledged records in log order, a ring indexed by
 *  sequence number: finished in any order, popped only from the head. */
typedef struct lane {
    uint64_t *ends;        /* where each record's frame ends in the log */
    bool *finished;
    uint32_t cap;
    uint64_t head, tail;   /* sequence numbers of the oldest and the next */
} lane;

/** A message handed to the core: one allocation, the frame copied in. */
typedef struct dl_msg {
    eb_msg base;
    uint64_t seq;          /* in the lane */
    uint64_t end;          /* where its frame ends in the log */
    char id[24];           /* its frame's offset */
    eb_header headers[];   /* then the frame's bytes and a NUL */
} dl_msg;

struct dl_member {
    dl_bus *bus;
    const eb_host *host;
    eb_host_sub *hs;
    dl_member *next;            /* in bus->members */
    char *topic, *group;        /* group NULL: anonymous */
    eb_start_position start;
    int topic_fd, log_fd, lock_fd;
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t mu;         /* guards the fields up to read_pos */
    pthread_cond_t cv;          /* the thread waits here */
    bool woken, stopping, resume_requested;
    int64_t leave_deadline_ns;
    bool active;
    uint64_t generation;
    lane lane;
    uint64_t committed;         /* the end of the lane's finished prefix */
    uint64_t read_pos;          /* the next frame to read */

    /* the thread's own */
    uint64_t saved;             /* what <group>.pos says */
    bool ready_sent, paused;
    dl_msg **pending;           /* refused by deliver(), in order */
    size_t n_pending, pending_at;
    uint8_t *buf;
    size_t buf_cap;
};

dl_member **dl_member_next(dl_member *m) { return &m->next; }

/* -------------------------------------------------------------------- lane */

static int lane_init(lane *l, uint32_t cap)
{
    l->cap = cap ? cap : 1;
    l->ends = calloc(l->cap, sizeof *l->ends);
    l->finished = calloc(l->cap, sizeof *l->finished);
    return l->ends && l->finished ? 0 : EB_ERR_NOMEM;
}

static uint32_t lane_room(const lane *l) { return l->cap - (uint32_t)(l->tail - l->head); }

static uint64_t lane_push(lane *l, uint64_t end)
{
    l->ends[l->tail % l->cap] = end;
    l->finished[l->tail % l->cap] = false;
    return l->tail++;
}

static void lane_finish(lane *l, uint64_t seq)
{
    if (seq >= l->head && seq < l->tail)
        l->finished[seq % l->cap] = true;
}

/** Pops the finished prefix. @returns true and where it ends in *end. */
static bool lane_pop_finished(lane *l, uint64_t *end)
{
    bool popped = false;
    for (; l->head < l->tail && l->finished[l->head % l->cap]; l->head++) {
        *end = l->ends[l->head % l->cap];
        popped = true;
    }
    return popped;
}

/* ------------------------------------------------------- messages, waking */

static void free_msgs(eb_msg *const *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(msgs[i]);
}

/** A message of the frame at `offset`. @returns NULL when out of memory. */
static dl_msg *wrap(dl_member *m, const uint8_t *frame, size_t len, uint64_t offset)
{
    size_t count = dl_frame_header_count(frame);
    dl_msg *dm = malloc(sizeof *dm + count * sizeof(eb_header) + len + 1);
    if (!dm)
        return NULL;
    uint8_t *copy = (uint8_t *)(dm->headers + count);
    memcpy(copy, frame, len);
    copy[len] = '\0'; /* an empty payload points at "" */
    dm->base = (eb_msg){.topic = m->topic, .id = dm->id, .lane = 0};
    dl_frame_decode(copy, &dm->base, dm->headers);
    dm->end = offset + len;
    snprintf(dm->id, sizeof dm->id, "%" PRIu64, offset);
    return dm;
}

/** Under mu. */
static void wake(dl_member *m)
{
    m->woken = true;
    pthread_cond_signal(&m->cv);
}

/** Under mu: until woken or dirlog.poll.ms passed. */
static void wait_for_work(dl_member *m)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t at = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec +
                 (int64_t)m->bus->poll_ms * 1000000;
    ts = (struct timespec){.tv_sec = at / 1000000000, .tv_nsec = at % 1000000000};
    while (!m->woken && pthread_cond_timedwait(&m->cv, &m->mu, &ts) != ETIMEDOUT)
        ;
    m->woken = false;
}

/* ------------------------------------------------- the core's side (acks) */

void dl_member_ack(dl_member *m, eb_msg *const *msgs, size_t n)
{
    pthread_mutex_lock(&m->mu);
    bool was_full = lane_room(&m->lane) == 0;
    for (size_t i = 0; i < n; i++) {
        const dl_msg *dm = (const dl_msg *)msgs[i];
        if (m->active && dm->base.lane_generation == m->generation)
            lane_finish(&m->lane, dm->seq); /* else a late ack: discarded */
    }
    uint64_t end;
    if (lane_pop_finished(&m->lane, &end))
        m->committed = end;
    if (was_full && lane_room(&m->lane) > 0)
        wake(m);
    pthread_mutex_unlock(&m->mu);
    free_msgs(msgs, n);
}

void dl_member_release(dl_member *m, eb_msg *const *msgs, size_t n)
{
    /* Left unfinished in the lane: nothing is committed past it, and the
     * group's next active member reads it again. */
    (void)m;
    free_msgs(msgs, n);
}

void dl_member_resume(dl_member *m)
{
    pthread_mutex_lock(&m->mu);
    m->resume_requested = true;
    wake(m);
    pthread_mutex_unlock(&m->mu);
}

/* --------------------------------------------------------------- positions */

static void group_file(const dl_member *m, const char *suffix, char name[DL_FILE_NAME_SIZE])
{
    dl_file_name(m->group, name);
    strcat(name, suffix); /* the escaped name leaves room for it */
}

/** Takes the shared lock on the log unless a writer holds it. It never
 *  waits: a writer frozen in the middle of a record must not hold up this
 *  thread, and with it unsubscribe and close. @returns 0; 1 while a
 *  writer holds it; -1 on an error (noted). */
static int lock_log_shared(dl_member *m)
{
    while (flock(m->log_fd, LOCK_SH | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            return 1;
        if (errno != EINTR) {
            dl_note_io(m->bus, "cannot lock a log", errno);
            return -1;
        }
    }
    return 0;
}

/** Where a reader starting at the latest begins: the log's end, read under
 *  the shared lock so that it is no record's middle. @returns 0, or
 *  non-zero to try again at the next turn. */
static int log_end(dl_member *m, uint64_t *end)
{
    struct stat st;
    int rc = lock_log_shared(m);
    if (rc != 0)
        return rc;
    if (fstat(m->log_fd, &st) == 0) {
        *end = (uint64_t)st.st_size;
    } else {
        dl_note_io(m->bus, "cannot read the size of a log", errno);
        rc = -1;
    }
    flock(m->log_fd, LOCK_UN);
    return rc;
}

/** Replaces <group>.pos (temp file, then rename). @returns 0 or -1. */
static int save_position(dl_member *m, uint64_t pos)
{
    char name[DL_FILE_NAME_SIZE], tmp[DL_FILE_NAME_SIZE], text[32];
    group_file(m, ".pos", name);
    group_file(m, ".pos.tmp", tmp);
    int len = snprintf(text, sizeof text, "%" PRIu64 "\n", pos);
    int fd = openat(m->topic_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    bool ok = fd >= 0 && write(fd, text, (size_t)len) == len;
    int err = errno;
    if (fd >= 0 && close(fd) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (ok && renameat(m->topic_fd, tmp, m->topic_fd, name) != 0) {
        ok = false;
        err = errno;
    }
    if (!ok) {
        char what[600];
        snprintf(what, sizeof what, "topic '%.120s', group '%.120s': cannot write %s "
                 "(what finished since will be delivered again)", m->topic, m->group, name);
        dl_note_io(m->bus, what, err);
        return -1;
    }
    m->saved = pos;
    dl_note_io(m->bus, NULL, 0);
    return 0;
}

/** Notes that <group>.pos is unusable: the group stays without an active
 *  member (nothing skipped, nothing repeated) until a person looks. */
static void position_trouble(dl_member *m, const char *what, const char *name, int err)
{
    char text[600];
    snprintf(text, sizeof text, "topic '%.120s', group '%.120s': %s %s (remove it to "
             "start the group anew)", m->topic, m->group, what, name);
    dl_note_io(m->bus, text, err);
}

/** Reads <group>.pos. @returns 0 and *pos; 1 when the group is new; -1 when
 *  the file cannot be read or makes no sense (the error is noted). */
static int load_position(dl_member *m, uint64_t *pos)
{
    char name[DL_FILE_NAME_SIZE], text[32];
    group_file(m, ".pos", name);
    int fd = openat(m->topic_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return 1;
    ssize_t n = fd < 0 ? -1 : read(fd, text, sizeof text - 1);
    if (n < 0) {
        position_trouble(m, "cannot read", name, errno);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    text[n] = '\0';
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    struct stat st;
    if (errno || end == text || (*end && *end != '\n')) {
        position_trouble(m, "no position in", name, 0);
        return -1;
    }
    if (fstat(m->log_fd, &st) != 0) {
        position_trouble(m, "cannot check the log's size for", name, errno);
        return -1;
    }
    if (v > (uint64_t)st.st_size) { /* the log was replaced */
        position_trouble(m, "a position past the log's end in", name, 0);
        return -1;
    }
    *pos = v;
    return 0;
}

/** What a try to become active gave. */
typedef enum join_state {
    JOIN_ACTIVE,   /* reading from the position found */
    JOIN_STANDBY,  /* another member of the group is active */
    JOIN_RETRY     /* try again at the next turn (noted if an error) */
} join_state;

/** Tries the group's lock; with it, reads the committed position, or
 *  records where a new group starts. */
static join_state take_group(dl_member *m, uint64_t *from)
{
    char pos_name[DL_FILE_NAME_SIZE];
    group_file(m, ".pos", pos_name);
    if (flock(m->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        if (err != EWOULDBLOCK && err != EINTR)
            dl_note_io(m->bus, "cannot lock a group's lock file", err);
        /* Standing by counts as ready once the group's start is recorded:
         * a message published after ready then reaches the group. */
        return err == EWOULDBLOCK && faccessat(m->topic_fd, pos_name, F_OK, 0) == 0
                   ? JOIN_STANDBY : JOIN_RETRY;
    }
    int rc = load_position(m, from);
    if (rc == 1) { /* a new group: where it starts is recorded at once */
        *from = 0;
        rc = m->start == EB_START_LATEST ? log_end(m, from) : 0;
        if (rc == 0)
            rc = save_position(m, *from);
    }
    if (rc == 0)
        return JOIN_ACTIVE;
    flock(m->lock_fd, LOCK_UN);
    return JOIN_RETRY;
}

/** Where an anonymous member starts: the latest unless told the earliest. */
static join_state anonymous_start(dl_member *m, uint64_t *from)
{
    *from = 0;
    return m->start == EB_START_EARLIEST || log_end(m, from) == 0 ? JOIN_ACTIVE : JOIN_RETRY;
}

/* ------------------------------------------------------------- the thread */

/** Outside mu, once: the subscription has joined (active or standing by). */
static void announce_ready(dl_member *m)
{
    if (m->ready_sent)
        return;
    m->ready_sent = true;
    m->host->ready(m->hs);
}

/** Under mu (dropped inside): takes the group, or starts an anonymous
 *  member. @returns false while it is not active (standing by, or to try
 *  again at the next turn). */
static bool become_active(dl_member *m)
{
    uint64_t from;
    join_state js = m->group ? take_group(m, &from) : anonymous_start(m, &from);
    if (js != JOIN_ACTIVE) {
        if (js == JOIN_STANDBY) {
            pthread_mutex_unlock(&m->mu);
            announce_ready(m);
            pthread_mutex_lock(&m->mu);
        }
        return false;
    }
    m->active = true;
    m->generation++;
    m->lane.head = m->lane.tail;
    m->read_pos = m->committed = m->saved = from;
    pthread_mutex_unlock(&m->mu);
    char detail[96];
    snprintf(detail, sizeof detail, "lane 0 assigned: %s from offset %" PRIu64,
             m->group ? "the group's active member" : "reading", from);
    m->host->event(m->bus->hb, EB_EVENT_ASSIGNED, m->topic, m->group, 0, detail);
    announce_ready(m);
    pthread_mutex_lock(&m->mu);
    return true;
}

/** Under mu (dropped inside): writes <group>.pos when the prefix moved. */
static void commit(dl_member *m)
{
    if (!m->group || m->committed == m->saved)
        return;
    uint64_t pos = m->committed;
    pthread_mutex_unlock(&m->mu);
    save_position(m, pos);
    pthread_mutex_lock(&m->mu);
}

/** Outside mu: hands msgs to the core; what it refuses waits for resume()
 *  (msgs may be the waiting part of `pending` itself). */
static void deliver(dl_member *m, dl_msg **msgs, size_t n)
{
    size_t k = m->host->deliver(m->hs, (eb_msg **)msgs, n);
    if (msgs == m->pending + m->pending_at) {
        m->pending_at += k;
        if (m->pending_at == m->n_pending)
            m->pending_at = m->n_pending = 0;
    } else if (k < n) {
        memcpy(m->pending, msgs + k, (n - k) * sizeof *msgs);
        m->pending_at = 0;
        m->n_pending = n - k;
    }
    m->paused = k < n;
}

/** Under mu (dropped inside). */
static bool deliver_pending(dl_member *m)
{
    m->resume_requested = false;
    pthread_mutex_unlock(&m->mu);
    deliver(m, m->pending + m->pending_at, m->n_pending - m->pending_at);
    pthread_mutex_lock(&m->mu);
    return true;
}

/** A frame at `from` is cut short or damaged. Under the shared lock no
 *  writer is in the middle of one: if it is still bad then, its writer died
 *  while writing it. @returns where to read next (`from` if the frame is
 *  sound, or a writer holds the lock). */
static uint64_t skip_damage(dl_member *m, uint64_t from)
{
    struct stat st;
    if (lock_log_shared(m) != 0)
        return from;
    uint64_t next = from;
    if (fstat(m->log_fd, &st) == 0 && !dl_frame_sound_at(m->log_fd, from, (uint64_t)st.st_size)) {
        next = dl_frame_find(m->log_fd, from + 1, (uint64_t)st.st_size);
        m->host->log(m->bus->hb, EB_LOG_WARN, "topic '%.200s': skipped %" PRIu64 " bytes at "
                     "offset %" PRIu64 " that are no sound record (a writer that died while "
                     "writing one?)", m->topic, next - from, from);
    }
    flock(m->log_fd, LOCK_UN);
    return next;
}

static bool grow_buffer(dl_member *m, size_t len)
{
    uint8_t *buf = realloc(m->buf, len);
    if (!buf)
        return false;
    m->buf = buf;
    m->buf_cap = len;
    return true;
}

/** Outside mu: up to `max` records from `from`. @returns how many, and in
 *  *next where the following one starts. */
static size_t read_records(dl_member *m, uint64_t from, dl_msg **msgs, size_t max,
                           uint64_t *next)
{
    bool finished_meanwhile = false;
    *next = from;
    for (;;) {
        ssize_t got = pread(m->log_fd, m->buf, m->buf_cap, (off_t)from);
        if (got < 0) {
            dl_note_io(m->bus, "cannot read a log", errno);
            return 0;
        }
        dl_note_io(m->bus, NULL, 0);
        size_t at = 0, n = 0, len = 0;
        dl_frame_state st = DL_FRAME_OK;
        while (n < max && at < (size_t)got &&
               (st = dl_frame_check(m->buf + at, (size_t)got - at, &len)) == DL_FRAME_OK &&
               (msgs[n] = wrap(m, m->buf + at, len, from + at))) {
            n++;
            at += len;
        }
        *next = from + at;
        if (n > 0 || got == 0 || st == DL_FRAME_OK)
            return n; /* out of memory for a message: it is read again later */
        if (st == DL_FRAME_SHORT && len > m->buf_cap) {
            if (grow_buffer(m, len))
                continue; /* a record larger than the buffer */
            return 0;
        }
        uint64_t resume_at = skip_damage(m, from);
        if (resume_at != from || finished_meanwhile) {
            *next = resume_at;
            return 0;
        }
        finished_meanwhile = true; /* its writer was writing it: read again */
    }
}

/** Under mu (dropped inside): reads what the lane has room for and hands it
 *  to the core. @returns false when there was nothing to do. */
static bool read_and_deliver(dl_member *m)
{
    uint32_t room = lane_room(&m->lane);
    if (room == 0)
        return false; /* an ack that makes room wakes the thread */
    uint64_t from = m->read_pos, next;
    dl_msg *msgs[READ_BATCH];
    pthread_mutex_unlock(&m->mu);
    size_t n = read_records(m, from, msgs, room < READ_BATCH ? room : READ_BATCH, &next);
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < n; i++) {
        msgs[i]->seq = lane_push(&m->lane, msgs[i]->end);
        msgs[i]->base.lane_generation = m->generation;
    }
    m->read_pos = next;
    if (n == 0)
        return next != from;
    pthread_mutex_unlock(&m->mu);
    deliver(m, msgs, n);
    pthread_mutex_lock(&m->mu);
    return true;
}

/** Under mu: one turn. @returns false when the thread may wait. */
static bool step(dl_member *m)
{
    if (!m->active)
        return become_active(m);
    commit(m);
    if (m->paused)
        return m->resume_requested ? deliver_pending(m) : false;
    return read_and_deliver(m);
}

/** Outside mu: revokes the lane, commits what finished, unlocks the group. */
static void leave(dl_member *m)
{
    pthread_mutex_lock(&m->mu);
    bool was_active = m->active;
    eb_lane_ref ref = {.lane = 0, .generation = m->generation};
    int64_t deadline_ns = m->leave_deadline_ns;
    pthread_mutex_unlock(&m->mu);
    if (was_active) { /* handlers finishing meanwhile ack as usual */
        const eb_host *h = m->host;
        if (h->struct_size >= offsetof(eb_host, revoke_until) + sizeof h->revoke_until &&
            h->revoke_until)
            h->revoke_until(m->hs, &ref, 1, deadline_ns, 0);
        else
            h->revoke(m->hs, &ref, 1);
    }
    pthread_mutex_lock(&m->mu);
    m->active = false; /* later acks are discarded */
    uint64_t pos = m->committed;
    pthread_mutex_unlock(&m->mu);
    free_msgs((eb_msg **)m->pending + m->pending_at, m->n_pending - m->pending_at);
    m->pending_at = m->n_pending = 0;
    if (was_active && m->group) {
        if (pos != m->saved)
            save_position(m, pos);
        flock(m->lock_fd, LOCK_UN); /* a standby takes over */
    }
}

static void *member_main(void *arg)
{
    dl_member *m = arg;
    pthread_setname_np(pthread_self(), "eb-dirlog");
    pthread_mutex_lock(&m->mu);
    while (!m->stopping)
        if (!step(m) && !m->stopping)
            wait_for_work(m);
    pthread_mutex_unlock(&m->mu);
    leave(m);
    return NULL;
}

/* -------------------------------------------------------------- lifecycle */

void dl_member_free(dl_member *m)
{
    if (!m)
        return;
    free_msgs((eb_msg **)m->pending + m->pending_at, m->n_pending - m->pending_at);
    int fds[] = {m->lock_fd, m->log_fd, m->topic_fd};
    for (size_t i = 0; i < sizeof fds / sizeof *fds; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(m->lane.ends);
    free(m->lane.finished);
    free(m->pending);
    free(m->buf);
    free(m->topic);
    free(m->group);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static int open_files(dl_member *m, char *errstr, size_t errstr_size)
{
    char lock_name[DL_FILE_NAME_SIZE];
    const char *failed;
    if ((m->topic_fd = dl_topic_dir_open(m->bus, m->topic)) < 0)
        failed = "cannot create its directory";
    else if ((m->log_fd = openat(m->topic_fd, "log", O_RDONLY | O_CREAT | O_CLOEXEC, 0666)) < 0)
        failed = "cannot open its log";
    else if (m->group && (group_file(m, ".lock", lock_name),
                          (m->lock_fd = openat(m->topic_fd, lock_name,
                                               O_RDWR | O_CREAT | O_CLOEXEC, 0666)) < 0))
        failed = "cannot open the group's lock file";
    else
        return 0;
    snprintf(errstr, errstr_size, "dirlog: topic '%s' in %s: %s: %s", m->topic, m->bus->dir,
             failed, strerror(errno));
    return EB_ERR_IO;
}

static dl_member *member_new(dl_bus *b, eb_host_sub *hs, const eb_sub_params *p)
{
    dl_member *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->bus = b;
    m->host = b->host;
    m->hs = hs;
    m->start = p->start;
    m->topic_fd = m->log_fd = m->lock_fd = -1;
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cv, &attr);
    pthread_condattr_destroy(&attr);
    m->topic = strdup(p->topic);
    m->group = p->group ? strdup(p->group) : NULL;
    m->pending = calloc(READ_BATCH, sizeof *m->pending);
    m->buf = malloc(READ_CHUNK);
    m->buf_cap = READ_CHUNK;
    if (!m->topic || (p->group && !m->group) || !m->pending || !m->buf ||
        lane_init(&m->lane, p->lane_max_inflight) != 0) {
        dl_member_free(m);
        return NULL;
    }
    return m;
}

int dl_member_start(dl_bus *b, eb_host_sub *hs, const eb_sub_params *p, dl_member **out,
                    char *errstr, size_t errstr_size)
{
    dl_member *m = member_new(b, hs, p);
    if (!m) {
        snprintf(errstr, errstr_size, "dirlog: out of memory");
        return EB_ERR_NOMEM;
    }
    int rc = open_files(m, errstr, errstr_size);
    if (rc == 0 && pthread_create(&m->thread, NULL, member_main, m) != 0) {
        snprintf(errstr, errstr_size, "dirlog: cannot start a thread");
        rc = EB_ERR_NOMEM;
    }
    if (rc != 0) {
        dl_member_free(m);
        return rc;
    }
    m->thread_started = true;
    pthread_mutex_lock(&b->members_mu);
    m->next = b->members;
    b->members = m;
    pthread_mutex_unlock(&b->members_mu);
    *out = m;
    return 0;
}

int dl_member_stop(dl_member *m, int64_t deadline_ns)
{
    if (!m->thread_started)
        return 0;
    pthread_mutex_lock(&m->mu);
    m->stopping = true;
    m->leave_deadline_ns = deadline_ns;
    wake(m);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    m->thread_started = false;
    dl_bus *b = m->bus;
    pthread_mutex_lock(&b->members_mu);
    dl_member **pp = &b->members;
    while (*pp != m)
        pp = &(*pp)->next;
    *pp = m->next;
    pthread_mutex_unlock(&b->members_mu);
    return 0;
}

void dl_member_info_get(dl_member *m, dl_member_info *out)
{
    struct stat st;
    pthread_mutex_lock(&m->mu);
    *out = (dl_member_info){.topic = m->topic, .group = m->group, .active = m->active,
                            .read = m->read_pos, .committed = m->committed,
                            .in_flight = m->lane.tail - m->lane.head};
    pthread_mutex_unlock(&m->mu);
    out->log_bytes = fstat(m->log_fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}
