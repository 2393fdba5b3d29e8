/*
 * line_reader.c — see line_reader.h. The buffer doubles when a line does
 * not fit; a newline is searched for only in bytes not searched before,
 * so a long line costs linear time.
 */
#include "line_reader.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { FIRST_CAP = 64 * 1024 };

void line_reader_init(line_reader *r, int fd, int wake_fd)
{
    *r = (line_reader){.fd = fd, .wake_fd = wake_fd};
}

void line_reader_free(line_reader *r)
{
    free(r->buf);
    r->buf = NULL;
}

/** Makes room to read more: the unread bytes move to the front, and the
 *  buffer doubles when they fill it. */
static bool make_room(line_reader *r)
{
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->len - r->start);
        r->len -= r->start;
        r->scanned -= r->start;
        r->start = 0;
    }
    if (r->len < r->cap)
        return true;
    size_t cap = r->cap ? r->cap * 2 : FIRST_CAP;
    char *buf = realloc(r->buf, cap);
    if (!buf)
        return false;
    r->buf = buf;
    r->cap = cap;
    return true;
}

/** Waits until the input or the wake descriptor is readable. @returns
 *  LINE_OK (input), LINE_WOKEN, or LINE_ERROR. */
static int wait_input(line_reader *r)
{
    struct pollfd p[2] = {{.fd = r->fd, .events = POLLIN}, {.fd = r->wake_fd, .events = POLLIN}};
    for (;;) {
        int n = poll(p, r->wake_fd >= 0 ? 2 : 1, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return LINE_ERROR;
        if (r->wake_fd >= 0 && p[1].revents)
            return LINE_WOKEN;
        return LINE_OK; /* readable, at its end, or failed: read() says which */
    }
}

int line_reader_next(line_reader *r, const char **line, size_t *len)
{
    for (;;) {
        char *nl = r->len > r->scanned ? memchr(r->buf + r->scanned, '\n', r->len - r->scanned)
                                        : NULL;
        if (nl) {
            *line = r->buf + r->start;
            *len = (size_t)(nl - *line);
            r->start = r->scanned = (size_t)(nl - r->buf) + 1;
            return LINE_OK;
        }
        r->scanned = r->len;
        if (r->eof) {
            if (r->start == r->len)
                return LINE_END;
            *line = r->buf + r->start;
            *len = r->len - r->start;
            r->start = r->scanned = r->len;
            return LINE_OK;
        }
        if (!make_room(r)) {
            errno = ENOMEM;
            return LINE_ERROR;
        }
        int rc = wait_input(r);
        if (rc != LINE_OK)
            return rc;
        ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return LINE_ERROR;
        if (n == 0)
            r->eof = true;
        r->len += (size_t)n;
    }
}
