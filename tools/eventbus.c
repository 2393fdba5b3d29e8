/*
 * eventbus.c — the eventbus command: git-style subcommands over the public
 * API (one file each: cmd_*.c), options shared by all in cli.c.
 *
 * Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eventbus/transport.h"

static const struct {
    const char *name;
    int (*run)(cli *c, int argc, char **argv);
    const char *summary;
} COMMANDS[] = {
    {"bench", cmd_bench, "publish and handle N messages; rates, latency, threads, RSS"},
    {"config", cmd_config, "print the effective configuration, or --check it"},
    {"conformance", cmd_conformance, "run the transport conformance cases"},
    {"plugins", cmd_plugins, "list the transport plugins on the search path"},
    {"pub", cmd_pub, "publish each argument or line of stdin"},
    {"sub", cmd_sub, "print a topic's messages as they are handled"},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: eventbus [-c FILE] [-X key=value]... COMMAND [OPTIONS] [ARGS]\n"
            "       eventbus --help | --version\n"
            "\n"
            "One message-bus API over interchangeable transports (memory, kafka,\n"
            "redis, or a plugin of your own).\n"
            "\n"
            "Commands (eventbus COMMAND --help for each):\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        fprintf(out, "  %-12s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(out,
            "\n"
            "Options, before or after COMMAND:\n"
            "  -c FILE        read settings from a properties file (key = value)\n"
            "  -X key=value   one setting; repeatable, applied in order after -c\n"
            "\n"
            "Exit: 0 ok, 1 runtime failure, 2 usage or configuration error.\n");
}

int main(int argc, char **argv)
{
    cli c = {.cfg = eb_config_new()};
    if (!c.cfg)
        return cli_fail(CLI_FAILED, "out of memory");
    int rc = CLI_USAGE, i = 1;
    for (; i < argc; i++) {
        int opt_rc = CLI_OK;
        if (cli_common_option(&c, argc, argv, &i, &opt_rc)) {
            if (opt_rc != CLI_OK)
                goto done;
            continue;
        }
        break;
    }
    if (i >= argc) {
        usage(stderr);
        goto done;
    }
    const char *name = argv[i];
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        rc = CLI_OK;
        goto done;
    }
    if (strcmp(name, "--version") == 0) {
        printf("eventbus %s (transport ABI %d.%d)\n", eb_version(), EB_TRANSPORT_ABI_MAJOR,
               EB_TRANSPORT_ABI_MINOR);
        rc = CLI_OK;
        goto done;
    }
    if (name[0] == '-') {
        rc = cli_fail(CLI_USAGE, "unknown option '%s' (see eventbus --help)", name);
        goto done;
    }
    for (size_t k = 0; k < sizeof COMMANDS / sizeof *COMMANDS; k++)
        if (strcmp(name, COMMANDS[k].name) == 0) {
            rc = COMMANDS[k].run(&c, argc - i, argv + i);
            goto done;
        }
    rc = cli_fail(CLI_USAGE, "unknown command '%s' (see eventbus --help)", name);
done:
    eb_config_destroy(c.cfg);
    free(c.given);
    return rc;
}
