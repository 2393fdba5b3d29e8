/*
 * test_cli_pubsub_usage.c — `eventbus pub` and `eventbus sub` given bad
 * usage or configuration, with no server: each is refused with exit 2
 * and one line on stderr saying what is wrong, before anything is
 * published or consumed; the memory transport is refused with a sentence
 * saying why and what to pick instead; --help prints the usage.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "run_cli.h"

#define CLI EB_CLI_PATH

static void expect_refused(char *const argv[], const char *says)
{
    cli_result *r = cli_run(EB_PLUGIN_BUILD_DIR, argv);
    cr_expect_eq(r->rc, 2, "%s %s: exit %d: %s", argv[1], argv[2], r->rc, r->err);
    cr_expect_eq(cli_lines(r->err), 1, "%s %s: not one line: %s", argv[1], argv[2], r->err);
    cr_expect(strstr(r->err, says), "%s %s: '%s' does not say '%s'", argv[1], argv[2], r->err,
              says);
    cr_expect_eq(r->out[0], '\0', "%s", r->out);
    free(r);
}

Test(cli_pubsub_usage, unknown_options_are_refused)
{
    expect_refused((char *[]){CLI, "pub", "t", "--bogus", NULL},
                   "pub: unknown option '--bogus' (see eventbus pub --help)");
    expect_refused((char *[]){CLI, "sub", "-z", "t", NULL},
                   "sub: unknown option '-z' (see eventbus sub --help)");
}

Test(cli_pubsub_usage, a_missing_topic_is_refused)
{
    expect_refused((char *[]){CLI, "pub", NULL}, "pub: no TOPIC given");
    expect_refused((char *[]){CLI, "pub", "-k", "key", NULL}, "pub: no TOPIC given");
    expect_refused((char *[]){CLI, "sub", "-g", "group", NULL}, "sub: no TOPIC given");
    expect_refused((char *[]){CLI, "sub", "a", "b", NULL},
                   "sub: unexpected argument 'b' (one TOPIC only)");
}

Test(cli_pubsub_usage, an_unreadable_config_file_is_named)
{
    const char *missing = "/nonexistent/eventbus-test.properties";
    expect_refused((char *[]){CLI, "pub", "t", "-c", (char *)missing, "m", NULL}, missing);
    expect_refused((char *[]){CLI, "sub", "-c", (char *)missing, "t", NULL}, missing);
}

Test(cli_pubsub_usage, an_unknown_transport_is_refused)
{
    expect_refused((char *[]){CLI, "pub", "t", "-X", "transport=nosuch", "m", NULL},
                   "transport 'nosuch' not found");
    expect_refused((char *[]){CLI, "sub", "t", "-X", "transport=nosuch", NULL},
                   "transport 'nosuch' not found");
}

Test(cli_pubsub_usage, the_memory_transport_is_refused_with_the_way_out)
{
    static const char *const says[] = {
        "the memory transport's broker lives inside one process",
        "-X transport=kafka -X kafka.bootstrap.servers=HOST:PORT",
        "-X transport=redis -X redis.url=redis://HOST:PORT",
        "-X transport=dirlog, from examples/custom-transport/",
    };
    for (size_t i = 0; i < sizeof says / sizeof *says; i++) {
        expect_refused((char *[]){CLI, "pub", "t", "m", NULL}, says[i]);
        expect_refused((char *[]){CLI, "sub", "t", "-X", "transport=memory", NULL}, says[i]);
    }
}

Test(cli_pubsub_usage, bad_option_values_are_refused)
{
    expect_refused((char *[]){CLI, "sub", "t", "-n", "0", NULL},
                   "sub: -n needs a whole number >= 1, not '0'");
    expect_refused((char *[]){CLI, "sub", "t", "-n", "ten", NULL},
                   "sub: -n needs a whole number >= 1, not 'ten'");
    expect_refused((char *[]){CLI, "sub", "t", "--from", "middle", NULL},
                   "sub: --from is earliest or latest, not 'middle'");
    expect_refused((char *[]){CLI, "sub", "t", "--format", "xml", NULL},
                   "sub: --format is payload or json, not 'xml'");
    expect_refused((char *[]){CLI, "sub", "t", "-g", NULL}, "sub: -g needs a value");
    expect_refused((char *[]){CLI, "pub", "t", "--format", "csv", NULL},
                   "pub: --format is payload or json, not 'csv'");
    expect_refused((char *[]){CLI, "pub", "t", "-H", "=v", NULL},
                   "pub: -H needs name=value with a non-empty name, not '=v'");
    expect_refused((char *[]){CLI, "pub", "t", "-H", "novalue", NULL},
                   "pub: -H needs name=value with a non-empty name, not 'novalue'");
    expect_refused((char *[]){CLI, "pub", "t", "-K", "", NULL},
                   "pub: -K needs a non-empty delimiter");
    expect_refused((char *[]){CLI, "pub", "t", "-k", NULL}, "pub: -k needs a value");
    expect_refused((char *[]){CLI, "pub", "t", "--format", "json", "-k", "key", NULL},
                   "pub: -k, -K and -H are for --format payload");
    expect_refused((char *[]){CLI, "pub", "t", "-X", "nokey", NULL},
                   "-X nokey: expected key=value");
}

Test(cli_pubsub_usage, help_prints_the_usage_and_the_json_schema)
{
    static const char *const commands[] = {"pub", "sub"};
    for (size_t i = 0; i < 2; i++) {
        cli_result *r = cli_run(EB_PLUGIN_BUILD_DIR,
                                (char *[]){CLI, (char *)commands[i], "--help", NULL});
        cr_expect_eq(r->rc, 0, "%s", r->err);
        char usage[64];
        snprintf(usage, sizeof usage, "usage: eventbus %s TOPIC", commands[i]);
        cr_expect(strstr(r->out, usage), "%s", r->out);
        cr_expect(strstr(r->out, "\"payload\": s | \"payload_b64\": s"), "%s", r->out);
        cr_expect(strstr(r->out, "Exit: 0"), "%s", r->out);
        free(r);
    }
}
