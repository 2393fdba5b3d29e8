/*
 * cmd_config.c — `eventbus config [--check]`: the effective configuration
 * (core defaults included and marked, secrets redacted), or a check of it
 * as opening a bus would make, transport keys included, without
 * connecting to anything. Public API only (eb_config_effective,
 * eb_config_check).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char USAGE[] =
    "usage: eventbus config [--check] [-c FILE] [-X key=value]...\n"
    "\n"
    "Prints the effective configuration: every core key (those not set with\n"
    "their default, marked \"# default\"), then the transport keys set;\n"
    "passwords and other secrets are shown as ********.\n"
    "--check instead checks it as opening a bus would, without connecting:\n"
    "core keys, the transport plugin, and each transport key by the plugin's\n"
    "own check; the first error names its file and line. A transport's\n"
    "checks of one key against another run only when a bus opens.\n"
    "\n"
    "Exit: 0 printed or valid, 1 runtime failure, 2 an invalid configuration\n"
    "or bad usage.\n";

int cmd_config(cli *c, int argc, char **argv)
{
    bool check = false;
    for (int i = 1; i < argc; i++) {
        int rc = CLI_OK;
        if (cli_common_option(c, argc, argv, &i, &rc)) {
            if (rc != CLI_OK)
                return rc;
            continue;
        }
        if (strcmp(argv[i], "--check") == 0) {
            check = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(USAGE, stdout);
            return CLI_OK;
        } else if (argv[i][0] == '-') {
            return cli_fail(CLI_USAGE, "config: unknown option '%s' (see eventbus config --help)",
                            argv[i]);
        } else {
            return cli_fail(CLI_USAGE, "config: unexpected argument '%s'", argv[i]);
        }
    }
    if (check) {
        char err[1024] = "";
        int rc = eb_config_check(c->cfg, err, sizeof err);
        if (rc == EB_ERR_NOMEM)
            return cli_fail(CLI_FAILED, "config: out of memory");
        if (rc != 0)
            return cli_fail(CLI_USAGE, "config: %s", err);
        printf("configuration ok\n");
        return fflush(stdout) == 0 ? CLI_OK : CLI_FAILED;
    }
    char *text = NULL;
    if (eb_config_effective(c->cfg, &text) != 0)
        return cli_fail(CLI_FAILED, "config: out of memory");
    fputs(text, stdout);
    eb_free(text);
    return fflush(stdout) == 0 ? CLI_OK : cli_fail(CLI_FAILED, "config: cannot write it");
}
