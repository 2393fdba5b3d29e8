/*
 * run_cli.h — runs the eventbus command to its end (spawn_cli.h) with a
 * chosen $EVENTBUS_PLUGIN_PATH (NULL: unset), stdin from /dev/null, and
 * collects its exit code, stdout and stderr (each cut at 64 KiB).
 */
#ifndef EB_RUN_CLI_H
#define EB_RUN_CLI_H

#include <stdlib.h>
#include <string.h>

#include "spawn_cli.h"

typedef struct cli_result {
    int rc;                 /* exit code, or 128 + signal */
    char out[65536], err[65536];
} cli_result;

/** Copies a child's output, cut at the buffer's size. */
static inline void cli_copy_text(char *to, size_t size, const cli_buf *from)
{
    size_t n = from->len < size - 1 ? from->len : size - 1;
    if (n)
        memcpy(to, from->text, n);
    to[n] = '\0';
}

/** Runs EB_CLI_PATH with argv (NULL-terminated, argv[0] included) to its
 *  end (at most 30 s, or the test fails). */
static inline cli_result *cli_run(const char *plugin_path, char *const argv[])
{
    cli_result *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    cli_plugin_path path = {plugin_path};
    cli_child *c = cli_spawn(argv, NULL, 0, false, &path);
    r->rc = cli_finish(c, 30000);
    cli_copy_text(r->out, sizeof r->out, &c->out);
    cli_copy_text(r->err, sizeof r->err, &c->err);
    cli_child_free(c);
    return r;
}

/** Lines in s. */
static inline int cli_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

#endif
