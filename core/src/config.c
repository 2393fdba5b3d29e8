/*
 * config.c — eb_config: flat `key = value` settings with the origin of each
 * (file:line or "eb_config_set"), kept in the order keys were first set.
 *
 * It owns, in order:
 *  - the table of core keys (type, default, range, one-line description),
 *  - checking a setting when it is set (core keys fully; other keys only
 *    against near-misses of core keys, the transport checks them at open),
 *  - the "did you mean" helper (edit distance),
 *  - the public eb_config_* API, properties files and the redacted dump,
 *  - the core's view (config.h): typed lookups, iteration, the namespace
 *    check run at open.
 *
 * Threads: a config is used by one thread at a time (the caller serialises);
 * eb_bus_open() clones it, so a bus never shares a config with the
 * application.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- core keys */

typedef enum key_type {
    KEY_STRING, /* any text; min = shortest length allowed */
    KEY_INT,    /* decimal integer within [min, max] */
    KEY_ENUM    /* one of `values` */
} key_type;

struct core_key {
    const char *name;
    key_type type;
    const char *def;
    int64_t min, max;
    const char *const *values; /* KEY_ENUM: NULL-terminated */
    const char *doc;
};

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

/* message.max.bytes: the largest message librdkafka and a Kafka topic take
 * by default (1,000,000 bytes) less the room a dead letter's headers need,
 * so that the dead-letter copy of any message the bus accepted fits too. */
#define KAFKA_MESSAGE_MAX_BYTES_DEFAULT 1000000
#define MESSAGE_MAX_BYTES_DEFAULT 995904
_Static_assert(MESSAGE_MAX_BYTES_DEFAULT + EB_DLQ_HEADROOM == KAFKA_MESSAGE_MAX_BYTES_DEFAULT,
               "message.max.bytes and its dead-letter headroom fill Kafka's default");
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

/* X(name, type, default, min, max, enum values, description) */
#define EB_CORE_KEYS(X)                                                        \
    X("transport", KEY_STRING, "memory", 1, 0, NULL,                           \
      "transport plugin: a name (memory, kafka, redis) or a path to a .so")    \
    X("plugin.path", KEY_STRING, "", 0, 0, NULL,                               \
      "colon-separated directories searched first for transport plugins")      \
    X("dispatch.workers", KEY_INT, "0", 0, 1024, NULL,                         \
      "handler threads, fixed (0: elastic, one per CPU up to workers.max)")    \
    X("dispatch.workers.max", KEY_INT, "256", 1, 1024, NULL,                   \
      "most handler threads an elastic pool grows to")                         \
    X("dispatch.workers.idle.ms", KEY_INT, "10000", 1, 3600000, NULL,          \
      "an elastic pool's extra worker idle this long ends")                    \
    X("dispatch.queue.max", KEY_INT, "16384", 1, 10000000, NULL,               \
      "messages queued or in a worker's batch before intake pauses")           \
    X("dispatch.queue.low.watermark", KEY_INT, "0", 0, 10000000, NULL,         \
      "pool messages at which intake resumes (0: half the maximum)")           \
    X("dispatch.lane.max.inflight", KEY_INT, "10000", 1, 1000000, NULL,        \
      "messages of one lane handed out and not yet acknowledged")              \
    X("dispatch.revoke.timeout.ms", KEY_INT, "10000", 0, 3600000, NULL,        \
      "how long running handlers get when their lanes are revoked")            \
    X("retry.max.attempts", KEY_INT, "5", 1, 1000000, NULL,                    \
      "handler attempts of one message before it is dead-lettered")            \
    X("retry.backoff.ms", KEY_INT, "100", 0, 3600000, NULL,                    \
      "wait before the first retry; doubles at each retry")                    \
    X("retry.backoff.max.ms", KEY_INT, "10000", 0, 3600000, NULL,              \
      "longest wait between two retries")                                      \
    X("dlq.topic", KEY_STRING, "", 0, 0, NULL,                                 \
      "dead-letter topic (empty: \"<topic>.dlq\")")                            \
    X("publish.timeout.ms", KEY_INT, "10000", 0, 3600000, NULL,                \
      "longest wait of eb_publish() while the transport is full")              \
    X("close.timeout.ms", KEY_INT, "10000", 0, 3600000, NULL,                  \
      "deadline of the drain when a bus is destroyed without a close")         \
    X("message.max.bytes", KEY_INT, STRINGIFY(MESSAGE_MAX_BYTES_DEFAULT), 1,    \
      1073741824, NULL,                                                        \
      "largest message accepted: payload + key + headers")                     \
    X("log.level", KEY_ENUM, "warn", 0, 0, log_levels,                         \
      "most verbose level logged: error, warn, info or debug")

#define EB_CORE_KEY_ENTRY_(name, type, def, min, max, values, doc)             \
    {name, type, def, min, max, values, doc},
#define EB_CORE_KEY_NAME_(name, type, def, min, max, values, doc) name,

static const struct core_key core_keys[] = {EB_CORE_KEYS(EB_CORE_KEY_ENTRY_)};
static const char *const core_key_names[] = {EB_CORE_KEYS(EB_CORE_KEY_NAME_) NULL};

#define CORE_KEY_COUNT (sizeof core_keys / sizeof core_keys[0])
#define REDACTED "********"

/* ----------------------------------------------------------- the object */

struct config_entry {
    char *key;
    char *value;
    char *origin; /* "path:line" or "eb_config_set" */
};

struct eb_config {
    struct config_entry *entries; /* in the order keys were first set */
    size_t count, capacity;
    eb_event_cb event_cb;
    void *event_opaque;
};

/* Writes a sentence into errstr (when given) and returns err. */
__attribute__((format(printf, 4, 5))) static int
fail(char *errstr, size_t errstr_size, int err, const char *fmt, ...)
{
    if (errstr && errstr_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return err;
}

static const struct core_key *find_core_key(const char *key)
{
    for (size_t i = 0; i < CORE_KEY_COUNT; i++)
        if (strcmp(core_keys[i].name, key) == 0)
            return &core_keys[i];
    return NULL;
}

/* True when key is "ns" or starts with "ns.". */
static bool in_namespace(const char *key, const char *ns, size_t ns_len)
{
    return strncmp(key, ns, ns_len) == 0 &&
           (key[ns_len] == '\0' || key[ns_len] == '.');
}

/* True when the first dotted segment of key is that of a core key. */
static bool in_core_namespace(const char *key)
{
    for (size_t i = 0; i < CORE_KEY_COUNT; i++) {
        const char *name = core_keys[i].name;
        if (in_namespace(key, name, strcspn(name, ".")))
            return true;
    }
    return false;
}

static struct config_entry *find_entry(const eb_config *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->count; i++)
        if (strcmp(cfg->entries[i].key, key) == 0)
            return &cfg->entries[i];
    return NULL;
}

/* ------------------------------------------------------- edit distance */

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/*
 * Optimal string alignment distance: insertions, deletions, substitutions
 * and swaps of two neighbours, the four usual typos. SIZE_MAX when out of
 * memory (then nothing is suggested).
 */
static size_t edit_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    size_t *rows = malloc(3 * (m + 1) * sizeof *rows);
    if (!rows)
        return SIZE_MAX;
    size_t *before = rows, *prev = rows + m + 1, *cur = rows + 2 * (m + 1);
    for (size_t j = 0; j <= m; j++)
        prev[j] = j;
    for (size_t i = 1; i <= n; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t d = min_size(prev[j], cur[j - 1]) + 1;
            d = min_size(d, prev[j - 1] + (a[i - 1] != b[j - 1]));
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d = min_size(d, before[j - 2] + 1);
            cur[j] = d;
        }
        size_t *oldest = before;
        before = prev, prev = cur, cur = oldest;
    }
    size_t distance = prev[m];
    free(rows);
    return distance;
}

/* The entry of `known` nearest to key (the first on a tie), its distance in
 * *distance; NULL when known is empty. */
static const char *nearest(const char *key, const char *const *known,
                           size_t *distance)
{
    const char *best = NULL;
    *distance = SIZE_MAX;
    for (; *known; known++) {
        size_t d = edit_distance(key, *known);
        if (d < *distance)
            best = *known, *distance = d;
    }
    return best;
}

int eb__nearest_key(const char *key, const char *const *known, char *out,
                    size_t out_size)
{
    if (out && out_size)
        out[0] = '\0';
    if (!key || !known)
        return 0;
    size_t distance;
    const char *best = nearest(key, known, &distance);
    if (!best)
        return 0;
    if (out && out_size)
        snprintf(out, out_size, "%s", best);
    size_t useful = strlen(key) / 3 > 2 ? strlen(key) / 3 : 2;
    return distance <= useful;
}

const char *const *eb__config_core_keys(void) { return core_key_names; }

/* ------------------------------------------------------ checking values */

/* Decimal integer: optional '-', digits, nothing else. False on overflow. */
static bool parse_int(const char *text, int64_t *out)
{
    bool negative = text[0] == '-';
    const char *p = text + negative;
    int64_t magnitude = 0;
    if (!*p)
        return false;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        int digit = *p - '0';
        if (magnitude > (INT64_MAX - digit) / 10)
            return false;
        magnitude = magnitude * 10 + digit;
    }
    *out = negative ? -magnitude : magnitude;
    return true;
}

static int check_int(const struct core_key *ck, const char *value,
                     char *errstr, size_t errstr_size)
{
    int64_t n;
    if (!parse_int(value, &n))
        return fail(errstr, errstr_size, EB_ERR_CONFIG,
                    "%s: bad number '%s' (expected an integer from %" PRId64
                    " to %" PRId64 ")", ck->name, value, ck->min, ck->max);
    if (n < ck->min || n > ck->max)
        return fail(errstr, errstr_size, EB_ERR_CONFIG,
                    "%s: %s is out of range (expected an integer from %" PRId64
                    " to %" PRId64 ")", ck->name, value, ck->min, ck->max);
    return 0;
}

static int check_enum(const struct core_key *ck, const char *value,
                      char *errstr, size_t errstr_size)
{
    char expected[128] = "";
    for (const char *const *v = ck->values; *v; v++) {
        if (strcmp(*v, value) == 0)
            return 0;
        size_t used = strlen(expected);
        snprintf(expected + used, sizeof expected - used, "%s%s",
                 used ? ", " : "", *v);
    }
    return fail(errstr, errstr_size, EB_ERR_CONFIG,
                "%s: bad value '%s' (expected one of %s)", ck->name, value,
                expected);
}

static int check_core_value(const struct core_key *ck, const char *value,
                            char *errstr, size_t errstr_size)
{
    switch (ck->type) {
    case KEY_INT:
        return check_int(ck, value, errstr, errstr_size);
    case KEY_ENUM:
        return check_enum(ck, value, errstr, errstr_size);
    case KEY_STRING:
        break;
    }
    if ((int64_t)strlen(value) < ck->min)
        return fail(errstr, errstr_size, EB_ERR_CONFIG,
                    "%s: empty value (the default is '%s')", ck->name,
                    ck->def);
    return 0;
}

/* "unknown key 'x'", with "; did you mean 'y'?" when a core key is near. */
static int unknown_key(const char *key, char *errstr, size_t errstr_size)
{
    char near[64];
    if (eb__nearest_key(key, core_key_names, near, sizeof near))
        return fail(errstr, errstr_size, EB_ERR_CONFIG,
                    "unknown key '%s'; did you mean '%s'?", key, near);
    return fail(errstr, errstr_size, EB_ERR_CONFIG, "unknown key '%s'", key);
}

/* Keys are loaded back from properties files, so they must read back the
 * same: no spaces, no '=', no control characters, no comment marker. */
static bool key_is_valid(const char *key)
{
    if (key[0] == '#' || key[0] == '!')
        return false;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        if (*p <= ' ' || *p == '=' || *p == 0x7f)
            return false;
    return true;
}

/*
 * Checks one setting. Core keys are checked fully; a key in a core
 * namespace must be a core key; any other key is a transport's, checked at
 * open, unless it is a near-miss of a core key ('dispach.workers').
 */
static int check_setting(const char *key, const char *value, char *errstr,
                         size_t errstr_size)
{
    if (!key_is_valid(key))
        return fail(errstr, errstr_size, EB_ERR_CONFIG,
                    "bad key '%s' (keys have no spaces, '=' or control "
                    "characters and do not start with '#' or '!')", key);
    if (strpbrk(value, "\r\n"))
        return fail(errstr, errstr_size, EB_ERR_CONFIG,
                    "%s: the value contains a line break", key);
    const struct core_key *ck = find_core_key(key);
    if (ck)
        return check_core_value(ck, value, errstr, errstr_size);
    size_t distance;
    if (in_core_namespace(key) ||
        (nearest(key, core_key_names, &distance) && distance <= 2))
        return unknown_key(key, errstr, errstr_size);
    return 0;
}

/* ------------------------------------------------------------- storage */

static struct config_entry *append_entry(eb_config *cfg, const char *key)
{
    if (cfg->count == cfg->capacity) {
        size_t capacity = cfg->capacity ? 2 * cfg->capacity : 16;
        struct config_entry *grown =
            realloc(cfg->entries, capacity * sizeof *grown);
        if (!grown)
            return NULL;
        cfg->entries = grown, cfg->capacity = capacity;
    }
    char *copy = strdup(key);
    if (!copy)
        return NULL;
    struct config_entry *e = &cfg->entries[cfg->count++];
    *e = (struct config_entry){.key = copy};
    return e;
}

/* Sets key (already checked) to value. A key set before keeps its place.
 * On error (EB_ERR_NOMEM) cfg is unaltered. */
static int store(eb_config *cfg, const char *key, const char *value,
                 const char *origin)
{
    char *value_copy = strdup(value), *origin_copy = strdup(origin);
    struct config_entry *e = NULL;
    if (value_copy && origin_copy) {
        e = find_entry(cfg, key);
        e = e ? e : append_entry(cfg, key);
    }
    if (!e) {
        free(value_copy);
        free(origin_copy);
        return EB_ERR_NOMEM;
    }
    free(e->value);
    free(e->origin);
    e->value = value_copy, e->origin = origin_copy;
    return 0;
}

static int check_and_store(eb_config *cfg, const char *key, const char *value,
                           const char *origin, char *errstr, size_t errstr_size)
{
    int err = check_setting(key, value, errstr, errstr_size);
    if (!err)
        err = store(cfg, key, value, origin);
    if (err == EB_ERR_NOMEM)
        fail(errstr, errstr_size, err, "%s: out of memory", key);
    return err;
}

/* ---------------------------------------------------------- public API */

eb_config *eb_config_new(void) { return calloc(1, sizeof(eb_config)); }

void eb_config_destroy(eb_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->count; i++) {
        free(cfg->entries[i].key);
        free(cfg->entries[i].value);
        free(cfg->entries[i].origin);
    }
    free(cfg->entries);
    free(cfg);
}

int eb_config_set(eb_config *cfg, const char *key, const char *value,
                  char *errstr, size_t errstr_size)
{
    if (!cfg || !key || !value)
        return fail(errstr, errstr_size, EB_ERR_INVALID,
                    "eb_config_set: NULL config, key or value");
    if (!*key)
        return fail(errstr, errstr_size, EB_ERR_INVALID,
                    "eb_config_set: empty key");
    return check_and_store(cfg, key, value, "eb_config_set", errstr,
                           errstr_size);
}

const char *eb_config_get(const eb_config *cfg, const char *key)
{
    if (!cfg || !key)
        return NULL;
    const struct config_entry *e = find_entry(cfg, key);
    return e ? e->value : NULL;
}

int eb_config_set_event_cb(eb_config *cfg, eb_event_cb cb, void *opaque)
{
    if (!cfg)
        return EB_ERR_INVALID;
    cfg->event_cb = cb;
    cfg->event_opaque = opaque;
    return 0;
}

/* ------------------------------------------------------ properties file */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1]))
        s[--len] = '\0';
    return s;
}

/* "path:line" in a new string, or NULL when out of memory. */
static char *format_origin(const char *path, unsigned lineno)
{
    int len = snprintf(NULL, 0, "%s:%u", path, lineno);
    char *origin = malloc((size_t)len + 1);
    if (origin)
        snprintf(origin, (size_t)len + 1, "%s:%u", path, lineno);
    return origin;
}

/* Applies `key = value` from line `lineno` of `path`. The sentence of an
 * error starts with "path:line: ". */
static int load_setting(eb_config *cfg, const char *path, unsigned lineno,
                        char *key, char *value, char *errstr,
                        size_t errstr_size)
{
    char msg[512];
    char *origin = format_origin(path, lineno);
    int err = origin ? check_and_store(cfg, key, value, origin, msg, sizeof msg)
                     : fail(msg, sizeof msg, EB_ERR_NOMEM, "out of memory");
    free(origin);
    if (err)
        fail(errstr, errstr_size, err, "%s:%u: %s", path, lineno, msg);
    return err;
}

/* One line: blank, a comment ('#' or '!') or `key = value`. The line is
 * never echoed in errors: it may hold a secret. */
static int load_line(eb_config *cfg, const char *path, unsigned lineno,
                     char *line, char *errstr, size_t errstr_size)
{
    static const char bom[] = "\xEF\xBB\xBF";
    if (lineno == 1 && strncmp(line, bom, sizeof bom - 1) == 0)
        line += sizeof bom - 1;
    char *text = trim(line);
    if (!*text || *text == '#' || *text == '!')
        return 0;
    char *eq = strchr(text, '=');
    if (!eq)
        return fail(errstr, errstr_size, EB_ERR_CONFIG,
                    "%s:%u: no '=' in this line (expected 'key = value')",
                    path, lineno);
    *eq = '\0';
    char *key = trim(text), *value = trim(eq + 1);
    if (!*key)
        return fail(errstr, errstr_size, EB_ERR_CONFIG,
                    "%s:%u: no key before '='", path, lineno);
    return load_setting(cfg, path, lineno, key, value, errstr, errstr_size);
}

int eb_config_load(eb_config *cfg, const char *path, char *errstr,
                   size_t errstr_size)
{
    if (!cfg || !path)
        return fail(errstr, errstr_size, EB_ERR_INVALID,
                    "eb_config_load: NULL config or path");
    FILE *f = fopen(path, "r");
    if (!f) /* %m: strerror(errno), without strerror's shared buffer */
        return fail(errstr, errstr_size, EB_ERR_IO,
                    "cannot read config file '%s': %m", path);
    char *line = NULL;
    size_t line_size = 0;
    unsigned lineno = 0;
    int err = 0;
    while (!err && getline(&line, &line_size, f) >= 0)
        err = load_line(cfg, path, ++lineno, line, errstr, errstr_size);
    if (!err && !feof(f)) /* a read error, or no memory for the line */
        err = fail(errstr, errstr_size, EB_ERR_IO,
                   "cannot read config file '%s': %m", path);
    free(line);
    fclose(f);
    return err;
}

/* ----------------------------------------------------------------- dump */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool is_secret_key(const char *key)
{
    /* ssl.key.pem is librdkafka's inline private key: as secret as a
     * password though the name does not say so. */
    return strcmp(key, "password") == 0 || ends_with(key, ".password") ||
           strstr(key, "sasl.") != NULL || ends_with(key, "ssl.key.pem");
}

/*
 * Where the password of a URL is: scheme://user:PASSWORD@host... A user
 * part without ':' (redis://SECRET@host) is taken as a password too, as
 * some clients read it so. The last '@' ends the user part, so a password
 * holding a raw '@' is hidden whole. False when there is no user part.
 */
static bool url_password_span(const char *url, size_t *start, size_t *end)
{
    const char *scheme_end = strstr(url, "://");
    const char *user = scheme_end ? scheme_end + 3 : url;
    const char *at = strrchr(user, '@');
    if (!at)
        return false;
    const char *colon = memchr(user, ':', (size_t)(at - user));
    *start = (size_t)((colon ? colon + 1 : user) - url);
    *end = (size_t)(at - url);
    return true;
}

static void dump_entry(FILE *f, const struct config_entry *e)
{
    size_t start, end;
    if (is_secret_key(e->key))
        fprintf(f, "%s = " REDACTED "\n", e->key);
    else if (ends_with(e->key, "url") &&
             url_password_span(e->value, &start, &end))
        fprintf(f, "%s = %.*s" REDACTED "%s\n", e->key, (int)start, e->value,
                e->value + end);
    else
        fprintf(f, "%s = %s\n", e->key, e->value);
}

/** Writes into a new string what `write` prints of cfg. */
static int print_to_string(const eb_config *cfg, void (*write)(FILE *, const eb_config *),
                           char **out)
{
    if (!cfg || !out)
        return EB_ERR_INVALID;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return EB_ERR_NOMEM;
    write(f, cfg);
    bool failed = ferror(f);
    if (fclose(f) != 0 || failed) {
        free(text);
        return EB_ERR_NOMEM;
    }
    *out = text;
    return 0;
}

static void write_settings(FILE *f, const eb_config *cfg)
{
    for (size_t i = 0; i < cfg->count; i++)
        dump_entry(f, &cfg->entries[i]);
}

/** Every core key (defaults marked), then the other keys set. */
static void write_effective(FILE *f, const eb_config *cfg)
{
    for (size_t k = 0; k < CORE_KEY_COUNT; k++) {
        const struct config_entry *e = find_entry(cfg, core_keys[k].name);
        if (e)
            dump_entry(f, e);
        else
            fprintf(f, "%s = %s  # default\n", core_keys[k].name, core_keys[k].def);
    }
    for (size_t i = 0; i < cfg->count; i++)
        if (!find_core_key(cfg->entries[i].key))
            dump_entry(f, &cfg->entries[i]);
}

int eb_config_dump(const eb_config *cfg, char **out)
{
    return print_to_string(cfg, write_settings, out);
}

int eb_config_effective(const eb_config *cfg, char **out)
{
    return print_to_string(cfg, write_effective, out);
}

/* ------------------------------------------------------- the core's view */

eb_config *eb__config_clone(const eb_config *cfg)
{
    if (!cfg)
        return NULL;
    eb_config *copy = eb_config_new();
    if (!copy)
        return NULL;
    copy->event_cb = cfg->event_cb;
    copy->event_opaque = cfg->event_opaque;
    for (size_t i = 0; i < cfg->count; i++) {
        const struct config_entry *e = &cfg->entries[i];
        if (store(copy, e->key, e->value, e->origin) != 0) {
            eb_config_destroy(copy);
            return NULL;
        }
    }
    return copy;
}

const char *eb__config_value(const eb_config *cfg, const char *key)
{
    const char *value = eb_config_get(cfg, key);
    if (value || !key)
        return value;
    const struct core_key *ck = find_core_key(key);
    return ck ? ck->def : NULL;
}

int64_t eb__config_int(const eb_config *cfg, const char *key)
{
    const struct core_key *ck = key ? find_core_key(key) : NULL;
    int64_t n;
    if (!ck || ck->type != KEY_INT || !parse_int(eb__config_value(cfg, key), &n))
        return 0;
    return n;
}

const char *eb__config_origin(const eb_config *cfg, const char *key)
{
    if (!cfg || !key)
        return NULL;
    const struct config_entry *e = find_entry(cfg, key);
    return e ? e->origin : NULL;
}

int eb__config_foreach(const eb_config *cfg, const char *prefix,
                       eb__config_visit_fn fn, void *ctx)
{
    if (!cfg || !fn)
        return EB_ERR_INVALID;
    size_t prefix_len = prefix ? strlen(prefix) : 0;
    for (size_t i = 0; i < cfg->count; i++) {
        const struct config_entry *e = &cfg->entries[i];
        if (strncmp(e->key, prefix ? prefix : "", prefix_len) != 0)
            continue;
        int rc = fn(e->key, e->value, e->origin, ctx);
        if (rc)
            return rc;
    }
    return 0;
}

void eb__config_event_cb(const eb_config *cfg, eb_event_cb *cb, void **opaque)
{
    if (cb)
        *cb = cfg ? cfg->event_cb : NULL;
    if (opaque)
        *opaque = cfg ? cfg->event_opaque : NULL;
}

static bool has_prefix_segment(const char *key, const char *ns)
{
    size_t len = strlen(ns);
    return strncmp(key, ns, len) == 0 && key[len] == '.';
}

/* Core keys, keys of the transport in use, keys of the bundled transports
 * (ignored, so that a backend swaps by changing `transport` alone). */
static bool key_allowed_at_open(const char *key, const char *transport_name)
{
    return find_core_key(key) || has_prefix_segment(key, transport_name) ||
           has_prefix_segment(key, "memory") ||
           has_prefix_segment(key, "kafka") || has_prefix_segment(key, "redis");
}

int eb__config_check_namespaces(const eb_config *cfg, const char *transport_name,
                                char *errstr, size_t errstr_size)
{
    if (!cfg || !transport_name)
        return fail(errstr, errstr_size, EB_ERR_INVALID,
                    "NULL config or transport name");
    for (size_t i = 0; i < cfg->count; i++) {
        const struct config_entry *e = &cfg->entries[i];
        if (key_allowed_at_open(e->key, transport_name))
            continue;
        char near[64], where[512];
        const char *at = eb__origin_prefix(e->origin, where, sizeof where);
        if (eb__nearest_key(e->key, core_key_names, near, sizeof near))
            return fail(errstr, errstr_size, EB_ERR_CONFIG,
                        "%sunknown key '%s'; did you mean '%s'?", at, e->key, near);
        return fail(errstr, errstr_size, EB_ERR_CONFIG,
                    "%sunknown key '%s' (expected a core key or a '%s.' key)", at, e->key,
                    transport_name);
    }
    return 0;
}
