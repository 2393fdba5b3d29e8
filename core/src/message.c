/*
 * message.c — the accessors of a received message, and eb_msg_copy(), which
 * packs a message and everything it points to into one allocation.
 */
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "dispatch.h"

uint32_t eb__msg_attempt(const eb_msg *m)
{
    uint32_t transport_extra = m->delivery_count > 1 ? m->delivery_count - 1 : 0;
    return m->core.attempts + transport_extra;
}

const char *eb_msg_topic(const eb_msg *msg) { return msg ? msg->topic : NULL; }

const void *eb_msg_key(const eb_msg *msg, size_t *len)
{
    if (len)
        *len = msg && msg->key ? msg->key_len : 0;
    return msg ? msg->key : NULL;
}

const void *eb_msg_payload(const eb_msg *msg, size_t *len)
{
    if (len)
        *len = msg ? msg->payload_len : 0;
    return msg ? msg->payload : NULL;
}

size_t eb_msg_header_count(const eb_msg *msg) { return msg ? msg->header_count : 0; }

int eb_msg_header(const eb_msg *msg, size_t index, const char **name,
                  const void **value, size_t *value_len)
{
    if (!msg || index >= msg->header_count)
        return EB_ERR_INVALID;
    const eb_header *h = &msg->headers[index];
    if (name)
        *name = h->name;
    if (value)
        *value = h->value;
    if (value_len)
        *value_len = h->value_len;
    return 0;
}

int eb_msg_header_find(const eb_msg *msg, const char *name, const void **value,
                       size_t *value_len)
{
    if (!msg || !name)
        return EB_ERR_INVALID;
    for (size_t i = msg->header_count; i-- > 0;) {
        if (strcmp(msg->headers[i].name, name) == 0)
            return eb_msg_header(msg, i, NULL, value, value_len);
    }
    return EB_ERR_NOT_FOUND;
}

const char *eb_msg_id(const eb_msg *msg) { return msg && msg->id ? msg->id : ""; }

int64_t eb_msg_timestamp_ms(const eb_msg *msg) { return msg ? msg->timestamp_ms : 0; }

uint32_t eb_msg_attempt(const eb_msg *msg) { return msg ? eb__msg_attempt(msg) : 0; }

/* --------------------------------------------------------------- copies */

typedef struct packer {
    char *at;
} packer;

static const void *pack(packer *p, const void *src, size_t len, bool terminate)
{
    void *dst = p->at;
    if (len)
        memcpy(dst, src, len);
    p->at += len;
    if (terminate)
        *p->at++ = '\0';
    return dst;
}

/* Adds `len` to `*total`; false when the sum does not fit a size_t. */
static bool add_size(size_t *total, size_t len)
{
    return !__builtin_add_overflow(*total, len, total);
}

/** The bytes of one allocation holding `m` and everything it points to.
 *  @returns false when they do not fit a size_t: lengths that wrap the
 *  sum would make the copy write past a short allocation. */
static bool copy_size(const eb_msg *m, size_t *out)
{
    size_t n;
    bool ok = !__builtin_mul_overflow(m->header_count, sizeof(eb_header), &n) &&
              add_size(&n, sizeof(eb_msg)) && add_size(&n, strlen(m->topic) + 1) &&
              add_size(&n, m->key_len) && add_size(&n, m->payload_len) &&
              add_size(&n, 1) && add_size(&n, (m->id ? strlen(m->id) : 0) + 1);
    for (size_t i = 0; ok && i < m->header_count; i++)
        ok = add_size(&n, strlen(m->headers[i].name) + 1) &&
             add_size(&n, m->headers[i].value_len);
    *out = n;
    return ok;
}

int eb_msg_copy(const eb_msg *msg, eb_msg **out)
{
    if (!msg || !out)
        return EB_ERR_INVALID;
    size_t size;
    if (!copy_size(msg, &size))
        return EB_ERR_INVALID;
    eb_msg *c = malloc(size);
    if (!c)
        return EB_ERR_NOMEM;
    *c = *msg;
    c->core = (eb_msg_core){.attempts = msg->core.attempts, .flags = EB_MSGF_COPY};
    eb_header *h = (eb_header *)(c + 1);
    packer p = {.at = (char *)(h + msg->header_count)};
    for (size_t i = 0; i < msg->header_count; i++) {
        const eb_header *src = &msg->headers[i];
        h[i].name = pack(&p, src->name, strlen(src->name), true);
        h[i].value = pack(&p, src->value, src->value_len, false);
        h[i].value_len = src->value_len;
    }
    c->headers = h;
    c->topic = pack(&p, msg->topic, strlen(msg->topic), true);
    c->key = msg->key ? pack(&p, msg->key, msg->key_len, false) : NULL;
    c->payload = pack(&p, msg->payload, msg->payload_len, true);
    c->id = pack(&p, msg->id ? msg->id : "", msg->id ? strlen(msg->id) : 0, true);
    *out = c;
    return 0;
}

void eb_msg_destroy(eb_msg *msg)
{
    if (msg && (msg->core.flags & EB_MSGF_COPY))
        free(msg);
}
