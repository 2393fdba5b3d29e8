/*
 * json_out.c — see json_out.h.
 */
#include "json_out.h"

#include <stdarg.h>
#include <stdio.h>

void eb_json_printf(eb_json_out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->len < o->size ? o->size - o->len : 0;
    int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

void eb_json_string(eb_json_out *o, const char *s)
{
    eb_json_printf(o, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            eb_json_printf(o, "\\%c", c);
        else if (c < 0x20)
            eb_json_printf(o, "\\u%04x", c);
        else
            eb_json_printf(o, "%c", c);
    }
    eb_json_printf(o, "\"");
}
