/*
 * test_cli_bench.c — `eventbus bench` run as a user would: a small run on
 * the memory transport (text and --json, both with every figure), and its
 * bad input: a number that is not one, a size below the 16 bytes the
 * payload's stamp needs, an unknown option, an unknown transport.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "run_cli.h"

#define CLI EB_CLI_PATH

Test(cli_bench, a_small_run_reports_every_figure)
{
    cli_result *r = cli_run(EB_PLUGIN_BUILD_DIR,
                            (char *[]){CLI, "bench", "--messages", "3000", "--keys", "10",
                                       "--workers", "2", NULL});
    cr_assert_eq(r->rc, 0, "%s", r->err);
    cr_expect(strstr(r->out, "eventbus bench: memory, 3000 messages of 100 bytes, 10 keys, "
                             "2 workers"),
              "%s", r->out);
    cr_expect(strstr(r->out, "publish") && strstr(r->out, "end to end") &&
                  strstr(r->out, "p99.9") && strstr(r->out, "peak RSS"),
              "%s", r->out);
    free(r);
    r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "bench", "--messages", "2000", "--keys",
                                                "0", "--work-us", "100", "--json", NULL});
    cr_assert_eq(r->rc, 0, "%s", r->err);
    cr_expect_eq(cli_lines(r->out), 1, "not one JSON line: %s", r->out);
    const char *fields[] = {"\"transport\":\"memory\"", "\"messages\":2000", "\"keys\":0",
                            "\"work_us\":100", "\"publish_msgs_per_s\":",
                            "\"e2e_msgs_per_s\":", "\"p99_9\":", "\"threads_peak\":",
                            "\"rss_peak_kib\":"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        cr_expect(strstr(r->out, fields[i]), "no %s in %s", fields[i], r->out);
    cr_expect_eq(r->err[0], '\0', "stderr not empty (not a terminal: no progress): %s",
                 r->err);
    free(r);
}

Test(cli_bench, bad_input_is_a_usage_error_in_one_line)
{
    static const struct {
        const char *args[4];
        const char *says;
    } cases[] = {
        {{"--messages", "lots"}, "--messages needs a whole number"},
        {{"--messages", "0"}, "--messages needs a whole number >= 1"},
        {{"--size", "8"}, "--size needs a whole number >= 16"},
        {{"--work-us"}, "--work-us needs a whole number"},
        {{"--fast"}, "unknown option '--fast'"},
        {{"-X", "transport=nosuch"}, "transport 'nosuch' not found"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *argv[6] = {CLI, "bench"};
        int n = 2;
        for (int j = 0; j < 4 && cases[i].args[j]; j++)
            argv[n++] = (char *)cases[i].args[j];
        argv[n] = NULL;
        cli_result *r = cli_run(EB_PLUGIN_BUILD_DIR, argv);
        cr_expect_eq(r->rc, 2, "case %zu: exit %d: %s", i, r->rc, r->err);
        cr_expect_eq(cli_lines(r->err), 1, "case %zu: not one line: %s", i, r->err);
        cr_expect(strstr(r->err, cases[i].says), "case %zu: %s", i, r->err);
        free(r);
    }
}
