/*
 * broker.c — the memory transport's brokers: a process-wide registry by
 * name, topics with partition logs (rings of reference-counted records),
 * retention by count and bytes, and groups with their positions.
 *
 * Retention: a partition that is full drops its oldest record only when no
 * group with a live member still needs it; otherwise the publisher waits
 * (until its deadline, then EB_ERR_FULL, or until its bus begins to close,
 * then EB_ERR_CLOSED). What a group without a live member loses is counted
 * in its `lost`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_out.h"
#include "memory.h"

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static mem_broker *registry;

/* -------------------------------------------------------------- records */

/* Adds `len` to `*total`; false when the sum does not fit a size_t. */
static bool add_size(size_t *total, size_t len)
{
    return !__builtin_add_overflow(*total, len, total);
}

/** The bytes of one allocation holding the record and copies of what `m`
 *  points to. @returns false when they do not fit a size_t. The core
 *  checks sizes before publish() but dead letters skip that check, and a
 *  wrapped sum here would copy past a short allocation. */
static bool record_size(const eb_outgoing *m, size_t *out)
{
    size_t n;
    bool ok = !__builtin_mul_overflow(m->header_count, sizeof(eb_header), &n) &&
              add_size(&n, sizeof(mem_record)) && add_size(&n, m->key_len) &&
              add_size(&n, m->payload_len) && add_size(&n, 1);
    for (size_t i = 0; ok && i < m->header_count; i++)
        ok = add_size(&n, strlen(m->headers[i].name) + 1) &&
             add_size(&n, m->headers[i].value_len);
    *out = n;
    return ok;
}

int mem_record_new(const eb_outgoing *m, int64_t timestamp_ms, mem_record **out)
{
    size_t size;
    if (!record_size(m, &size))
        return EB_ERR_TOO_LARGE;
    mem_record *r = malloc(size);
    if (!r)
        return EB_ERR_NOMEM;
    atomic_init(&r->refs, 1);
    r->timestamp_ms = timestamp_ms;
    r->header_count = m->header_count;
    r->headers = (eb_header *)(r + 1);
    char *at = (char *)(r->headers + m->header_count);
    for (size_t i = 0; i < m->header_count; i++) {
        size_t len = strlen(m->headers[i].name) + 1;
        r->headers[i].name = memcpy(at, m->headers[i].name, len);
        at += len;
        r->headers[i].value = at;
        r->headers[i].value_len = m->headers[i].value_len;
        if (m->headers[i].value_len)
            memcpy(at, m->headers[i].value, m->headers[i].value_len);
        at += m->headers[i].value_len;
    }
    r->key = m->key ? at : NULL;
    r->key_len = m->key ? m->key_len : 0;
    if (r->key_len)
        memcpy(at, m->key, r->key_len);
    at += r->key_len;
    r->payload = at;
    r->payload_len = m->payload_len;
    if (m->payload_len)
        memcpy(at, m->payload, m->payload_len);
    at[m->payload_len] = '\0';
    r->bytes = size;
    *out = r;
    return 0;
}

void mem_record_unref(mem_record *rec)
{
    if (atomic_fetch_sub(&rec->refs, 1) == 1)
        free(rec);
}

/* ----------------------------------------------------------- partitions */

static mem_record *part_at(const mem_partition *p, uint64_t offset)
{
    return p->ring[(p->head + (offset - p->start_offset)) % p->cap];
}

static void part_drop_oldest(mem_partition *p)
{
    mem_record *r = p->ring[p->head];
    p->head = (p->head + 1) % p->cap;
    p->len--;
    p->start_offset++;
    p->bytes -= r->bytes;
    mem_record_unref(r);
}

static int part_push(mem_partition *p, mem_record *r)
{
    if (p->len == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 1024;
        mem_record **ring = malloc(cap * sizeof *ring);
        if (!ring)
            return EB_ERR_NOMEM;
        for (size_t i = 0; i < p->len; i++)
            ring[i] = p->ring[(p->head + i) % p->cap];
        free(p->ring);
        p->ring = ring;
        p->cap = cap;
        p->head = 0;
    }
    r->offset = p->next_offset++;
    p->ring[(p->head + p->len++) % p->cap] = r;
    p->bytes += r->bytes;
    return 0;
}

/* --------------------------------------------------------------- groups */

static bool group_live(const mem_group *g) { return g->n_members > 0; }

/** Is the oldest record of partition `pi` still needed by a live group? */
static bool oldest_needed(const mem_topic *t, unsigned pi)
{
    for (const mem_group *g = t->groups; g; g = g->next)
        if (group_live(g) && g->committed[pi] <= t->parts[pi].start_offset)
            return true;
    return false;
}

/** Groups without a live member that fall behind count their losses. */
static void count_losses(mem_topic *t, unsigned pi)
{
    uint64_t start = t->parts[pi].start_offset;
    for (mem_group *g = t->groups; g; g = g->next) {
        if (g->committed[pi] < start) {
            g->lost += start - g->committed[pi];
            g->committed[pi] = start;
        }
    }
}

/* Written so that nothing wraps: a partition holding one record larger
 * than the byte limit has bytes above it, and `extra` may be anything. */
static bool over_retention(const mem_broker *b, const mem_partition *p, size_t extra)
{
    return p->len >= b->retention_messages || p->bytes > b->retention_bytes ||
           extra > b->retention_bytes - p->bytes;
}

static void free_group(mem_group *g)
{
    free(g->name);
    free(g->committed);
    free(g->owner);
    free(g->members);
    free(g);
}

static mem_group *find_group(mem_topic *t, const char *name)
{
    for (mem_group *g = t->groups; g; g = g->next)
        if (g->name && name && strcmp(g->name, name) == 0)
            return g;
    return NULL;
}

static mem_group *new_group(mem_topic *t, const char *name, eb_start_position start)
{
    mem_group *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->committed = calloc(t->n_parts, sizeof *g->committed);
    g->owner = calloc(t->n_parts, sizeof *g->owner);
    g->name = name ? strdup(name) : NULL;
    if (!g->committed || !g->owner || (name && !g->name)) {
        free_group(g);
        return NULL;
    }
    /* A named group starts at the earliest retained message unless told
     * otherwise; an anonymous member at the latest. */
    bool latest = start == EB_START_LATEST || (start == EB_START_DEFAULT && !name);
    for (unsigned i = 0; i < t->n_parts; i++)
        g->committed[i] = latest ? t->parts[i].next_offset : t->parts[i].start_offset;
    g->next = t->groups;
    t->groups = g;
    return g;
}

static bool add_member(mem_group *g, mem_member *m)
{
    if (g->n_members == g->cap_members) {
        size_t cap = g->cap_members ? g->cap_members * 2 : 4;
        mem_member **members = realloc(g->members, cap * sizeof *members);
        if (!members)
            return false;
        g->members = members;
        g->cap_members = cap;
    }
    g->members[g->n_members++] = m;
    g->generation++;
    return true;
}

mem_group *mem_group_join(mem_broker *b, mem_topic *t, const char *name,
                          eb_start_position start, mem_member *m)
{
    mem_group *g = name ? find_group(t, name) : NULL;
    bool created = !g;
    if (!g && !(g = new_group(t, name, start)))
        return NULL;
    if (!add_member(g, m)) {
        if (created)
            mem_group_leave(b, t, g, NULL);
        return NULL;
    }
    for (size_t i = 0; i < g->n_members; i++)
        mem_member_wake(g->members[i]);
    return g;
}

static void unlink_group(mem_topic *t, mem_group *g)
{
    mem_group **pp = &t->groups;
    while (*pp != g)
        pp = &(*pp)->next;
    *pp = g->next;
}

void mem_group_leave(mem_broker *b, mem_topic *t, mem_group *g, mem_member *m)
{
    for (size_t i = 0; i < g->n_members; i++) {
        if (g->members[i] == m) {
            memmove(&g->members[i], &g->members[i + 1],
                    (g->n_members - i - 1) * sizeof *g->members);
            g->n_members--;
            g->generation++;
            break;
        }
    }
    for (size_t i = 0; i < g->n_members; i++)
        mem_member_wake(g->members[i]);
    pthread_cond_broadcast(&b->space_cv); /* it may have held retention */
    if (!g->name && g->n_members == 0) {
        unlink_group(t, g);
        free_group(g);
    }
}

/* --------------------------------------------------------------- topics */

static void free_topic(mem_topic *t)
{
    for (unsigned i = 0; i < t->n_parts; i++) {
        while (t->parts[i].len)
            part_drop_oldest(&t->parts[i]);
        free(t->parts[i].ring);
    }
    for (mem_group *g = t->groups, *next; g; g = next) {
        next = g->next;
        free_group(g);
    }
    free(t->parts);
    free(t->name);
    free(t);
}

mem_topic *mem_topic_get(mem_broker *b, const char *name)
{
    for (mem_topic *t = b->topics; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    mem_topic *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->name = strdup(name);
    t->n_parts = b->partitions;
    t->parts = calloc(t->n_parts, sizeof *t->parts);
    if (!t->name || !t->parts) {
        free(t->name);
        free(t->parts);
        free(t);
        return NULL;
    }
    t->next = b->topics;
    b->topics = t;
    return t;
}

void mem_topic_wake_members(mem_topic *t)
{
    for (mem_group *g = t->groups; g; g = g->next)
        for (size_t i = 0; i < g->n_members; i++)
            mem_member_wake(g->members[i]);
}

static unsigned partition_of(mem_topic *t, const mem_record *r)
{
    if (!r->key)
        return t->round_robin++ % t->n_parts;
    uint32_t h = 2166136261u; /* FNV-1a, the same in every process */
    const unsigned char *k = r->key;
    for (size_t i = 0; i < r->key_len; i++)
        h = (h ^ k[i]) * 16777619u;
    return h % t->n_parts;
}

/** Under b->mu: makes room in partition pi for `bytes`, waiting while a
 *  live group needs the oldest record and the bus `mb` is not closing. */
static int make_room(mem_bus *mb, mem_topic *t, unsigned pi, size_t bytes,
                     int64_t timeout_ms)
{
    mem_broker *b = mb->broker;
    mem_partition *p = &t->parts[pi];
    int64_t deadline_ns = 0;
    while (p->len > 0 && over_retention(b, p, bytes)) {
        if (!oldest_needed(t, pi)) {
            part_drop_oldest(p);
            count_losses(t, pi);
            continue;
        }
        if (timeout_ms == 0)
            return EB_ERR_FULL;
        if (mb->closing)
            return EB_ERR_CLOSED;
        if (deadline_ns == 0)
            deadline_ns = mb->host->now_ns() + timeout_ms * 1000000;
        else if (mb->host->now_ns() >= deadline_ns)
            return EB_ERR_FULL;
        struct timespec ts = {.tv_sec = deadline_ns / 1000000000,
                              .tv_nsec = deadline_ns % 1000000000};
        b->space_waiters++;
        pthread_cond_timedwait(&b->space_cv, &b->mu, &ts);
        b->space_waiters--;
    }
    return 0;
}

int mem_broker_append(mem_bus *mb, const char *topic, mem_record *rec,
                      int64_t timeout_ms, unsigned *partition, uint64_t *offset)
{
    mem_broker *b = mb->broker;
    pthread_mutex_lock(&b->mu);
    mem_topic *t = mem_topic_get(b, topic);
    int rc = t ? 0 : EB_ERR_NOMEM;
    unsigned pi = t ? partition_of(t, rec) : 0;
    if (rc == 0)
        rc = make_room(mb, t, pi, rec->bytes, timeout_ms);
    if (rc == 0)
        rc = part_push(&t->parts[pi], rec);
    if (rc == 0) {
        *offset = rec->offset; /* read under the lock: retention may free rec */
        mem_topic_wake_members(t);
    }
    pthread_mutex_unlock(&b->mu);
    *partition = pi;
    return rc;
}

/* Every publisher of the broker wakes, whatever its bus: the others look
 * again and wait on. A publisher between its checks and its wait holds
 * b->mu, so it sees `closing` or gets this wake-up. */
void mem_broker_close_waits(mem_bus *mb)
{
    pthread_mutex_lock(&mb->broker->mu);
    mb->closing = true;
    pthread_cond_broadcast(&mb->broker->space_cv);
    pthread_mutex_unlock(&mb->broker->mu);
}

/** Under b->mu: the record at `offset` of partition pi, or NULL. */
mem_record *mem_partition_record(mem_topic *t, unsigned pi, uint64_t offset)
{
    mem_partition *p = &t->parts[pi];
    if (offset < p->start_offset || offset >= p->next_offset)
        return NULL;
    return part_at(p, offset);
}

/* -------------------------------------------------------------- registry */

static void broker_free(mem_broker *b)
{
    for (mem_topic *t = b->topics, *next; t; t = next) {
        next = t->next;
        free_topic(t);
    }
    pthread_cond_destroy(&b->space_cv);
    pthread_mutex_destroy(&b->mu);
    free(b->name);
    free(b);
}

static mem_broker *broker_new(const char *name, unsigned partitions,
                              size_t retention_messages, size_t retention_bytes)
{
    mem_broker *b = calloc(1, sizeof *b);
    if (!b || !(b->name = strdup(name))) {
        free(b);
        return NULL;
    }
    b->partitions = partitions;
    b->retention_messages = retention_messages;
    b->retention_bytes = retention_bytes;
    /* Short critical sections shared by every publisher, member and ack:
     * spinning briefly beats a futex sleep and wake-up. */
    pthread_mutexattr_t mattr;
    pthread_mutexattr_init(&mattr);
    pthread_mutexattr_settype(&mattr, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&b->mu, &mattr);
    pthread_mutexattr_destroy(&mattr);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&b->space_cv, &attr);
    pthread_condattr_destroy(&attr);
    return b;
}

int mem_broker_acquire(const char *name, unsigned partitions, size_t retention_messages,
                       size_t retention_bytes, mem_broker **out, char *errstr,
                       size_t errstr_size)
{
    pthread_mutex_lock(&registry_mu);
    mem_broker *b = registry;
    while (b && strcmp(b->name, name) != 0)
        b = b->next;
    int rc = 0;
    if (b && b->partitions != partitions) {
        snprintf(errstr, errstr_size,
                 "memory broker '%s' is already open with memory.partitions=%u; "
                 "this bus asks for %u", name, b->partitions, partitions);
        rc = EB_ERR_CONFIG;
    } else if (!b && !(b = broker_new(name, partitions, retention_messages, retention_bytes))) {
        rc = EB_ERR_NOMEM;
    } else {
        if (b->refs++ == 0) {
            b->next = registry;
            registry = b;
        }
        *out = b;
    }
    pthread_mutex_unlock(&registry_mu);
    return rc;
}

void mem_broker_ref(mem_broker *b)
{
    pthread_mutex_lock(&registry_mu);
    b->refs++;
    pthread_mutex_unlock(&registry_mu);
}

void mem_broker_release(mem_broker *b)
{
    pthread_mutex_lock(&registry_mu);
    bool last = --b->refs == 0;
    if (last) {
        mem_broker **pp = &registry;
        while (*pp != b)
            pp = &(*pp)->next;
        *pp = b->next;
    }
    pthread_mutex_unlock(&registry_mu);
    if (last)
        broker_free(b);
}

/* ----------------------------------------------------------------- stats */

static void group_stats(eb_json_out *o, const mem_topic *t, const mem_group *g)
{
    uint64_t lag = 0;
    for (unsigned i = 0; i < t->n_parts; i++)
        lag += t->parts[i].next_offset - g->committed[i];
    eb_json_printf(o, "{\"name\":");
    eb_json_string(o, g->name ? g->name : "");
    eb_json_printf(o, ",\"members\":%zu,\"lag\":%llu,\"lost\":%llu}", g->n_members,
        (unsigned long long)lag, (unsigned long long)g->lost);
}

static void topic_stats(eb_json_out *o, const mem_topic *t)
{
    uint64_t messages = 0, bytes = 0;
    for (unsigned i = 0; i < t->n_parts; i++) {
        messages += t->parts[i].len;
        bytes += t->parts[i].bytes;
    }
    eb_json_printf(o, "{\"name\":");
    eb_json_string(o, t->name);
    eb_json_printf(o, ",\"partitions\":%u,\"messages\":%llu,\"bytes\":%llu,\"groups\":[",
        t->n_parts, (unsigned long long)messages, (unsigned long long)bytes);
    for (const mem_group *g = t->groups; g; g = g->next) {
        group_stats(o, t, g);
        eb_json_printf(o, "%s", g->next ? "," : "");
    }
    eb_json_printf(o, "]}");
}

int mem_broker_stats(mem_broker *b, char *buf, size_t size)
{
    eb_json_out o = {buf, size, 0};
    pthread_mutex_lock(&b->mu);
    eb_json_printf(&o, "{\"broker\":");
    eb_json_string(&o, b->name);
    eb_json_printf(&o, ",\"publishers_waiting\":%d,\"topics\":[", b->space_waiters);
    for (const mem_topic *t = b->topics; t; t = t->next) {
        topic_stats(&o, t);
        eb_json_printf(&o, "%s", t->next ? "," : "");
    }
    eb_json_printf(&o, "]}");
    pthread_mutex_unlock(&b->mu);
    return (int)o.len;
}
