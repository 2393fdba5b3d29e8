/*
 * int_keys.c — a transport's integer config keys (see int_keys.h).
 */
#include "int_keys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const eb_int_key *eb_int_key_find(const eb_int_key *keys, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

int eb_int_key_parse(const eb_int_key *k, const char *value, long long *out, char *errstr,
                     size_t errstr_size)
{
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno || end == value || *end || v < k->min || v > k->max) {
        if (errstr && errstr_size)
            snprintf(errstr, errstr_size,
                     "bad number '%s' (expected an integer from %lld to %lld)", value, k->min,
                     k->max);
        return EB_ERR_CONFIG;
    }
    *out = v;
    return 0;
}

long long eb_int_key_setting(const eb_int_key *k, const eb_host *host, eb_host_bus *hb)
{
    const char *value = host->config_get(hb, k->name);
    long long v = k->def;
    if (value)
        eb_int_key_parse(k, value, &v, NULL, 0);
    return v;
}
