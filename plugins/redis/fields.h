/*
 * fields.h — how a message is laid out in a stream entry, both ways.
 *
 * The layout (field, value pairs in this order; Redis keeps the order and
 * duplicate fields of an entry):
 *   k        the key, when the message has one (absent: no key; present
 *            and empty: the empty key)
 *   h:NAME   one pair per header, in order, duplicates kept (NAME and the
 *            value are bytes: anything but a NAME with a NUL)
 *   p        the payload (always written, possibly empty)
 * Any field of an entry another program wrote that is none of these
 * (`redis-cli XADD s '*' f v`) becomes a header named after the field, in
 * its place in the order (an empty field name: header `_`; a name is read
 * up to a NUL in it); an entry without `p` has an empty payload. So every
 * entry is read whole.
 */
#ifndef EB_REDIS_FIELDS_H
#define EB_REDIS_FIELDS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#include "eventbus/eventbus.h"

/** An XADD command's arguments, pointing into the message and `names`. */
typedef struct rd_xadd {
    const char **argv;       /* one allocation holds argv, lens and names */
    size_t *lens;
    size_t argc;
    char *names;             /* the "h:NAME" fields */
} rd_xadd;

/**
 * Builds `XADD <stream> [MAXLEN ~ <maxlen>] * <fields>` for `m` (maxlen 0:
 * no trimming). The message must outlive the arguments.
 * @returns 0, or EB_ERR_NOMEM.
 */
int rd_xadd_build(rd_xadd *x, const char *stream, const eb_outgoing *m, const char *maxlen);

void rd_xadd_free(rd_xadd *x);

/** A message read from an entry; every pointer is into the reply. */
typedef struct rd_entry {
    const char *id;          /* the entry id, "1700000000000-0" */
    bool has_key;
    const char *key;
    size_t key_len;
    const char *payload;
    size_t payload_len;
    eb_header *headers;      /* malloc'd (NULL when none) */
    size_t header_count;
} rd_entry;

/**
 * Reads one entry of an XRANGE/XREAD/XREADGROUP reply: an array of [id,
 * [field, value, ...]]. @returns 0; EB_ERR_INVALID when the reply is not
 * shaped so (with a sentence in err) — a deleted entry (nil fields, as
 * XREADGROUP reports a pending id trimmed away) is EB_ERR_NOT_FOUND;
 * EB_ERR_NOMEM.
 */
int rd_entry_read(const redisReply *entry, rd_entry *out, char *err, size_t err_size);

void rd_entry_free(rd_entry *e);

#endif
