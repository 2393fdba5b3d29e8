/*
 * criterion_main.c — the conformance cases as criterion tests, one Test per
 * case (criterion forks each). The transport comes from the properties file
 * named by EB_CONFORMANCE_CONFIG (unset: the memory transport); a case whose
 * features the transport lacks is skipped.
 */
#include <criterion/criterion.h>

#include "eventbus/conformance.h"

static void conformance_case(const char *name)
{
    const eb_conf_case *c = eb_conformance_find(name);
    char msg[2048];
    cr_assert(c != NULL, "no conformance case named %s", name);
    int status = eb_conformance_run_case(c, msg, sizeof msg);
    if (status == EB_CONF_SKIP)
        cr_skip_test("%s", msg);
    if (status != EB_CONF_PASS)
        cr_assert_fail("%s", msg);
}

#define EB_CONF_CRITERION_TEST_(name, req, any, flags, retention)                        \
    Test(conformance, name, .timeout = 300) { conformance_case(#name); }
EB_CONF_CASE_LIST(EB_CONF_CRITERION_TEST_)
