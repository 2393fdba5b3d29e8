/*
 * test_cli_plugins.c — `eventbus` itself and `eventbus plugins`, run as a
 * child process: the usage and exit codes (0 ok, 1 runtime failure, 2
 * usage or configuration error), errors as one line on stderr, and the
 * plugin list: the built transports with their ABI, flags and file; the
 * loader fixtures, the broken ones listed with the loader's reason; the
 * search order (plugin.path before $EVENTBUS_PLUGIN_PATH) and shadowing.
 * Also eb_plugins_list()'s bad arguments.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eventbus/eventbus.h"
#include "run_cli.h"

#define CLI EB_CLI_PATH

static void expect_one_line_error(const cli_result *r, const char *needle)
{
    cr_expect_eq(cli_lines(r->err), 1, "not one line on stderr: %s", r->err);
    cr_expect(strncmp(r->err, "eventbus: ", 10) == 0, "no 'eventbus: ' prefix: %s", r->err);
    cr_expect(strstr(r->err, needle), "stderr does not say '%s': %s", needle, r->err);
}

Test(cli, no_command_prints_the_usage_and_exits_2)
{
    cli_result *r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, NULL});
    cr_expect_eq(r->rc, 2);
    cr_expect(strstr(r->err, "usage: eventbus") && strstr(r->err, "plugins"), "%s", r->err);
    free(r);
}

Test(cli, help_and_version_exit_0_on_stdout)
{
    cli_result *r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "--help", NULL});
    cr_expect_eq(r->rc, 0);
    cr_expect(strstr(r->out, "Exit: 0 ok, 1 runtime failure, 2 usage"), "%s", r->out);
    free(r);
    r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "plugins", "--help", NULL});
    cr_expect_eq(r->rc, 0);
    cr_expect(strstr(r->out, "usage: eventbus plugins"), "%s", r->out);
    free(r);
    r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "--version", NULL});
    cr_expect_eq(r->rc, 0);
    cr_expect(strstr(r->out, EB_VERSION_STRING) && strstr(r->out, "ABI 1."), "%s", r->out);
    free(r);
}

Test(cli, an_unknown_command_or_option_is_a_usage_error)
{
    cli_result *r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "frobnicate", NULL});
    cr_expect_eq(r->rc, 2);
    expect_one_line_error(r, "unknown command 'frobnicate'");
    free(r);
    r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "--frob", "plugins", NULL});
    cr_expect_eq(r->rc, 2);
    expect_one_line_error(r, "unknown option '--frob'");
    free(r);
    r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "plugins", "--frob", NULL});
    cr_expect_eq(r->rc, 2);
    expect_one_line_error(r, "unknown option '--frob'");
    free(r);
    r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "plugins", "extra", NULL});
    cr_expect_eq(r->rc, 2);
    expect_one_line_error(r, "unexpected argument 'extra'");
    free(r);
}

Test(cli, a_bad_config_is_a_usage_error_naming_it)
{
    cli_result *r = cli_run(EB_PLUGIN_BUILD_DIR,
                            (char *[]){CLI, "-c", "/nonexistent/eb.properties", "plugins", NULL});
    cr_expect_eq(r->rc, 2);
    expect_one_line_error(r, "/nonexistent/eb.properties");
    free(r);
    r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "plugins", "-X", "dispach.workers=2", NULL});
    cr_expect_eq(r->rc, 2);
    expect_one_line_error(r, "did you mean 'dispatch.workers'");
    free(r);
    r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "plugins", "-X", "novalue", NULL});
    cr_expect_eq(r->rc, 2);
    expect_one_line_error(r, "expected key=value");
    free(r);
    r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "plugins", "-c", NULL});
    cr_expect_eq(r->rc, 2);
    expect_one_line_error(r, "-c needs a value");
    free(r);
}

Test(cli, plugins_lists_the_built_transports)
{
    cli_result *r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "plugins", NULL});
    cr_assert_eq(r->rc, 0, "%s", r->err);
    cr_expect(strstr(r->out, "memory  " EB_VERSION_STRING "  abi 1.2  durable,groups,key-order"),
              "no memory line: %s", r->out);
    cr_expect(strstr(r->out, EB_PLUGIN_BUILD_DIR "/eventbus-memory.so"), "%s", r->out);
    const char *redis = strstr(r->out, "redis  ");
    if (redis) /* built where hiredis is: its flags depend on redis.group.mode */
        cr_expect(strstr(redis, "(config decides)"), "%s", r->out);
    cr_expect(!strstr(r->out, "refused"), "%s", r->out);
    free(r);
}

Test(cli, plugins_lists_broken_plugins_with_the_loaders_reason)
{
    cli_result *r = cli_run(NULL, (char *[]){CLI, "-X", "plugin.path=" EB_TEST_PLUGIN_DIR,
                                             "plugins", NULL});
    cr_assert_eq(r->rc, 0, "%s", r->err);
    cr_expect(strstr(r->out, "okfixture  0.0.0-fixture  abi 1.2"), "%s", r->out);
    cr_expect(strstr(r->out, "abi10  0.0.0-fixture  abi 1.0"), "%s", r->out);
    cr_expect(strstr(r->out, "badabi  refused: ") && strstr(r->out, "built for transport ABI 99"),
              "%s", r->out);
    cr_expect(strstr(r->out, "noentry  refused: ") && strstr(r->out, "no symbol"), "%s",
              r->out);
    cr_expect(strstr(r->out, "nullslot  refused: ") && strstr(r->out, "'resume' NULL"), "%s",
              r->out);
    cr_expect(strstr(r->out, "small  refused: "), "%s", r->out);
    cr_expect(!strstr(r->out, "memory  "), "the build's plugins were listed: %s", r->out);
    free(r);
}

Test(cli, plugin_path_comes_first_and_shadows_the_environment)
{
    /* The same directory through both: listed once. Another directory
     * first: its plugins win and the later ones of the same name are
     * marked shadowed. */
    cli_result *r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "-X",
                                                           "plugin.path=" EB_PLUGIN_BUILD_DIR,
                                                           "plugins", NULL});
    cr_assert_eq(r->rc, 0, "%s", r->err);
    const char *first = strstr(r->out, "memory  ");
    cr_expect(first && !strstr(first + 1, "memory  "), "listed twice: %s", r->out);
    free(r);

    eb_plugin_info *list;
    size_t n;
    cr_assert_eq(eb_plugins_list(EB_TEST_PLUGIN_DIR ":" EB_PLUGIN_BUILD_DIR, &list, &n), 0);
    size_t fixtures = 0, memory = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i].name, "okfixture") == 0)
            fixtures++;
        if (strcmp(list[i].name, "memory") == 0) {
            memory++;
            cr_expect(!list[i].shadowed && !list[i].refused && list[i].abi_major == 1);
        }
    }
    cr_expect_eq(fixtures, 1);
    cr_expect_eq(memory, 1);
    eb_plugins_free(list, n);

    /* A copy of memory in a directory of its own, searched first. */
    char dir[] = "/tmp/eb-cli-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char copy[512], path[1024];
    snprintf(copy, sizeof copy, "cp %s/eventbus-memory.so %s/", EB_PLUGIN_BUILD_DIR, dir);
    cr_assert_eq(system(copy), 0);
    snprintf(path, sizeof path, "%s:%s", dir, EB_PLUGIN_BUILD_DIR);
    cr_assert_eq(eb_plugins_list(path, &list, &n), 0);
    size_t shadowed = 0, in_copy = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].name, "memory") == 0) {
            in_copy += strncmp(list[i].file, dir, strlen(dir)) == 0 && !list[i].shadowed;
            shadowed += strncmp(list[i].file, EB_PLUGIN_BUILD_DIR,
                                strlen(EB_PLUGIN_BUILD_DIR)) == 0 && list[i].shadowed;
        }
    eb_plugins_free(list, n);
    snprintf(copy, sizeof copy, "rm -r %s", dir);
    cr_expect_eq(system(copy), 0);
    cr_expect_eq(in_copy, 1, "the copy searched first is not the one in force");
    cr_expect_eq(shadowed, 1, "the later memory plugin is not marked shadowed");
}

Test(cli, eb_plugins_list_refuses_null_arguments)
{
    eb_plugin_info *list;
    size_t n;
    cr_expect_eq(eb_plugins_list(NULL, NULL, &n), EB_ERR_INVALID);
    cr_expect_eq(eb_plugins_list(NULL, &list, NULL), EB_ERR_INVALID);
    eb_plugins_free(NULL, 0);
}
