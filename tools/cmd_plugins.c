/*
 * cmd_plugins.c — `eventbus plugins`: every transport plugin on the search
 * path (plugin.path, $EVENTBUS_PLUGIN_PATH, the installed directory), with
 * its name, version, ABI, feature flags and file; refused candidates with
 * the loader's reason. Uses eb_plugins_list() only.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char USAGE[] =
    "usage: eventbus plugins [-c FILE] [-X key=value]...\n"
    "\n"
    "Lists every transport plugin eventbus can find, in search order:\n"
    "plugin.path (from -c or -X), $EVENTBUS_PLUGIN_PATH, then the directory\n"
    "installed beside libeventbus. Each is loaded and checked as opening a\n"
    "bus would (nothing is connected). One line each:\n"
    "  NAME  VERSION  abi MAJOR.MINOR  FLAGS  FILE\n"
    "  NAME  refused: REASON\n"
    "FLAGS are the plugin's static flags; \"(config decides)\" marks a\n"
    "transport whose buses may say more or less, by their settings.\n"
    "\n"
    "Exit: 0 listed (refused plugins included), 1 the list failed, 2 bad usage.\n";

static const struct {
    uint64_t bit;
    const char *name;
} FLAGS[] = {
    {EB_FEATURE_DURABLE, "durable"},
    {EB_FEATURE_GROUPS, "groups"},
    {EB_FEATURE_KEY_ORDER, "key-order"},
    {EB_FEATURE_KEY_ORDER_SINGLE_MEMBER, "key-order-single-member"},
    {EB_FEATURE_REDELIVERY, "redelivery"},
    {EB_FEATURE_HEADERS, "headers"},
    {EB_FEATURE_TIMESTAMPS, "timestamps"},
    {EB_FEATURE_DELIVERY_COUNT, "delivery-count"},
    {EB_FEATURE_FAILOVER_GROUPS, "failover-groups"},
};

static void print_flags(uint64_t features)
{
    const char *sep = "";
    for (size_t i = 0; i < sizeof FLAGS / sizeof *FLAGS; i++)
        if (features & FLAGS[i].bit) {
            printf("%s%s", sep, FLAGS[i].name);
            sep = ",";
        }
    if (!*sep)
        printf("-");
}

int cmd_plugins(cli *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        int rc = CLI_OK;
        if (cli_common_option(c, argc, argv, &i, &rc)) {
            if (rc != CLI_OK)
                return rc;
            continue;
        }
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(USAGE, stdout);
            return CLI_OK;
        }
        if (argv[i][0] == '-')
            return cli_fail(CLI_USAGE, "plugins: unknown option '%s' (see eventbus plugins --help)",
                            argv[i]);
        return cli_fail(CLI_USAGE, "plugins: unexpected argument '%s' (it takes none)", argv[i]);
    }
    eb_plugin_info *list;
    size_t n;
    int rc = eb_plugins_list(eb_config_get(c->cfg, "plugin.path"), &list, &n);
    if (rc != 0)
        return cli_fail(CLI_FAILED, "plugins: cannot list the plugins: %s", eb_err_name(rc));
    for (size_t i = 0; i < n; i++) {
        const eb_plugin_info *p = &list[i];
        if (p->refused) {
            printf("%s  refused: %s\n", p->name, p->refused);
            continue;
        }
        printf("%s  %s  abi %u.%u  ", p->name, p->version, p->abi_major, p->abi_minor);
        print_flags(p->features);
        printf("%s  %s%s\n", p->features_vary ? " (config decides)" : "", p->file,
               p->shadowed ? "  (shadowed by the one above)" : "");
    }
    if (n == 0)
        fprintf(stderr, "eventbus: plugins: none found (set plugin.path or "
                        "EVENTBUS_PLUGIN_PATH)\n");
    eb_plugins_free(list, n);
    return fflush(stdout) == 0 ? CLI_OK : cli_fail(CLI_FAILED, "plugins: cannot write the list");
}
