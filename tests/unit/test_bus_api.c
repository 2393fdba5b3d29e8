/*
 * test_bus_api.c — bad input through the public API: opening with a
 * missing, foreign-ABI or symbol-less plugin, bad transport keys (with the
 * origin and a suggestion in the sentence), inconsistent settings, NULL
 * and empty arguments to every call, and the calls that must say CLOSED
 * once the bus is closed. Each returns its documented error and leaks
 * nothing (the ASan build turns a leak into a failure).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eventbus/eventbus.h"

static char err[1024];

static eb_config *config_of(const char *const settings[][2], size_t n)
{
    eb_config *cfg = eb_config_new();
    cr_assert_not_null(cfg);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(eb_config_set(cfg, settings[i][0], settings[i][1], err, sizeof err),
                     0, "%s = %s: %s", settings[i][0], settings[i][1], err);
    return cfg;
}

/** Opens a bus that must fail with `want`; returns the error sentence. */
static const char *open_fails(eb_config *cfg, int want)
{
    eb_bus *bus = NULL;
    int rc = eb_bus_open(cfg, &bus, err, sizeof err);
    cr_assert_eq(rc, want, "eb_bus_open returned %s (%s), expected %s", eb_err_name(rc),
                 err, eb_err_name(want));
    cr_assert_null(bus);
    eb_config_destroy(cfg);
    return err;
}

Test(bus_open, null_arguments)
{
    eb_bus *bus = NULL;
    eb_config *cfg = eb_config_new();
    cr_expect_eq(eb_bus_open(NULL, &bus, err, sizeof err), EB_ERR_INVALID);
    cr_expect_eq(eb_bus_open(cfg, NULL, err, sizeof err), EB_ERR_INVALID);
    cr_expect_eq(eb_bus_open(cfg, NULL, NULL, 0), EB_ERR_INVALID);
    eb_config_destroy(cfg);
}

Test(bus_open, missing_plugin_lists_the_search_path)
{
    const char *s[][2] = {{"transport", "nosuchtransport"}};
    const char *why = open_fails(config_of(s, 1), EB_ERR_PLUGIN);
    cr_expect(strstr(why, "eventbus-nosuchtransport.so") != NULL, "%s", why);
    cr_expect(strstr(why, EB_PLUGIN_BUILD_DIR) != NULL, "searched dirs missing: %s", why);
}

Test(bus_open, plugin_built_for_another_abi)
{
    const char *s[][2] = {{"transport", EB_TEST_PLUGIN_DIR "/eventbus-badabi.so"}};
    const char *why = open_fails(config_of(s, 1), EB_ERR_PLUGIN);
    cr_expect(strstr(why, "ABI 99") != NULL && strstr(why, "ABI 1") != NULL, "%s", why);
}

Test(bus_open, shared_object_without_entry_symbol)
{
    const char *s[][2] = {{"transport", EB_TEST_PLUGIN_DIR "/eventbus-noentry.so"}};
    const char *why = open_fails(config_of(s, 1), EB_ERR_PLUGIN);
    cr_expect(strstr(why, "eb_transport_entry") != NULL, "%s", why);
}

Test(bus_open, bad_transport_value_names_key_and_value)
{
    /* Set by eb_config_set(): the sentence starts with the key (a file's
     * keys get "file:line: " first: test_config.c). */
    const char *s[][2] = {{"memory.partitions", "many"}};
    const char *why = open_fails(config_of(s, 1), EB_ERR_CONFIG);
    cr_expect(strncmp(why, "memory.partitions: ", 19) == 0, "%s", why);
    cr_expect(strstr(why, "eb_config_set") == NULL, "a noise prefix: %s", why);
    cr_expect(strstr(why, "many") != NULL, "%s", why);
}

Test(bus_open, unknown_transport_key_suggests_the_nearest)
{
    const char *s[][2] = {{"memory.partitons", "4"}};
    const char *why = open_fails(config_of(s, 1), EB_ERR_CONFIG);
    cr_expect(strstr(why, "memory.partitions") != NULL, "no suggestion: %s", why);
}

Test(bus_open, transport_key_error_names_file_and_line)
{
    char path[] = "/tmp/eb-test-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char text[] = "# memory transport\ntransport = memory\nmemory.partitions = -3\n";
    cr_assert_eq(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    eb_config *cfg = eb_config_new();
    cr_assert_eq(eb_config_load(cfg, path, err, sizeof err), 0, "%s", err);
    unlink(path);
    const char *why = open_fails(cfg, EB_ERR_CONFIG);
    char where[64];
    snprintf(where, sizeof where, "%s:3", path);
    cr_expect(strstr(why, where) != NULL, "no file:line in: %s", why);
}

Test(bus_open, key_of_no_known_namespace)
{
    const char *s[][2] = {{"nosuchplugin.setting", "1"}};
    open_fails(config_of(s, 1), EB_ERR_CONFIG);
}

Test(bus_open, inconsistent_settings)
{
    const char *s[][2] = {{"dispatch.queue.max", "100"},
                          {"dispatch.queue.low.watermark", "100"}};
    const char *why = open_fails(config_of(s, 2), EB_ERR_CONFIG);
    cr_expect(strstr(why, "dispatch.queue.low.watermark") != NULL, "%s", why);
}

Test(bus_open, memory_broker_with_other_partition_count)
{
    const char *a[][2] = {{"memory.name", "conflict"}, {"memory.partitions", "2"}};
    const char *b[][2] = {{"memory.name", "conflict"}, {"memory.partitions", "8"}};
    eb_config *cfg = config_of(a, 2);
    eb_bus *first = NULL;
    cr_assert_eq(eb_bus_open(cfg, &first, err, sizeof err), 0, "%s", err);
    eb_config_destroy(cfg);
    const char *why = open_fails(config_of(b, 2), EB_ERR_CONFIG);
    cr_expect(strstr(why, "conflict") != NULL, "%s", why);
    cr_expect_eq(eb_bus_close(first, 1000), 0);
    eb_bus_destroy(first);
}

static eb_result ack(const eb_msg *m, void *opaque) { return EB_ACK; }

static eb_bus *open_memory(void)
{
    eb_config *cfg = eb_config_new();
    eb_bus *bus = NULL;
    cr_assert_eq(eb_bus_open(cfg, &bus, err, sizeof err), 0, "%s", err);
    eb_config_destroy(cfg);
    return bus;
}

Test(bus_api, subscribe_rejects_bad_arguments)
{
    eb_bus *bus = open_memory();
    eb_sub *sub = NULL;
    char long_topic[300];
    memset(long_topic, 'x', sizeof long_topic - 1);
    long_topic[sizeof long_topic - 1] = '\0';
    cr_expect_eq(eb_subscribe(NULL, "t", "g", ack, NULL, NULL, &sub, err, sizeof err),
                 EB_ERR_INVALID);
    cr_expect_eq(eb_subscribe(bus, NULL, "g", ack, NULL, NULL, &sub, err, sizeof err),
                 EB_ERR_INVALID);
    cr_expect_eq(eb_subscribe(bus, "t", "g", NULL, NULL, NULL, &sub, err, sizeof err),
                 EB_ERR_INVALID);
    cr_expect_eq(eb_subscribe(bus, "t", "g", ack, NULL, NULL, NULL, err, sizeof err),
                 EB_ERR_INVALID);
    cr_expect_eq(eb_subscribe(bus, "", "g", ack, NULL, NULL, &sub, err, sizeof err),
                 EB_ERR_INVALID);
    cr_expect_eq(eb_subscribe(bus, long_topic, "g", ack, NULL, NULL, &sub, err, sizeof err),
                 EB_ERR_INVALID);
    cr_expect_eq(eb_subscribe(bus, "t", "", ack, NULL, NULL, &sub, err, sizeof err),
                 EB_ERR_INVALID, "an empty group is not the anonymous group");
    eb_sub_options too_new = {.struct_size = sizeof too_new + 8};
    cr_expect_eq(eb_subscribe(bus, "t", "g", ack, NULL, &too_new, &sub, err, sizeof err),
                 EB_ERR_INVALID);
    cr_expect_null(sub);
    cr_expect_eq(eb_sub_wait_ready(NULL, 10), EB_ERR_INVALID);
    cr_expect_eq(eb_unsubscribe(NULL), EB_ERR_INVALID);
    eb_sub_destroy(NULL);
    eb_bus_destroy(bus);
}

Test(bus_api, publish_rejects_bad_messages)
{
    eb_bus *bus = open_memory();
    eb_header nameless = {.name = "", .value = "v", .value_len = 1};
    eb_header null_value = {.name = "h", .value = NULL, .value_len = 3};
    eb_outgoing m = {.topic = "t", .payload = "p", .payload_len = 1};
    cr_expect_eq(eb_publish(bus, NULL, NULL, NULL), EB_ERR_INVALID);
    cr_expect_eq(eb_publish(NULL, &m, NULL, NULL), EB_ERR_INVALID);
    m.headers = &nameless, m.header_count = 1;
    cr_expect_eq(eb_publish(bus, &m, NULL, NULL), EB_ERR_INVALID);
    m.headers = &null_value;
    cr_expect_eq(eb_publish(bus, &m, NULL, NULL), EB_ERR_INVALID);
    m.headers = NULL;
    cr_expect_eq(eb_publish(bus, &m, NULL, NULL), EB_ERR_INVALID, "count without headers");
    m.header_count = 0, m.payload = NULL;
    cr_expect_eq(eb_publish(bus, &m, NULL, NULL), EB_ERR_INVALID, "length without payload");
    m.payload_len = 0;
    cr_expect_eq(eb_publish(bus, &m, NULL, NULL), 0, "an empty payload is fine");
    eb_bus_destroy(bus);
}

Test(bus_api, closed_bus_says_closed)
{
    eb_bus *bus = open_memory();
    eb_sub *sub = NULL;
    cr_assert_eq(eb_subscribe(bus, "t", "g", ack, NULL, NULL, &sub, err, sizeof err), 0);
    eb_health h;
    cr_assert_eq(eb_bus_health(bus, &h), 0);
    cr_expect_eq(h.state, EB_HEALTH_OK);
    char *json = NULL;
    cr_assert_eq(eb_bus_stats(bus, &json), 0);
    cr_expect(strstr(json, "\"transport\":{") != NULL, "%s", json);
    eb_free(json);
    cr_assert_eq(eb_bus_close(bus, 1000), 0);
    eb_outgoing m = {.topic = "t"};
    cr_expect_eq(eb_publish(bus, &m, NULL, NULL), EB_ERR_CLOSED);
    cr_expect_eq(eb_flush(bus, 10), EB_ERR_CLOSED);
    cr_expect_eq(eb_bus_close(bus, 10), EB_ERR_CLOSED);
    cr_expect_eq(eb_unsubscribe(sub), EB_ERR_CLOSED);
    cr_expect_eq(eb_sub_wait_ready(sub, 10), EB_ERR_CLOSED);
    cr_expect_eq(eb_subscribe(bus, "t2", "g", ack, NULL, NULL, &sub, err, sizeof err),
                 EB_ERR_CLOSED);
    cr_expect_eq(eb_bus_stats(bus, &json), EB_ERR_CLOSED);
    cr_assert_eq(eb_bus_health(bus, &h), 0);
    cr_expect_eq(h.state, EB_HEALTH_CLOSED);
    eb_bus_destroy(bus);
}

Test(bus_api, stats_escape_names)
{
    eb_bus *bus = open_memory();
    eb_sub *sub = NULL;
    cr_assert_eq(eb_subscribe(bus, "quote\"back\\slash", "g", ack, NULL, NULL, &sub, err,
                              sizeof err), 0, "%s", err);
    char *json = NULL;
    cr_assert_eq(eb_bus_stats(bus, &json), 0);
    cr_expect(strstr(json, "\"quote\\\"back\\\\slash\"") != NULL, "%s", json);
    eb_free(json);
    eb_bus_destroy(bus);
}

Test(bus_api, errors_and_accessors_tolerate_nonsense)
{
    cr_expect_str_eq(eb_err_name(EB_ERR_FULL), "EB_ERR_FULL");
    cr_expect_str_eq(eb_strerror(12345), "unknown error code");
    cr_expect_null(eb_msg_topic(NULL));
    cr_expect_eq(eb_msg_header_count(NULL), 0);
    cr_expect_eq(eb_msg_header(NULL, 0, NULL, NULL, NULL), EB_ERR_INVALID);
    cr_expect_eq(eb_msg_copy(NULL, NULL), EB_ERR_INVALID);
    cr_expect_eq(eb_bus_features(NULL), 0);
    cr_expect_str_eq(eb_bus_transport(NULL), "");
    cr_expect_eq(eb_bus_health(NULL, NULL), EB_ERR_INVALID);
    eb_msg_destroy(NULL);
    eb_bus_destroy(NULL);
    eb_config_destroy(NULL);
}
