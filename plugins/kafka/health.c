/*
 * health.c — whether the Kafka cluster answers this bus: the probe that
 * the producer's poll thread sends, the state eb_bus_health() reports, and
 * the CONNECTED/DISCONNECTED events.
 *
 * A frozen broker (SIGSTOP, a hung JVM, a network that drops packets)
 * keeps its TCP connections open: librdkafka reports nothing until a
 * request outlives socket.timeout.ms (60 s), and an idle producer sends no
 * request at all. So the bus asks. When nothing was answered for
 * PROBE_INTERVAL_MS, the producer's poll thread sends a probe: a
 * DescribeConfigs of one config of one topic, an admin request with its own
 * timeout whose result comes on a queue of the probe's own, read without
 * blocking after each rd_kafka_poll() (so delivery reports never wait for
 * it). Health follows the silence, how long a request has waited with no
 * answer since:
 *
 *   silence >= DEGRADED_AFTER_MS (5 s)   DEGRADED
 *   silence >= DOWN_AFTER_MS (12 s)      DOWN, raising EB_EVENT_DISCONNECTED
 *   an answer                            OK at once, raising EB_EVENT_CONNECTED
 *                                        if DISCONNECTED was raised
 *
 * librdkafka's "all brokers down" error (connections refused) makes the bus
 * DOWN at once, until the next answer.
 *
 * An answer is a probe's result from a broker (an error the broker returns,
 * such as an authorization failure, is an answer too) or a delivery report
 * of a stored message. A busy producer's delivery reports keep the silence
 * at zero without probes; on an idle bus each answered probe does, so an
 * idle bus stays OK. Messages a consumer fetches do not count: they may
 * come from librdkafka's prefetch queue long after the broker stopped
 * answering.
 *
 * A freeze starts at most one interval before the next probe, so it shows
 * as DEGRADED within PROBE_INTERVAL_MS + DEGRADED_AFTER_MS (7 s) and as
 * DOWN within PROBE_INTERVAL_MS + DOWN_AFTER_MS (14 s); after it, the
 * first probe answered (within PROBE_TIMEOUT_MS) makes the bus OK. Five
 * seconds without any answer to a request that normally takes
 * milliseconds is far beyond a broker's GC pauses; twelve leave no doubt.
 *
 * The probe asks one broker (the one librdkafka takes for the controller):
 * it tells whether the cluster answers, not whether every broker does.
 *
 * Threads: the probe and the events belong to the producer's poll thread;
 * kf_health_error() runs on librdkafka's and the members' threads;
 * kf_health_report() on any thread (the state is read from atomics).
 */
#include <stdio.h>
#include <stdlib.h>

#include "kafka.h"

enum {
    PROBE_INTERVAL_MS = 2000, /* an idle bus asks this often */
    PROBE_TIMEOUT_MS = 5000,  /* then the probe gives up and the next one goes */
    DEGRADED_AFTER_MS = 5000,
    DOWN_AFTER_MS = 12000,
};

/* Any broker can describe it, and it exists wherever a group ever
 * committed; if not, "unknown topic" is an answer as good as any. */
static const char probe_topic[] = "__consumer_offsets";
static const char probe_config[] = "cleanup.policy";

struct kf_probe {
    kf_bus *kb;
    rd_kafka_t *rk;
    rd_kafka_queue_t *replies;
    rd_kafka_AdminOptions_t *options;
    rd_kafka_ConfigResource_t *resource;
    bool in_flight;
    int64_t sent_ns;        /* the latest probe's */
    bool delivery_answered; /* a delivery report came since the last tick */
    bool disconnected;      /* DISCONNECTED is the last event raised */
    int64_t disconnected_ns;
};

static int64_t ms_between(int64_t from_ns, int64_t to_ns)
{
    return (to_ns - from_ns) / 1000000;
}

/* ------------------------------------------------------------------ state */

/** The state at now_ns, and the silence (ms) it comes from. Any thread. */
static eb_health_state state_at(kf_health *h, int64_t now_ns, int64_t *silent_ms)
{
    int64_t waiting_since = atomic_load(&h->waiting_since_ns);
    *silent_ms = waiting_since ? ms_between(waiting_since, now_ns) : 0;
    if (atomic_load(&h->brokers_down) || *silent_ms >= DOWN_AFTER_MS)
        return EB_HEALTH_DOWN;
    return *silent_ms >= DEGRADED_AFTER_MS ? EB_HEALTH_DEGRADED : EB_HEALTH_OK;
}

static void describe(kf_bus *kb, eb_health_state state, int64_t silent_ms, char *buf,
                     size_t size)
{
    if (atomic_load(&kb->health.brokers_down)) {
        pthread_mutex_lock(&kb->mu);
        snprintf(buf, size, "no broker reachable: %.200s", kb->health.reason);
        pthread_mutex_unlock(&kb->mu);
    } else if (state != EB_HEALTH_OK) {
        snprintf(buf, size,
                 "no answer from the cluster for %.1f s (DEGRADED after %d s, DOWN after %d s)",
                 silent_ms / 1000.0, DEGRADED_AFTER_MS / 1000, DOWN_AFTER_MS / 1000);
    } else {
        snprintf(buf, size, "librdkafka %s; the cluster answers", rd_kafka_version_str());
    }
}

int kf_health_report(kf_bus *kb, eb_health *out)
{
    int64_t silent_ms;
    out->state = state_at(&kb->health, kb->host->now_ns(), &silent_ms);
    describe(kb, out->state, silent_ms, out->detail, sizeof out->detail);
    return 0;
}

void kf_health_error(kf_bus *kb, rd_kafka_resp_err_t err, const char *reason)
{
    if (err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && err != RD_KAFKA_RESP_ERR__TRANSPORT &&
        err != RD_KAFKA_RESP_ERR__RESOLVE)
        return; /* librdkafka retries the rest; logs say them */
    pthread_mutex_lock(&kb->mu);
    snprintf(kb->health.reason, sizeof kb->health.reason, "%s", reason);
    pthread_mutex_unlock(&kb->mu);
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        atomic_store(&kb->health.brokers_down, true); /* the next tick raises the event */
}

/* ------------------------------------------------------------------ probe */

kf_probe *kf_probe_new(kf_bus *kb, rd_kafka_t *rk)
{
    kf_probe *pr = calloc(1, sizeof *pr);
    if (!pr)
        return NULL;
    char why[256];
    pr->kb = kb;
    pr->rk = rk;
    pr->replies = rd_kafka_queue_new(rk);
    pr->options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    pr->resource = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, probe_topic);
    if (!pr->replies || !pr->options || !pr->resource ||
        rd_kafka_AdminOptions_set_request_timeout(pr->options, PROBE_TIMEOUT_MS, why,
                                                  sizeof why) ||
        /* A describe sends the names only, and asks for those alone. */
        rd_kafka_ConfigResource_set_config(pr->resource, probe_config, "")) {
        kf_probe_free(pr);
        return NULL;
    }
    /* As if one had gone an interval ago: the first tick sends one. */
    pr->sent_ns = kb->host->now_ns() - (int64_t)PROBE_INTERVAL_MS * 1000000;
    return pr;
}

void kf_probe_free(kf_probe *pr)
{
    if (!pr)
        return;
    /* A probe still out is dropped with the queue, or failed by
     * rd_kafka_destroy(). */
    if (pr->replies)
        rd_kafka_queue_destroy(pr->replies);
    if (pr->options)
        rd_kafka_AdminOptions_destroy(pr->options);
    if (pr->resource)
        rd_kafka_ConfigResource_destroy(pr->resource);
    free(pr);
}

void kf_probe_saw_answer(kf_probe *pr)
{
    pr->delivery_answered = true; /* taken at the tick: no clock read per report */
}

/** The cluster answered at now_ns: the silence ends, or starts over for a
 *  probe still out. */
static void note_answer(kf_probe *pr, int64_t now_ns)
{
    kf_health *h = &pr->kb->health;
    atomic_store(&h->last_answer_ns, now_ns);
    atomic_store(&h->waiting_since_ns, pr->in_flight ? now_ns : 0);
    atomic_store(&h->brokers_down, false);
}

/** Reads the probe's result if it came. Local errors (its timeout, no
 *  connection) are no answer; anything from a broker is one. */
static void take_reply(kf_probe *pr, int64_t now_ns)
{
    if (!pr->in_flight)
        return;
    rd_kafka_event_t *ev = rd_kafka_queue_poll(pr->replies, 0);
    if (!ev)
        return;
    rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
    rd_kafka_event_destroy(ev);
    pr->in_flight = false;
    if (err >= 0)
        note_answer(pr, now_ns);
}

/* One probe at a time, at most one per interval, and only when nothing
 * answered for an interval. */
static bool probe_due(const kf_probe *pr, int64_t now_ns)
{
    int64_t last_answer = atomic_load(&pr->kb->health.last_answer_ns);
    return !pr->in_flight && ms_between(pr->sent_ns, now_ns) >= PROBE_INTERVAL_MS &&
           (last_answer == 0 || ms_between(last_answer, now_ns) >= PROBE_INTERVAL_MS);
}

static void send_probe(kf_probe *pr, int64_t now_ns)
{
    rd_kafka_DescribeConfigs(pr->rk, &pr->resource, 1, pr->options, pr->replies);
    pr->in_flight = true;
    pr->sent_ns = now_ns;
    kf_health *h = &pr->kb->health;
    if (atomic_load(&h->waiting_since_ns) == 0)
        atomic_store(&h->waiting_since_ns, now_ns);
}

/** DISCONNECTED when the bus becomes DOWN, CONNECTED when it leaves DOWN:
 *  raised on one thread, so they alternate. */
static void raise_events(kf_probe *pr, int64_t now_ns)
{
    int64_t silent_ms;
    eb_health_state state = state_at(&pr->kb->health, now_ns, &silent_ms);
    bool down = state == EB_HEALTH_DOWN;
    if (down == pr->disconnected)
        return;
    pr->disconnected = down;
    char detail[256];
    if (down) {
        pr->disconnected_ns = now_ns;
        describe(pr->kb, state, silent_ms, detail, sizeof detail);
        pr->kb->host->event(pr->kb->hb, EB_EVENT_DISCONNECTED, NULL, NULL, EB_ERR_TRANSPORT,
                            detail);
    } else {
        snprintf(detail, sizeof detail, "the cluster answers again (DOWN for %.1f s)",
                 ms_between(pr->disconnected_ns, now_ns) / 1000.0);
        pr->kb->host->event(pr->kb->hb, EB_EVENT_CONNECTED, NULL, NULL, 0, detail);
    }
}

void kf_probe_tick(kf_probe *pr)
{
    int64_t now_ns = pr->kb->host->now_ns();
    take_reply(pr, now_ns);
    if (pr->delivery_answered) {
        pr->delivery_answered = false;
        note_answer(pr, now_ns);
    }
    if (probe_due(pr, now_ns))
        send_probe(pr, now_ns);
    raise_events(pr, now_ns);
}
