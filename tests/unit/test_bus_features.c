/*
 * test_bus_features.c — eb_bus_features() answers per bus: a transport
 * whose guarantees depend on its config reports them through the ABI 1.2
 * bus_features slot (here the memfault test transport, whose
 * `memfault.without.key.order` takes KEY_ORDER out), and a transport
 * without the slot keeps its descriptor's flags.
 */
#include <criterion/criterion.h>
#include <eventbus/eventbus.h>

static eb_bus *open_with(const char *const (*kv)[2], size_t n)
{
    char err[512];
    eb_config *cfg = eb_config_new();
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(eb_config_set(cfg, kv[i][0], kv[i][1], err, sizeof err), 0, "%s", err);
    eb_bus *bus = NULL;
    cr_assert_eq(eb_bus_open(cfg, &bus, err, sizeof err), 0, "%s", err);
    eb_config_destroy(cfg);
    return bus;
}

Test(bus_features, two_buses_of_one_transport_report_their_own_flags)
{
    const char *const ordered[][2] = {{"transport", "memfault"},
                                      {"plugin.path", EB_TEST_PLUGIN_DIR}};
    const char *const unordered[][2] = {{"transport", "memfault"},
                                        {"plugin.path", EB_TEST_PLUGIN_DIR},
                                        {"memfault.without.key.order", "true"}};
    eb_bus *a = open_with(ordered, 2);
    eb_bus *b = open_with(unordered, 3);
    uint64_t fa = eb_bus_features(a), fb = eb_bus_features(b);
    cr_expect(fa & EB_FEATURE_KEY_ORDER, "the ordered bus lost KEY_ORDER: %#llx",
              (unsigned long long)fa);
    cr_expect_not(fb & EB_FEATURE_KEY_ORDER, "the unordered bus kept KEY_ORDER: %#llx",
                  (unsigned long long)fb);
    cr_expect_eq(fa & ~(uint64_t)EB_FEATURE_KEY_ORDER, fb, "only KEY_ORDER differs");
    /* Answered after close too, from what open said. */
    cr_assert_eq(eb_bus_close(b, 1000), 0);
    cr_expect_eq(eb_bus_features(b), fb);
    eb_bus_destroy(b);
    cr_assert_eq(eb_bus_close(a, 1000), 0);
    eb_bus_destroy(a);
}

Test(bus_features, a_transport_without_the_slot_has_its_descriptors_flags)
{
    const char *const memory[][2] = {{"transport", "memory"},
                                     {"plugin.path", EB_PLUGIN_BUILD_DIR}};
    eb_bus *bus = open_with(memory, 2);
    cr_expect_eq(eb_bus_features(bus),
                 EB_FEATURE_GROUPS | EB_FEATURE_KEY_ORDER | EB_FEATURE_REDELIVERY |
                     EB_FEATURE_HEADERS | EB_FEATURE_TIMESTAMPS | EB_FEATURE_DURABLE);
    cr_assert_eq(eb_bus_close(bus, 1000), 0);
    eb_bus_destroy(bus);
    cr_expect_eq(eb_bus_features(NULL), 0);
}
