/*
 * subscription.h — subscribe, wait-ready, unsubscribe and destroy, and the
 * bus-wide steps close and destroy take over all subscriptions.
 */
#ifndef EB_SUBSCRIPTION_H
#define EB_SUBSCRIPTION_H

#include "bus.h"

/** Close: unsubscribes every subscription still subscribed; the
 *  transports leave by `deadline_ns`. @returns 0, or EB_ERR_TIMEOUT when a
 *  leave was cut short (uncommitted work goes to the next owner). */
int eb__subs_close_all(eb_bus *bus, int64_t deadline_ns);
/** After the transport closed: frees every transport sub state. */
void eb__subs_free_transport_all(eb_bus *bus);
/** Destroy: frees every subscription handle the application left. */
void eb__subs_destroy_all(eb_bus *bus);

#endif
