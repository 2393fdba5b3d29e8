/*
 * known_topics.c — the topics a bus has seen exist (checked or created by
 * kf_topic_ensure), so only the first publish to a topic pays for a
 * metadata request, and only when eventbus may create topics
 * (kafka.topic.partitions). The list only grows (until the bus is freed),
 * so a publish looks it up without a lock; adding takes kb->mu.
 */
#include <stdlib.h>
#include <string.h>

#include "kafka.h"

struct kf_known_topic {
    kf_known_topic *next;
    char name[];
};

static bool known(kf_bus *kb, const char *topic)
{
    kf_known_topic *t = atomic_load_explicit(&kb->known_topics, memory_order_acquire);
    while (t && strcmp(t->name, topic) != 0)
        t = t->next;
    return t != NULL;
}

static void remember(kf_bus *kb, const char *topic)
{
    size_t len = strlen(topic) + 1;
    kf_known_topic *t = malloc(sizeof *t + len);
    if (!t)
        return; /* asked again next time */
    memcpy(t->name, topic, len);
    pthread_mutex_lock(&kb->mu);
    t->next = atomic_load_explicit(&kb->known_topics, memory_order_relaxed);
    atomic_store_explicit(&kb->known_topics, t, memory_order_release);
    pthread_mutex_unlock(&kb->mu);
}

int kf_topic_ensure_once(kf_bus *kb, rd_kafka_t *rk, const char *topic, int timeout_ms,
                         char *errstr, size_t errstr_size)
{
    if (known(kb, topic))
        return 0;
    int rc = kf_topic_ensure(kb, rk, topic, timeout_ms, errstr, errstr_size);
    if (rc == 0)
        remember(kb, topic);
    return rc;
}

void kf_known_topics_free(kf_bus *kb)
{
    for (kf_known_topic *t = atomic_load(&kb->known_topics), *next; t; t = next) {
        next = t->next;
        free(t);
    }
    atomic_store(&kb->known_topics, NULL);
}
