/*
 * fields.c — a message to stream-entry fields and back (see fields.h).
 */
#include "fields.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIELD_KEY "k"
#define FIELD_PAYLOAD "p"
#define HEADER_PREFIX "h:"
enum { HEADER_PREFIX_LEN = 2 };

int rd_xadd_build(rd_xadd *x, const char *stream, const eb_outgoing *m, const char *maxlen)
{
    *x = (rd_xadd){0};
    size_t most = 2 + 3 + 1 + 2 * (2 + m->header_count); /* XADD s [MAXLEN ~ n] * pairs */
    size_t names_size = 1;
    for (size_t i = 0; i < m->header_count; i++)
        names_size += HEADER_PREFIX_LEN + strlen(m->headers[i].name);
    /* One block: argv, then lens, then the names (no alignment gap:
     * pointers and size_t share theirs). */
    char *block = malloc(most * (sizeof *x->argv + sizeof *x->lens) + names_size);
    if (!block)
        return EB_ERR_NOMEM;
    x->argv = (const char **)(void *)block;
    x->lens = (size_t *)(void *)(block + most * sizeof *x->argv);
    x->names = block + most * (sizeof *x->argv + sizeof *x->lens);
#define ARG(p, n)                                                                  \
    do {                                                                           \
        x->argv[x->argc] = (p);                                                    \
        x->lens[x->argc] = (n);                                                    \
        x->argc++;                                                                 \
    } while (0)
    ARG("XADD", 4);
    ARG(stream, strlen(stream));
    if (maxlen && strcmp(maxlen, "0") != 0) {
        ARG("MAXLEN", 6);
        ARG("~", 1);
        ARG(maxlen, strlen(maxlen));
    }
    ARG("*", 1);
    if (m->key) {
        ARG(FIELD_KEY, 1);
        ARG(m->key_len ? (const char *)m->key : "", m->key_len);
    }
    char *name = x->names;
    for (size_t i = 0; i < m->header_count; i++) {
        size_t len = strlen(m->headers[i].name);
        memcpy(name, HEADER_PREFIX, HEADER_PREFIX_LEN);
        memcpy(name + HEADER_PREFIX_LEN, m->headers[i].name, len);
        ARG(name, HEADER_PREFIX_LEN + len);
        name += HEADER_PREFIX_LEN + len;
        const eb_header *h = &m->headers[i];
        ARG(h->value_len ? (const char *)h->value : "", h->value_len);
    }
    ARG(FIELD_PAYLOAD, 1);
    ARG(m->payload_len ? (const char *)m->payload : "", m->payload_len);
#undef ARG
    return 0;
}

void rd_xadd_free(rd_xadd *x)
{
    free(x->argv); /* the block that holds lens and names too */
    *x = (rd_xadd){0};
}

static int bad(char *err, size_t err_size, const char *why)
{
    if (err && err_size)
        snprintf(err, err_size, "a stream entry in an unexpected shape: %s", why);
    return EB_ERR_INVALID;
}

static bool is_string(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS;
}

int rd_entry_read(const redisReply *entry, rd_entry *out, char *err, size_t err_size)
{
    *out = (rd_entry){.payload = ""};
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
        !is_string(entry->element[0]))
        return bad(err, err_size, "not [id, fields]");
    out->id = entry->element[0]->str;
    const redisReply *fields = entry->element[1];
    if (fields->type == REDIS_REPLY_NIL)
        return EB_ERR_NOT_FOUND; /* a pending id whose entry was trimmed away */
    if (fields->type != REDIS_REPLY_ARRAY || fields->elements % 2 != 0)
        return bad(err, err_size, "fields are not pairs");
    size_t pairs = fields->elements / 2, n_headers = 0;
    for (size_t i = 0; i < fields->elements; i++)
        if (!is_string(fields->element[i]))
            return bad(err, err_size, "a field or value is not a string");
    for (size_t i = 0; i < pairs; i++) {
        const redisReply *f = fields->element[2 * i];
        bool key = f->len == 1 && f->str[0] == 'k';
        bool payload = f->len == 1 && f->str[0] == 'p';
        if (!key && !payload)
            n_headers++;
    }
    if (n_headers && !(out->headers = malloc(n_headers * sizeof *out->headers)))
        return EB_ERR_NOMEM;
    for (size_t i = 0; i < pairs; i++) {
        const redisReply *f = fields->element[2 * i], *v = fields->element[2 * i + 1];
        if (f->len == 1 && f->str[0] == 'k') {
            out->has_key = true;
            out->key = v->str;
            out->key_len = v->len;
        } else if (f->len == 1 && f->str[0] == 'p') {
            out->payload = v->str;
            out->payload_len = v->len;
        } else {
            bool ours = f->len > HEADER_PREFIX_LEN &&
                        memcmp(f->str, HEADER_PREFIX, HEADER_PREFIX_LEN) == 0;
            const char *name = ours ? f->str + HEADER_PREFIX_LEN : f->len ? f->str : "_";
            out->headers[out->header_count++] =
                (eb_header){.name = name, .value = v->str, .value_len = v->len};
        }
    }
    return 0;
}

void rd_entry_free(rd_entry *e)
{
    free(e->headers);
    *e = (rd_entry){0};
}
