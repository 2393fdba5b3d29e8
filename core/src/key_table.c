/*
 * key_table.c — the dispatcher's per-key entries: a chained hash table
 * that grows at one entry per bucket and shrinks at one per eight, and a
 * small cache of freed entries. See key_table.h.
 */
#include "key_table.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { MIN_BUCKETS = 64, SPARE_MAX = 256 };

uint32_t eb__key_hash(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/** The bucket of (sub, hash): the same key of two subscriptions spreads. */
static size_t bucket_of(const eb_key_table *t, const void *sub, uint32_t hash)
{
    uint64_t mixed = ((uint64_t)(uintptr_t)sub >> 4) * 0x9E3779B97F4A7C15ull ^ hash;
    mixed ^= mixed >> 29;
    return (size_t)(mixed & (t->n_buckets - 1));
}

static bool matches(const eb_keyq *k, const void *sub, uint32_t hash, const void *key,
                    size_t key_len)
{
    if (k->sub != sub || k->unkeyed != (key == NULL))
        return false;
    return k->unkeyed || (k->hash == hash && k->key_len == key_len &&
                          memcmp(k->key, key, key_len) == 0);
}

eb_keyq *eb__keys_find(eb_key_table *t, const void *sub, uint32_t hash, const void *key,
                       size_t key_len)
{
    if (t->n_buckets == 0)
        return NULL;
    for (eb_keyq *k = t->buckets[bucket_of(t, sub, hash)]; k; k = k->bucket_next)
        if (matches(k, sub, hash, key, key_len))
            return k;
    return NULL;
}

/** Rehashes into n buckets; keeps the old array when out of memory. */
static void resize(eb_key_table *t, size_t n)
{
    eb_keyq **buckets = calloc(n, sizeof *buckets);
    if (!buckets)
        return;
    eb_keyq **old = t->buckets;
    size_t n_old = t->n_buckets;
    t->buckets = buckets;
    t->n_buckets = n;
    for (size_t i = 0; i < n_old; i++) {
        for (eb_keyq *k = old[i], *next; k; k = next) {
            next = k->bucket_next;
            size_t b = bucket_of(t, k->sub, k->hash);
            k->bucket_next = buckets[b];
            buckets[b] = k;
        }
    }
    free(old);
}

static void shrink_if_sparse(eb_key_table *t)
{
    if (t->n_buckets > MIN_BUCKETS && t->count < t->n_buckets / 8)
        resize(t, t->n_buckets / 4);
}

static eb_keyq *entry_alloc(eb_key_table *t, size_t key_len)
{
    eb_keyq *k = t->spare;
    if (k) {
        t->spare = k->bucket_next;
        t->n_spare--;
    } else if (!(k = malloc(sizeof *k))) {
        return NULL;
    }
    memset(k, 0, offsetof(eb_keyq, key_inline));
    if (key_len > EB_KEY_INLINE) {
        unsigned char *heap = malloc(key_len);
        if (!heap) {
            free(k);
            return NULL;
        }
        k->key = heap;
    } else {
        k->key = k->key_inline;
    }
    return k;
}

static void entry_free(eb_key_table *t, eb_keyq *k)
{
    if (k->key != k->key_inline)
        free((void *)k->key);
    if (t->n_spare < SPARE_MAX) {
        k->bucket_next = t->spare;
        t->spare = k;
        t->n_spare++;
    } else {
        free(k);
    }
}

eb_keyq *eb__keys_get(eb_key_table *t, const void *sub, uint32_t hash, const void *key,
                      size_t key_len)
{
    eb_keyq *k = eb__keys_find(t, sub, hash, key, key_len);
    if (k)
        return k;
    if (t->n_buckets == 0 || t->count >= t->n_buckets)
        resize(t, t->n_buckets ? t->n_buckets * 2 : MIN_BUCKETS);
    if (t->n_buckets == 0 || !(k = entry_alloc(t, key ? key_len : 0)))
        return NULL;
    k->sub = (void *)sub;
    k->hash = hash;
    k->unkeyed = key == NULL;
    k->state = EB_KEY_IDLE;
    if (key) {
        k->key_len = key_len;
        memcpy((void *)k->key, key, key_len);
    }
    size_t b = bucket_of(t, sub, hash);
    k->bucket_next = t->buckets[b];
    t->buckets[b] = k;
    t->count++;
    return k;
}

void eb__keys_remove(eb_key_table *t, eb_keyq *k)
{
    eb_keyq **pp = &t->buckets[bucket_of(t, k->sub, k->hash)];
    while (*pp != k)
        pp = &(*pp)->bucket_next;
    *pp = k->bucket_next;
    t->count--;
    entry_free(t, k);
    if (!t->walking)
        shrink_if_sparse(t);
}

void eb__keys_each(eb_key_table *t, void (*fn)(eb_keyq *k, void *arg), void *arg)
{
    t->walking = true; /* removals do not shrink the array under the walk */
    for (size_t b = 0; b < t->n_buckets; b++)
        for (eb_keyq *k = t->buckets[b], *next; k; k = next) {
            next = k->bucket_next;
            fn(k, arg);
        }
    t->walking = false;
    shrink_if_sparse(t);
}

void eb__keys_free(eb_key_table *t)
{
    for (size_t b = 0; b < t->n_buckets; b++)
        for (eb_keyq *k = t->buckets[b], *next; k; k = next) {
            next = k->bucket_next;
            if (k->key != k->key_inline)
                free((void *)k->key);
            free(k);
        }
    for (eb_keyq *k = t->spare, *next; k; k = next) {
        next = k->bucket_next;
        free(k);
    }
    free(t->buckets);
    *t = (eb_key_table){0};
}
