/*
 * health.c — the bus's connection state from its links (see health.h).
 */
#include "health.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void rd_health_init(rd_health *h, const eb_host *host, eb_host_bus *hb)
{
    *h = (rd_health){.host = host, .hb = hb};
    pthread_mutex_init(&h->mu, NULL);
}

void rd_health_destroy(rd_health *h) { pthread_mutex_destroy(&h->mu); }

void rd_health_link(rd_health *h, int *link, int up, const char *why)
{
    pthread_mutex_lock(&h->mu);
    int was = *link;
    *link = up;
    int event = -1;
    if (was != up) {
        if (up == RD_LINK_DOWN) {
            snprintf(h->reason, sizeof h->reason, "%s", why);
            if (h->down++ == 0) {
                h->outages++;
                event = EB_EVENT_DISCONNECTED;
            }
        } else if (was == RD_LINK_DOWN && --h->down == 0) {
            event = EB_EVENT_CONNECTED;
        }
    }
    pthread_mutex_unlock(&h->mu);
    if (was == up)
        return;
    h->host->log(h->hb, up == RD_LINK_UP ? EB_LOG_INFO : EB_LOG_WARN, "%s", why);
    if (event >= 0)
        h->host->event(h->hb, (eb_event_type)event, NULL, NULL,
                       event == EB_EVENT_DISCONNECTED ? EB_ERR_TRANSPORT : 0, why);
}

void rd_health_link_gone(rd_health *h, int *link)
{
    /* No event: a connection closed for good (close, unsubscribe) says
     * nothing about the server. */
    pthread_mutex_lock(&h->mu);
    if (*link == RD_LINK_DOWN)
        h->down--;
    *link = RD_LINK_UNKNOWN;
    pthread_mutex_unlock(&h->mu);
}

void rd_health_report(rd_health *h, eb_health *out)
{
    pthread_mutex_lock(&h->mu);
    if (h->down) {
        out->state = EB_HEALTH_DOWN;
        snprintf(out->detail, sizeof out->detail, "%d redis connection(s) down: %.200s", h->down,
                 h->reason);
    } else {
        out->state = EB_HEALTH_OK;
        snprintf(out->detail, sizeof out->detail, "redis connections up");
    }
    pthread_mutex_unlock(&h->mu);
}

unsigned long rd_health_outages(rd_health *h)
{
    pthread_mutex_lock(&h->mu);
    unsigned long n = h->outages;
    pthread_mutex_unlock(&h->mu);
    return n;
}
