/*
 * writer.c — queued, pipelined XADDs on one connection (see writer.h).
 *
 * Records leave the queue in order and are reported in that order, so
 * `done_seq` (the last record reported) tells flush() when everything
 * queued before it was reported.
 */
#include "writer.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fields.h"
#include "partitions.h"

enum { PIPELINE_MAX = 512 };

typedef struct record {
    struct record *next;
    void *token;
    uint64_t seq;
    int64_t expires_ns;      /* host clock */
    const char *stream;      /* in `data` */
    unsigned partition;      /* of the stream: the id's prefix */
    bool refused;            /* its topic's meta record refused it: not sent */
    eb_outgoing msg;         /* a copy, in `data` (topic too) */
    rd_xadd args;
    char data[];             /* stream and topic names, headers, names, values, key,
                                payload */
} record;

/** A topic whose meta record was checked (keyed mode), and the answer. */
typedef struct checked_topic {
    struct checked_topic *next;
    int rc;                  /* 0 or EB_ERR_CONFIG */
    char *topic;
} checked_topic;

struct rd_writer {
    const eb_host *host;
    eb_host_bus *hb;
    rd_writer_config cfg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* the thread waits for work or stop */
    pthread_cond_t room_cv;  /* publishers wait for room, flush for done_seq */
    record *head, *tail;
    size_t queued;
    uint64_t next_seq, done_seq;
    bool closing, stopping;
    bool idle;               /* the thread waits for work: publish signals */
    int connected;           /* under mu: 1 up, 0 down, -1 not tried yet */
    int link;                /* its state in cfg.health (RD_LINK_*) */
    rd_conn conn;            /* the thread's */
    checked_topic *checked;  /* the thread's */
};

/* ------------------------------------------------------------ records */

static record *record_copy(const char *stream, const eb_outgoing *m, void *token)
{
    size_t stream_len = strlen(stream) + 1, topic_len = strlen(m->topic) + 1;
    size_t size = stream_len + topic_len + m->header_count * sizeof(eb_header) + m->key_len +
                  m->payload_len;
    for (size_t i = 0; i < m->header_count; i++)
        size += strlen(m->headers[i].name) + 1 + m->headers[i].value_len;
    record *r = malloc(sizeof *r + size + alignof(eb_header));
    if (!r)
        return NULL;
    *r = (record){.token = token};
    char *p = r->data;
    memcpy(p, stream, stream_len);
    r->stream = p;
    p += stream_len;
    char *topic = p;
    memcpy(topic, m->topic, topic_len);
    p += topic_len;
    p += (alignof(eb_header) - (uintptr_t)p % alignof(eb_header)) % alignof(eb_header);
    eb_header *headers = (eb_header *)(void *)p;
    p += m->header_count * sizeof(eb_header);
    for (size_t i = 0; i < m->header_count; i++) {
        size_t name_len = strlen(m->headers[i].name) + 1;
        memcpy(p, m->headers[i].name, name_len);
        headers[i].name = p;
        p += name_len;
        if (m->headers[i].value_len)
            memcpy(p, m->headers[i].value, m->headers[i].value_len);
        headers[i].value = p;
        headers[i].value_len = m->headers[i].value_len;
        p += m->headers[i].value_len;
    }
    r->msg = (eb_outgoing){.topic = topic, .headers = headers, .header_count = m->header_count};
    if (m->key) {
        if (m->key_len)
            memcpy(p, m->key, m->key_len);
        r->msg.key = p;
        r->msg.key_len = m->key_len;
        p += m->key_len;
    }
    if (m->payload_len)
        memcpy(p, m->payload, m->payload_len);
    r->msg.payload = p;
    r->msg.payload_len = m->payload_len;
    return r;
}

static void record_free(record *r)
{
    rd_xadd_free(&r->args);
    free(r);
}

/** Reports r (in queue order) and frees it. @returns its seq, for
 *  mark_done once a run of reports is over. */
static uint64_t report(rd_writer *w, record *r, int status, const char *id)
{
    uint64_t seq = r->seq;
    if (r->token)
        w->host->delivered(w->hb, r->token, status, id);
    record_free(r);
    return seq;
}

/** Every record up to `seq` was reported: wakes flush(). Once per run of
 *  reports, not per message (a lock and a broadcast each). */
static void mark_done(rd_writer *w, uint64_t seq)
{
    if (seq == 0)
        return;
    pthread_mutex_lock(&w->mu);
    w->done_seq = seq;
    pthread_cond_broadcast(&w->room_cv);
    pthread_mutex_unlock(&w->mu);
}

/** Reports every record of the list `r` with `status` (never sent). */
static void report_all(rd_writer *w, record *r, int status)
{
    uint64_t done = 0;
    for (record *next; r; r = next) {
        next = r->next;
        done = report(w, r, status, NULL);
    }
    mark_done(w, done);
}

/* ------------------------------------------------------------ publish */

static struct timespec abs_monotonic(int64_t ns)
{
    return (struct timespec){.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
}

int rd_writer_publish(rd_writer *w, const char *stream, unsigned partition,
                      const eb_outgoing *m, int64_t timeout_ms, void *token)
{
    record *r = record_copy(stream, m, token);
    if (!r)
        return EB_ERR_NOMEM;
    r->partition = partition;
    if (rd_xadd_build(&r->args, r->stream, &r->msg, w->cfg.maxlen) != 0) {
        free(r);
        return EB_ERR_NOMEM;
    }
    pthread_mutex_lock(&w->mu);
    if (w->stopping) { /* the thread may have gone: nobody would report it */
        pthread_mutex_unlock(&w->mu);
        record_free(r);
        return EB_ERR_CLOSED;
    }
    if (w->queued >= w->cfg.queue_max && timeout_ms > 0 && !w->closing) {
        int64_t deadline = w->host->now_ns() + timeout_ms * 1000000;
        struct timespec ts = abs_monotonic(deadline);
        while (w->queued >= w->cfg.queue_max && !w->closing &&
               pthread_cond_timedwait(&w->room_cv, &w->mu, &ts) == 0)
            ;
    }
    int rc = 0;
    if (w->queued >= w->cfg.queue_max)
        rc = w->closing || w->stopping ? EB_ERR_CLOSED : EB_ERR_FULL;
    if (rc == 0) {
        r->seq = ++w->next_seq;
        r->expires_ns = w->host->now_ns() + w->cfg.delivery_timeout_ms * 1000000;
        if (w->tail)
            w->tail->next = r;
        else
            w->head = r;
        w->tail = r;
        w->queued++;
        if (w->idle) /* a busy thread takes it with its next batch */
            pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    if (rc != 0)
        record_free(r);
    return rc;
}

int rd_writer_flush(rd_writer *w, int64_t deadline_ns)
{
    pthread_mutex_lock(&w->mu);
    uint64_t want = w->next_seq;
    struct timespec ts = abs_monotonic(deadline_ns);
    bool in_time = true;
    while (w->done_seq < want && in_time)
        in_time = pthread_cond_timedwait(&w->room_cv, &w->mu, &ts) == 0 ||
                  w->host->now_ns() < deadline_ns;
    bool done = w->done_seq >= want;
    pthread_mutex_unlock(&w->mu);
    return done ? 0 : EB_ERR_TIMEOUT;
}

void rd_writer_begin_close(rd_writer *w)
{
    pthread_mutex_lock(&w->mu);
    w->closing = true;
    pthread_cond_broadcast(&w->room_cv);
    pthread_mutex_unlock(&w->mu);
}

int rd_writer_connected(rd_writer *w)
{
    pthread_mutex_lock(&w->mu);
    int c = w->connected == 1;
    pthread_mutex_unlock(&w->mu);
    return c;
}

/* ------------------------------------------------------------- thread */

/** Takes up to PIPELINE_MAX records off the queue (under mu). */
static record *take(rd_writer *w, size_t *n)
{
    record *first = w->head, *last = NULL;
    *n = 0;
    for (record *r = first; r && *n < PIPELINE_MAX; r = r->next) {
        last = r;
        (*n)++;
    }
    if (!last)
        return NULL;
    w->head = last->next;
    if (!w->head)
        w->tail = NULL;
    last->next = NULL;
    w->queued -= *n;
    pthread_cond_broadcast(&w->room_cv);
    return first;
}

static void set_connected(rd_writer *w, int up, const char *why)
{
    pthread_mutex_lock(&w->mu);
    int was = w->connected;
    w->connected = up;
    pthread_mutex_unlock(&w->mu);
    if (w->cfg.health) {
        rd_health_link(w->cfg.health, &w->link, up, why); /* only this thread writes it */
        return;
    }
    if (was == up)
        return;
    w->host->event(w->hb, up ? EB_EVENT_CONNECTED : EB_EVENT_DISCONNECTED, NULL, NULL,
                   up ? 0 : EB_ERR_TRANSPORT, why);
    w->host->log(w->hb, up ? EB_LOG_INFO : EB_LOG_WARN, "%s", why);
}

/** Sleeps up to ms, or until stop. @returns false when stopping. */
static bool nap(rd_writer *w, int ms)
{
    pthread_mutex_lock(&w->mu);
    struct timespec ts = abs_monotonic(w->host->now_ns() + (int64_t)ms * 1000000);
    while (!w->stopping && pthread_cond_timedwait(&w->cv, &w->mu, &ts) == 0)
        ;
    bool go_on = !w->stopping;
    pthread_mutex_unlock(&w->mu);
    return go_on;
}

/** Reports the queued records whose delivery timeout passed (never
 *  sent): EB_ERR_TIMEOUT. They expire in queue order. */
static void expire_queued(rd_writer *w)
{
    int64_t now = w->host->now_ns();
    record *gone = NULL, **tail = &gone;
    pthread_mutex_lock(&w->mu);
    while (w->head && w->head->expires_ns <= now) {
        record *r = w->head;
        w->head = r->next;
        w->queued--;
        r->next = NULL;
        *tail = r;
        tail = &r->next;
    }
    if (!w->head)
        w->tail = NULL;
    pthread_cond_broadcast(&w->room_cv);
    pthread_mutex_unlock(&w->mu);
    report_all(w, gone, EB_ERR_TIMEOUT);
}

/** One connection attempt; on failure, expires what waited too long and
 *  sleeps the backoff (doubled each time, capped). @returns false when
 *  stopping. Queued records stay in the queue meanwhile, so the queue's
 *  bound holds everything not sent. */
static bool try_connect(rd_writer *w, int *backoff_ms)
{
    char err[RD_URL_MAX + 256];
    if (rd_conn_open(&w->conn, w->cfg.url, w->cfg.timeouts, err, sizeof err) == 0) {
        set_connected(w, 1, "redis writer connected");
        *backoff_ms = w->cfg.backoff_min_ms;
        return true;
    }
    set_connected(w, 0, err);
    expire_queued(w);
    bool go_on = nap(w, *backoff_ms);
    *backoff_ms = *backoff_ms * 2 > w->cfg.backoff_max_ms ? w->cfg.backoff_max_ms
                                                          : *backoff_ms * 2;
    return go_on;
}

/** Puts the list `first` back at the front of the queue, in order. */
static void requeue(rd_writer *w, record *first)
{
    record *last = first;
    size_t n = 1;
    while (last->next) {
        last = last->next;
        n++;
    }
    pthread_mutex_lock(&w->mu);
    last->next = w->head;
    w->head = first;
    if (!w->tail)
        w->tail = last;
    w->queued += n;
    pthread_mutex_unlock(&w->mu);
}

/** Keyed mode: the meta record of each topic of `batch` not checked yet
 *  is checked once per writer (partitions.c); records of a topic it
 *  refuses are marked refused. @returns 0, or -1 when the connection
 *  failed (it is closed). */
static int check_topics(rd_writer *w, record *batch)
{
    for (record *r = batch; r; r = r->next) {
        checked_topic *c = w->checked;
        while (c && strcmp(c->topic, r->msg.topic) != 0)
            c = c->next;
        if (!c) {
            char err[RD_URL_MAX + 512];
            int rc = rd_meta_check(&w->conn, r->msg.topic, w->cfg.partitions, err, sizeof err);
            if (rc != 0 && rc != EB_ERR_CONFIG) { /* no answer */
                set_connected(w, 0, err);
                rd_conn_close(&w->conn);
                return -1;
            }
            c = calloc(1, sizeof *c);
            if (!c || !(c->topic = strdup(r->msg.topic))) {
                free(c);
                r->refused = true; /* out of memory: reported, never silent */
                continue;
            }
            c->rc = rc;
            c->next = w->checked;
            w->checked = c;
            if (rc != 0)
                w->host->log(w->hb, EB_LOG_ERROR, "%s", err);
        }
        r->refused = c->rc != 0;
    }
    return 0;
}

/** Sends `batch` as one pipeline and reports every reply. */
static void send_batch(rd_writer *w, record *batch)
{
    if (w->cfg.partitions && check_topics(w, batch) != 0) {
        requeue(w, batch);
        return;
    }
    record *r = batch;
    bool broken = false;
    char why[RD_URL_MAX + 256] = "";
    for (; r; r = r->next)
        if (!r->refused && redisAppendCommandArgv(w->conn.ctx, (int)r->args.argc, r->args.argv,
                                   r->args.lens) != REDIS_OK)
            break; /* out of memory in hiredis: the rest waits for the next turn */
    record *unsent = r;
    uint64_t done = 0;
    for (r = batch; r != unsent;) {
        record *next = r->next;
        void *reply = NULL;
        if (r->refused) {
            done = report(w, r, EB_ERR_CONFIG, NULL); /* its topic's meta refused it */
            r = next;
            continue;
        }
        if (!broken && redisGetReply(w->conn.ctx, &reply) != REDIS_OK) {
            broken = true;
            snprintf(why, sizeof why, "redis %s: XADD: %s", w->cfg.url->display,
                     w->conn.ctx->errstr[0] ? w->conn.ctx->errstr : "no answer in time");
        }
        if (broken) {
            done = report(w, r, EB_ERR_UNCERTAIN, NULL); /* sent, outcome unknown */
        } else {
            redisReply *rep = reply;
            if (rep->type == REDIS_REPLY_STRING) {
                char id[64];
                snprintf(id, sizeof id, "%u@%s", r->partition, rep->str);
                done = report(w, r, 0, id);
            } else {
                w->host->log(w->hb, EB_LOG_WARN, "redis %s: XADD refused: %s",
                             w->cfg.url->display,
                             rep->type == REDIS_REPLY_ERROR ? rep->str : "an unexpected reply");
                done = report(w, r, EB_ERR_TRANSPORT, NULL);
            }
            freeReplyObject(rep);
        }
        r = next;
    }
    mark_done(w, done);
    if (broken) {
        rd_conn_close(&w->conn); /* hiredis 0.14: a context that failed is dead */
        set_connected(w, 0, why);
    }
    if (unsent) /* back to the front of the queue, in order */
        requeue(w, unsent);
}

static void *writer_main(void *arg)
{
    rd_writer *w = arg;
    pthread_setname_np(pthread_self(), "eb-redis-write");
    int backoff_ms = w->cfg.backoff_min_ms;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->head && !w->stopping) {
            w->idle = true;
            pthread_cond_wait(&w->cv, &w->mu);
        }
        w->idle = false;
        bool stopping = w->stopping;
        pthread_mutex_unlock(&w->mu);
        if (stopping)
            break;
        if (!w->conn.ctx) {
            if (!try_connect(w, &backoff_ms))
                break;
            continue;
        }
        size_t n;
        pthread_mutex_lock(&w->mu);
        record *batch = take(w, &n);
        pthread_mutex_unlock(&w->mu);
        if (batch)
            send_batch(w, batch);
    }
    /* Stopping: what is still queued was never sent. */
    pthread_mutex_lock(&w->mu);
    record *rest = w->head;
    w->head = w->tail = NULL;
    w->queued = 0;
    pthread_mutex_unlock(&w->mu);
    report_all(w, rest, EB_ERR_PURGED);
    rd_conn_close(&w->conn);
    for (checked_topic *c = w->checked, *next; c; c = next) {
        next = c->next;
        free(c->topic);
        free(c);
    }
    if (w->cfg.health)
        rd_health_link_gone(w->cfg.health, &w->link);
    return NULL;
}

rd_writer *rd_writer_start(const eb_host *host, eb_host_bus *hb, const rd_writer_config *cfg)
{
    rd_writer *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->host = host;
    w->hb = hb;
    w->cfg = *cfg;
    w->connected = -1; /* the first attempt's outcome raises an event */
    w->link = RD_LINK_UNKNOWN;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, &attr);
    pthread_cond_init(&w->room_cv, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_cond_destroy(&w->room_cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    return w;
}

void rd_writer_stop(rd_writer *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = w->closing = true;
    pthread_cond_broadcast(&w->cv);
    pthread_cond_broadcast(&w->room_cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_cond_destroy(&w->room_cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
