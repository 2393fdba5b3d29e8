/*
 * loader.c — owns finding, checking and loading transport plugins
 * (eventbus-<name>.so), and libltdl's life in this process.
 *
 * In order: the frozen ABI 1.0 layout of eb_transport; error sentences;
 * libltdl under one lock; the search by name (plugin.path,
 * $EVENTBUS_PLUGIN_PATH, the directory installed beside libeventbus); the
 * file checks (who may write the file and its directory, as sudo and
 * OpenSSH check); the descriptor checks; the functions of loader.h.
 *
 * libltdl has no locking of its own: every lt_* call runs under ltdl_lock.
 * ltdl_users counts the handles open through libltdl, so that lt_dlinit
 * runs for the first and lt_dlexit after the last. A resident plugin pins
 * libltdl for the life of the process: lt_dlexit drops a resident handle
 * from libltdl's list and frees its loader, so reopening the same file
 * later would use freed memory.
 */

#include <assert.h>
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <ltdl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader.h"

#ifndef EB_PLUGIN_INSTALL_SUBDIR
#error "EB_PLUGIN_INSTALL_SUBDIR must be defined by the build (core/CMakeLists.txt)"
#endif

struct eb_plugin {
    lt_dlhandle handle;            /* NULL until opened; owns one ltdl user */
    const eb_transport *transport; /* the plugin's own, valid while open */
    char *file;                    /* absolute path without symlinks */
};

/* ----------------------------------------------------- frozen 1.0 layout */

/* The ABI 1.0 slots in layout order, all required. */
#define TRANSPORT_1_0_SLOTS(X)                                            \
    X(config_check) X(open) X(close) X(publish) X(flush) X(subscribe)     \
    X(unsubscribe) X(sub_destroy) X(ack) X(release) X(resume) X(health)   \
    X(stats)

#define SLOT_INDEX_(slot) SLOT_##slot,
enum { TRANSPORT_1_0_SLOTS(SLOT_INDEX_) TRANSPORT_1_0_SLOT_COUNT };
#undef SLOT_INDEX_

#define SLOT_SIZE sizeof(void (*)(void))
#define FIRST_SLOT offsetof(eb_transport, config_check)
/* Bytes of an ABI 1.0 descriptor: a plugin's struct_size is at least this. */
#define TRANSPORT_1_0_SIZE (FIRST_SLOT + TRANSPORT_1_0_SLOT_COUNT * SLOT_SIZE)

/* SQLite once changed a struct without bumping its version: these make such
 * a change fail the build instead of crashing plugins built before it. */
static_assert(offsetof(eb_transport, abi_major) == 0, "abi_major moved");
static_assert(offsetof(eb_transport, abi_minor) == 2, "abi_minor moved");
static_assert(offsetof(eb_transport, struct_size) == 4, "struct_size moved");
static_assert(offsetof(eb_transport, name) == 8, "name moved");
static_assert(offsetof(eb_transport, version) == 8 + sizeof(char *),
              "version moved");
#define ASSERT_SLOT_(slot)                                                \
    static_assert(offsetof(eb_transport, slot) ==                         \
                      FIRST_SLOT + SLOT_##slot * SLOT_SIZE,               \
                  "ABI 1.0 slot " #slot " moved: a frozen layout changed");
TRANSPORT_1_0_SLOTS(ASSERT_SLOT_)
#undef ASSERT_SLOT_
static_assert(sizeof(void *) != 8 || TRANSPORT_1_0_SIZE == 144,
              "the LP64 ABI 1.0 descriptor is 144 bytes");
static_assert(sizeof(eb_transport) >= TRANSPORT_1_0_SIZE,
              "eb_transport lost ABI 1.0 slots");
/* ABI 1.1 appends begin_close, then unsubscribe_until, after the 1.0
 * slots. */
static_assert(offsetof(eb_transport, begin_close) == TRANSPORT_1_0_SIZE,
              "ABI 1.1 slot begin_close moved");
static_assert(offsetof(eb_transport, unsubscribe_until) == TRANSPORT_1_0_SIZE + SLOT_SIZE,
              "ABI 1.1 slot unsubscribe_until moved");
/* ABI 1.2 appends bus_features. */
static_assert(offsetof(eb_transport, bus_features) == TRANSPORT_1_0_SIZE + 2 * SLOT_SIZE,
              "ABI 1.2 slot bus_features moved");

/* -------------------------------------------------------------- errors */

typedef struct errbuf {
    char *str; /* may be NULL */
    size_t size;
} errbuf;

static void write_error(errbuf *err, const char *fmt, va_list ap)
{
    if (err->str && err->size > 0)
        vsnprintf(err->str, err->size, fmt, ap);
}

__attribute__((format(printf, 3, 4)))
static int report(errbuf *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    write_error(err, fmt, ap);
    va_end(ap);
    return code;
}

/* Writes the sentence and returns EB_ERR_PLUGIN. */
__attribute__((format(printf, 2, 3)))
static int refuse(errbuf *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    write_error(err, fmt, ap);
    va_end(ap);
    return EB_ERR_PLUGIN;
}

static int out_of_memory(errbuf *err)
{
    return report(err, EB_ERR_NOMEM, "out of memory while loading a plugin");
}

/* -------------------------------------------------------------- libltdl */

static pthread_mutex_t ltdl_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned ltdl_users; /* open handles, +1 once a resident plugin pins */
static bool ltdl_pinned;

/* Why `file` (which exists) failed to open. libltdl says "file not found"
 * for any dlopen() failure, so ask the dynamic linker itself: a missing
 * dependency, not an ELF file, another architecture... */
static const char *open_failure(const char *file)
{
    void *handle = dlopen(file, RTLD_LAZY | RTLD_LOCAL);
    if (!handle)
        return dlerror();
    dlclose(handle);
    const char *why = lt_dlerror();
    return why ? why : "libltdl gave no reason";
}

/* Opens `file` (an absolute path: libltdl never searches its own path),
 * initialising libltdl for the first user. Call with ltdl_lock held.
 * On error, NULL with the reason in err. */
static lt_dlhandle ltdl_open(const char *file, errbuf *err)
{
    lt_dlhandle handle = NULL;
    if (ltdl_users > 0 || lt_dlinit() == 0)
        handle = lt_dlopen(file);
    if (handle) {
        ltdl_users++;
        return handle;
    }
    refuse(err, "cannot load plugin %s: %s", file, open_failure(file));
    if (ltdl_users == 0)
        lt_dlexit(); /* balances lt_dlinit, even a failed one */
    return NULL;
}

/* Call with ltdl_lock held. A resident module stays mapped: lt_dlclose
 * then only drops its reference (and reports an error we need not read). */
static void ltdl_close(lt_dlhandle handle)
{
    lt_dlclose(handle);
    if (--ltdl_users == 0)
        lt_dlexit();
}

static void keep_resident(eb_plugin *plugin)
{
    pthread_mutex_lock(&ltdl_lock);
    lt_dlmakeresident(plugin->handle);
    if (!ltdl_pinned) {
        ltdl_pinned = true;
        ltdl_users++;
    }
    pthread_mutex_unlock(&ltdl_lock);
}

/* ------------------------------------------------------- search by name */

enum { NOT_HERE = 1 }; /* beside 0 (found) and the negative EB_ERR_* */

/* One search by name: the file looked for and the directories tried. */
typedef struct search {
    const char *name;
    FILE *searched; /* ", "-separated directories, for "not found" */
    char *found;    /* the first candidate that exists, malloc'd */
} search;

static bool valid_name(const char *name)
{
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyz"
                                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    return name[0] != '\0' && name[strspn(name, allowed)] == '\0';
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t len = strlen(s), suffix_len = strlen(suffix);
    return len >= suffix_len && strcmp(s + len - suffix_len, suffix) == 0;
}

/* Tries <dir>/eventbus-<name>.so. A candidate that stat() cannot rule out
 * counts as found, so that its checks explain the problem (EACCES...).
 * @returns 0 (s->found set), NOT_HERE or EB_ERR_NOMEM. */
static int try_dir(search *s, const char *dir, int dir_len)
{
    while (dir_len > 1 && dir[dir_len - 1] == '/')
        dir_len--;
    fprintf(s->searched, "%s%.*s", ftell(s->searched) > 0 ? ", " : "",
            dir_len, dir);
    if (asprintf(&s->found, "%.*s/eventbus-%s.so", dir_len, dir, s->name) < 0) {
        s->found = NULL;
        return EB_ERR_NOMEM;
    }
    struct stat st;
    if (stat(s->found, &st) == 0 || (errno != ENOENT && errno != ENOTDIR))
        return 0;
    free(s->found);
    s->found = NULL;
    return NOT_HERE;
}

/* Tries each directory of a colon-separated list (NULL ok; empty entries
 * are skipped rather than taken as the working directory). */
static int search_dirs(search *s, const char *dirs)
{
    for (const char *dir = dirs; dir; ) {
        const char *end = strchrnul(dir, ':');
        if (end > dir) {
            int rc = try_dir(s, dir, (int)(end - dir));
            if (rc != NOT_HERE)
                return rc;
        }
        dir = *end ? end + 1 : NULL;
    }
    return NOT_HERE;
}

/* The file holding this code, without symlinks, or NULL. The main
 * program's link map has no name (dladdr would give argv[0]): that is the
 * case when the loader is linked into an executable, as in unit tests. */
static char *library_file(void)
{
    Dl_info info;
    struct link_map *map = NULL;
    if (!dladdr1((void *)eb__plugin_load, &info, (void **)&map,
                 RTLD_DL_LINKMAP) || !map)
        return NULL;
    return realpath(map->l_name[0] ? map->l_name : "/proc/self/exe", NULL);
}

/* The directory where plugins are installed: beside libeventbus, wherever
 * the library is now (so a relocated prefix works). NULL if unknown. */
static char *installed_dir(void)
{
    char *lib = library_file();
    if (!lib)
        return NULL;
    *strrchr(lib, '/') = '\0'; /* realpath() is absolute */
    char *dir;
    if (asprintf(&dir, "%s/%s", lib, EB_PLUGIN_INSTALL_SUBDIR) < 0)
        dir = NULL;
    free(lib);
    return dir;
}

static int search_installed(search *s)
{
    char *dir = installed_dir();
    int rc = dir ? try_dir(s, dir, (int)strlen(dir)) : NOT_HERE;
    free(dir);
    return rc;
}

/* plugin_path, $EVENTBUS_PLUGIN_PATH, then the installed directory. */
static int search_all(search *s, const char *plugin_path)
{
    int rc = search_dirs(s, plugin_path);
    if (rc == NOT_HERE)
        rc = search_dirs(s, getenv("EVENTBUS_PLUGIN_PATH"));
    if (rc == NOT_HERE)
        rc = search_installed(s);
    return rc;
}

static int add_dir(char ***dirs, size_t *n, const char *dir, size_t len)
{
    while (len > 1 && dir[len - 1] == '/')
        len--;
    char **grown = realloc(*dirs, (*n + 1) * sizeof **dirs);
    if (!grown)
        return EB_ERR_NOMEM;
    *dirs = grown;
    if (!(grown[*n] = strndup(dir, len)))
        return EB_ERR_NOMEM;
    (*n)++;
    return 0;
}

static int add_dirs(char ***dirs, size_t *n, const char *list)
{
    for (const char *dir = list; dir;) {
        const char *end = strchrnul(dir, ':');
        if (end > dir && add_dir(dirs, n, dir, (size_t)(end - dir)) != 0)
            return EB_ERR_NOMEM;
        dir = *end ? end + 1 : NULL;
    }
    return 0;
}

int eb__plugin_dirs(const char *plugin_path, char ***dirs, size_t *n)
{
    *dirs = NULL;
    *n = 0;
    char *installed = installed_dir();
    int rc = add_dirs(dirs, n, plugin_path);
    if (rc == 0)
        rc = add_dirs(dirs, n, getenv("EVENTBUS_PLUGIN_PATH"));
    if (rc == 0 && installed)
        rc = add_dir(dirs, n, installed, strlen(installed));
    free(installed);
    if (rc != 0) {
        eb__plugin_dirs_free(*dirs, *n);
        *dirs = NULL;
        *n = 0;
    }
    return rc;
}

void eb__plugin_dirs_free(char **dirs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(dirs[i]);
    free(dirs);
}

/* Resolves `path` to an absolute path without symlinks, so that the checks
 * see the real file and directory and libltdl gets a path it won't search. */
static int canonical_path(const char *path, char **out, errbuf *err)
{
    *out = realpath(path, NULL);
    if (*out)
        return 0;
    if (errno == ENOMEM)
        return out_of_memory(err);
    return refuse(err, "cannot load plugin %s: %s", path, strerror(errno));
}

/* Finds eventbus-<name>.so; the first existing file wins, and "not found"
 * lists every directory searched. */
static int locate(const char *name, const char *plugin_path, char **file,
                  errbuf *err)
{
    if (!valid_name(name))
        return refuse(err, "invalid transport name '%s': a name has only "
                      "letters, digits, '_' and '-' (or give a path to a "
                      ".so file)", name);
    char *list = NULL;
    size_t list_len = 0;
    search s = {.name = name, .searched = open_memstream(&list, &list_len)};
    if (!s.searched)
        return out_of_memory(err);
    int rc = search_all(&s, plugin_path);
    fclose(s.searched);
    if (rc == NOT_HERE)
        rc = refuse(err, "transport '%s' not found: no eventbus-%s.so in %s "
                    "(set plugin.path or EVENTBUS_PLUGIN_PATH)", name, name,
                    list_len > 0 ? list : "no directory");
    else if (rc == 0)
        rc = canonical_path(s.found, file, err);
    else
        rc = out_of_memory(err);
    free(s.found);
    free(list);
    return rc;
}

/* ----------------------------------------------------------- file checks */

/* Writable by someone other than the owner and root. */
static bool others_can_write(const struct stat *st)
{
    return (st->st_mode & S_IWOTH) ||
           ((st->st_mode & S_IWGRP) && st->st_gid != 0);
}

/* Whoever can replace a file in the plugin's directory can run code in
 * this process, unless the sticky bit keeps them to their own files. */
static int check_directory(const char *file, errbuf *err)
{
    const char *slash = strrchr(file, '/'); /* file is absolute */
    char *dir = strndup(file, slash == file ? 1 : (size_t)(slash - file));
    if (!dir)
        return out_of_memory(err);
    struct stat st;
    int rc = 0;
    if (stat(dir, &st) != 0)
        rc = refuse(err, "cannot load plugin %s: %s: %s", file, dir,
                    strerror(errno));
    else if (others_can_write(&st) && !(st.st_mode & S_ISVTX))
        rc = refuse(err, "refusing plugin %s: its directory %s is writable "
                    "by users other than its owner (mode %04o) and not "
                    "sticky; run chmod go-w on the directory", file, dir,
                    (unsigned)(st.st_mode & 07777));
    free(dir);
    return rc;
}

static int check_file(const char *file, errbuf *err)
{
    struct stat st;
    if (stat(file, &st) != 0)
        return refuse(err, "cannot load plugin %s: %s", file, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return refuse(err, "refusing plugin %s: it is not a regular file", file);
    if (ends_with(file, ".la")) /* libltdl would load the file it names */
        return refuse(err, "refusing plugin %s: libtool archives are not "
                      "loaded; give the path of the .so file", file);
    if (st.st_uid != 0 && st.st_uid != geteuid())
        return refuse(err, "refusing plugin %s: it is owned by uid %u, "
                      "neither root nor this process's user (uid %u); run "
                      "chown on it", file, (unsigned)st.st_uid,
                      (unsigned)geteuid());
    if (others_can_write(&st))
        return refuse(err, "refusing plugin %s: it is writable by users "
                      "other than its owner (mode %04o); run chmod go-w on "
                      "it", file, (unsigned)(st.st_mode & 07777));
    return check_directory(file, err);
}

/* ----------------------------------------------------- descriptor checks */

/* @returns the name of the first NULL ABI 1.0 slot, or NULL. */
static const char *missing_slot(const eb_transport *t)
{
#define CHECK_SLOT_(slot) if (!t->slot) return #slot;
    TRANSPORT_1_0_SLOTS(CHECK_SLOT_)
#undef CHECK_SLOT_
    return NULL;
}

/* `name` is the name the plugin was looked up by, or NULL for a path. The
 * major is checked first: another major may have another layout. */
static int check_descriptor(const char *file, const eb_transport *t,
                            const char *name, errbuf *err)
{
    if (t->abi_major != EB_TRANSPORT_ABI_MAJOR)
        return refuse(err, "%s was built for transport ABI %u.%u but this "
                      "eventbus (%s) speaks ABI %d.%d; rebuild the plugin "
                      "against this eventbus", file, (unsigned)t->abi_major,
                      (unsigned)t->abi_minor, EB_VERSION_STRING,
                      EB_TRANSPORT_ABI_MAJOR, EB_TRANSPORT_ABI_MINOR);
    if (t->struct_size < TRANSPORT_1_0_SIZE)
        return refuse(err, "%s is broken: its descriptor of %u bytes is "
                      "smaller than ABI 1.0's %zu bytes", file,
                      (unsigned)t->struct_size, (size_t)TRANSPORT_1_0_SIZE);
    const char *slot = missing_slot(t);
    if (slot)
        return refuse(err, "%s is broken: its descriptor leaves the ABI 1.0 "
                      "slot '%s' NULL (every 1.0 slot is required)", file, slot);
    if (!t->name || !t->name[0])
        return refuse(err, "%s is broken: its descriptor has no name", file);
    if (name && strcmp(t->name, name) != 0)
        return refuse(err, "%s calls itself '%s', not '%s'; name the file "
                      "eventbus-%s.so or fix the name in its descriptor",
                      file, t->name, name, t->name);
    return 0;
}

/* ------------------------------------------------------------- loading */

/* Opens the checked file and asks it for its descriptor. The entry
 * function runs outside ltdl_lock: it is the plugin's code, not libltdl's. */
static int open_plugin(eb_plugin *plugin, errbuf *err)
{
    eb_transport_entry_fn entry = NULL;
    pthread_mutex_lock(&ltdl_lock);
    plugin->handle = ltdl_open(plugin->file, err);
    if (plugin->handle)
        entry = (eb_transport_entry_fn)lt_dlsym(plugin->handle,
                                                EB_TRANSPORT_ENTRY_SYMBOL);
    pthread_mutex_unlock(&ltdl_lock);
    if (!plugin->handle)
        return EB_ERR_PLUGIN;
    if (!entry)
        return refuse(err, "%s is not an eventbus transport: it has no "
                      "symbol %s", plugin->file, EB_TRANSPORT_ENTRY_SYMBOL);
    plugin->transport = entry();
    if (!plugin->transport)
        return refuse(err, "%s is broken: its %s() returned NULL instead of "
                      "a descriptor", plugin->file, EB_TRANSPORT_ENTRY_SYMBOL);
    return 0;
}

static bool is_path(const char *name_or_path)
{
    return strchr(name_or_path, '/') || ends_with(name_or_path, ".so");
}

int eb__plugin_load(const char *name_or_path, const char *plugin_path,
                    eb_plugin **out, char *errstr, size_t errstr_size)
{
    errbuf err = {errstr, errstr_size};
    if (!name_or_path || !out)
        return report(&err, EB_ERR_INVALID, "no transport name or no result pointer");
    *out = NULL;
    eb_plugin *plugin = calloc(1, sizeof *plugin);
    if (!plugin)
        return out_of_memory(&err);
    const char *name = is_path(name_or_path) ? NULL : name_or_path;
    int rc = name ? locate(name, plugin_path, &plugin->file, &err)
                  : canonical_path(name_or_path, &plugin->file, &err);
    if (rc == 0)
        rc = check_file(plugin->file, &err);
    if (rc == 0)
        rc = open_plugin(plugin, &err);
    if (rc == 0)
        rc = check_descriptor(plugin->file, plugin->transport, name, &err);
    if (rc != 0) {
        eb__plugin_unload(plugin);
        return rc;
    }
    if (plugin->transport->plugin_flags & EB_PLUGIN_RESIDENT)
        keep_resident(plugin);
    *out = plugin;
    return 0;
}

const eb_transport *eb__plugin_transport(const eb_plugin *plugin)
{
    return plugin ? plugin->transport : NULL;
}

const char *eb__plugin_file(const eb_plugin *plugin)
{
    return plugin ? plugin->file : NULL;
}

void eb__plugin_unload(eb_plugin *plugin)
{
    if (!plugin)
        return;
    if (plugin->handle) {
        pthread_mutex_lock(&ltdl_lock);
        ltdl_close(plugin->handle);
        pthread_mutex_unlock(&ltdl_lock);
    }
    free(plugin->file);
    free(plugin);
}
