/*
 * test_config.c — eb_config through the public API: setting and checking
 * keys, properties files, error sentences and the redacted dump.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eventbus/eventbus.h"

static eb_config *cfg;
static char errstr[512];
static char temp_path[64]; /* a file written by write_temp(), or "" */

static void setup(void)
{
    cfg = eb_config_new();
    cr_assert_not_null(cfg);
}

static void teardown(void)
{
    eb_config_destroy(cfg);
    if (temp_path[0])
        unlink(temp_path);
}

TestSuite(config, .init = setup, .fini = teardown);

/* Writes `text` to a new file in /tmp; its path is in temp_path. */
static const char *write_temp(const char *text)
{
    strcpy(temp_path, "/tmp/eb-test-config-XXXXXX");
    int fd = mkstemp(temp_path);
    cr_assert_geq(fd, 0);
    size_t len = strlen(text);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    return temp_path;
}

static int set(const char *key, const char *value)
{
    errstr[0] = '\0';
    return eb_config_set(cfg, key, value, errstr, sizeof errstr);
}

static int load_text(const char *text)
{
    errstr[0] = '\0';
    return eb_config_load(cfg, write_temp(text), errstr, sizeof errstr);
}

/* The dump as a string the test owns. */
static char *dump(void)
{
    char *out = NULL;
    cr_assert_eq(eb_config_dump(cfg, &out), 0);
    cr_assert_not_null(out);
    return out;
}

static void assert_dump(const char *expected)
{
    char *out = dump();
    cr_expect_str_eq(out, expected);
    free(out);
}

/* ------------------------------------------------------------ settings */

Test(config, a_new_config_has_no_settings)
{
    cr_expect_null(eb_config_get(cfg, "transport"));
    assert_dump("");
}

Test(config, set_then_get_returns_the_value)
{
    cr_assert_eq(set("dispatch.workers", "4"), 0);
    cr_expect_str_eq(eb_config_get(cfg, "dispatch.workers"), "4");
}

Test(config, later_settings_win_and_keep_their_first_place)
{
    cr_assert_eq(set("log.level", "info"), 0);
    cr_assert_eq(set("transport", "kafka"), 0);
    cr_assert_eq(set("log.level", "debug"), 0);
    cr_expect_str_eq(eb_config_get(cfg, "log.level"), "debug");
    assert_dump("log.level = debug\ntransport = kafka\n");
}

Test(config, a_failed_set_keeps_the_previous_value)
{
    cr_assert_eq(set("dispatch.workers", "4"), 0);
    cr_expect_eq(set("dispatch.workers", "abc"), EB_ERR_CONFIG);
    cr_expect_str_eq(eb_config_get(cfg, "dispatch.workers"), "4");
}

Test(config, null_arguments_are_invalid)
{
    char *out = NULL;
    cr_expect_eq(eb_config_set(NULL, "transport", "memory", NULL, 0),
                 EB_ERR_INVALID);
    cr_expect_eq(eb_config_set(cfg, NULL, "memory", NULL, 0), EB_ERR_INVALID);
    cr_expect_eq(eb_config_set(cfg, "transport", NULL, NULL, 0),
                 EB_ERR_INVALID);
    cr_expect_eq(eb_config_load(NULL, "/tmp/x", NULL, 0), EB_ERR_INVALID);
    cr_expect_eq(eb_config_load(cfg, NULL, NULL, 0), EB_ERR_INVALID);
    cr_expect_eq(eb_config_dump(NULL, &out), EB_ERR_INVALID);
    cr_expect_eq(eb_config_dump(cfg, NULL), EB_ERR_INVALID);
    cr_expect_eq(eb_config_set_event_cb(NULL, NULL, NULL), EB_ERR_INVALID);
    cr_expect_null(eb_config_get(NULL, "transport"));
    cr_expect_null(eb_config_get(cfg, NULL));
}

Test(config, an_empty_key_is_invalid)
{
    cr_expect_eq(set("", "x"), EB_ERR_INVALID);
    cr_expect_str_eq(errstr, "eb_config_set: empty key");
}

Test(config, a_missing_error_buffer_is_allowed)
{
    cr_expect_eq(eb_config_set(cfg, "dispatch.workers", "x", NULL, 0),
                 EB_ERR_CONFIG);
    cr_expect_eq(eb_config_set(cfg, "dispatch.workers", "x", errstr, 0),
                 EB_ERR_CONFIG);
}

Test(config, an_error_sentence_is_cut_to_the_buffer)
{
    char small[8];
    cr_expect_eq(eb_config_set(cfg, "log.level", "loud", small, sizeof small),
                 EB_ERR_CONFIG);
    cr_expect_str_eq(small, "log.lev");
}

Test(config, destroy_accepts_null)
{
    eb_config_destroy(NULL);
}

static void on_event(eb_bus *bus, const eb_event *event, void *opaque) {}

Test(config, the_event_callback_can_be_set_and_cleared)
{
    cr_expect_eq(eb_config_set_event_cb(cfg, on_event, cfg), 0);
    cr_expect_eq(eb_config_set_event_cb(cfg, NULL, NULL), 0);
}

/* --------------------------------------------------------- key checking */

Test(config, an_unknown_core_key_suggests_the_nearest)
{
    cr_expect_eq(set("dispatch.worker", "4"), EB_ERR_CONFIG);
    cr_expect_str_eq(errstr, "unknown key 'dispatch.worker'; did you mean "
                             "'dispatch.workers'?");
    cr_expect_null(eb_config_get(cfg, "dispatch.worker"));
}

Test(config, an_unknown_core_key_far_from_any_has_no_suggestion)
{
    cr_expect_eq(set("dispatch.zzzzzzzzzz", "4"), EB_ERR_CONFIG);
    cr_expect_str_eq(errstr, "unknown key 'dispatch.zzzzzzzzzz'");
}

Test(config, a_bare_core_namespace_is_unknown)
{
    cr_expect_eq(set("log", "info"), EB_ERR_CONFIG);
    cr_expect_eq(set("transport.name", "kafka"), EB_ERR_CONFIG);
}

Test(config, a_near_miss_of_a_core_namespace_is_refused)
{
    cr_expect_eq(set("dispach.workers", "4"), EB_ERR_CONFIG);
    cr_expect_str_eq(errstr, "unknown key 'dispach.workers'; did you mean "
                             "'dispatch.workers'?");
}

Test(config, swapped_letters_are_a_near_miss)
{
    cr_expect_eq(set("lgo.level", "info"), EB_ERR_CONFIG);
    cr_expect_str_eq(errstr, "unknown key 'lgo.level'; did you mean "
                             "'log.level'?");
}

Test(config, transport_keys_are_accepted_when_set)
{
    cr_expect_eq(set("memory.partitions", "8"), 0);
    cr_expect_eq(set("kafka.bootstrap.servers", "localhost:9092"), 0);
    cr_expect_eq(set("kafka.acks", "all"), 0);
    cr_expect_eq(set("redis.url", "redis://localhost:6379/0"), 0);
    cr_expect_eq(set("redis.db", "0"), 0);
    cr_expect_eq(set("myplugin.x", "anything at all"), 0);
    cr_expect_str_eq(eb_config_get(cfg, "myplugin.x"), "anything at all");
}

Test(config, a_key_that_would_not_load_back_is_refused)
{
    cr_expect_eq(set("my key", "1"), EB_ERR_CONFIG);
    cr_expect_eq(set("a=b", "1"), EB_ERR_CONFIG);
    cr_expect_eq(set("#comment", "1"), EB_ERR_CONFIG);
    cr_expect_eq(set("myplugin.x", "two\nlines"), EB_ERR_CONFIG);
    cr_expect_str_eq(errstr, "myplugin.x: the value contains a line break");
}

/* ------------------------------------------------------- value checking */

Test(config, a_bad_number_is_refused)
{
    cr_expect_eq(set("dispatch.workers", "abc"), EB_ERR_CONFIG);
    cr_expect_str_eq(errstr, "dispatch.workers: bad number 'abc' (expected "
                             "an integer from 0 to 1024)");
}

Test(config, numbers_are_plain_decimals)
{
    static const char *const bad[] = {"",    "12abc", "12 ", " 12", "+5",
                                      "0x10", "1.5",  "-",   "1e3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(set("retry.backoff.ms", bad[i]), EB_ERR_CONFIG,
                     "'%s' accepted", bad[i]);
        cr_expect(strstr(errstr, "bad number"), "'%s': %s", bad[i], errstr);
    }
}

Test(config, an_overflowing_number_is_a_bad_number)
{
    cr_expect_eq(set("message.max.bytes", "99999999999999999999"),
                 EB_ERR_CONFIG);
    cr_expect_str_eq(errstr, "message.max.bytes: bad number "
                             "'99999999999999999999' (expected an integer "
                             "from 1 to 1073741824)");
}

Test(config, a_number_out_of_range_is_refused)
{
    cr_expect_eq(set("dispatch.workers", "1025"), EB_ERR_CONFIG);
    cr_expect_str_eq(errstr, "dispatch.workers: 1025 is out of range "
                             "(expected an integer from 0 to 1024)");
    cr_expect_eq(set("dispatch.workers", "-1"), EB_ERR_CONFIG);
    cr_expect_eq(set("dispatch.queue.max", "0"), EB_ERR_CONFIG);
}

Test(config, the_bounds_of_a_range_are_accepted)
{
    cr_expect_eq(set("dispatch.workers", "0"), 0);
    cr_expect_eq(set("dispatch.workers", "1024"), 0);
    cr_expect_eq(set("message.max.bytes", "1073741824"), 0);
    cr_expect_eq(set("close.timeout.ms", "3600000"), 0);
}

Test(config, a_bad_enum_value_lists_the_choices)
{
    cr_expect_eq(set("log.level", "loud"), EB_ERR_CONFIG);
    cr_expect_str_eq(errstr, "log.level: bad value 'loud' (expected one of "
                             "error, warn, info, debug)");
    cr_expect_eq(set("log.level", "WARN"), EB_ERR_CONFIG);
    cr_expect_eq(set("log.level", "debug"), 0);
}

Test(config, the_transport_cannot_be_empty)
{
    cr_expect_eq(set("transport", ""), EB_ERR_CONFIG);
    cr_expect_eq(set("plugin.path", ""), 0);
    cr_expect_eq(set("dlq.topic", ""), 0);
}

/* ------------------------------------------------------ properties file */

Test(config, load_skips_comments_and_blank_lines_and_trims)
{
    cr_assert_eq(load_text("# a comment\n"
                           "! another comment\n"
                           "\n"
                           "   \t\n"
                           "  transport   =  kafka  \n"
                           "kafka.x=1\r\n"
                           "  # indented comment = not a setting\n"
                           "myplugin.query = a=b=c\n"
                           "myplugin.empty =\n"),
                 0, "%s", errstr);
    cr_expect_str_eq(eb_config_get(cfg, "transport"), "kafka");
    cr_expect_str_eq(eb_config_get(cfg, "kafka.x"), "1");
    cr_expect_str_eq(eb_config_get(cfg, "myplugin.query"), "a=b=c");
    cr_expect_str_eq(eb_config_get(cfg, "myplugin.empty"), "");
    cr_expect_null(eb_config_get(cfg, "# indented comment"));
}

Test(config, load_reads_a_last_line_without_newline)
{
    cr_assert_eq(load_text("log.level = info"), 0, "%s", errstr);
    cr_expect_str_eq(eb_config_get(cfg, "log.level"), "info");
}

Test(config, load_skips_a_utf8_byte_order_mark)
{
    cr_assert_eq(load_text("\xEF\xBB\xBFtransport = redis\n"), 0, "%s",
                 errstr);
    cr_expect_str_eq(eb_config_get(cfg, "transport"), "redis");
}

Test(config, later_lines_and_later_sets_win)
{
    cr_assert_eq(load_text("retry.max.attempts = 3\n"
                           "retry.max.attempts = 7\n"),
                 0, "%s", errstr);
    cr_expect_str_eq(eb_config_get(cfg, "retry.max.attempts"), "7");
    cr_assert_eq(set("retry.max.attempts", "9"), 0);
    cr_expect_str_eq(eb_config_get(cfg, "retry.max.attempts"), "9");
}

Test(config, a_line_without_equals_names_file_and_line)
{
    const char *path = write_temp("transport = memory\n"
                                  "this line has no equals sign\n"
                                  "log.level = info\n");
    char expected[256];
    snprintf(expected, sizeof expected,
             "%s:2: no '=' in this line (expected 'key = value')", path);
    cr_expect_eq(eb_config_load(cfg, path, errstr, sizeof errstr),
                 EB_ERR_CONFIG);
    cr_expect_str_eq(errstr, expected);
    cr_expect_str_eq(eb_config_get(cfg, "transport"), "memory");
    cr_expect_null(eb_config_get(cfg, "log.level"));
}

Test(config, a_line_without_a_key_is_an_error)
{
    cr_expect_eq(load_text("  = value\n"), EB_ERR_CONFIG);
    cr_expect(strstr(errstr, ":1: no key before '='"), "%s", errstr);
}

Test(config, an_unknown_key_in_a_file_names_file_line_and_suggestion)
{
    const char *path = write_temp("\n# workers\ndispach.workers = 4\n");
    char expected[256];
    snprintf(expected, sizeof expected,
             "%s:3: unknown key 'dispach.workers'; did you mean "
             "'dispatch.workers'?", path);
    cr_expect_eq(eb_config_load(cfg, path, errstr, sizeof errstr),
                 EB_ERR_CONFIG);
    cr_expect_str_eq(errstr, expected);
}

Test(config, a_bad_value_in_a_file_names_file_line_and_key)
{
    const char *path = write_temp("log.level = loud\n");
    char expected[256];
    snprintf(expected, sizeof expected,
             "%s:1: log.level: bad value 'loud' (expected one of error, "
             "warn, info, debug)", path);
    cr_expect_eq(eb_config_load(cfg, path, errstr, sizeof errstr),
                 EB_ERR_CONFIG);
    cr_expect_str_eq(errstr, expected);
}

Test(config, settings_before_a_bad_line_stay_applied)
{
    cr_expect_eq(load_text("dispatch.workers = 2\n"
                           "dispatch.workers = many\n"
                           "retry.backoff.ms = 5\n"),
                 EB_ERR_CONFIG);
    cr_expect(strstr(errstr, ":2: dispatch.workers: bad number 'many'"), "%s",
              errstr);
    cr_expect_str_eq(eb_config_get(cfg, "dispatch.workers"), "2");
    cr_expect_null(eb_config_get(cfg, "retry.backoff.ms"));
}

Test(config, a_missing_file_is_an_io_error)
{
    const char *path = "/tmp/eb-test-config-does-not-exist/app.properties";
    cr_expect_eq(eb_config_load(cfg, path, errstr, sizeof errstr), EB_ERR_IO);
    cr_expect_str_eq(errstr, "cannot read config file "
                             "'/tmp/eb-test-config-does-not-exist/"
                             "app.properties': No such file or directory");
}

Test(config, a_directory_is_an_io_error)
{
    cr_expect_eq(eb_config_load(cfg, "/tmp", errstr, sizeof errstr),
                 EB_ERR_IO);
    cr_expect(strstr(errstr, "cannot read config file '/tmp'"), "%s", errstr);
}

/* ----------------------------------------------------------------- dump */

Test(config, dump_lists_settings_in_first_set_order)
{
    cr_assert_eq(set("transport", "kafka"), 0);
    cr_assert_eq(set("kafka.bootstrap.servers", "b1:9092,b2:9092"), 0);
    cr_assert_eq(set("dispatch.workers", "8"), 0);
    assert_dump("transport = kafka\n"
                "kafka.bootstrap.servers = b1:9092,b2:9092\n"
                "dispatch.workers = 8\n");
}

Test(config, dump_hides_passwords_and_sasl_settings)
{
    cr_assert_eq(set("redis.password", "secret1"), 0);
    cr_assert_eq(set("kafka.ssl.key.password", "secret2"), 0);
    cr_assert_eq(set("kafka.sasl.username", "secret3"), 0);
    cr_assert_eq(set("kafka.sasl.password", "secret4"), 0);
    cr_assert_eq(set("kafka.ssl.ca.location", "/etc/ca.pem"), 0);
    cr_assert_eq(set("kafka.ssl.key.pem", "-----BEGIN PRIVATE KEY----- secret5"), 0);
    char *out = dump();
    cr_expect_str_eq(out, "redis.password = ********\n"
                          "kafka.ssl.key.password = ********\n"
                          "kafka.sasl.username = ********\n"
                          "kafka.sasl.password = ********\n"
                          "kafka.ssl.ca.location = /etc/ca.pem\n"
                          "kafka.ssl.key.pem = ********\n");
    cr_expect_null(strstr(out, "secret"));
    free(out);
}

Test(config, dump_hides_only_the_password_of_a_url)
{
    cr_assert_eq(set("redis.url", "redis://user:secret@host:6379/0"), 0);
    cr_assert_eq(set("myplugin.url", "redis://:secret@host"), 0);
    cr_assert_eq(set("other.url", "redis://host:6379/0"), 0);
    assert_dump("redis.url = redis://user:********@host:6379/0\n"
                "myplugin.url = redis://:********@host\n"
                "other.url = redis://host:6379/0\n");
}

Test(config, dump_does_not_change_the_values)
{
    cr_assert_eq(set("redis.url", "redis://user:secret@host"), 0);
    char *out = dump();
    free(out);
    cr_expect_str_eq(eb_config_get(cfg, "redis.url"),
                     "redis://user:secret@host");
}

/* A transport key's error at open names where it was set when it came
 * from a file, and nothing more when it came from eb_config_set() (the
 * application's own call): no "eb_config_set: " prefix (issue 10, gap 11). */
Test(config, transport_key_errors_at_open_name_a_file_line_only)
{
    char err[512] = "";
    eb_bus *bus = NULL;
    cr_assert_eq(set("memory.partitions", "many"), 0);
    cr_expect_eq(eb_bus_open(cfg, &bus, err, sizeof err), EB_ERR_CONFIG);
    cr_expect(strncmp(err, "memory.partitions: ", 19) == 0, "%s", err);
    eb_config_destroy(cfg);
    cfg = eb_config_new();
    cr_assert_eq(set("memry.partitions", "2"), 0);
    cr_expect_eq(eb_bus_open(cfg, &bus, err, sizeof err), EB_ERR_CONFIG);
    cr_expect(strncmp(err, "unknown key 'memry.partitions'", 30) == 0, "%s", err);

    char path[] = "/tmp/eb-config-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char text[] = "# app\nmemory.partitions = many\n";
    cr_assert_eq(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    eb_config_destroy(cfg);
    cfg = eb_config_new();
    cr_assert_eq(eb_config_load(cfg, path, err, sizeof err), 0, "%s", err);
    cr_expect_eq(eb_bus_open(cfg, &bus, err, sizeof err), EB_ERR_CONFIG);
    char want[64];
    snprintf(want, sizeof want, "%s:2: memory.partitions: ", path);
    cr_expect(strncmp(err, want, strlen(want)) == 0, "%s", err);
    unlink(path);
}
