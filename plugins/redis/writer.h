/*
 * writer.h — the publish side of the Redis transport: one connection and
 * one thread per bus. publish() copies the message into a bounded queue;
 * the thread sends what is queued as one pipeline of XADDs (so concurrent
 * publishes travel together) and reports each reply through
 * host->delivered(): the entry id ("2@1700000000000-0": partition 2, the
 * stream id), an error, or EB_ERR_UNCERTAIN for an XADD sent on a
 * connection that died before its reply. The connection is rebuilt after
 * any error, with capped exponential backoff; messages not yet sent wait
 * for it until their delivery timeout (EB_ERR_TIMEOUT: not stored).
 */
#ifndef EB_REDIS_WRITER_H
#define EB_REDIS_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "eventbus/transport.h"
#include "health.h"

typedef struct rd_writer rd_writer;

typedef struct rd_writer_config {
    const rd_url *url;       /* must outlive the writer */
    rd_timeouts timeouts;
    size_t queue_max;        /* messages queued, not yet sent */
    int64_t delivery_timeout_ms; /* queued longer than this: EB_ERR_TIMEOUT */
    int backoff_min_ms, backoff_max_ms;
    const char *maxlen;      /* MAXLEN ~ for every XADD; NULL or "0": none */
    rd_health *health;       /* the bus's, or NULL: the writer raises its own events */
    unsigned partitions;     /* keyed mode: each topic's meta record is checked against
                                it before its first XADD (a refusal fails its publishes
                                with EB_ERR_CONFIG); 0: shared mode, no check */
} rd_writer_config;

/** Starts the thread (connecting happens there). NULL when out of memory. */
rd_writer *rd_writer_start(const eb_host *host, eb_host_bus *hb, const rd_writer_config *cfg);

/**
 * Queues a copy of `m` for stream `stream` (partition `partition` of its
 * topic: the entry id's prefix); waits for room up to
 * timeout_ms (0: never). @returns 0, EB_ERR_FULL, EB_ERR_CLOSED (close has
 * begun and it would wait) or EB_ERR_NOMEM.
 */
int rd_writer_publish(rd_writer *w, const char *stream, unsigned partition,
                      const eb_outgoing *m, int64_t timeout_ms, void *token);

/** Waits until every earlier publish was reported. 0 or EB_ERR_TIMEOUT. */
int rd_writer_flush(rd_writer *w, int64_t deadline_ns);

/** Publishes that would wait return EB_ERR_CLOSED from now on. */
void rd_writer_begin_close(rd_writer *w);

/** Stops: what was never sent is reported EB_ERR_PURGED, what was sent
 *  without a reply EB_ERR_UNCERTAIN; joins the thread and frees. */
void rd_writer_stop(rd_writer *w);

/** Is its connection up (the last attempt succeeded)? */
int rd_writer_connected(rd_writer *w);

#endif
