/*
 * base64.c — standard base64, encoded and strictly decoded (see base64.h).
 */
#include "base64.h"

#include <stdint.h>
#include <stdio.h>

static const char ALPHABET[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encoded_len(size_t len) { return (len + 2) / 3 * 4; }

size_t base64_decoded_max(size_t len) { return len / 4 * 3 + 3; }

size_t base64_encode(const void *data, size_t len, char *out)
{
    const unsigned char *in = data;
    char *at = out;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *at++ = ALPHABET[v >> 18];
        *at++ = ALPHABET[v >> 12 & 63];
        *at++ = ALPHABET[v >> 6 & 63];
        *at++ = ALPHABET[v & 63];
    }
    if (i < len) { /* one or two bytes left: two or three characters, padded */
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        *at++ = ALPHABET[v >> 18];
        *at++ = ALPHABET[v >> 12 & 63];
        *at++ = i + 1 < len ? ALPHABET[v >> 6 & 63] : '=';
        *at++ = '=';
    }
    *at = '\0';
    return (size_t)(at - out);
}

/** @returns the 6-bit value of an alphabet character, or -1. */
static int sextet(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

static bool refuse(char *why, size_t why_size, const char *fmt, size_t pos, unsigned char c)
{
    if (why && why_size)
        snprintf(why, why_size, fmt, pos + 1, c);
    return false;
}

bool base64_decode(const char *text, size_t len, unsigned char *out, size_t *out_len,
                   char *why, size_t why_size)
{
    const unsigned char *in = (const unsigned char *)text;
    if (len % 4 != 0) {
        if (why && why_size)
            snprintf(why, why_size, "its length %zu is not a multiple of 4", len);
        return false;
    }
    /* '=' may only end the text: one or two of them. */
    size_t pad = len >= 1 && in[len - 1] == '=' ? (len >= 2 && in[len - 2] == '=' ? 2 : 1) : 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;
        size_t data_chars = i + 4 == len ? 4 - pad : 4;
        for (size_t j = 0; j < data_chars; j++) {
            int s = sextet(in[i + j]);
            if (s < 0)
                return refuse(why, why_size,
                              in[i + j] == '='
                                  ? "character %zu ('%c') is padding before the end"
                                  : "character %zu (byte 0x%02x) is not in the base64 alphabet",
                              i + j, in[i + j]);
            v = v << 6 | (uint32_t)s;
        }
        v <<= 6 * (4 - data_chars);
        out[n++] = (unsigned char)(v >> 16);
        if (data_chars >= 3)
            out[n++] = (unsigned char)(v >> 8);
        if (data_chars == 4)
            out[n++] = (unsigned char)v;
        /* The bits the padding leaves over must be zero: another text
         * would otherwise decode to the same bytes. */
        if ((data_chars == 2 && (v & 0xffff)) || (data_chars == 3 && (v & 0xff)))
            return refuse(why, why_size,
                          "character %zu ('%c') has bits set beyond the data (not the "
                          "canonical encoding)",
                          i + data_chars - 1, in[i + data_chars - 1]);
    }
    *out_len = n;
    return true;
}
