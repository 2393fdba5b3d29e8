/*
 * test_cli_pub_kafka.c — `eventbus pub` waits for every delivery callback
 * and counts those that were not confirmed: publishing to a topic the
 * Kafka broker of tests/servers/kafka.sh does not have (it creates none
 * on its own) names each message and exits 1. Skipped without
 * $EB_KAFKA_BOOTSTRAP.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "run_cli.h"

Test(cli_pub_kafka, each_message_not_confirmed_is_named_and_counted)
{
    const char *bootstrap = getenv("EB_KAFKA_BOOTSTRAP");
    if (!bootstrap)
        cr_skip_test("EB_KAFKA_BOOTSTRAP is not set (tests/servers/kafka.sh start)");
    char servers[512], topic[96];
    snprintf(servers, sizeof servers, "kafka.bootstrap.servers=%s", bootstrap);
    snprintf(topic, sizeof topic, "cli-missing-%d-%lld", (int)getpid(), (long long)time(NULL));
    /* librdkafka gives up on a topic missing from metadata after this. */
    cli_result *r = cli_run(EB_PLUGIN_BUILD_DIR,
                            (char *[]){EB_CLI_PATH, "pub", topic, "-X", "transport=kafka", "-X",
                                       servers, "-X",
                                       "kafka.topic.metadata.propagation.max.ms=1000",
                                       "one", "two", NULL});
    cr_expect_eq(r->rc, 1, "exit %d: %s", r->rc, r->err);
    cr_expect(strstr(r->err, "eventbus: pub: argument 1: not confirmed: not found"), "%s", r->err);
    cr_expect(strstr(r->err, "eventbus: pub: argument 2: not confirmed: not found"), "%s", r->err);
    cr_expect(strstr(r->err, "0 of 2 messages published and confirmed; 0 skipped (not a "
                             "message), 0 not published, 2 not confirmed"), "%s", r->err);
    cr_expect_eq(cli_lines(r->err), 3, "%s", r->err);
    free(r);
}
