/*
 * topic_cache.c — the producer's topic handles: one rd_kafka_topic_t per
 * topic a bus publishes to, so that a publish names its topic by handle.
 * By name, librdkafka 2.0.2 looks the topic up under its handle-wide write
 * lock on every produce, which serialises publishing threads.
 *
 * The first TOPIC_CACHE_MAX topics get a handle for the producer's life;
 * filled slots never change, so lookups read them without a lock (only
 * filling one is serialised). Later topics are published by name.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"

enum { TOPIC_CACHE_MAX = 64 };

typedef struct topic_slot {
    uint32_t hash;
    char *name;
    rd_kafka_topic_t *rkt;
} topic_slot;

struct kf_topic_cache {
    rd_kafka_t *rk;
    atomic_int used;       /* slots filled, published with release */
    pthread_mutex_t mu;    /* serialises filling */
    topic_slot slot[TOPIC_CACHE_MAX];
};

kf_topic_cache *kf_topic_cache_new(rd_kafka_t *rk)
{
    kf_topic_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->rk = rk;
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

static uint32_t name_hash(const char *name)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

static rd_kafka_topic_t *find(kf_topic_cache *c, int from, int to, uint32_t hash,
                              const char *name)
{
    for (int i = from; i < to; i++)
        if (c->slot[i].hash == hash && strcmp(c->slot[i].name, name) == 0)
            return c->slot[i].rkt;
    return NULL;
}

rd_kafka_topic_t *kf_topic_cache_get(kf_topic_cache *c, const char *name)
{
    uint32_t hash = name_hash(name);
    int used = atomic_load_explicit(&c->used, memory_order_acquire);
    rd_kafka_topic_t *rkt = find(c, 0, used, hash, name);
    if (rkt || used == TOPIC_CACHE_MAX)
        return rkt;
    pthread_mutex_lock(&c->mu);
    int now = atomic_load_explicit(&c->used, memory_order_relaxed);
    rkt = find(c, used, now, hash, name);
    if (!rkt && now < TOPIC_CACHE_MAX) {
        char *copy = strdup(name);
        rkt = copy ? rd_kafka_topic_new(c->rk, name, NULL) : NULL;
        if (rkt) {
            c->slot[now] = (topic_slot){hash, copy, rkt};
            atomic_store_explicit(&c->used, now + 1, memory_order_release);
        } else {
            free(copy);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rkt;
}

void kf_topic_cache_free(kf_topic_cache *c)
{
    if (!c)
        return;
    int used = atomic_load(&c->used);
    for (int i = 0; i < used; i++) {
        rd_kafka_topic_destroy(c->slot[i].rkt);
        free(c->slot[i].name);
    }
    pthread_mutex_destroy(&c->mu);
    free(c);
}
