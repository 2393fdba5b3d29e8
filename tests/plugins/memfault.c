/*
 * memfault.c — a test transport: the memory transport (its sources built
 * in, its entry point renamed, see CMakeLists.txt) with publish failures a
 * test turns on and off while a bus runs, for the errors memory never
 * gives (a missing or refusing topic).
 *
 * A test finds memfault_set() with dlopen(path, RTLD_NOLOAD) and dlsym()
 * once a bus loaded this file. The failures are synchronous, as memory's
 * own errors are; process-wide, as a test runs one case per process.
 * tests/unit/test_dead_letters.c drives it.
 *
 * Its one key, `memfault.without.key.order = true`, takes EB_FEATURE_KEY_ORDER
 * out of that bus's features (the ABI 1.2 bus_features slot), as a
 * transport whose guarantees depend on its config does.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "eventbus/transport.h"

/* The memory transport's entry, renamed for this build. */
const eb_transport *eb_memfault_memory_entry(void);

static pthread_mutex_t fault_mu = PTHREAD_MUTEX_INITIALIZER;
static char fault_topic[256];
static int fault_err;
static size_t fault_above;

/**
 * From now on, publishes to `topic` of more than `above_bytes` (key +
 * payload + header names and values; 0: every one) fail with `err`.
 * err 0 (or a NULL topic) ends the failures.
 */
EB_TRANSPORT_EXPORT void memfault_set(const char *topic, int err, size_t above_bytes)
{
    pthread_mutex_lock(&fault_mu);
    snprintf(fault_topic, sizeof fault_topic, "%s", topic && err ? topic : "");
    fault_err = topic ? err : 0;
    fault_above = above_bytes;
    pthread_mutex_unlock(&fault_mu);
}

static size_t size_of(const eb_outgoing *m)
{
    size_t bytes = m->key_len + m->payload_len;
    for (size_t i = 0; i < m->header_count; i++)
        bytes += strlen(m->headers[i].name) + m->headers[i].value_len;
    return bytes;
}

static int fault_for(const eb_outgoing *m)
{
    pthread_mutex_lock(&fault_mu);
    int err = fault_err && strcmp(m->topic, fault_topic) == 0 && size_of(m) > fault_above
                  ? fault_err
                  : 0;
    pthread_mutex_unlock(&fault_mu);
    return err;
}

static const eb_transport *memory;
static eb_transport memfault;
static pthread_once_t memfault_once = PTHREAD_ONCE_INIT;

static int memfault_publish(void *state, const eb_outgoing *msg, int64_t timeout_ms,
                            void *token)
{
    int err = fault_for(msg);
    return err ? err : memory->publish(state, msg, timeout_ms, token);
}

static int memfault_config_check(const eb_host *host, const char *key, const char *value,
                                 char *errstr, size_t errstr_size)
{
    if (strcmp(key, "memfault.without.key.order") == 0 &&
        (strcmp(value, "true") == 0 || strcmp(value, "false") == 0))
        return 0;
    snprintf(errstr, errstr_size,
             "the memfault test transport takes one key: memfault.without.key.order "
             "(true or false)");
    return EB_ERR_CONFIG;
}

/* The buses opened without key order (their transport states), a few at
 * most: a test plugin. */
enum { MAX_BUSES = 16 };
static void *unordered[MAX_BUSES];

static int memfault_open(const eb_host *host, eb_host_bus *hb, void **state, char *errstr,
                         size_t errstr_size)
{
    int rc = memory->open(host, hb, state, errstr, errstr_size);
    const char *v = host->config_get(hb, "memfault.without.key.order");
    if (rc == 0 && v && strcmp(v, "true") == 0) {
        pthread_mutex_lock(&fault_mu);
        for (int i = 0; i < MAX_BUSES; i++)
            if (!unordered[i]) {
                unordered[i] = *state;
                break;
            }
        pthread_mutex_unlock(&fault_mu);
    }
    return rc;
}

static void memfault_close(void *state)
{
    pthread_mutex_lock(&fault_mu);
    for (int i = 0; i < MAX_BUSES; i++)
        if (unordered[i] == state)
            unordered[i] = NULL;
    pthread_mutex_unlock(&fault_mu);
    memory->close(state);
}

static uint64_t memfault_bus_features(void *state)
{
    bool without = false;
    pthread_mutex_lock(&fault_mu);
    for (int i = 0; i < MAX_BUSES; i++)
        without |= unordered[i] == state;
    pthread_mutex_unlock(&fault_mu);
    return without ? memory->features & ~(uint64_t)EB_FEATURE_KEY_ORDER : memory->features;
}

static void memfault_build(void)
{
    memory = eb_memfault_memory_entry();
    memfault = *memory;
    memfault.name = "memfault";
    memfault.config_check = memfault_config_check;
    memfault.publish = memfault_publish;
    memfault.open = memfault_open;
    memfault.close = memfault_close;
    memfault.bus_features = memfault_bus_features;
}

EB_TRANSPORT_EXPORT const eb_transport *eb_transport_entry(void)
{
    pthread_once(&memfault_once, memfault_build);
    return &memfault;
}
