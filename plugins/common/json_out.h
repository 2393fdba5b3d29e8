/*
 * json_out.h — appending to a JSON text in a caller's buffer the way
 * snprintf does (the length counts what did not fit, so a caller can size
 * a buffer with a first call on NULL/0): the stats slot of a transport.
 */
#ifndef EB_JSON_OUT_H
#define EB_JSON_OUT_H

#include <stddef.h>

typedef struct eb_json_out {
    char *buf;
    size_t size, len;
} eb_json_out;

/** Appends printf-style text. */
void eb_json_printf(eb_json_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** Appends `s` as a JSON string, quotes and escapes included. */
void eb_json_string(eb_json_out *o, const char *s);

#endif
