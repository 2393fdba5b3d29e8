/*
 * url.c — parsing `redis.url` (see url.h). Percent-encoding is decoded in
 * the user and password (so a password may hold ':', '@' or '/').
 */
#include "url.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char SUPPORTED[] =
    "supported: redis://[[user]:password@]host[:port][/db] and unix:///path[?db=N]";

static int fail(char *err, size_t err_size, const char *fmt, ...)
{
    if (err && err_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int hex_value(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/** Copies [from, from+len) into out (size out_size) decoding %XX.
 *  @returns false when malformed or too long. */
static bool decode(const char *from, size_t len, char *out, size_t out_size)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = from[i];
        if (c == '%') {
            if (i + 2 >= len)
                return false;
            int a = hex_value(from[i + 1]), b = hex_value(from[i + 2]);
            if (a < 0 || b < 0)
                return false;
            c = (char)(a * 16 + b);
            i += 2;
        }
        if (n + 1 >= out_size)
            return false;
        out[n++] = c;
    }
    out[n] = '\0';
    return true;
}

/** A decimal in [min, max] filling [from, from+len). */
static bool parse_int(const char *from, size_t len, long min, long max, int *out)
{
    if (len == 0 || len > 10)
        return false;
    char buf[16];
    memcpy(buf, from, len);
    buf[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if (!isdigit((unsigned char)buf[i]))
            return false;
    errno = 0;
    long v = strtol(buf, NULL, 10);
    if (errno || v < min || v > max)
        return false;
    *out = (int)v;
    return true;
}

static int parse_unix(const char *text, const char *path, rd_url *u, char *err,
                      size_t err_size)
{
    if (path[0] != '/')
        return fail(err, err_size, "redis.url '%s': a unix socket needs an absolute path (%s)",
                    text, SUPPORTED);
    const char *query = strchr(path, '?');
    size_t len = query ? (size_t)(query - path) : strlen(path);
    if (len >= sizeof u->unix_path)
        return fail(err, err_size, "the socket path is longer than %zu bytes",
                    sizeof u->unix_path - 1);
    memcpy(u->unix_path, path, len);
    u->unix_path[len] = '\0';
    if (query) {
        const char *q = query + 1;
        if (strncmp(q, "db=", 3) != 0 || !parse_int(q + 3, strlen(q + 3), 0, 1000000, &u->db))
            return fail(err, err_size,
                        "redis.url '%s': the only query a unix socket URL takes is ?db=N (%s)",
                        text, SUPPORTED);
    }
    snprintf(u->display, sizeof u->display, "%s", text);
    return 0;
}

int rd_url_parse(const char *text, rd_url *out, char *err, size_t err_size)
{
    rd_url u = {.port = 6379};
    if (!text || !*text)
        return fail(err, err_size, "redis.url is empty (%s)", SUPPORTED);
    if (strlen(text) >= RD_URL_MAX)
        return fail(err, err_size, "redis.url is longer than %d bytes", RD_URL_MAX - 1);
    if (strncmp(text, "rediss://", 9) == 0)
        return fail(err, err_size,
                    "rediss:// (TLS) is not supported: hiredis 0.14 has no TLS (%s)",
                    SUPPORTED);
    if (strncmp(text, "unix://", 7) == 0) {
        if (parse_unix(text, text + 7, &u, err, err_size) != 0)
            return -1;
        *out = u;
        return 0;
    }
    if (strncmp(text, "redis://", 8) != 0) {
        const char *colon = strstr(text, "://"); /* the rest may hold a password */
        if (!colon || colon - text > 32)
            return fail(err, err_size, "redis.url has no scheme (%s)", SUPPORTED);
        return fail(err, err_size, "scheme '%.*s' is not supported (%s)",
                    (int)(colon - text), text, SUPPORTED);
    }
    const char *p = text + 8;
    const char *end = p + strlen(p);
    const char *slash = strchr(p, '/');
    const char *authority_end = slash ? slash : end;
    /* userinfo: the last '@' before the path (a password may hold '@' only
     * percent-encoded, but be lenient about a raw one). */
    const char *at = NULL;
    for (const char *c = p; c < authority_end; c++)
        if (*c == '@')
            at = c;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *user_end = colon ? colon : at;
        if (!decode(p, (size_t)(user_end - p), u.user, sizeof u.user))
            return fail(err, err_size, "the user name is malformed or too long (%s)",
                        SUPPORTED);
        if (colon) {
            if (!decode(colon + 1, (size_t)(at - colon - 1), u.password, sizeof u.password))
                return fail(err, err_size,
                            "the password is malformed or too long (%s)", SUPPORTED);
            u.has_password = true;
        } else if (u.user[0]) {
            return fail(err, err_size,
                        "a user without a password ('user@host'); write "
                        "'user:password@host' (%s)",
                        SUPPORTED);
        }
        p = at + 1;
    }
    const char *host_end = authority_end;
    const char *port_colon = NULL;
    if (*p == '[')
        return fail(err, err_size, "IPv6 literal hosts are not supported (%s)",
                    SUPPORTED);
    port_colon = memchr(p, ':', (size_t)(authority_end - p));
    if (port_colon) {
        host_end = port_colon;
        if (!parse_int(port_colon + 1, (size_t)(authority_end - port_colon - 1), 1, 65535,
                       &u.port))
            return fail(err, err_size, "the port is not a number from 1 to 65535 (%s)",
                        SUPPORTED);
    }
    size_t host_len = (size_t)(host_end - p);
    if (host_len == 0)
        return fail(err, err_size, "no host (%s)", SUPPORTED);
    if (host_len >= sizeof u.host)
        return fail(err, err_size, "the host name is too long");
    memcpy(u.host, p, host_len);
    u.host[host_len] = '\0';
    if (slash && slash[1] != '\0' &&
        !parse_int(slash + 1, strlen(slash + 1), 0, 1000000, &u.db))
        return fail(err, err_size, "the database '%s' is not a number (%s)", slash + 1,
                    SUPPORTED);
    if (u.has_password)
        snprintf(u.display, sizeof u.display, "redis://%s:***@%s:%d/%d", u.user, u.host, u.port,
                 u.db);
    else
        snprintf(u.display, sizeof u.display, "redis://%s:%d/%d", u.host, u.port, u.db);
    *out = u;
    return 0;
}
