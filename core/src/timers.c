/*
 * timers.c — the timer thread and its min-heap of messages ordered by
 * m->core.due_ns. Adding wakes the thread only when the new message is the
 * earliest; expediting rewrites due times and rebuilds the heap; once
 * abandoned (close), every message is due at once, whenever it was added.
 * A message here counts as parked for its subscription (eb__sub_parked).
 */
#include "timers.h"

#include <sched.h>
#include <stdlib.h>

#include "bus.h"
#include "sync.h"

struct eb_timers {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool running;        /* the thread was started (eb__timers_run) */
    eb_msg **heap;
    size_t len, cap;
    size_t firing;
    bool abandoned;      /* eb__timers_abandon: nothing waits any more */
    bool stopping;
    eb_timer_fire_fn fire;
    void *ctx;
};

static bool earlier(const eb_msg *a, const eb_msg *b)
{
    return a->core.due_ns < b->core.due_ns;
}

static void sift_up(eb_msg **h, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!earlier(h[i], h[parent]))
            break;
        eb_msg *tmp = h[i];
        h[i] = h[parent];
        h[parent] = tmp;
        i = parent;
    }
}

static void sift_down(eb_msg **h, size_t len, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, min = i;
        if (l < len && earlier(h[l], h[min]))
            min = l;
        if (r < len && earlier(h[r], h[min]))
            min = r;
        if (min == i)
            return;
        eb_msg *tmp = h[i];
        h[i] = h[min];
        h[min] = tmp;
        i = min;
    }
}

/** Halves the heap's array once it is three quarters empty, so that a
 *  burst of retries does not keep its memory (never below 64). */
static void shrink_if_sparse(eb_timers *t)
{
    if (t->cap <= 64 || t->len >= t->cap / 4)
        return;
    eb_msg **heap = realloc(t->heap, t->cap / 2 * sizeof *heap);
    if (heap) { /* else keep the larger one */
        t->heap = heap;
        t->cap /= 2;
    }
}

static eb_msg *pop_due(eb_timers *t, int64_t now)
{
    if (t->len == 0 || t->heap[0]->core.due_ns > now)
        return NULL;
    eb_msg *m = t->heap[0];
    t->heap[0] = t->heap[--t->len];
    sift_down(t->heap, t->len, 0);
    shrink_if_sparse(t);
    return m;
}

static void *timer_main(void *arg)
{
    eb_timers *t = arg;
    pthread_setname_np(pthread_self(), "eb-timer");
    pthread_mutex_lock(&t->mu);
    while (!t->stopping || t->len > 0) {
        /* Once abandoned (and when stopping, which comes after), nothing
         * waits for its due time: the message comes back to be released. */
        bool all_due = t->abandoned || t->stopping;
        eb_msg *m = pop_due(t, all_due ? INT64_MAX : eb__now_ns());
        if (m) {
            t->firing++;
            pthread_mutex_unlock(&t->mu);
            eb__sub_parked(m->core.sub, -1);
            t->fire(t->ctx, m);
            pthread_mutex_lock(&t->mu);
            t->firing--;
            continue;
        }
        int64_t until = t->len ? t->heap[0]->core.due_ns : INT64_MAX;
        eb__cond_wait_until(&t->cv, &t->mu, until);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

int eb__timers_new(eb_timer_fire_fn fire, void *ctx, eb_timers **out)
{
    eb_timers *t = calloc(1, sizeof *t);
    if (!t)
        return EB_ERR_NOMEM;
    pthread_mutex_init(&t->mu, NULL);
    eb__cond_init(&t->cv);
    t->fire = fire;
    t->ctx = ctx;
    *out = t;
    return 0;
}

int eb__timers_run(eb_timers *t)
{
    pthread_mutex_lock(&t->mu);
    int rc = 0;
    if (!t->running) {
        t->running = pthread_create(&t->thread, NULL, timer_main, t) == 0;
        rc = t->running ? 0 : EB_ERR_NOMEM;
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

static bool grow(eb_timers *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    eb_msg **heap = realloc(t->heap, cap * sizeof *heap);
    if (!heap)
        return false;
    t->heap = heap;
    t->cap = cap;
    return true;
}

void eb__timers_add(eb_timers *t, eb_msg *m, int64_t due_ns)
{
    m->core.due_ns = due_ns;
    eb__sub_parked(m->core.sub, 1);
    pthread_mutex_lock(&t->mu);
    while (t->len == t->cap && !grow(t)) {
        /* Out of memory: wait for the heap to shrink rather than drop. */
        pthread_mutex_unlock(&t->mu);
        sched_yield();
        pthread_mutex_lock(&t->mu);
    }
    t->heap[t->len] = m;
    sift_up(t->heap, t->len++);
    if (t->heap[0] == m)
        pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

void eb__timers_expedite(eb_timers *t, eb_timer_match_fn match, void *arg)
{
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->len; i++)
        if (match(t->heap[i], arg))
            t->heap[i]->core.due_ns = 0;
    for (size_t i = t->len / 2 + 1; i-- > 0;)
        sift_down(t->heap, t->len, i);
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

void eb__timers_abandon(eb_timers *t)
{
    pthread_mutex_lock(&t->mu);
    t->abandoned = true;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

size_t eb__timers_pending(eb_timers *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->len + t->firing;
    pthread_mutex_unlock(&t->mu);
    return n;
}

void eb__timers_stop(eb_timers *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->stopping = true;
    pthread_cond_signal(&t->cv);
    bool running = t->running;
    pthread_mutex_unlock(&t->mu);
    if (running)
        pthread_join(t->thread, NULL);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t->heap);
    free(t);
}
