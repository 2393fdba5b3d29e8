/*
 * json_line.h — the JSON line format of `eventbus pub --format json` and
 * `eventbus sub --format json`: one message per line, one object:
 *
 *   {"topic": s, "key": null | s, "key_b64": s,
 *    "headers": [{"name": s, "value": s | "value_b64": s}, ...],
 *    "payload": s | "payload_b64": s, "id": s, "attempt": n}
 *
 * Bytes that are valid UTF-8 are written as a JSON string ("key",
 * "value", "payload"), any others in base64 ("key_b64", ...). A null key
 * (no key) differs from an empty one. Headers are an ordered list and
 * duplicates are kept; a header name that is not valid UTF-8 is written
 * as "name_b64". On reading, "id" and "attempt" are accepted and ignored
 * (the transport gives new ones), a missing "topic" is left to the
 * caller, a missing key is no key, missing headers none, a missing
 * payload an empty one; anything else (an unknown field, a field of the
 * wrong type, a text and a base64 form of one field, bad base64, a header
 * name that is empty or holds a NUL) refuses the line.
 */
#ifndef EB_TOOLS_JSON_LINE_H
#define EB_TOOLS_JSON_LINE_H

#include <stddef.h>
#include <stdint.h>

#include "eventbus/eventbus.h"

/** One message as the format carries it. Pointers are borrowed. */
typedef struct json_message {
    const char *topic;           /**< NULL: none (left out when writing) */
    const void *key;             /**< NULL: no key; else key_len bytes */
    size_t key_len;
    const void *payload;         /**< payload_len bytes (NULL when 0) */
    size_t payload_len;
    const eb_header *headers;    /**< header_count of them, in order */
    size_t header_count;
    const char *id;              /**< NULL: left out */
    uint32_t attempt;            /**< 0: left out */
} json_message;

/**
 * Writes `m` as one line (no newline) into a new string of *len bytes
 * (free with free()). @returns NULL only when out of memory.
 */
char *json_line_encode(const json_message *m, size_t *len);

/** A line read back: `msg` points into memory this owns. */
typedef struct json_line {
    json_message msg;
    struct json_t *root;         /* the parsed object (text fields) */
    eb_header *headers;          /* msg.headers */
    unsigned char *decoded;      /* every _b64 field's bytes */
} json_line;

/**
 * Parses one line (`len` bytes, no newline; NULs allowed) into `out`.
 * @returns 0; or -1 with a phrase in `err` saying what is wrong with the
 *          line ("not JSON: ... at column 12", "header 2: 'value_b64' is
 *          not base64: ..."), `out` then needing no json_line_free().
 */
int json_line_decode(const char *line, size_t len, json_line *out, char *err,
                     size_t err_size);

/** Frees what json_line_decode() filled in. */
void json_line_free(json_line *line);

#endif
