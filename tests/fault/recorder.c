/*
 * recorder.c — the model's storage (see recorder.h): appends under one
 * mutex, a broadcast on every change, failure lines kept for the report.
 */
#include "recorder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t fault_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

const char *fault_check_name(fault_check c)
{
    static const char *const names[CHECK_COUNT] = {
        "setup", "redelivery", "handled", "order", "progress", "close", "threads"};
    return c < CHECK_COUNT ? names[c] : "?";
}

/** Grows *items (of `size` bytes each) to hold one more; exits when out of
 *  memory (the driver cannot judge a run it cannot record). */
static void *grow(void *items, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return items;
    *cap = *cap ? *cap * 2 : 256;
    void *more = realloc(items, *cap * size);
    if (!more) {
        fprintf(stderr, "fault: out of memory recording the run\n");
        exit(2);
    }
    return more;
}

recorder *recorder_new(const scenario *s)
{
    recorder *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->s = s;
    r->n_messages = s->n_churn_messages + s->n_tail_messages;
    r->msgs = calloc((size_t)r->n_messages, sizeof *r->msgs);
    if (!r->msgs) {
        free(r);
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &attr);
    pthread_condattr_destroy(&attr);
    r->last_activity_ns = fault_now_ns();
    return r;
}

void recorder_free(recorder *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_failure_lines; i++)
        free(r->failure_lines[i]);
    free(r->msgs);
    free(r->calls);
    free(r->revokes);
    free(r->leaves);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/** Under r->mu: adds (sign 1) or removes (-1) m from the per-topic counts;
 *  called around every change of a message. */
static void count_message(recorder *r, const msg_state *m, int sign)
{
    if (m->publish != PUB_CONFIRMED || msg_finished(m))
        return;
    r->confirmed_unfinished[m->topic] += sign;
    if (m->verify_calls == 0)
        r->unresolved[m->topic] += sign;
}

/* Under r->mu. */
static void changed(recorder *r)
{
    pthread_cond_broadcast(&r->cv);
}

static void add_line(recorder *r, const char *prefix, const char *fmt, va_list ap)
{
    if (r->n_failure_lines >= FAULT_FAILURE_LINES)
        return;
    char text[8192];
    int n = snprintf(text, sizeof text, "%s", prefix);
    vsnprintf(text + n, sizeof text - (size_t)n, fmt, ap);
    r->failure_lines[r->n_failure_lines++] = strdup(text);
}

static void fail_locked_v(recorder *r, fault_check check, const char *fmt, va_list ap)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "FAIL check %d (%s): ", (int)check,
             fault_check_name(check));
    r->failures[check]++;
    add_line(r, prefix, fmt, ap);
    changed(r);
}

void recorder_fail_locked(recorder *r, fault_check check, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_locked_v(r, check, fmt, ap);
    va_end(ap);
}

void recorder_fail(recorder *r, fault_check check, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&r->mu);
    fail_locked_v(r, check, fmt, ap);
    pthread_mutex_unlock(&r->mu);
    va_end(ap);
}

void recorder_note(recorder *r, const char *what, const char *fmt, ...)
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, "note (%s): ", what);
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&r->mu);
    r->notes++;
    add_line(r, prefix, fmt, ap);
    pthread_mutex_unlock(&r->mu);
    va_end(ap);
}

int recorder_failure_total(recorder *r)
{
    pthread_mutex_lock(&r->mu);
    int n = 0;
    for (int c = 0; c < CHECK_COUNT; c++)
        n += r->failures[c];
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* ------------------------------------------------------------ publishing */

long recorder_next_message(recorder *r, int topic, int key)
{
    pthread_mutex_lock(&r->mu);
    long i = r->n_published < r->n_messages ? r->n_published++ : -1;
    if (i >= 0) {
        r->msgs[i] = (msg_state){.topic = topic, .key = key, .pos = fault_pos_unknown()};
    }
    pthread_mutex_unlock(&r->mu);
    return i;
}

void recorder_accepted(recorder *r, long message)
{
    pthread_mutex_lock(&r->mu);
    if (r->msgs[message].publish == PUB_NONE)
        r->msgs[message].publish = PUB_ACCEPTED;
    pthread_mutex_unlock(&r->mu);
}

void recorder_delivery(recorder *r, long message, int status, const char *id)
{
    fault_pos pos;
    bool parsed = status == 0 && fault_pos_parse(id, &pos);
    pthread_mutex_lock(&r->mu);
    msg_state *m = &r->msgs[message];
    if (m->publish != PUB_ACCEPTED && m->publish != PUB_NONE)
        recorder_fail_locked(r, CHECK_HANDLED, "message %ld: a second delivery callback "
                             "(status %s)", message, eb_err_name(status));
    if (status == 0 && !parsed) /* it would drop out of every check */
        recorder_fail_locked(r, CHECK_SETUP, "message %ld: stored with an id the driver "
                             "cannot read: '%s'", message, id ? id : "(null)");
    count_message(r, m, -1);
    if (status == 0 && parsed) {
        m->publish = PUB_CONFIRMED;
        m->pos = pos;
    } else {
        m->publish = status == EB_ERR_UNCERTAIN ? PUB_UNCERTAIN : PUB_FAILED;
    }
    count_message(r, m, 1);
    changed(r);
    pthread_mutex_unlock(&r->mu);
}

/* --------------------------------------------------------------- members */

int recorder_incarnation_new(recorder *r, int member, bool child)
{
    pthread_mutex_lock(&r->mu);
    int i = r->n_incarnations < FAULT_MAX_INCARNATIONS ? r->n_incarnations++ : -1;
    if (i >= 0)
        r->incarnations[i] = (incarnation){.member = member, .child = child};
    pthread_mutex_unlock(&r->mu);
    return i;
}

void recorder_transition(recorder *r, int delta)
{
    pthread_mutex_lock(&r->mu);
    r->transitions += delta;
    r->last_activity_ns = fault_now_ns();
    changed(r);
    pthread_mutex_unlock(&r->mu);
}

void recorder_live(recorder *r, int delta)
{
    pthread_mutex_lock(&r->mu);
    r->live_members += delta;
    r->last_activity_ns = fault_now_ns();
    changed(r);
    pthread_mutex_unlock(&r->mu);
}

void recorder_killed(recorder *r, int inc)
{
    pthread_mutex_lock(&r->mu);
    r->incarnations[inc].killed = true;
    /* Its handlers died with it: nothing of it runs any more. */
    for (size_t i = 0; i < r->n_calls; i++) {
        if (r->calls[i].incarnation == inc && !r->calls[i].finished) {
            r->calls[i].finished = true;
            r->calls[i].result = -1;
            r->calls[i].end_seq = ++r->seq;
            r->calls[i].end_ns = fault_now_ns();
            r->running_calls--;
        }
    }
    r->last_activity_ns = fault_now_ns();
    changed(r);
    pthread_mutex_unlock(&r->mu);
}

void recorder_leave(recorder *r, const leave_record *leave)
{
    pthread_mutex_lock(&r->mu);
    r->leaves = grow(r->leaves, &r->cap_leaves, r->n_leaves, sizeof *r->leaves);
    r->leaves[r->n_leaves++] = *leave;
    changed(r);
    pthread_mutex_unlock(&r->mu);
}

void recorder_revoked(recorder *r, int inc, int topic)
{
    pthread_mutex_lock(&r->mu);
    r->revokes = grow(r->revokes, &r->cap_revokes, r->n_revokes, sizeof *r->revokes);
    r->revokes[r->n_revokes++] = (revoke_record){inc, topic, ++r->seq};
    r->last_activity_ns = fault_now_ns();
    changed(r);
    pthread_mutex_unlock(&r->mu);
}

/* ---------------------------------------------------------- handler calls */

size_t recorder_call_start(recorder *r, const call_record *c)
{
    pthread_mutex_lock(&r->mu);
    r->calls = grow(r->calls, &r->cap_calls, r->n_calls, sizeof *r->calls);
    size_t i = r->n_calls++;
    r->calls[i] = *c;
    r->calls[i].finished = false;
    r->calls[i].start_seq = ++r->seq;
    if (c->message >= 0 && c->message < r->n_published) {
        msg_state *m = &r->msgs[c->message];
        count_message(r, m, -1);
        if (r->incarnations[c->incarnation].member < 0)
            m->verify_calls++;
        else
            m->calls++;
        count_message(r, m, 1);
    }
    r->running_calls++;
    r->last_activity_ns = fault_now_ns();
    changed(r);
    pthread_mutex_unlock(&r->mu);
    return i;
}

void recorder_call_end(recorder *r, size_t call, eb_result result, int64_t end_ns)
{
    pthread_mutex_lock(&r->mu);
    call_record *c = &r->calls[call];
    if (!c->finished) { /* a killed child's calls were ended at the kill */
        c->finished = true;
        c->result = result;
        c->end_seq = ++r->seq;
        c->end_ns = end_ns;
        r->running_calls--;
        bool verifying = r->incarnations[c->incarnation].member < 0;
        if (result == EB_ACK && !verifying && c->message >= 0 && c->message < r->n_published) {
            msg_state *m = &r->msgs[c->message];
            count_message(r, m, -1);
            m->acks++;
            count_message(r, m, 1);
        }
        r->last_activity_ns = fault_now_ns();
        changed(r);
    }
    pthread_mutex_unlock(&r->mu);
}

void recorder_dead_letter(recorder *r, long message)
{
    pthread_mutex_lock(&r->mu);
    if (message >= 0 && message < r->n_published) {
        msg_state *m = &r->msgs[message];
        count_message(r, m, -1);
        m->dead_letters++;
        count_message(r, m, 1);
        r->last_activity_ns = fault_now_ns();
    } else {
        recorder_fail_locked(r, CHECK_HANDLED, "the dead-letter topic holds message %ld, "
                             "never published", message);
    }
    changed(r);
    pthread_mutex_unlock(&r->mu);
}

bool recorder_wait(recorder *r, bool (*pred)(recorder *r, void *arg), void *arg,
                   int64_t deadline_ns)
{
    struct timespec ts = {.tv_sec = deadline_ns / 1000000000,
                          .tv_nsec = deadline_ns % 1000000000};
    pthread_mutex_lock(&r->mu);
    bool ok;
    while (!(ok = pred(r, arg)) && fault_now_ns() < deadline_ns)
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    pthread_mutex_unlock(&r->mu);
    return ok;
}
