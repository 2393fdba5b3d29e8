/*
 * msgq.h — an intrusive FIFO of messages linked through m->core.next, the
 * queue every part of the dispatcher uses (key queues, turns, releases).
 */
#ifndef EB_MSGQ_H
#define EB_MSGQ_H

#include <stddef.h>

#include "eventbus/transport.h"

typedef struct msgq {
    eb_msg *head, *tail;
    size_t len;
} msgq;

static inline void q_push(msgq *q, eb_msg *m)
{
    m->core.next = NULL;
    if (q->tail)
        q->tail->core.next = m;
    else
        q->head = m;
    q->tail = m;
    q->len++;
}

/** Puts the whole of `front` before q's messages, keeping its order. */
static inline void q_prepend(msgq *q, msgq *front)
{
    if (!front->head)
        return;
    front->tail->core.next = q->head;
    if (!q->tail)
        q->tail = front->tail;
    q->head = front->head;
    q->len += front->len;
    *front = (msgq){0};
}

static inline eb_msg *q_pop(msgq *q)
{
    eb_msg *m = q->head;
    if (!m)
        return NULL;
    q->head = m->core.next;
    if (!q->head)
        q->tail = NULL;
    q->len--;
    m->core.next = NULL;
    return m;
}

#endif
