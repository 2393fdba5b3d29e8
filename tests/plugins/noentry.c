/*
 * noentry.c — a loader test fixture: a shared object that exports a
 * function but not eb_transport_entry, as a library put in the plugin
 * directory by mistake would. See tests/unit/test_loader.c.
 */
#include "eventbus/transport.h"

EB_TRANSPORT_EXPORT int noentry_fixture_version(void)
{
    return 1;
}
