/*
 * kafka_env_none.c — the kafka modes in a build without librdkafka (the
 * TSan build: librdkafka's C11 threads crash ThreadSanitizer).
 */
#include <stdio.h>

#include "env.h"

bool kafka_modes_built(void) { return false; }

int kafka_mock_start(fault_env *e, const scenario *s, char *why, size_t why_size)
{
    (void)e;
    (void)s;
    snprintf(why, why_size, "this build has no Kafka (the TSan build never links librdkafka)");
    return -1;
}

void kafka_mock_stop(fault_env *e) { (void)e; }
