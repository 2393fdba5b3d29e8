/*
 * fixture.c — a loader test fixture, not a transport: a complete, valid
 * descriptor of this header's ABI whose slots do nothing or return
 * EB_ERR_UNSUPPORTED.
 * tests/plugins/CMakeLists.txt builds it several times, each build broken
 * (or stretched) in one way by a compile definition, for
 * tests/unit/test_loader.c:
 *
 *   FIXTURE_NAME          the descriptor's name (required)
 *   FIXTURE_ABI_MAJOR     default EB_TRANSPORT_ABI_MAJOR
 *   FIXTURE_ABI_MINOR     default EB_TRANSPORT_ABI_MINOR
 *   FIXTURE_STRUCT_SIZE   default sizeof(eb_transport)
 *   FIXTURE_RESUME        the resume slot, default fixture_nothing
 *   FIXTURE_PLUGIN_FLAGS  default 0
 */
#include "eventbus/transport.h"

#ifndef FIXTURE_NAME
#error "FIXTURE_NAME must be defined (tests/plugins/CMakeLists.txt)"
#endif
#ifndef FIXTURE_ABI_MAJOR
#define FIXTURE_ABI_MAJOR EB_TRANSPORT_ABI_MAJOR
#endif
#ifndef FIXTURE_ABI_MINOR
#define FIXTURE_ABI_MINOR EB_TRANSPORT_ABI_MINOR
#endif
#ifndef FIXTURE_STRUCT_SIZE
#define FIXTURE_STRUCT_SIZE sizeof(eb_transport)
#endif
#ifndef FIXTURE_RESUME
#define FIXTURE_RESUME fixture_nothing
#endif
#ifndef FIXTURE_PLUGIN_FLAGS
#define FIXTURE_PLUGIN_FLAGS 0
#endif

static int fixture_config_check(const eb_host *host, const char *key,
                                const char *value, char *errstr,
                                size_t errstr_size)
{
    return EB_ERR_UNSUPPORTED;
}

static int fixture_open(const eb_host *host, eb_host_bus *hb, void **state,
                        char *errstr, size_t errstr_size)
{
    return EB_ERR_UNSUPPORTED;
}

/* close, unsubscribe, sub_destroy and resume. */
static void fixture_nothing(void *state)
{
}

static int fixture_publish(void *state, const eb_outgoing *msg,
                           int64_t timeout_ms, void *token)
{
    return EB_ERR_UNSUPPORTED;
}

static int fixture_flush(void *state, int64_t deadline_ns)
{
    return EB_ERR_UNSUPPORTED;
}

static int fixture_subscribe(void *state, eb_host_sub *hs,
                             const eb_sub_params *p, void **sub_state,
                             char *errstr, size_t errstr_size)
{
    return EB_ERR_UNSUPPORTED;
}

/* ack and release. */
static void fixture_take_back(void *sub_state, eb_msg *const *msgs, size_t n)
{
}

static int fixture_health(void *state, eb_health *out)
{
    return EB_ERR_UNSUPPORTED;
}

static int fixture_stats(void *state, char *buf, size_t size)
{
    return EB_ERR_UNSUPPORTED;
}

static uint64_t fixture_features(void *state)
{
    return 0;
}

static const eb_transport fixture = {
    .abi_major = FIXTURE_ABI_MAJOR,
    .abi_minor = FIXTURE_ABI_MINOR,
    .struct_size = FIXTURE_STRUCT_SIZE,
    .name = FIXTURE_NAME,
    .version = "0.0.0-fixture",
    .plugin_flags = FIXTURE_PLUGIN_FLAGS,
    .config_check = fixture_config_check,
    .open = fixture_open,
    .close = fixture_nothing,
    .publish = fixture_publish,
    .flush = fixture_flush,
    .subscribe = fixture_subscribe,
    .unsubscribe = fixture_nothing,
    .sub_destroy = fixture_nothing,
    .ack = fixture_take_back,
    .release = fixture_take_back,
    .resume = FIXTURE_RESUME,
    .health = fixture_health,
    .stats = fixture_stats,
    .begin_close = fixture_nothing,
    .bus_features = fixture_features,
};

EB_TRANSPORT_EXPORT const eb_transport *eb_transport_entry(void)
{
    return &fixture;
}
