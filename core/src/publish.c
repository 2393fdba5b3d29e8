/*
 * publish.c — eb_publish() and eb_flush(): argument and size checks, the
 * no-wait rule for handlers and callbacks, and delivery tokens: what a
 * publish that asks for an outcome hands the transport, handed back through
 * host->delivered(), which marks the callback's thread so that closing from
 * it is refused (BUSY) rather than deadlocking. Tokens of the first 16
 * (cb, opaque) pairs are interned in the bus (bus.h), others allocated.
 */
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "clock.h"

enum { TOPIC_MAX = 249 };

void *eb__delivery_token_new(eb_delivery_cb cb, void *opaque)
{
    eb_token *t = malloc(sizeof *t);
    if (t)
        *t = (eb_token){cb, opaque};
    return t;
}

static eb_token *find_interned(eb_token_table *tt, int from, int to, eb_delivery_cb cb,
                               void *opaque)
{
    for (int i = from; i < to; i++)
        if (tt->slot[i].cb == cb && tt->slot[i].opaque == opaque)
            return &tt->slot[i];
    return NULL;
}

/* Filled slots never change, so the lookup reads them without a lock; only
 * filling one is serialised. A full table costs one load per publish. */
void *eb__delivery_token(eb_bus *bus, eb_delivery_cb cb, void *opaque)
{
    eb_token_table *tt = &bus->tokens;
    int used = atomic_load_explicit(&tt->used, memory_order_acquire);
    eb_token *t = find_interned(tt, 0, used, cb, opaque);
    if (t || used == EB_INTERNED_TOKENS)
        return t ? t : eb__delivery_token_new(cb, opaque);
    pthread_mutex_lock(&tt->mu);
    int now = atomic_load_explicit(&tt->used, memory_order_relaxed);
    t = find_interned(tt, used, now, cb, opaque);
    if (!t && now < EB_INTERNED_TOKENS) {
        t = &tt->slot[now];
        *t = (eb_token){cb, opaque};
        atomic_store_explicit(&tt->used, now + 1, memory_order_release);
    }
    pthread_mutex_unlock(&tt->mu);
    return t ? t : eb__delivery_token_new(cb, opaque);
}

static bool is_interned(const eb_bus *bus, const void *token)
{
    uintptr_t at = (uintptr_t)token, first = (uintptr_t)bus->tokens.slot;
    return at >= first && at < first + sizeof bus->tokens.slot;
}

void eb__delivery_token_drop(eb_bus *bus, void *token)
{
    if (!is_interned(bus, token))
        free(token);
}

void eb__delivered(eb_host_bus *hb, void *token, int status, const char *id)
{
    eb_bus *bus = (eb_bus *)hb;
    const eb_token *t = token;
    eb_bus *outer = eb__tls_callback_bus;
    eb__tls_callback_bus = bus;
    if (status != 0)
        atomic_fetch_add(&bus->count.publish_failed, 1);
    t->cb(status, status == 0 ? id : NULL, t->opaque);
    eb__tls_callback_bus = outer;
    eb__delivery_token_drop(bus, token);
}

static int check_headers(const eb_header *h, size_t n)
{
    if (n && !h)
        return EB_ERR_INVALID;
    for (size_t i = 0; i < n; i++)
        if (!h[i].name || !h[i].name[0] || (h[i].value_len && !h[i].value))
            return EB_ERR_INVALID;
    return 0;
}

/** Adds `len` to `*bytes` unless the sum would pass `limit`; `*bytes` is
 *  never above `limit`, so `limit - *bytes` cannot wrap. */
static bool add_within(size_t *bytes, size_t len, size_t limit)
{
    if (len > limit - *bytes)
        return false;
    *bytes += len;
    return true;
}

/* Each length is checked against what is left of the limit before it is
 * added: a plain sum wraps on a huge length (SIZE_MAX, a negative ssize_t)
 * and let such a message through to the transport's copy. */
static bool fits(const eb_outgoing *m, size_t limit)
{
    size_t bytes = 0;
    if (!add_within(&bytes, m->payload_len, limit) || !add_within(&bytes, m->key_len, limit))
        return false;
    for (size_t i = 0; i < m->header_count; i++)
        if (!add_within(&bytes, strlen(m->headers[i].name), limit) ||
            !add_within(&bytes, m->headers[i].value_len, limit))
            return false;
    return true;
}

/** Checks a message; @returns 0, EB_ERR_INVALID or EB_ERR_TOO_LARGE. */
static int check_outgoing(const eb_bus *bus, const eb_outgoing *m)
{
    if (!m->topic)
        return EB_ERR_INVALID;
    size_t topic_len = strnlen(m->topic, TOPIC_MAX + 1);
    if (topic_len == 0 || topic_len > TOPIC_MAX)
        return EB_ERR_INVALID;
    if ((m->payload_len && !m->payload) || (m->key_len && !m->key))
        return EB_ERR_INVALID;
    size_t limit = (size_t)bus->set.message_max_bytes;
    /* Every header name is at least one byte: a count above the limit is
     * too large without reading (perhaps past) the array. */
    if (m->header_count > limit)
        return EB_ERR_TOO_LARGE;
    int rc = check_headers(m->headers, m->header_count);
    if (rc != 0)
        return rc;
    return fits(m, limit) ? 0 : EB_ERR_TOO_LARGE;
}

int eb__bus_publish_raw(eb_bus *bus, const eb_outgoing *out, int64_t timeout_ms,
                        void *token)
{
    if (!eb__bus_enter(bus))
        return EB_ERR_CLOSED;
    int rc = bus->tp->publish(bus->state, out, timeout_ms, token);
    eb__bus_leave(bus);
    if (rc == 0)
        atomic_fetch_add(&bus->count.published, 1);
    return rc;
}

int eb_publish(eb_bus *bus, const eb_outgoing *msg, eb_delivery_cb cb, void *opaque)
{
    if (!bus || !msg)
        return EB_ERR_INVALID;
    int rc = check_outgoing(bus, msg);
    if (rc != 0)
        return rc;
    /* Handlers and callbacks never wait: a full transport says so at once. */
    int64_t timeout_ms = eb__tls_callback_bus ? 0 : bus->set.publish_timeout_ms;
    void *token = NULL;
    if (cb && !(token = eb__delivery_token(bus, cb, opaque)))
        return EB_ERR_NOMEM;
    rc = eb__bus_publish_raw(bus, msg, timeout_ms, token);
    if (rc != 0 && token)
        eb__delivery_token_drop(bus, token);
    return rc;
}

int eb_flush(eb_bus *bus, int timeout_ms)
{
    if (!bus)
        return EB_ERR_INVALID;
    if (eb__tls_callback_bus == bus)
        return EB_ERR_BUSY;
    if (!eb__bus_enter(bus))
        return EB_ERR_CLOSED;
    int rc = bus->tp->flush(bus->state, eb__deadline_after_ms(timeout_ms));
    eb__bus_leave(bus);
    return rc;
}
