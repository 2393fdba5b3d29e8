/*
 * cli.c — the eventbus command's shared options and errors, and the
 * opening of a bus for pub and sub (see cli.h).
 */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_fail(int code, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    for (char *nl; (nl = strchr(line, '\n'));) /* one line, whatever the sentence */
        *nl = ' ';
    fprintf(stderr, "eventbus: %s\n", line);
    return code;
}

/** The value of option `flag` at argv[*i]: attached (-Xk=v) or next. */
static const char *value_of(int argc, char **argv, int *i, const char *flag)
{
    const char *arg = argv[*i];
    if (arg[2])
        return arg + 2;
    if (*i + 1 >= argc) {
        cli_fail(CLI_USAGE, "option %s needs a value", flag);
        return NULL;
    }
    return argv[++*i];
}

/* Remembers a setting that was applied. @returns CLI_OK or CLI_FAILED. */
static int remember(cli *c, char option, const char *value)
{
    cli_setting *grown = realloc(c->given, (c->ngiven + 1) * sizeof *grown);
    if (!grown)
        return cli_fail(CLI_FAILED, "out of memory");
    c->given = grown;
    c->given[c->ngiven++] = (cli_setting){option, value};
    return CLI_OK;
}

int cli_common_option(cli *c, int argc, char **argv, int *i, int *rc)
{
    const char *arg = argv[*i];
    if (arg[0] != '-' || (arg[1] != 'c' && arg[1] != 'X'))
        return 0;
    char err[1024] = "";
    if (arg[1] == 'c') {
        const char *file = value_of(argc, argv, i, "-c");
        if (!file) {
            *rc = CLI_USAGE;
        } else if (eb_config_load(c->cfg, file, err, sizeof err) != 0) {
            *rc = cli_fail(CLI_USAGE, "%s", err);
        } else {
            *rc = remember(c, 'c', file);
        }
        return 1;
    }
    const char *kv = value_of(argc, argv, i, "-X");
    const char *eq = kv ? strchr(kv, '=') : NULL;
    if (!kv) {
        *rc = CLI_USAGE;
    } else if (!eq || eq == kv) {
        *rc = cli_fail(CLI_USAGE, "-X %s: expected key=value", kv);
    } else {
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
        if (eb_config_set(c->cfg, key, eq + 1, err, sizeof err) != 0)
            *rc = cli_fail(CLI_USAGE, "-X %s: %s", kv, err);
        else
            *rc = remember(c, 'X', kv);
    }
    return 1;
}

int cli_open_shared_bus(cli *c, const char *command, eb_bus **out)
{
    char err[1024] = "";
    eb_bus *bus = NULL;
    int rc = eb_bus_open(c->cfg, &bus, err, sizeof err);
    if (rc != 0)
        return cli_fail(rc == EB_ERR_CONFIG || rc == EB_ERR_PLUGIN ? CLI_USAGE : CLI_FAILED,
                        "%s: %s", command, err);
    if (strcmp(eb_bus_transport(bus), "memory") == 0) {
        eb_bus_destroy(bus);
        return cli_fail(CLI_USAGE,
                        "%s: the memory transport's broker lives inside one process, so "
                        "nothing reaches another eventbus command; pick a server "
                        "(-X transport=kafka -X kafka.bootstrap.servers=HOST:PORT, or "
                        "-X transport=redis -X redis.url=redis://HOST:PORT) or a plugin "
                        "such as the example directory transport (-X transport=dirlog, "
                        "from examples/custom-transport/)",
                        command);
    }
    *out = bus;
    return CLI_OK;
}
