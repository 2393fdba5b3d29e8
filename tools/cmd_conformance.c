/*
 * cmd_conformance.c — `eventbus conformance`: the transport conformance
 * cases (libeventbus-conformance) against the configured transport, or
 * one named by --transport NAME or a plugin file's path, through the kit's
 * plain runner: one line per case, then `N passed, N failed, N skipped`.
 *
 * The -c and -X settings (given before or after the subcommand) and
 * --transport reach every case's config through the kit's settings
 * (eb_conformance_add_file / _add_setting); the whole config is checked
 * first (eb_config_check), so a bad transport or key is one line and exit
 * 2 rather than every case failing.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "eventbus/conformance.h"

static const char USAGE[] =
    "usage: eventbus conformance [--transport NAME|PATH] [--case NAME]... [--list]\n"
    "                            [--retention N] [--timeout SEC] [-c FILE] [-X key=value]...\n"
    "\n"
    "Runs the transport conformance cases, each in a process of its own, against\n"
    "the configured transport (memory when none is set): one line per case (ok,\n"
    "FAIL or skip with the reason) and a final `N passed, N failed, N skipped`\n"
    "line. A case needing feature flags the transport lacks is skipped.\n"
    "\n"
    "  --transport NAME   the transport plugin eventbus-NAME.so on the search path\n"
    "  --transport PATH   a plugin file (PATH/TO/eventbus-NAME.so): its directory is\n"
    "                     searched first (plugin.path) and the transport is NAME\n"
    "  --case NAME        run only this case (repeatable)\n"
    "  --list             list the cases, the flags each needs and the retention\n"
    "                     it needs, and exit\n"
    "  --retention N      the transport keeps only N messages of a topic for a\n"
    "                     group none of whose members is receiving: cases needing\n"
    "                     more are skipped (default: no limit)\n"
    "  --timeout SEC      kill a case after SEC seconds (default 120)\n"
    "  -c FILE, -X k=v    settings every case's config gets (a server's address,\n"
    "                     the transport's own keys); --transport wins over them\n"
    "\n"
    "Exit: 0 every case passed or was skipped, 1 a case failed, 2 bad usage or\n"
    "an invalid configuration.\n";

typedef struct conformance_opts {
    const char *transport;     /* --transport, or NULL */
    char **runner_argv;        /* what the kit's runner gets */
    int runner_argc;
} conformance_opts;

static void push_runner_arg(conformance_opts *o, const char *arg)
{
    o->runner_argv[o->runner_argc++] = (char *)arg;
}

/* @returns whether text is a whole number in [min, max] (else printed). */
static bool whole_number(const char *opt, const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max) {
        cli_fail(CLI_USAGE, "conformance: %s needs a whole number from %ld to %ld, not '%s'",
                 opt, min, max, text);
        return false;
    }
    *out = v;
    return true;
}

/* Parses the subcommand's options; -c and -X go to c. @returns CLI_OK, -1
 * after --help, or the exit code (printed). */
static int parse(cli *c, conformance_opts *o, int argc, char **argv)
{
    push_runner_arg(o, "eventbus conformance");
    for (int i = 1; i < argc; i++) {
        int rc = CLI_OK;
        if (cli_common_option(c, argc, argv, &i, &rc)) {
            if (rc != CLI_OK)
                return rc;
            continue;
        }
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(USAGE, stdout);
            return -1;
        }
        if (strcmp(a, "--list") == 0) {
            push_runner_arg(o, a);
            continue;
        }
        bool with_value = strcmp(a, "--transport") == 0 || strcmp(a, "--case") == 0 ||
                          strcmp(a, "--retention") == 0 || strcmp(a, "--timeout") == 0;
        if (!with_value && a[0] == '-')
            return cli_fail(CLI_USAGE, "conformance: unknown option '%s' (see eventbus "
                            "conformance --help)", a);
        if (!with_value)
            return cli_fail(CLI_USAGE, "conformance: unexpected argument '%s'", a);
        if (!v)
            return cli_fail(CLI_USAGE, "conformance: %s needs a value", a);
        i++;
        if (strcmp(a, "--transport") == 0) {
            o->transport = v;
            continue;
        }
        long n;
        if (strcmp(a, "--case") == 0 && !eb_conformance_find(v))
            return cli_fail(CLI_USAGE, "conformance: no case named '%s' (eventbus "
                            "conformance --list shows them)", v);
        if (strcmp(a, "--retention") == 0) {
            if (!whole_number(a, v, 1, 2000000000L, &n))
                return CLI_USAGE;
            eb_conformance_set_retention((unsigned long)n);
            continue;
        }
        if (strcmp(a, "--timeout") == 0 && !whole_number(a, v, 1, 86400, &n))
            return CLI_USAGE;
        push_runner_arg(o, a);
        push_runner_arg(o, v);
    }
    return CLI_OK;
}

/* A path (it has a '/' or ends in .so) rather than a transport's name. */
static bool is_path(const char *transport)
{
    size_t len = strlen(transport);
    return strchr(transport, '/') || (len > 3 && strcmp(transport + len - 3, ".so") == 0);
}

/* Sets key in c's config and in every case's. @returns CLI_OK or 2. */
static int set_everywhere(cli *c, const char *key, const char *value)
{
    char err[1024] = "";
    if (eb_config_set(c->cfg, key, value, err, sizeof err) != 0 ||
        eb_conformance_add_setting(key, value, err, sizeof err) != 0)
        return cli_fail(CLI_USAGE, "conformance: %s", err);
    return CLI_OK;
}

/* --transport PATH/eventbus-NAME.so: transport NAME, searched first in the
 * file's directory (before any plugin.path already set). */
static int use_plugin_file(cli *c, const char *path)
{
    char real[PATH_MAX], dir[PATH_MAX], base[PATH_MAX], name[256];
    struct stat st;
    if (!realpath(path, real) || stat(real, &st) != 0)
        return cli_fail(CLI_USAGE, "conformance: --transport %s: no such file", path);
    if (!S_ISREG(st.st_mode))
        return cli_fail(CLI_USAGE, "conformance: --transport %s: not a plugin file", path);
    snprintf(dir, sizeof dir, "%s", real);
    snprintf(base, sizeof base, "%s", real);
    const char *file = basename(base);
    size_t len = strlen(file);
    if (strncmp(file, "eventbus-", 9) != 0 || len <= 12 || strcmp(file + len - 3, ".so") != 0 ||
        len - 12 >= sizeof name)
        return cli_fail(CLI_USAGE, "conformance: --transport %s: not a transport plugin "
                        "file (they are named eventbus-NAME.so)", path);
    snprintf(name, sizeof name, "%.*s", (int)(len - 12), file + 9);

    const char *before = eb_config_get(c->cfg, "plugin.path");
    size_t size = strlen(dir) + (before ? strlen(before) : 0) + 2;
    char *search = malloc(size);
    if (!search)
        return cli_fail(CLI_FAILED, "out of memory");
    snprintf(search, size, "%s%s%s", dirname(dir), before && *before ? ":" : "",
             before ? before : "");
    int rc = set_everywhere(c, "plugin.path", search);
    free(search);
    return rc == CLI_OK ? set_everywhere(c, "transport", name) : rc;
}

/* Hands the -c and -X settings, in order, to every case's config. */
static int pass_settings_on(cli *c)
{
    char err[1024] = "";
    for (size_t i = 0; i < c->ngiven; i++) {
        const cli_setting *s = &c->given[i];
        int rc;
        if (s->option == 'c') {
            rc = eb_conformance_add_file(s->value, err, sizeof err);
        } else {
            const char *eq = strchr(s->value, '=');
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)(eq - s->value), s->value);
            rc = eb_conformance_add_setting(key, eq + 1, err, sizeof err);
        }
        if (rc != 0)
            return cli_fail(CLI_USAGE, "conformance: %s", err);
    }
    return CLI_OK;
}

static int prepare(cli *c, const conformance_opts *o, bool listing)
{
    int rc = pass_settings_on(c);
    if (rc == CLI_OK && o->transport)
        rc = is_path(o->transport) ? use_plugin_file(c, o->transport)
                                   : set_everywhere(c, "transport", o->transport);
    if (rc != CLI_OK || listing)
        return rc;
    char err[1024] = "";
    int check = eb_config_check(c->cfg, err, sizeof err);
    if (check == EB_ERR_NOMEM)
        return cli_fail(CLI_FAILED, "conformance: out of memory");
    if (check != 0)
        return cli_fail(CLI_USAGE, "conformance: %s", err);
    return CLI_OK;
}

int cmd_conformance(cli *c, int argc, char **argv)
{
    /* Every option of ours is at most two runner arguments. */
    conformance_opts o = {.runner_argv = calloc((size_t)argc * 2 + 2, sizeof(char *))};
    if (!o.runner_argv)
        return cli_fail(CLI_FAILED, "out of memory");
    int rc = parse(c, &o, argc, argv);
    bool listing = false;
    for (int i = 1; i < o.runner_argc; i++)
        listing |= strcmp(o.runner_argv[i], "--list") == 0;
    if (rc == CLI_OK)
        rc = prepare(c, &o, listing);
    if (rc == CLI_OK) {
        fflush(stdout);
        rc = eb_conformance_run(o.runner_argc, o.runner_argv);
    }
    eb_conformance_clear_settings();
    free(o.runner_argv);
    return rc < 0 ? CLI_OK : rc;
}
