/*
 * settings.c — what every case's config gets, in this order: the file
 * named by $EB_CONFORMANCE_CONFIG, the files and key=value settings added
 * with eb_conformance_add_file() / eb_conformance_add_setting() (the
 * runner's --config and -X, `eventbus conformance`'s -c, -X and
 * --transport), then $EB_TEST_SET (a server address known only when the
 * suite runs); later settings win. Also the retention the transport
 * declared (eb_conformance_set_retention).
 *
 * The list is per process: the runner fills it before it forks the cases,
 * which inherit it.
 */
#include "eventbus/conformance.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct conf_setting {
    char *key;   /* NULL: a file */
    char *value; /* the value, or the file's path */
};

static struct conf_setting *conf_settings;
static size_t conf_nsettings, conf_cap_settings;
static unsigned long conf_retention; /* 0: not limited */

/* Applies one setting to cfg. @returns eb_config_set's or _load's code. */
static int apply_setting(eb_config *cfg, const struct conf_setting *s, char *errstr,
                         size_t errstr_size)
{
    return s->key ? eb_config_set(cfg, s->key, s->value, errstr, errstr_size)
                  : eb_config_load(cfg, s->value, errstr, errstr_size);
}

/* Checks the setting on a scratch config (so a bad one is refused where it
 * is given, not in every case), then keeps it. */
static int add_setting(const char *key, const char *value, char *errstr, size_t errstr_size)
{
    eb_config *scratch = eb_config_new();
    if (!scratch) {
        snprintf(errstr, errstr_size, "out of memory");
        return EB_ERR_NOMEM;
    }
    struct conf_setting s = {key ? strdup(key) : NULL, strdup(value)};
    int rc = (key && !s.key) || !s.value ? EB_ERR_NOMEM : 0;
    if (rc == EB_ERR_NOMEM)
        snprintf(errstr, errstr_size, "out of memory");
    if (rc == 0)
        rc = apply_setting(scratch, &s, errstr, errstr_size);
    eb_config_destroy(scratch);
    if (rc == 0 && conf_nsettings == conf_cap_settings) {
        size_t cap = conf_cap_settings ? conf_cap_settings * 2 : 8;
        struct conf_setting *grown = realloc(conf_settings, cap * sizeof *grown);
        if (grown) {
            conf_settings = grown;
            conf_cap_settings = cap;
        } else {
            snprintf(errstr, errstr_size, "out of memory");
            rc = EB_ERR_NOMEM;
        }
    }
    if (rc != 0) {
        free(s.key);
        free(s.value);
        return rc;
    }
    conf_settings[conf_nsettings++] = s;
    return 0;
}

int eb_conformance_add_file(const char *path, char *errstr, size_t errstr_size)
{
    if (!path || !*path) {
        snprintf(errstr, errstr_size, "no properties file named");
        return EB_ERR_INVALID;
    }
    return add_setting(NULL, path, errstr, errstr_size);
}

int eb_conformance_add_setting(const char *key, const char *value, char *errstr,
                               size_t errstr_size)
{
    if (!key || !*key || !value) {
        snprintf(errstr, errstr_size, "a setting needs a key and a value");
        return EB_ERR_INVALID;
    }
    return add_setting(key, value, errstr, errstr_size);
}

void eb_conformance_clear_settings(void)
{
    for (size_t i = 0; i < conf_nsettings; i++) {
        free(conf_settings[i].key);
        free(conf_settings[i].value);
    }
    free(conf_settings);
    conf_settings = NULL;
    conf_nsettings = conf_cap_settings = 0;
    conf_retention = 0;
}

void eb_conformance_set_retention(unsigned long messages) { conf_retention = messages; }

unsigned long eb__conf_retention(void) { return conf_retention; }

/* EB_TEST_SET="key=value;key=value". */
static int apply_test_set(eb_config *cfg, char *errstr, size_t errstr_size)
{
    const char *env = getenv("EB_TEST_SET");
    if (!env || !*env)
        return 0;
    char *copy = strdup(env), *save = NULL;
    if (!copy) {
        snprintf(errstr, errstr_size, "out of memory");
        return EB_ERR_NOMEM;
    }
    int rc = 0;
    for (char *kv = strtok_r(copy, ";", &save); kv && rc == 0; kv = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(kv, '=');
        char err[512] = "";
        if (!eq) {
            snprintf(errstr, errstr_size, "EB_TEST_SET: '%s' is not key=value", kv);
            rc = EB_ERR_CONFIG;
            break;
        }
        *eq = '\0';
        rc = eb_config_set(cfg, kv, eq + 1, err, sizeof err);
        if (rc != 0)
            snprintf(errstr, errstr_size, "EB_TEST_SET: %s: %s", kv, err);
    }
    free(copy);
    return rc;
}

int eb__conf_apply_settings(eb_config *cfg, char *errstr, size_t errstr_size)
{
    const char *path = getenv("EB_CONFORMANCE_CONFIG");
    if (path && *path) {
        char err[512] = "";
        int rc = eb_config_load(cfg, path, err, sizeof err);
        if (rc != 0) {
            snprintf(errstr, errstr_size, "EB_CONFORMANCE_CONFIG=%s: %s", path, err);
            return rc;
        }
    }
    for (size_t i = 0; i < conf_nsettings; i++) {
        int rc = apply_setting(cfg, &conf_settings[i], errstr, errstr_size);
        if (rc != 0)
            return rc;
    }
    return apply_test_set(cfg, errstr, errstr_size);
}
