/*
 * line_reader.h — lines of any length from a file descriptor (pub's
 * stdin), a read that a stop request ends at once: it waits in poll() on
 * the input and on a wake descriptor (the read end of a pipe that the
 * signal thread writes to).
 */
#ifndef EB_LINE_READER_H
#define EB_LINE_READER_H

#include <stdbool.h>
#include <stddef.h>

typedef struct line_reader {
    int fd, wake_fd;            /* wake_fd: readable means stop (-1: none) */
    char *buf;
    size_t start, len, cap;     /* unread bytes: buf[start, len) */
    size_t scanned;             /* buf[start, scanned) holds no newline */
    bool eof;
} line_reader;

/** Reads `fd`, stopping when `wake_fd` becomes readable. */
void line_reader_init(line_reader *r, int fd, int wake_fd);
void line_reader_free(line_reader *r);

enum { LINE_OK = 1, LINE_END = 0, LINE_ERROR = -1, LINE_WOKEN = -2 };

/**
 * The next line, without its newline (a last line without one counts),
 * in *line / *len: valid until the next call, not NUL-terminated.
 * @returns LINE_OK; LINE_END at the end of the input; LINE_ERROR (errno
 *          set) when reading failed or memory ran out; LINE_WOKEN when
 *          wake_fd became readable (what was not read stays unread).
 */
int line_reader_next(line_reader *r, const char **line, size_t *len);

#endif
