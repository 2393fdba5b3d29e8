/*
 * producer.c — a bus's delivery-callback thread for the memory transport.
 * A publish is stored before eb_publish returns; its callback is queued
 * here and runs on this thread, never inside eb_publish. Flush waits until
 * the queue is empty; stop runs what is left, then joins.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "memory.h"

typedef struct report {
    void *token;
    unsigned partition;
    uint64_t offset;
} report;

struct mem_producer {
    const eb_host *host;
    eb_host_bus *hb;
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* work for the thread */
    pthread_cond_t idle_cv;  /* flushers */
    pthread_t thread;
    report *queue;
    size_t len, cap;
    size_t running;          /* reports taken, callbacks not yet returned */
    bool stopping, sleeping;
};

static void run_reports(struct mem_producer *p, const report *r, size_t n)
{
    char id[48];
    for (size_t i = 0; i < n; i++) {
        snprintf(id, sizeof id, "%u@%llu", r[i].partition,
                 (unsigned long long)r[i].offset);
        p->host->delivered(p->hb, r[i].token, 0, id);
    }
}

static void *producer_main(void *arg)
{
    struct mem_producer *p = arg;
    pthread_setname_np(pthread_self(), "eb-mem-producer");
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->len == 0) {
            if (p->stopping)
                break;
            p->sleeping = true;
            pthread_cond_wait(&p->cv, &p->mu);
            p->sleeping = false;
            continue;
        }
        /* Take the whole queue: publishers start a new one meanwhile. */
        report *batch = p->queue;
        size_t n = p->len;
        p->queue = NULL;
        p->len = p->cap = 0;
        p->running = n;
        pthread_mutex_unlock(&p->mu);
        run_reports(p, batch, n);
        free(batch);
        pthread_mutex_lock(&p->mu);
        p->running = 0;
        if (p->len == 0)
            pthread_cond_broadcast(&p->idle_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int mem_producer_start(const eb_host *host, eb_host_bus *hb, struct mem_producer **out)
{
    struct mem_producer *p = calloc(1, sizeof *p);
    if (!p)
        return EB_ERR_NOMEM;
    p->host = host;
    p->hb = hb;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->idle_cv, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&p->thread, NULL, producer_main, p) != 0) {
        free(p);
        return EB_ERR_NOMEM;
    }
    *out = p;
    return 0;
}

/** Under p->mu: room for one more report. */
static bool grow(struct mem_producer *p)
{
    if (p->len < p->cap)
        return true;
    size_t cap = p->cap ? p->cap * 2 : 1024;
    report *q = realloc(p->queue, cap * sizeof *q);
    if (!q)
        return false;
    p->queue = q;
    p->cap = cap;
    return true;
}

void mem_producer_report(struct mem_producer *p, void *token, unsigned partition,
                         uint64_t offset)
{
    pthread_mutex_lock(&p->mu);
    /* The message is stored already: out of memory, wait for room rather
     * than report a stored message as failed or lose its callback. */
    while (!grow(p)) {
        pthread_mutex_unlock(&p->mu);
        sched_yield();
        pthread_mutex_lock(&p->mu);
    }
    p->queue[p->len++] = (report){token, partition, offset};
    if (p->sleeping) {
        p->sleeping = false;
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
}

int mem_producer_flush(struct mem_producer *p, int64_t deadline_ns, const eb_host *host)
{
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    while (p->len + p->running > 0) {
        if (host->now_ns() >= deadline_ns) {
            rc = EB_ERR_TIMEOUT;
            break;
        }
        struct timespec ts = {.tv_sec = deadline_ns / 1000000000,
                              .tv_nsec = deadline_ns % 1000000000};
        pthread_cond_timedwait(&p->idle_cv, &p->mu, &ts);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void mem_producer_stop(struct mem_producer *p)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->idle_cv);
    pthread_mutex_destroy(&p->mu);
    free(p->queue);
    free(p);
}
