/*
 * test_cli_config.c — `eventbus config` and `--check` run as a user would
 * (and eb_config_effective()/eb_config_check() behind them): defaults
 * shown and marked, secrets redacted, a valid file passes, and each bad
 * input is one line naming the file and line: a misspelt transport key,
 * a bad transport value, an unknown transport, an unreadable file.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "eventbus/eventbus.h"
#include "run_cli.h"

#define CLI EB_CLI_PATH

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(cli_config, prints_defaults_marked_and_secrets_redacted)
{
    cli_result *r = cli_run(EB_PLUGIN_BUILD_DIR,
                            (char *[]){CLI, "config", "-X", "dispatch.workers=3", "-X",
                                       "redis.url=redis://app:s3cret@db:6379", NULL});
    cr_assert_eq(r->rc, 0, "%s", r->err);
    cr_expect(strstr(r->out, "dispatch.workers = 3\n"), "%s", r->out);
    cr_expect(strstr(r->out, "transport = memory  # default\n"), "%s", r->out);
    cr_expect(strstr(r->out, "retry.max.attempts = 5  # default\n"), "%s", r->out);
    cr_expect(strstr(r->out, "redis.url = redis://app:********@db:6379\n"), "%s", r->out);
    cr_expect(!strstr(r->out, "s3cret"), "the password was printed: %s", r->out);
    free(r);
}

Test(cli_config, check_passes_a_valid_file_and_names_the_line_of_a_bad_one)
{
    char good[] = "/tmp/eb-cli-good-XXXXXX", bad[] = "/tmp/eb-cli-bad-XXXXXX";
    close(mkstemp(good));
    close(mkstemp(bad));
    write_file(good, "transport = redis\nredis.block.ms = 500\ndispatch.workers = 2\n");
    cli_result *r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "config", "--check", "-c",
                                                            good, NULL});
    cr_expect_eq(r->rc, 0, "%s", r->err);
    cr_expect(strstr(r->out, "configuration ok"), "%s", r->out);
    free(r);

    static const struct {
        const char *text, *says;
    } cases[] = {
        {"transport = redis\n# a comment\nredis.blok.ms = 5\n",
         ":3: redis.blok.ms: unknown key; did you mean 'redis.block.ms'?"},
        {"transport = redis\nredis.block.ms = soon\n", ":2: redis.block.ms: bad number 'soon'"},
        {"transport = nosuch\n", "transport 'nosuch' not found"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_file(bad, cases[i].text);
        r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "config", "--check", "-c", bad, NULL});
        cr_expect_eq(r->rc, 2, "case %zu: exit %d", i, r->rc);
        cr_expect_eq(cli_lines(r->err), 1, "case %zu: %s", i, r->err);
        cr_expect(strstr(r->err, cases[i].says), "case %zu: %s", i, r->err);
        free(r);
    }
    unlink(good);
    unlink(bad);
    r = cli_run(EB_PLUGIN_BUILD_DIR, (char *[]){CLI, "config", "--check", "-c", bad, NULL});
    cr_expect_eq(r->rc, 2);
    cr_expect(strstr(r->err, bad), "an unreadable file is not named: %s", r->err);
    free(r);
}

Test(cli_config, the_api_refuses_null_arguments)
{
    char *text;
    char err[64];
    cr_expect_eq(eb_config_effective(NULL, &text), EB_ERR_INVALID);
    eb_config *cfg = eb_config_new();
    cr_expect_eq(eb_config_effective(cfg, NULL), EB_ERR_INVALID);
    cr_expect_eq(eb_config_check(NULL, err, sizeof err), EB_ERR_INVALID);
    cr_expect_eq(eb_config_check(cfg, NULL, 0), 0, "the default config (memory) is valid");
    eb_config_destroy(cfg);
}
