/*
 * json_line.c — the JSON line format (see json_line.h): a message written
 * as one JSON object, and a line read back into a message, with jansson.
 *
 * Every byte field is written as text when jansson takes the bytes as a
 * string (it refuses invalid UTF-8), else as base64 under "<name>_b64".
 * Reading accepts either form of each field, never both.
 */
#include "json_line.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

/* ------------------------------------------------------------- writing */

/** Sets obj[name] to the bytes as text, or obj[name_b64] to their base64.
 *  @returns 0, or -1 when out of memory. */
static int put_bytes(json_t *obj, const char *name, const void *bytes, size_t len)
{
    json_t *text = json_stringn(len ? bytes : "", len);
    if (text)
        return json_object_set_new(obj, name, text);
    char field[32];
    snprintf(field, sizeof field, "%s_b64", name);
    char *b64 = malloc(base64_encoded_len(len) + 1);
    if (!b64)
        return -1;
    size_t b64_len = base64_encode(bytes, len, b64);
    int rc = json_object_set_new(obj, field, json_stringn(b64, b64_len));
    free(b64);
    return rc;
}

static json_t *encode_headers(const eb_header *headers, size_t n)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++) {
        json_t *h = json_object();
        if (!h || put_bytes(h, "name", headers[i].name, strlen(headers[i].name)) != 0 ||
            put_bytes(h, "value", headers[i].value, headers[i].value_len) != 0 ||
            json_array_append_new(list, h) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

char *json_line_encode(const json_message *m, size_t *len)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int rc = 0;
    if (m->topic)
        rc |= put_bytes(o, "topic", m->topic, strlen(m->topic));
    rc |= m->key ? put_bytes(o, "key", m->key, m->key_len)
                 : json_object_set_new(o, "key", json_null());
    rc |= json_object_set_new(o, "headers", encode_headers(m->headers, m->header_count));
    rc |= put_bytes(o, "payload", m->payload, m->payload_len);
    if (m->id)
        rc |= json_object_set_new(o, "id", json_string(m->id));
    if (m->attempt)
        rc |= json_object_set_new(o, "attempt", json_integer(m->attempt));
    char *line = rc == 0 ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (line)
        *len = strlen(line); /* NULs inside strings are escaped as \u0000 */
    return line;
}

/* ------------------------------------------------------------- reading */

typedef struct reader {
    unsigned char *next;         /* free room in the decoded arena */
    char *err;
    size_t err_size;
    const char *where;           /* "" or "header 3: " */
} reader;

static int refuse(reader *r, const char *fmt, const char *field)
{
    char phrase[256];
    snprintf(phrase, sizeof phrase, fmt, field);
    snprintf(r->err, r->err_size, "%s%s", r->where, phrase);
    return -1;
}

/**
 * Reads field `name` of obj, as text or under "<name>_b64" as base64.
 * `null_ok`: JSON null is allowed for the text form (*bytes NULL).
 * @returns 1 found, 0 absent, -1 refused (r->err filled).
 */
static int get_bytes(reader *r, json_t *obj, const char *name, bool null_ok,
                     const void **bytes, size_t *len)
{
    char b64_name[32];
    snprintf(b64_name, sizeof b64_name, "%s_b64", name);
    json_t *text = json_object_get(obj, name), *b64 = json_object_get(obj, b64_name);
    if (text && b64)
        return refuse(r, "both '%s' and its _b64 form", name);
    if (text && json_is_null(text) && null_ok) {
        *bytes = NULL;
        *len = 0;
        return 1;
    }
    if (text) {
        if (!json_is_string(text))
            return refuse(r, null_ok ? "'%s' is neither a string nor null"
                                     : "'%s' is not a string", name);
        *bytes = json_string_value(text);
        *len = json_string_length(text);
        return 1;
    }
    if (!b64)
        return 0;
    if (!json_is_string(b64))
        return refuse(r, "'%s' is not a string", b64_name);
    char why[160];
    size_t n;
    if (!base64_decode(json_string_value(b64), json_string_length(b64), r->next, &n, why,
                       sizeof why)) {
        char phrase[256];
        snprintf(phrase, sizeof phrase, "'%s' is not base64: %s", b64_name, why);
        return refuse(r, "%s", phrase);
    }
    *bytes = r->next;
    *len = n;
    r->next[n] = '\0'; /* names and topics are used as C strings */
    r->next += n + 1;
    return 1;
}

/** A name or topic: required, non-empty, no NUL. */
static int get_name(reader *r, json_t *obj, const char *field, const char **out)
{
    const void *bytes;
    size_t len;
    int found = get_bytes(r, obj, field, false, &bytes, &len);
    if (found < 0)
        return -1;
    if (found == 0) {
        *out = NULL;
        return 0;
    }
    if (len == 0)
        return refuse(r, "'%s' is empty", field);
    if (memchr(bytes, '\0', len))
        return refuse(r, "'%s' holds a NUL character", field);
    *out = bytes;
    return 1;
}

/** @returns whether every member of obj is one of the names in `allowed`
 *  (NULL-terminated); else refuses naming the first other one. */
static bool only_fields(reader *r, json_t *obj, const char *const *allowed)
{
    const char *name;
    json_t *value;
    json_object_foreach(obj, name, value) {
        (void)value;
        bool known = false;
        for (const char *const *a = allowed; *a && !known; a++)
            known = strcmp(name, *a) == 0;
        if (!known) {
            refuse(r, "unknown field '%s'", name);
            return false;
        }
    }
    return true;
}

static int decode_headers(reader *r, json_t *list, json_line *out)
{
    static const char *const fields[] = {"name", "name_b64", "value", "value_b64", NULL};
    size_t n = json_array_size(list);
    out->headers = calloc(n ? n : 1, sizeof *out->headers);
    if (!out->headers)
        return refuse(r, "%s", "out of memory");
    char where[32];
    for (size_t i = 0; i < n; i++) {
        snprintf(where, sizeof where, "header %zu: ", i + 1);
        r->where = where;
        json_t *h = json_array_get(list, i);
        if (!json_is_object(h))
            return refuse(r, "%s", "not an object");
        if (!only_fields(r, h, fields))
            return -1;
        eb_header *eh = &out->headers[i];
        int found = get_name(r, h, "name", &eh->name);
        if (found == 0)
            return refuse(r, "%s", "no 'name'");
        if (found < 0)
            return -1;
        found = get_bytes(r, h, "value", false, &eh->value, &eh->value_len);
        if (found == 0)
            return refuse(r, "%s", "no 'value'");
        if (found < 0)
            return -1;
    }
    r->where = "";
    out->msg.headers = out->headers;
    out->msg.header_count = n;
    return 0;
}

static int decode_object(reader *r, json_t *o, json_line *out)
{
    static const char *const fields[] = {"topic", "topic_b64", "key", "key_b64", "headers",
                                         "payload", "payload_b64", "id", "attempt", NULL};
    json_message *m = &out->msg;
    if (!only_fields(r, o, fields) || get_name(r, o, "topic", &m->topic) < 0 ||
        get_bytes(r, o, "key", true, &m->key, &m->key_len) < 0)
        return -1;
    if (get_bytes(r, o, "payload", false, &m->payload, &m->payload_len) < 0)
        return -1;
    json_t *headers = json_object_get(o, "headers");
    if (headers && !json_is_array(headers))
        return refuse(r, "%s", "'headers' is not a list");
    if (headers && decode_headers(r, headers, out) < 0)
        return -1;
    json_t *id = json_object_get(o, "id"), *attempt = json_object_get(o, "attempt");
    if (id && !json_is_string(id))
        return refuse(r, "%s", "'id' is not a string");
    if (attempt && !json_is_integer(attempt))
        return refuse(r, "%s", "'attempt' is not a whole number");
    return 0;
}

int json_line_decode(const char *line, size_t len, json_line *out, char *err,
                     size_t err_size)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    out->root = json_loadb(line, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
    if (!out->root) {
        snprintf(err, err_size, "not JSON: %s (at byte %d)", jerr.text, jerr.position);
        return -1;
    }
    if (!json_is_object(out->root)) {
        snprintf(err, err_size, "not a JSON object");
        json_line_free(out);
        return -1;
    }
    /* Each string's bytes are at most its JSON text less its two quotes,
     * and base64 gives 3 bytes per 4 characters: every _b64 field decoded
     * with its NUL fits in the line's length. */
    out->decoded = malloc(len + 1);
    reader r = {.next = out->decoded, .err = err, .err_size = err_size, .where = ""};
    if (!out->decoded || decode_object(&r, out->root, out) < 0) {
        if (!out->decoded)
            snprintf(err, err_size, "out of memory");
        json_line_free(out);
        return -1;
    }
    return 0;
}

void json_line_free(json_line *line)
{
    json_decref(line->root);
    free(line->headers);
    free(line->decoded);
    memset(line, 0, sizeof *line);
}
