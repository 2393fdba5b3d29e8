/*
 * test_cli_conformance.c — `eventbus conformance`, run as a child process:
 * bad input (unknown transport, a file that is not a plugin, unknown case,
 * unknown option, bad numbers, a bad setting) is one line on stderr and
 * exit 2; on memory a chosen case passes (exit 0) by name and by the
 * plugin file's path with no search path set; -X settings reach every
 * case (one lane makes two_members_split fail: exit 1); --retention skips
 * a case that needs more; --list names the fail-over cases.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "run_cli.h"

#define CLI EB_CLI_PATH
#define MEMORY_SO EB_PLUGIN_BUILD_DIR "/eventbus-memory.so"

static void expect_usage_error(cli_result *r, const char *needle)
{
    cr_expect_eq(r->rc, 2, "exit %d; stderr: %s", r->rc, r->err);
    cr_expect_eq(cli_lines(r->err), 1, "not one line on stderr: %s", r->err);
    cr_expect(strncmp(r->err, "eventbus: ", 10) == 0, "no 'eventbus: ' prefix: %s", r->err);
    cr_expect(strstr(r->err, needle), "stderr does not say '%s': %s", needle, r->err);
    cr_expect(!strstr(r->out, "passed"), "cases ran after a usage error: %s", r->out);
    free(r);
}

Test(cli_conformance, an_unknown_transport_is_a_usage_error)
{
    expect_usage_error(cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "conformance",
                                                              "--transport", "nosuch", NULL}),
                       "transport 'nosuch' not found");
}

Test(cli_conformance, a_path_that_is_not_a_plugin_is_a_usage_error)
{
    /* Not named like a plugin, missing, and named like one but not one. */
    expect_usage_error(cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "conformance", "--transport",
                                                              "/etc/hostname", NULL}),
                       "not a transport plugin file");
    expect_usage_error(cli_run(EB_PLUGIN_BUILD_DIR,
                               (char *[]){CLI, "conformance", "--transport",
                                          "/nonexistent/eventbus-x.so", NULL}),
                       "no such file");
    char dir[] = "/tmp/eb-cli-conf-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char fake[256];
    snprintf(fake, sizeof fake, "%s/eventbus-fake.so", dir);
    FILE *f = fopen(fake, "w");
    cr_assert_not_null(f);
    fputs("not a shared object\n", f);
    fclose(f);
    expect_usage_error(cli_run(EB_PLUGIN_BUILD_DIR,
                               (char *[]){CLI, "conformance", "--transport", fake, NULL}),
                       "cannot load plugin");
    cr_expect_eq(remove(fake), 0);
    cr_expect_eq(rmdir(dir), 0);
}

Test(cli_conformance, an_unknown_case_or_option_is_a_usage_error)
{
    expect_usage_error(cli_run(EB_PLUGIN_BUILD_DIR,
                               (char *[]){CLI, "conformance", "--case", "nope", NULL}),
                       "no case named 'nope'");
    expect_usage_error(cli_run(EB_PLUGIN_BUILD_DIR,
                               (char *[]){CLI, "conformance", "--frob", NULL}),
                       "unknown option '--frob'");
    expect_usage_error(cli_run(EB_PLUGIN_BUILD_DIR,
                               (char *[]){CLI, "conformance", "extra", NULL}),
                       "unexpected argument 'extra'");
    expect_usage_error(cli_run(EB_PLUGIN_BUILD_DIR,
                               (char *[]){CLI, "conformance", "--case", NULL}),
                       "--case needs a value");
    expect_usage_error(cli_run(EB_PLUGIN_BUILD_DIR,
                               (char *[]){CLI, "conformance", "--retention", "0", NULL}),
                       "--retention needs a whole number");
    expect_usage_error(cli_run(EB_PLUGIN_BUILD_DIR,
                               (char *[]){CLI, "conformance", "--timeout", "soon", NULL}),
                       "--timeout needs a whole number");
}

Test(cli_conformance, a_bad_setting_is_a_usage_error_before_any_case_runs)
{
    expect_usage_error(cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "conformance", "-X",
                                                              "memory.partitions=0", NULL}),
                       "memory.partitions");
    expect_usage_error(cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "-X", "dispach.workers=2",
                                                              "conformance", NULL}),
                       "did you mean 'dispatch.workers'");
}

Test(cli_conformance, a_case_passes_on_memory_with_no_config)
{
    cli_result *r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "conformance", "--case",
                                                           "anonymous_member", NULL});
    cr_expect_eq(r->rc, 0, "exit %d; stdout: %s; stderr: %s", r->rc, r->out, r->err);
    cr_expect(strstr(r->out, "ok anonymous_member ("), "%s", r->out);
    cr_expect(strstr(r->out, "\n1 passed, 0 failed, 0 skipped\n"), "%s", r->out);
    cr_expect_eq(cli_lines(r->out), 2, "one line per case and the summary: %s", r->out);
    free(r);
}

Test(cli_conformance, a_plugin_path_works_with_no_search_path)
{
    /* EVENTBUS_PLUGIN_PATH unset: only --transport's directory finds it. */
    cli_result *r = cli_run(NULL, (char *[]){CLI, "conformance", "--transport", MEMORY_SO,
                                             "--case", "bad_input", "--case",
                                             "duplicate_subscription", NULL});
    cr_expect_eq(r->rc, 0, "exit %d; stdout: %s; stderr: %s", r->rc, r->out, r->err);
    cr_expect(strstr(r->out, "ok bad_input (") && strstr(r->out, "ok duplicate_subscription ("),
              "%s", r->out);
    cr_expect(strstr(r->out, "2 passed, 0 failed, 0 skipped"), "%s", r->out);
    free(r);
}

Test(cli_conformance, settings_reach_every_case_and_a_failure_exits_1)
{
    /* One lane: the second member of a group gets nothing to share. */
    cli_result *r = cli_run(EB_PLUGIN_BUILD_DIR,
                            (char *[]){CLI, "-X", "memory.partitions=1", "conformance",
                                       "--case", "two_members_split", NULL});
    cr_expect_eq(r->rc, 1, "exit %d; stdout: %s; stderr: %s", r->rc, r->out, r->err);
    cr_expect(strstr(r->out, "FAIL two_members_split (") &&
                  strstr(r->out, "did not share the work"),
              "%s", r->out);
    cr_expect(strstr(r->out, "0 passed, 1 failed, 0 skipped"), "%s", r->out);
    free(r);
}

Test(cli_conformance, a_declared_retention_skips_cases_that_need_more)
{
    cli_result *r = cli_run(EB_PLUGIN_BUILD_DIR,
                            (char *[]){CLI, "conformance", "--retention", "1000", "--case",
                                       "graceful_handover", "--case", "group_starts_earliest",
                                       NULL});
    cr_expect_eq(r->rc, 0, "exit %d; stdout: %s; stderr: %s", r->rc, r->out, r->err);
    cr_expect(strstr(r->out, "skip graceful_handover (needs 4800 messages") &&
                  strstr(r->out, "keeps 1000"),
              "%s", r->out);
    cr_expect(strstr(r->out, "ok group_starts_earliest ("), "%s", r->out);
    cr_expect(strstr(r->out, "1 passed, 0 failed, 1 skipped"), "%s", r->out);
    free(r);
}

Test(cli_conformance, list_names_every_case_with_what_it_needs)
{
    cli_result *r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "conformance", "--list", NULL});
    cr_expect_eq(r->rc, 0, "%s", r->err);
    cr_expect(strstr(r->out, "two_members_split  needs: GROUPS\n"), "%s", r->out);
    cr_expect(strstr(r->out, "graceful_handover  needs: DURABLE GROUPS|FAILOVER_GROUPS  "
                             "keeps: 4800\n"),
              "%s", r->out);
    cr_expect(strstr(r->out, "failover_kill_takeover  needs: DURABLE FAILOVER_GROUPS  keeps: "
                             "1600  [server control]\n"),
              "%s", r->out);
    cr_expect(!strstr(r->out, "passed"), "--list ran cases: %s", r->out);
    free(r);
}
