/*
 * bus_stat.h — one number from eb_bus_stats(), for tests, stress programs
 * and benches alike (no test framework needed).
 */
#ifndef EB_BUS_STAT_H
#define EB_BUS_STAT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eventbus/eventbus.h"

/** The number after the first `"name":` in the bus's stats, or -1 when
 *  the stats cannot be read or have no such field. */
static inline long long bus_stat(eb_bus *bus, const char *name)
{
    char *json = NULL;
    if (eb_bus_stats(bus, &json) != 0)
        return -1;
    char field[64];
    snprintf(field, sizeof field, "\"%s\":", name);
    const char *at = strstr(json, field);
    long long n = at ? atoll(at + strlen(field)) : -1;
    eb_free(json);
    return n;
}

#endif
