/*
 * config.h — the core's view of eb_config: typed lookups of core keys with
 * their defaults, iteration over a transport's keys with their origin
 * (file:line or "eb_config_set"), and the "did you mean" helper.
 */
#ifndef EB_CONFIG_H
#define EB_CONFIG_H

#include <stdint.h>
#include "eventbus/eventbus.h"

/** A deep copy (settings, origins, event callback). NULL when out of memory. */
eb_config *eb__config_clone(const eb_config *cfg);

/** The value set for `key`, or the default of a core key, or NULL. */
const char *eb__config_value(const eb_config *cfg, const char *key);

/** The value of a core integer key (validated when set), or its default.
 *  Abort-free: an unknown key returns 0. */
int64_t eb__config_int(const eb_config *cfg, const char *key);

/** The prefix of an error about a key set at `origin`: "path:line: " for
 *  a key read from a file; "" for one set by eb_config_set() (the
 *  application's own call: "eb_config_set: " would only be noise). */
static inline const char *eb__origin_prefix(const char *origin, char *buf, size_t size)
{
    if (!origin || __builtin_strcmp(origin, "eb_config_set") == 0)
        return "";
    __builtin_snprintf(buf, size, "%s: ", origin);
    return buf;
}

/** Where `key` was set: "path:line", "eb_config_set", or NULL if unset. */
const char *eb__config_origin(const eb_config *cfg, const char *key);

typedef int (*eb__config_visit_fn)(const char *key, const char *value,
                                   const char *origin, void *ctx);
/** Calls fn for every set key starting with `prefix` ("" for all), in the
 *  order they were first set; stops at and returns fn's first non-zero. */
int eb__config_foreach(const eb_config *cfg, const char *prefix,
                       eb__config_visit_fn fn, void *ctx);

/** The event callback set on the config (NULLs when none). */
void eb__config_event_cb(const eb_config *cfg, eb_event_cb *cb, void **opaque);

/**
 * Checks, at open, that every key set is either a core key, a key of the
 * transport `transport_name`, or a key of another bundled transport
 * (memory, kafka, redis: ignored so that backends swap by config alone).
 * @returns 0 or EB_ERR_CONFIG with "origin: unknown key 'x'; did you mean 'y'?".
 */
int eb__config_check_namespaces(const eb_config *cfg, const char *transport_name,
                                char *errstr, size_t errstr_size);

/** Writes into `out` the entry of `known` (NULL-terminated) nearest to
 *  `key` by edit distance; @returns 1 if within a useful distance, else 0. */
int eb__nearest_key(const char *key, const char *const *known, char *out,
                    size_t out_size);

/** NULL-terminated list of every core key name. */
const char *const *eb__config_core_keys(void);

#endif
