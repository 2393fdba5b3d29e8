/*
 * health.h — whether a bus's Redis connections are up: each connection
 * (the writer's, and each subscription's reader and keeper) is a link that
 * reports its state changes here. The bus is DOWN while any link is down
 * (eb_bus_health() gives that link's latest error); DISCONNECTED is raised
 * when the first link goes down and CONNECTED when the last one is back,
 * so an outage is one pair of events, not one per connection.
 */
#ifndef EB_REDIS_HEALTH_H
#define EB_REDIS_HEALTH_H

#include <pthread.h>

#include "eventbus/transport.h"

enum { RD_LINK_UNKNOWN = -1, RD_LINK_DOWN = 0, RD_LINK_UP = 1 };

typedef struct rd_health {
    const eb_host *host;
    eb_host_bus *hb;
    pthread_mutex_t mu;
    int down;                /* links down now */
    unsigned long outages;   /* times the bus went DOWN */
    char reason[1280];       /* the latest link error */
} rd_health;

void rd_health_init(rd_health *h, const eb_host *host, eb_host_bus *hb);
void rd_health_destroy(rd_health *h);

/** A link's new state (`*link`, RD_LINK_*, is the caller's and changes
 *  here, under the health lock); `why` is logged on a change. */
void rd_health_link(rd_health *h, int *link, int up, const char *why);

/** A link that goes away (its connection closed for good) no longer
 *  counts; no event is raised. */
void rd_health_link_gone(rd_health *h, int *link);

/** Fills `out`: OK, or DOWN with the latest error. */
void rd_health_report(rd_health *h, eb_health *out);

unsigned long rd_health_outages(rd_health *h);

#endif
