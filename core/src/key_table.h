/*
 * key_table.h — a hash table of per-key queues: one entry per
 * (subscription, key bytes), found by hash and compared byte for byte.
 * The dispatcher keeps an entry only for a key that is held up (its
 * handler runs long, its head retries or is being dead-lettered), with
 * the key's messages that wait for it; the bucket array shrinks back as
 * entries go. Not thread-safe: the dispatcher's lock guards it.
 */
#ifndef EB_KEY_TABLE_H
#define EB_KEY_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msgq.h"

enum eb_key_state {
    EB_KEY_IDLE,            /* just made: nothing decided yet */
    EB_KEY_RUNNING,         /* a handler of it runs long */
    EB_KEY_RETRYING,        /* its head waits on the timer for a retry */
    EB_KEY_DEAD_LETTERING   /* its head's dead letter is being published */
};

enum { EB_KEY_INLINE = 32 };

typedef struct eb_keyq {
    struct eb_keyq *bucket_next;
    void *sub;                  /* the eb_sub */
    uint32_t hash;
    uint8_t state;              /* enum eb_key_state */
    bool unkeyed;               /* key NULL: a subscription's unkeyed ones */
    uint32_t home;              /* the owner's: where its messages go back */
    msgq queue;                 /* messages waiting for the key */
    size_t key_len;
    const unsigned char *key;   /* key_inline, or the heap */
    unsigned char key_inline[EB_KEY_INLINE];
} eb_keyq;

typedef struct eb_key_table {
    eb_keyq **buckets;
    size_t n_buckets;           /* a power of two, or 0 */
    size_t count;
    eb_keyq *spare;             /* freed entries kept for reuse */
    size_t n_spare;
    bool walking;               /* in eb__keys_each: no shrinking */
} eb_key_table;

/** The entry of (sub, key), or of sub's unkeyed messages when key is
 *  NULL; NULL if there is none. */
eb_keyq *eb__keys_find(eb_key_table *t, const void *sub, uint32_t hash, const void *key,
                       size_t key_len);

/** Finds or makes the entry (state EB_KEY_IDLE when made). NULL when out
 *  of memory. */
eb_keyq *eb__keys_get(eb_key_table *t, const void *sub, uint32_t hash, const void *key,
                      size_t key_len);

/** Removes and frees an entry with an empty queue. */
void eb__keys_remove(eb_key_table *t, eb_keyq *k);

/** Calls fn for each entry; fn may remove the entry it is given. */
void eb__keys_each(eb_key_table *t, void (*fn)(eb_keyq *k, void *arg), void *arg);

/** Frees everything (the entries must be empty). */
void eb__keys_free(eb_key_table *t);

/** The hash a message's key is filed under (FNV-1a of its bytes). */
uint32_t eb__key_hash(const void *key, size_t len);

#endif
