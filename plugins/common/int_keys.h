/*
 * int_keys.h — a transport's integer config keys as a table of {name,
 * min, max, default}: finding a key, checking a value (one sentence for
 * every transport), and reading a bus's setting with its default. Keys
 * were checked by config_check at open, so reading never fails.
 */
#ifndef EB_INT_KEYS_H
#define EB_INT_KEYS_H

#include <stddef.h>

#include "eventbus/transport.h"

typedef struct eb_int_key {
    const char *name;
    long long min, max, def;
} eb_int_key;

/** The key named `name` among keys[0..n), or NULL. */
const eb_int_key *eb_int_key_find(const eb_int_key *keys, size_t n, const char *name);

/** Parses `value` for k. @returns 0 and *out, or EB_ERR_CONFIG with
 *  "bad number 'V' (expected an integer from MIN to MAX)" in errstr. */
int eb_int_key_parse(const eb_int_key *k, const char *value, long long *out, char *errstr,
                     size_t errstr_size);

/** The bus's value of k (checked at open), or its default. */
long long eb_int_key_setting(const eb_int_key *k, const eb_host *host, eb_host_bus *hb);

#endif
