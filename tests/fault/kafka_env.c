/*
 * kafka_env.c — the librdkafka mock cluster a kafka-mock run talks to: one
 * broker hosted by an rd_kafka_t of this process, with the run's topics,
 * their dead-letter topics and the collector's own dead-letter topics
 * (subscribing checks that a subscription's DLQ topic exists).
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>

#include "env.h"

struct kafka_mock {
    rd_kafka_t *host;
    rd_kafka_mock_cluster_t *cluster;
};

bool kafka_modes_built(void) { return true; }

static int create(kafka_mock *km, const char *topic, int partitions, char *why, size_t n)
{
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(km->cluster, topic, partitions, 1);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    snprintf(why, n, "mock cluster: cannot create '%s': %s", topic, rd_kafka_err2str(err));
    return -1;
}

int kafka_mock_start(fault_env *e, const scenario *s, char *why, size_t why_size)
{
    kafka_mock *km = calloc(1, sizeof *km);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[256];
    if (!km || rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err) != RD_KAFKA_CONF_OK ||
        !(km->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err))) {
        snprintf(why, why_size, "mock cluster host: %s", km ? err : "out of memory");
        if (!km || !km->host)
            rd_kafka_conf_destroy(conf);
        free(km);
        return -1;
    }
    e->mock = km;
    if (!(km->cluster = rd_kafka_mock_cluster_new(km->host, 1))) {
        snprintf(why, why_size, "rd_kafka_mock_cluster_new failed");
        return -1;
    }
    snprintf(e->bootstrap, sizeof e->bootstrap, "%s", rd_kafka_mock_cluster_bootstraps(km->cluster));
    for (int t = 0; t < s->n_topics; t++) {
        char dlq_of_dlq[128];
        snprintf(dlq_of_dlq, sizeof dlq_of_dlq, "%s.dlq", e->dlq_topics[t]);
        if (create(km, e->topics[t], s->partitions, why, why_size) ||
            create(km, e->dlq_topics[t], 1, why, why_size) ||
            create(km, dlq_of_dlq, 1, why, why_size))
            return -1;
    }
    return 0;
}

void kafka_mock_stop(fault_env *e)
{
    kafka_mock *km = e->mock;
    if (!km)
        return;
    if (km->cluster)
        rd_kafka_mock_cluster_destroy(km->cluster);
    rd_kafka_destroy(km->host);
    free(km);
    e->mock = NULL;
}
