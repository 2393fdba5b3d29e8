/*
 * base64.h — standard base64 (RFC 4648 section 4: the alphabet A-Z a-z
 * 0-9 + /, padded with '=') for the `_b64` fields of the JSON line format.
 * Decoding is strict so that one text means one byte string: no
 * whitespace, no missing or extra padding, no bits set beyond the data.
 */
#ifndef EB_TOOLS_BASE64_H
#define EB_TOOLS_BASE64_H

#include <stdbool.h>
#include <stddef.h>

/** @returns the length of the encoding of `len` bytes (without a NUL). */
size_t base64_encoded_len(size_t len);

/** Writes the encoding of `data` and a NUL into `out`, which holds at
 *  least base64_encoded_len(len) + 1 bytes. @returns the encoded length. */
size_t base64_encode(const void *data, size_t len, char *out);

/** @returns an upper bound of the decoded length of `len` characters. */
size_t base64_decoded_max(size_t len);

/**
 * Decodes `text` (`len` characters) into `out`, which holds at least
 * base64_decoded_max(len) bytes; *out_len gets the decoded length.
 * @returns true, or false with a phrase in `why` saying what is wrong and
 *          where ("character 7 ('!') is not in the base64 alphabet");
 *          `out` is then unspecified.
 */
bool base64_decode(const char *text, size_t len, unsigned char *out, size_t *out_len,
                   char *why, size_t why_size);

#endif
