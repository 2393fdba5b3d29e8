/*
 * plugins_list.c — eb_plugins_list(): every transport plugin file on the
 * search path, each loaded and checked as eb_bus_open() would, then
 * unloaded (for `eventbus plugins` and for anyone debugging a search path).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eventbus/eventbus.h"
#include "loader.h"

enum { SENTENCE_MAX = 1024 };

static const char PREFIX[] = "eventbus-", SUFFIX[] = ".so";

/** "eventbus-NAME.so" → NAME (malloc'd), or NULL when not a plugin name. */
static char *name_of(const char *entry)
{
    size_t len = strlen(entry), pre = sizeof PREFIX - 1, suf = sizeof SUFFIX - 1;
    if (len <= pre + suf || strncmp(entry, PREFIX, pre) != 0 ||
        strcmp(entry + len - suf, SUFFIX) != 0)
        return NULL;
    return strndup(entry + pre, len - pre - suf);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/** The plugin file names of `dir`, sorted (none when it cannot be read). */
static int files_of(const char *dir, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        char *name = name_of(e->d_name);
        if (!name)
            continue;
        char **grown = realloc(*names, (*n + 1) * sizeof **names);
        if (!grown) {
            free(name);
            rc = EB_ERR_NOMEM;
            break;
        }
        *names = grown;
        (*names)[(*n)++] = name;
    }
    closedir(d);
    if (*n > 1)
        qsort(*names, *n, sizeof **names, by_name);
    return rc;
}

/** Loads `file` by path, checks it calls itself `name`, fills `info`. */
static int inspect(const char *file, const char *name, eb_plugin_info *info)
{
    char why[SENTENCE_MAX] = "";
    eb_plugin *plugin = NULL;
    int rc = eb__plugin_load(file, NULL, &plugin, why, sizeof why);
    if (rc == EB_ERR_NOMEM)
        return rc;
    const eb_transport *t = eb__plugin_transport(plugin);
    if (rc == 0 && strcmp(t->name, name) != 0)
        snprintf(why, sizeof why,
                 "%s calls itself '%s', not '%s'; name the file eventbus-%s.so or fix the "
                 "name in its descriptor",
                 file, t->name, name, t->name);
    info->file = strdup(file);
    info->name = strdup(name);
    info->version = strdup(rc == 0 && t->version ? t->version : "");
    if (rc == 0 && !why[0]) {
        info->abi_major = t->abi_major;
        info->abi_minor = t->abi_minor;
        info->features = t->features;
        info->features_vary = EB_TRANSPORT_HAS(t, bus_features);
    } else {
        info->refused = strdup(why[0] ? why : "refused by the loader");
    }
    eb__plugin_unload(plugin);
    bool ok = info->file && info->name && info->version && (!why[0] || info->refused);
    return ok ? 0 : EB_ERR_NOMEM;
}

void eb_plugins_free(eb_plugin_info *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++) {
        free((char *)list[i].file);
        free((char *)list[i].name);
        free((char *)list[i].version);
        free((char *)list[i].refused);
    }
    free(list);
}

int eb_plugins_list(const char *plugin_path, eb_plugin_info **out, size_t *n)
{
    if (!out || !n)
        return EB_ERR_INVALID;
    *out = NULL;
    *n = 0;
    char **dirs;
    size_t n_dirs;
    if (eb__plugin_dirs(plugin_path, &dirs, &n_dirs) != 0)
        return EB_ERR_NOMEM;
    eb_plugin_info *list = NULL;
    size_t count = 0;
    int rc = 0;
    for (size_t d = 0; rc == 0 && d < n_dirs; d++) {
        bool again = false; /* a directory named twice is listed once */
        for (size_t e = 0; e < d; e++)
            again |= strcmp(dirs[e], dirs[d]) == 0;
        if (again)
            continue;
        char **names;
        size_t n_names;
        rc = files_of(dirs[d], &names, &n_names);
        for (size_t i = 0; rc == 0 && i < n_names; i++) {
            eb_plugin_info *grown = realloc(list, (count + 1) * sizeof *list);
            char *file = NULL;
            if (!grown || asprintf(&file, "%s/%s%s%s", dirs[d], PREFIX, names[i], SUFFIX) < 0) {
                if (grown)
                    list = grown;
                rc = EB_ERR_NOMEM;
                break;
            }
            list = grown;
            eb_plugin_info *info = &list[count++];
            *info = (eb_plugin_info){0};
            for (size_t j = 0; j + 1 < count; j++)
                info->shadowed |= strcmp(list[j].name, names[i]) == 0;
            rc = inspect(file, names[i], info);
            free(file);
        }
        for (size_t i = 0; i < n_names; i++)
            free(names[i]);
        free(names);
    }
    eb__plugin_dirs_free(dirs, n_dirs);
    if (rc != 0) {
        eb_plugins_free(list, count);
        return rc;
    }
    *out = list;
    *n = count;
    return 0;
}
