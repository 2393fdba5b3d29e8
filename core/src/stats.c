/*
 * stats.c — eb_bus_stats(): the core's counters and the transport's own
 * JSON object, as one JSON document.
 */
#include <stdio.h>
#include <stdlib.h>

#include "bus.h"
#include "dispatch.h"

/** The transport's JSON; asks again if it grew between sizing and filling. */
static int transport_json(eb_bus *bus, char **out)
{
    int len = bus->tp->stats(bus->state, NULL, 0);
    for (;;) {
        if (len < 0)
            return len;
        size_t size = (size_t)len + 256;
        if (!(*out = malloc(size)))
            return EB_ERR_NOMEM;
        len = bus->tp->stats(bus->state, *out, size);
        if (len >= 0 && (size_t)len < size)
            return 0;
        free(*out);
    }
}

#define COUNTER(name) (unsigned long long)atomic_load(&c->name)

int eb_bus_stats(eb_bus *bus, char **json)
{
    if (!bus || !json)
        return EB_ERR_INVALID;
    if (!eb__bus_enter(bus))
        return EB_ERR_CLOSED;
    char *tp_json = NULL;
    int rc = transport_json(bus, &tp_json);
    size_t queued = 0, running = 0, held = 0, held_keys = 0;
    uint64_t handled = 0;
    eb__dispatch_counts(bus->dispatch, &queued, &running, &held, &held_keys, &handled);
    unsigned workers, peak, max;
    uint64_t waited_ms;
    eb__dispatch_pool(bus->dispatch, &workers, &peak, &max, &waited_ms);
    eb__bus_leave(bus);
    if (rc != 0)
        return rc;
    const eb_counters *c = &bus->count;
    int n = asprintf(json,
        "{\"transport_name\":\"%s\",\"published\":%llu,\"publish_failed\":%llu,"
        "\"delivered\":%llu,\"handled\":%llu,\"acked\":%llu,\"retried\":%llu,"
        "\"dead_lettered\":%llu,\"dlq_failed\":%llu,\"dlq_stubs\":%llu,"
        "\"dlq_stopped\":%ld,\"released\":%llu,"
        "\"paused\":%llu,\"queued\":%zu,\"in_batch\":%zu,\"held\":%zu,\"held_keys\":%zu,"
        "\"workers\":%u,\"workers_peak\":%u,\"workers_max\":%u,\"waited_for_worker_ms\":%llu,"
        "\"transport\":%s}",
        bus->tp->name, COUNTER(published), COUNTER(publish_failed),
        COUNTER(delivered), (unsigned long long)handled, COUNTER(acked), COUNTER(retried),
        COUNTER(dead_lettered), COUNTER(dlq_failed), COUNTER(dlq_stubs),
        atomic_load(&bus->dlq_stopped.count), COUNTER(released),
        COUNTER(paused), queued, running, held, held_keys, workers, peak, max,
        (unsigned long long)waited_ms, tp_json);
    free(tp_json);
    return n < 0 ? EB_ERR_NOMEM : 0;
}
