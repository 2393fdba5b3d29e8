/*
 * loader.h — finds, checks and loads transport plugins with libltdl.
 */
#ifndef EB_LOADER_H
#define EB_LOADER_H

#include <stddef.h>
#include "eventbus/transport.h"

typedef struct eb_plugin eb_plugin;

/**
 * Loads a transport plugin. `name_or_path` is a name ("memory": the file
 * eventbus-memory.so is searched in `plugin_path` (colon-separated, may be
 * NULL or ""), then $EVENTBUS_PLUGIN_PATH (colon-separated), then the
 * directory installed beside libeventbus) or a path to a .so (contains a
 * '/' or ends in ".so": loaded as is).
 * Refuses, with a sentence naming the file: a file or directory others can
 * write, a file without the entry symbol, another ABI major, a descriptor
 * smaller than ABI 1.0's, a NULL 1.0 slot. "Not found" lists every
 * directory searched.
 * @returns 0 and *out, or EB_ERR_PLUGIN (EB_ERR_INVALID on NULL args).
 */
int eb__plugin_load(const char *name_or_path, const char *plugin_path,
                    eb_plugin **out, char *errstr, size_t errstr_size);

/** True when the descriptor `tp` has the optional slot `slot` (ABI 1.1 or
 *  later): its struct_size covers the slot, and the slot is not NULL. A
 *  plugin built against an older minor has a shorter descriptor: what
 *  lies past its struct_size is not its own. */
#define EB_TRANSPORT_HAS(tp, slot)                                           \
    ((tp)->struct_size >= offsetof(eb_transport, slot) + sizeof((tp)->slot) && \
     (tp)->slot != NULL)

/**
 * The directories a transport is searched in by name, in order: those of
 * `plugin_path` (colon-separated; NULL or "" for none), of
 * $EVENTBUS_PLUGIN_PATH, then the directory installed beside libeventbus.
 * Empty entries are skipped. @returns 0 and *dirs (n strings, free with
 * eb__plugin_dirs_free), or EB_ERR_NOMEM.
 */
int eb__plugin_dirs(const char *plugin_path, char ***dirs, size_t *n);
void eb__plugin_dirs_free(char **dirs, size_t n);

/** The plugin's descriptor (valid until unload). */
const eb_transport *eb__plugin_transport(const eb_plugin *plugin);

/** The file that was loaded. */
const char *eb__plugin_file(const eb_plugin *plugin);

/** Unloads (unless the plugin asked to stay resident) and frees. NULL ok. */
void eb__plugin_unload(eb_plugin *plugin);

#endif
