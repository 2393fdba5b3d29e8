/*
 * producer.c — a bus's one Kafka producer: publishing (key, value, headers
 * copied into librdkafka), its poll thread "eb-kafka-prod" that serves
 * delivery reports and turns them into eventbus delivery callbacks, waiting
 * for room on a full queue, flush, and the purge-then-destroy stop. Also
 * maps librdkafka errors to EB_ERR_* codes. The poll thread also runs the
 * bus's health probe (health.c), which never blocks it.
 *
 * Threads: publish from any thread; callbacks only on the poll thread; flush
 * and stop from the bus's closing thread. Waiters (publishers on a full
 * queue, flushers, stop) sleep on one condition variable, broadcast only
 * when someone waits: by the poll thread after each rd_kafka_poll() that
 * served reports, and by a publish that gave its in-flight count back.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka.h"

struct kf_producer {
    kf_bus *kb;
    rd_kafka_t *rk;
    kf_topic_cache *topics;
    kf_probe *probe;         /* poll thread only */
    pthread_t thread;
    atomic_bool stopping;
    atomic_bool closing;     /* close began: waiting for room ends (CLOSED) */
    atomic_bool refusing;    /* stopping: every publish is refused (CLOSED) */
    atomic_long inflight;    /* accepted publishes whose callback has not returned */
    long reported;           /* poll thread: callbacks returned, not yet taken off inflight */
    atomic_ulong served;     /* bumped after each poll that served reports */
    atomic_int waiters;      /* threads in wait_for_progress() */
    pthread_mutex_t mu;      /* only for cv */
    pthread_cond_t cv;       /* CLOCK_MONOTONIC */
};

/* ---------------------------------------------------------------- errors */

int kf_error_of(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return 0;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return EB_ERR_FULL;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        return EB_ERR_TOO_LARGE;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__NOENT:
        return EB_ERR_NOT_FOUND;
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        return EB_ERR_TIMEOUT;
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
        return EB_ERR_PURGED;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR__INVALID_TYPE:
    case RD_KAFKA_RESP_ERR_INVALID_REQUEST:
        return EB_ERR_INVALID;
    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
        return EB_ERR_EXISTS;
    case RD_KAFKA_RESP_ERR__DESTROY:
        return EB_ERR_CLOSED;
    case RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED:
    case RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION:
        return EB_ERR_UNSUPPORTED;
    default:
        return EB_ERR_TRANSPORT;
    }
}

/* ---------------------------------------------------------------- waiting */

/* Tells waiters that reports were served or the in-flight count fell. */
static void note_progress(kf_producer *p)
{
    atomic_fetch_add(&p->served, 1);
    if (atomic_load(&p->waiters) == 0)
        return;
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/*
 * Sleeps until progress is noted after `served` was `seen`, or until
 * deadline_ns (INT64_MAX: no deadline). @returns false at the deadline.
 * A waiter counts itself before re-reading `served`; note_progress() bumps
 * `served` before reading `waiters` (both seq_cst): one of the two sees the
 * other, so no wake-up is lost.
 */
static bool wait_for_progress(kf_producer *p, unsigned long seen, int64_t deadline_ns)
{
    bool in_time = true;
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->waiters, 1);
    while (atomic_load(&p->served) == seen && in_time) {
        if (deadline_ns == INT64_MAX) {
            pthread_cond_wait(&p->cv, &p->mu);
        } else {
            struct timespec ts = {.tv_sec = deadline_ns / 1000000000,
                                  .tv_nsec = deadline_ns % 1000000000};
            in_time = pthread_cond_timedwait(&p->cv, &p->mu, &ts) == 0 ||
                      p->kb->host->now_ns() < deadline_ns;
        }
    }
    atomic_fetch_sub(&p->waiters, 1);
    pthread_mutex_unlock(&p->mu);
    return in_time;
}

/** Waits until no publish is in flight. @returns false at the deadline. */
static bool wait_idle(kf_producer *p, int64_t deadline_ns)
{
    for (;;) {
        unsigned long seen = atomic_load(&p->served);
        if (atomic_load(&p->inflight) == 0)
            return true;
        if (!wait_for_progress(p, seen, deadline_ns))
            return atomic_load(&p->inflight) == 0;
    }
}

/* ------------------------------------------------------- delivery reports */

static int delivery_status(const rd_kafka_message_t *m)
{
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    if (rd_kafka_message_status(m) == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED)
        return EB_ERR_UNCERTAIN;
    return kf_error_of(m->err);
}

/* Runs on the poll thread, inside rd_kafka_poll(). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kf_producer *p = opaque;
    void *token = m->_private; /* the core's: travels as the message's opaque */
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        kf_probe_saw_answer(p->probe);
    if (token) {
        int status = delivery_status(m);
        char id[48];
        if (status == 0)
            kf_format_id(id, m->partition, m->offset);
        p->kb->host->delivered(p->kb->hb, token, status, status == 0 ? id : NULL);
    }
    p->reported++;
}

/* The in-flight count falls once per poll, not once per report: the
 * publishing threads write the same counter, and a cache line bouncing
 * between cores per message cost more than the report itself. */
static void *poll_main(void *arg)
{
    kf_producer *p = arg;
    pthread_setname_np(pthread_self(), "eb-kafka-prod");
    while (!atomic_load(&p->stopping)) {
        int served = rd_kafka_poll(p->rk, 100);
        long reported = p->reported;
        p->reported = 0;
        if (reported)
            atomic_fetch_sub(&p->inflight, reported);
        if (served > 0 || reported)
            note_progress(p);
        kf_probe_tick(p->probe);
    }
    return NULL;
}

/* ------------------------------------------------------------------ start */

static void producer_free(kf_producer *p)
{
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int kf_producer_start(kf_bus *kb, kf_producer **out, char *errstr, size_t errstr_size)
{
    kf_producer *p = calloc(1, sizeof *p);
    if (!p)
        return EB_ERR_NOMEM;
    p->kb = kb;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &attr);
    pthread_condattr_destroy(&attr);

    rd_kafka_conf_t *conf;
    int rc = kf_config_build(kb, "producer", &conf, errstr, errstr_size);
    if (rc != 0) {
        producer_free(p);
        return rc;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, p);
    char why[512];
    if (!(p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why))) {
        rd_kafka_conf_destroy(conf);
        producer_free(p);
        snprintf(errstr, errstr_size, "kafka producer: %s", why);
        return EB_ERR_CONFIG;
    }
    if (!(p->topics = kf_topic_cache_new(p->rk)) || !(p->probe = kf_probe_new(kb, p->rk))) {
        kf_topic_cache_free(p->topics);
        rd_kafka_destroy(p->rk);
        producer_free(p);
        return EB_ERR_NOMEM;
    }
    if (pthread_create(&p->thread, NULL, poll_main, p) != 0) {
        kf_probe_free(p->probe);
        kf_topic_cache_free(p->topics);
        rd_kafka_destroy(p->rk);
        producer_free(p);
        snprintf(errstr, errstr_size, "kafka producer: cannot start its poll thread");
        return EB_ERR_NOMEM;
    }
    *out = p;
    return 0;
}

rd_kafka_t *kf_producer_handle(kf_producer *p)
{
    return p->rk;
}

/* ---------------------------------------------------------------- publish */

/* Kafka tells a NULL value (a tombstone) and a NULL header value from empty
 * ones; eventbus's empty payloads and header values are empty, not NULL. */
static const void *non_null(const void *bytes)
{
    return bytes ? bytes : "";
}

static rd_kafka_headers_t *headers_of(const eb_outgoing *m)
{
    if (m->header_count == 0)
        return NULL;
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(m->header_count);
    for (size_t i = 0; i < m->header_count; i++) {
        const eb_header *h = &m->headers[i];
        rd_kafka_header_add(hdrs, h->name, -1, non_null(h->value), (ssize_t)h->value_len);
    }
    return hdrs;
}

/*
 * One produce attempt. librdkafka copies key and value (F_COPY) and takes
 * the headers only when it accepts the message. A NULL key stays NULL (no
 * key); a non-NULL key of length 0 is sent as an empty key.
 */
static rd_kafka_resp_err_t produce_once(kf_producer *p, const eb_outgoing *m, void *token)
{
    rd_kafka_headers_t *hdrs = headers_of(m);
    rd_kafka_topic_t *rkt = kf_topic_cache_get(p->topics, m->topic);
    rd_kafka_vu_t vus[6] = {
        rkt ? (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_RKT, .u.rkt = rkt}
            : (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_TOPIC, .u.cstr = m->topic},
        {.vtype = RD_KAFKA_VTYPE_VALUE,
         .u.mem = {(void *)non_null(m->payload), m->payload_len}},
        {.vtype = RD_KAFKA_VTYPE_MSGFLAGS, .u.i = RD_KAFKA_MSG_F_COPY},
        {.vtype = RD_KAFKA_VTYPE_OPAQUE, .u.ptr = token},
    };
    size_t n = 4;
    if (m->key)
        vus[n++] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_KEY,
                                   .u.mem = {(void *)m->key, m->key_len}};
    if (hdrs)
        vus[n++] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_HEADERS, .u.headers = hdrs};
    rd_kafka_error_t *error = rd_kafka_produceva(p->rk, vus, n);
    if (!error)
        return RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_resp_err_t err = rd_kafka_error_code(error);
    rd_kafka_error_destroy(error);
    if (hdrs)
        rd_kafka_headers_destroy(hdrs);
    return err;
}

static int64_t deadline_after(const kf_producer *p, int64_t timeout_ms)
{
    const int64_t max_ms = INT64_MAX / 1000000 / 2;
    return p->kb->host->now_ns() + (timeout_ms < max_ms ? timeout_ms : max_ms) * 1000000;
}

int kf_producer_publish(kf_producer *p, const eb_outgoing *m, int64_t timeout_ms,
                        void *token)
{
    /* The poll thread waiting for itself would never serve the reports that
     * make room: from a delivery callback, never wait. */
    if (pthread_equal(pthread_self(), p->thread))
        timeout_ms = 0;
    /* Counted before producing: the report may run before produce returns;
     * and before `refusing` is read, so that stop, which sets it, then
     * waits for the count, sees this publish either way. */
    atomic_fetch_add(&p->inflight, 1);
    if (atomic_load(&p->refusing)) {
        atomic_fetch_sub(&p->inflight, 1);
        note_progress(p);
        return EB_ERR_CLOSED;
    }
    int64_t deadline_ns = 0;
    for (;;) {
        unsigned long seen = atomic_load(&p->served);
        rd_kafka_resp_err_t err = produce_once(p, m, token);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        bool full = err == RD_KAFKA_RESP_ERR__QUEUE_FULL;
        bool closing = full && timeout_ms > 0 && atomic_load(&p->closing);
        if (full && timeout_ms > 0 && deadline_ns == 0)
            deadline_ns = deadline_after(p, timeout_ms);
        if (!full || timeout_ms <= 0 || closing ||
            !wait_for_progress(p, seen, deadline_ns)) {
            atomic_fetch_sub(&p->inflight, 1);
            note_progress(p);
            return closing ? EB_ERR_CLOSED : kf_error_of(err);
        }
    }
}

/* ------------------------------------------------------------ flush, stop */

int kf_producer_flush(kf_producer *p, int64_t deadline_ns)
{
    /* Not rd_kafka_flush(): it would run callbacks on the caller's thread. */
    return wait_idle(p, deadline_ns) ? 0 : EB_ERR_TIMEOUT;
}

void kf_producer_begin_close(kf_producer *p)
{
    atomic_store(&p->closing, true);
    note_progress(p); /* publishers waiting for room look again */
}

/* How long stop waits for purged messages' reports before purging again. */
enum { PURGE_ROUND_MS = 100 };

void kf_producer_stop(kf_producer *p)
{
    /* Purged messages are reported at once (PURGE_QUEUE, or PURGE_INFLIGHT
     * with their persisted status), so each wait is short; without it
     * rd_kafka_destroy() would drop them without a report. Publishes are
     * refused first: a delivery callback publishing again what failed
     * (issue 7, defect 12) put a message in the queue after the purge,
     * and this wait lasted until its message.timeout.ms. One made just as
     * refusing began is purged by the next round. */
    atomic_store(&p->refusing, true);
    do
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    while (!wait_idle(p, deadline_after(p, PURGE_ROUND_MS)));
    atomic_store(&p->stopping, true);
    /* rd_kafka_yield() only flags the calling thread: wake the poll
     * thread's rd_kafka_poll() through its queue instead. */
    rd_kafka_queue_t *main_queue = rd_kafka_queue_get_main(p->rk);
    rd_kafka_queue_yield(main_queue);
    rd_kafka_queue_destroy(main_queue);
    pthread_join(p->thread, NULL);
    kf_probe_free(p->probe);
    kf_topic_cache_free(p->topics);
    rd_kafka_destroy(p->rk);
    producer_free(p);
}

int kf_producer_stats(kf_producer *p, char *buf, size_t size)
{
    return snprintf(buf, size, "{\"outq_len\":%d,\"inflight\":%ld}",
                    rd_kafka_outq_len(p->rk), atomic_load(&p->inflight));
}
