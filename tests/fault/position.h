/*
 * position.h — where a transport stored a message, read from its id: the
 * lane (a Kafka or memory partition; 0 for a Redis stream, one per topic)
 * and the place in the lane, which orders the lane's messages. An offset
 * ("3@1024") is one number; a Redis stream id ("0@1700000000000-5") is a
 * pair (milliseconds, sequence) compared as a pair. Positions are only
 * compared, never counted with (gaps exist).
 */
#ifndef FAULT_POSITION_H
#define FAULT_POSITION_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct fault_pos {
    int32_t lane;          /* -1: not known */
    int64_t major;         /* the offset, or a stream id's milliseconds */
    int64_t minor;         /* a stream id's sequence; 0 for an offset */
    bool stream_id;        /* written "ms-seq" */
} fault_pos;

static inline fault_pos fault_pos_unknown(void)
{
    return (fault_pos){.lane = -1, .major = -1, .minor = -1};
}

static inline bool fault_pos_known(fault_pos p) { return p.lane >= 0; }

static inline bool fault_pos_number(const char *text, char **end, int64_t *out)
{
    errno = 0;
    long long v = strtoll(text, end, 10);
    if (errno || *end == text || v < 0 || text[0] == '-' || text[0] == '+')
        return false;
    *out = v;
    return true;
}

/** Reads "<lane>@<offset>" or "<lane>@<ms>-<seq>". @returns false (and
 *  *out unknown) for anything else. */
static inline bool fault_pos_parse(const char *id, fault_pos *out)
{
    *out = fault_pos_unknown();
    if (!id)
        return false;
    char *end;
    int64_t lane, major, minor = 0;
    if (!fault_pos_number(id, &end, &lane) || *end != '@' || lane > INT32_MAX ||
        !fault_pos_number(end + 1, &end, &major))
        return false;
    bool stream_id = *end == '-';
    if (stream_id && !fault_pos_number(end + 1, &end, &minor))
        return false;
    if (*end != '\0')
        return false;
    *out = (fault_pos){(int32_t)lane, major, minor, stream_id};
    return true;
}

/** <0, 0, >0 as a is before, at or after b (lane first). */
static inline int fault_pos_cmp(fault_pos a, fault_pos b)
{
    if (a.lane != b.lane)
        return a.lane < b.lane ? -1 : 1;
    if (a.major != b.major)
        return a.major < b.major ? -1 : 1;
    return a.minor < b.minor ? -1 : a.minor > b.minor;
}

/** Writes p as the transport wrote it ("?" when unknown). */
static inline const char *fault_pos_text(fault_pos p, char *buf, size_t size)
{
    if (!fault_pos_known(p))
        snprintf(buf, size, "?");
    else if (p.stream_id)
        snprintf(buf, size, "%d@%lld-%lld", p.lane, (long long)p.major, (long long)p.minor);
    else
        snprintf(buf, size, "%d@%lld", p.lane, (long long)p.major);
    return buf;
}

enum { FAULT_POS_TEXT = 64 };

#endif
