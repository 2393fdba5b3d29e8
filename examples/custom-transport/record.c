/*
 * record.c — dirlog's record format (see dirlog.h): encoding a message as
 * one frame, checking and decoding a frame read back, finding the next
 * sound frame after a damaged one, and escaping names into file names.
 */
#include "dirlog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { BODY_FIXED = 20 };   /* timestamp, key length, header count, payload length */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint32_t fnv1a32(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* --------------------------------------------------------------- encoding */

static bool add_size(size_t *total, size_t n)
{
    return !__builtin_add_overflow(*total, n, total);
}

/** The body's length. @returns false when it does not fit a size_t. */
static bool body_size(const eb_outgoing *m, size_t *out)
{
    size_t n = BODY_FIXED;
    bool ok = add_size(&n, m->key ? m->key_len : 0) && add_size(&n, m->payload_len);
    for (size_t i = 0; ok && i < m->header_count; i++)
        ok = add_size(&n, 8 + strlen(m->headers[i].name) + 1) &&
             add_size(&n, m->headers[i].value_len);
    *out = n;
    return ok;
}

static uint8_t *put_bytes(uint8_t *p, const void *bytes, size_t n)
{
    if (n)
        memcpy(p, bytes, n);
    return p + n;
}

int dl_frame_encode(const eb_outgoing *m, int64_t timestamp_ms, uint8_t **out,
                    size_t *out_len)
{
    size_t body;
    /* Under DL_BODY_MAX every length below fits a u32, and a key's is
     * never DL_NO_KEY. */
    if (!body_size(m, &body) || body > DL_BODY_MAX)
        return EB_ERR_TOO_LARGE;
    uint8_t *frame = malloc(DL_FRAME_HEAD + body);
    if (!frame)
        return EB_ERR_NOMEM;
    uint8_t *p = frame + DL_FRAME_HEAD;
    put_u32(p, (uint32_t)(uint64_t)timestamp_ms);
    put_u32(p + 4, (uint32_t)((uint64_t)timestamp_ms >> 32));
    put_u32(p + 8, m->key ? (uint32_t)m->key_len : DL_NO_KEY);
    put_u32(p + 12, (uint32_t)m->header_count);
    put_u32(p + 16, (uint32_t)m->payload_len);
    p = put_bytes(p + BODY_FIXED, m->key, m->key ? m->key_len : 0);
    for (size_t i = 0; i < m->header_count; i++) {
        const eb_header *h = &m->headers[i];
        size_t name_len = strlen(h->name);
        put_u32(p, (uint32_t)name_len);
        put_u32(p + 4, (uint32_t)h->value_len);
        p = put_bytes(p + 8, h->name, name_len + 1); /* with its NUL */
        p = put_bytes(p, h->value, h->value_len);
    }
    put_bytes(p, m->payload, m->payload_len);
    put_u32(frame, DL_FRAME_MAGIC);
    put_u32(frame + 4, (uint32_t)body);
    put_u32(frame + 8, fnv1a32(frame + DL_FRAME_HEAD, body));
    *out = frame;
    *out_len = DL_FRAME_HEAD + body;
    return 0;
}

/* --------------------------------------------------------------- decoding */

/** Do the body's lengths add up exactly, each header name non-empty,
 *  without a NUL, and followed by one? */
static bool body_sound(const uint8_t *b, uint64_t len)
{
    uint64_t key_len = get_u32(b + 8), count = get_u32(b + 12);
    uint64_t at = BODY_FIXED + (key_len == DL_NO_KEY ? 0 : key_len);
    for (uint64_t i = 0; i < count; i++) {
        if (at + 8 > len)
            return false;
        uint64_t name_len = get_u32(b + at), value_len = get_u32(b + at + 4);
        at += 8;
        if (name_len == 0 || at + name_len + 1 + value_len > len ||
            memchr(b + at, '\0', name_len) || b[at + name_len] != '\0')
            return false;
        at += name_len + 1 + value_len;
    }
    return at + get_u32(b + 16) == len;
}

dl_frame_state dl_frame_check(const uint8_t *buf, size_t avail, size_t *frame_len)
{
    uint8_t magic[4];
    put_u32(magic, DL_FRAME_MAGIC);
    *frame_len = DL_FRAME_HEAD;
    if (avail < DL_FRAME_HEAD)
        return memcmp(buf, magic, avail < 4 ? avail : 4) == 0 ? DL_FRAME_SHORT
                                                               : DL_FRAME_BAD;
    uint32_t body = get_u32(buf + 4);
    if (get_u32(buf) != DL_FRAME_MAGIC || body < BODY_FIXED || body > DL_BODY_MAX)
        return DL_FRAME_BAD;
    *frame_len = DL_FRAME_HEAD + (size_t)body;
    if (avail < *frame_len)
        return DL_FRAME_SHORT;
    if (fnv1a32(buf + DL_FRAME_HEAD, body) != get_u32(buf + 8) ||
        !body_sound(buf + DL_FRAME_HEAD, body))
        return DL_FRAME_BAD;
    return DL_FRAME_OK;
}

size_t dl_frame_header_count(const uint8_t *frame)
{
    return get_u32(frame + DL_FRAME_HEAD + 12);
}

void dl_frame_decode(const uint8_t *frame, eb_msg *msg, eb_header *headers)
{
    const uint8_t *b = frame + DL_FRAME_HEAD;
    uint32_t key_len = get_u32(b + 8);
    size_t count = get_u32(b + 12);
    msg->timestamp_ms = (int64_t)((uint64_t)get_u32(b) | (uint64_t)get_u32(b + 4) << 32);
    const uint8_t *p = b + BODY_FIXED;
    msg->key = key_len == DL_NO_KEY ? NULL : p;
    msg->key_len = key_len == DL_NO_KEY ? 0 : key_len;
    p += msg->key_len;
    for (size_t i = 0; i < count; i++) {
        uint32_t name_len = get_u32(p), value_len = get_u32(p + 4);
        headers[i].name = (const char *)(p + 8);
        headers[i].value = p + 8 + name_len + 1;
        headers[i].value_len = value_len;
        p += 8 + name_len + 1 + value_len;
    }
    msg->headers = count ? headers : NULL;
    msg->header_count = count;
    msg->payload = p;
    msg->payload_len = get_u32(b + 16);
}

/* ------------------------------------------------------------------ resync */

bool dl_frame_sound_at(int fd, uint64_t pos, uint64_t end)
{
    uint8_t head[DL_FRAME_HEAD];
    size_t len;
    if (pread(fd, head, sizeof head, (off_t)pos) != (ssize_t)sizeof head ||
        dl_frame_check(head, sizeof head, &len) != DL_FRAME_SHORT || pos + len > end)
        return false;
    uint8_t *frame = malloc(len);
    bool sound = frame && pread(fd, frame, len, (off_t)pos) == (ssize_t)len &&
                 dl_frame_check(frame, len, &len) == DL_FRAME_OK;
    free(frame);
    return sound;
}

uint64_t dl_frame_find(int fd, uint64_t from, uint64_t end)
{
    enum { CHUNK = 64 * 1024 };
    uint8_t magic[4];
    put_u32(magic, DL_FRAME_MAGIC);
    uint8_t *chunk = malloc(CHUNK);
    if (!chunk)
        return from; /* the frame before `from` is bad anyway: look again later */
    uint64_t pos = from;
    while (pos + 4 <= end) {
        size_t want = end - pos < CHUNK ? (size_t)(end - pos) : CHUNK;
        ssize_t got = pread(fd, chunk, want, (off_t)pos);
        if (got < 4)
            break;
        for (uint8_t *hit = chunk; (hit = memmem(hit, (size_t)got - (size_t)(hit - chunk),
                                                 magic, 4)); hit++) {
            uint64_t at = pos + (uint64_t)(hit - chunk);
            if (dl_frame_sound_at(fd, at, end)) {
                free(chunk);
                return at;
            }
        }
        pos += (uint64_t)got - 3; /* a magic may straddle two chunks */
    }
    free(chunk);
    return end;
}

/* -------------------------------------------------------------- file names */

static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool plain_byte(unsigned char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || (c == '.' && !first);
}

void dl_file_name(const char *name, char out[DL_FILE_NAME_SIZE])
{
    enum { KEEP_MAX = 180, CUT_AT = 160 };
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0, cut = 0;
    const unsigned char *p = (const unsigned char *)name;
    for (; *p; p++) {
        bool plain = plain_byte(*p, p == (const unsigned char *)name);
        if (n + (plain ? 1 : 3) > KEEP_MAX)
            break;
        if (n <= CUT_AT)
            cut = n;
        if (plain) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    if (*p) /* too long: a prefix and the hash of the whole name */
        n = cut + (size_t)snprintf(out + cut, DL_FILE_NAME_SIZE - cut, "~%016llx",
                                   (unsigned long long)fnv1a64(name));
    out[n] = '\0';
}
