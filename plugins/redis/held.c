/*
 * held.c — the held-entry table (see held.h): FNV-1a over the id, chains,
 * doubling when the load passes one.
 */
#include "held.h"

#include <stdlib.h>
#include <string.h>

static uint32_t hash_id(const char *id)
{
    uint32_t h = 2166136261u;
    for (; *id; id++)
        h = (h ^ (uint8_t)*id) * 16777619u;
    return h;
}

static int grow(rd_held *h)
{
    size_t n = h->n_buckets ? h->n_buckets * 2 : 64;
    rd_held_node **b = calloc(n, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < h->n_buckets; i++)
        for (rd_held_node *node = h->buckets[i], *next; node; node = next) {
            next = node->next;
            node->next = b[node->hash & (n - 1)];
            b[node->hash & (n - 1)] = node;
        }
    free(h->buckets);
    h->buckets = b;
    h->n_buckets = n;
    return 0;
}

int rd_held_add(rd_held *h, rd_held_node *node)
{
    if (h->count >= h->n_buckets && grow(h) != 0 && h->n_buckets == 0)
        return -1; /* a table that cannot grow still takes nodes, chained longer */
    node->hash = hash_id(node->id);
    rd_held_node **head = &h->buckets[node->hash & (h->n_buckets - 1)];
    for (rd_held_node *other = *head; other; other = other->next)
        if (other->hash == node->hash && strcmp(other->id, node->id) == 0)
            return 1;
    node->next = *head;
    *head = node;
    h->count++;
    return 0;
}

bool rd_held_remove(rd_held *h, rd_held_node *node)
{
    if (h->n_buckets == 0)
        return false;
    for (rd_held_node **at = &h->buckets[node->hash & (h->n_buckets - 1)]; *at;
         at = &(*at)->next)
        if (*at == node) {
            *at = node->next;
            h->count--;
            return true;
        }
    return false;
}

rd_held_node *rd_held_find(const rd_held *h, const char *id)
{
    if (h->n_buckets == 0)
        return NULL;
    uint32_t hash = hash_id(id);
    for (rd_held_node *node = h->buckets[hash & (h->n_buckets - 1)]; node; node = node->next)
        if (node->hash == hash && strcmp(node->id, id) == 0)
            return node;
    return NULL;
}

void rd_held_reset(rd_held *h)
{
    if (h->n_buckets)
        memset(h->buckets, 0, h->n_buckets * sizeof *h->buckets);
    h->count = 0;
}

int rd_held_each(const rd_held *h, int (*fn)(rd_held_node *node, void *ctx), void *ctx)
{
    for (size_t i = 0; i < h->n_buckets; i++)
        for (rd_held_node *node = h->buckets[i]; node; node = node->next) {
            int rc = fn(node, ctx);
            if (rc)
                return rc;
        }
    return 0;
}

void rd_held_free(rd_held *h)
{
    free(h->buckets);
    *h = (rd_held){0};
}
