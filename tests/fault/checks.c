/*
 * checks.c — checks 1, 2, 3 and 5 over the recorder (see checks.h). The
 * run's threads have all ended: nothing here takes the recorder's mutex
 * except to record failures.
 */
#include "checks.h"

#include <stdio.h>
#include <stdlib.h>

#include "member.h"

enum { EXAMPLES = 8 };

static void describe_message(const recorder *r, long i, char *out, size_t size)
{
    const msg_state *m = &r->msgs[i];
    const call_record *last = NULL;
    for (size_t c = 0; c < r->n_calls; c++)
        if (r->calls[c].message == i && r->incarnations[r->calls[c].incarnation].member >= 0)
            last = &r->calls[c];
    char pos[FAULT_POS_TEXT];
    int n = snprintf(out, size, "message %ld (topic %d, key %d, stored at %s): %u "
                     "handler call(s), %u ACK(s), %u dead letter(s)", i, m->topic, m->key,
                     fault_pos_text(m->pos, pos, sizeof pos), m->calls, m->acks,
                     m->dead_letters);
    if (last && n > 0 && (size_t)n < size)
        snprintf(out + n, size - (size_t)n, "; last call by member %d (incarnation %d), "
                 "attempt %u, %s", r->incarnations[last->incarnation].member,
                 last->incarnation, last->attempt,
                 !last->finished ? "still running"
                 : last->result == EB_ACK ? "ACK" : last->result == EB_RETRY ? "RETRY"
                 : last->result == EB_REJECT ? "REJECT" : "killed");
}

void check_redelivery(recorder *r, const long *lost)
{
    long missing[FAULT_MAX_TOPICS] = {0};
    long first[FAULT_MAX_TOPICS];
    for (long i = 0; i < r->n_published; i++) {
        const msg_state *m = &r->msgs[i];
        if (m->publish == PUB_CONFIRMED && !msg_finished(m) && m->verify_calls == 0 &&
            missing[m->topic]++ == 0)
            first[m->topic] = i;
    }
    for (int t = 0; t < r->s->n_topics; t++) {
        if (missing[t] <= lost[t])
            continue;
        char what[512];
        describe_message(r, first[t], what, sizeof what);
        recorder_fail(r, CHECK_REDELIVERY, "topic %d: %ld confirmed message(s) neither "
                      "ACKed, dead-lettered nor delivered to a fresh member of the group "
                      "(the committed position passed them; %ld lost to retention); first: %s",
                      t, missing[t], lost[t], what);
    }
}

void check_handled(recorder *r, const bool *unfinished_at_settle, const long *lost)
{
    long count[FAULT_MAX_TOPICS] = {0};
    long first[FAULT_MAX_TOPICS];
    for (long i = 0; i < r->n_published; i++)
        if (unfinished_at_settle[i] && count[r->msgs[i].topic]++ == 0)
            first[r->msgs[i].topic] = i;
    for (int t = 0; t < r->s->n_topics; t++) {
        if (count[t] <= lost[t])
            continue;
        char what[512];
        describe_message(r, first[t], what, sizeof what);
        recorder_fail(r, CHECK_HANDLED, "topic %d: %ld confirmed message(s) not ACKed nor "
                      "dead-lettered by the live members when the settle phase ended "
                      "(%ld lost to retention); first: %s", t, count[t], lost[t], what);
    }
}

/* -------------------------------------------------------------- order */

/** Was incarnation `inc`'s `topic` revoked between the two sequence
 *  numbers? */
static bool revoked_between(const recorder *r, int inc, int topic, uint64_t from, uint64_t to)
{
    for (size_t i = 0; i < r->n_revokes; i++) {
        const revoke_record *v = &r->revokes[i];
        if (v->incarnation == inc && (v->topic == topic || v->topic < 0) && v->seq > from &&
            v->seq < to)
            return true;
    }
    return false;
}

/** The first confirmed position of (topic, key) after `after`; unknown
 *  when there is none. */
static fault_pos next_confirmed(const recorder *r, int topic, int key, fault_pos after)
{
    fault_pos best = fault_pos_unknown();
    for (long i = 0; i < r->n_published; i++) {
        const msg_state *m = &r->msgs[i];
        if (m->publish == PUB_CONFIRMED && m->topic == topic && m->key == key &&
            fault_pos_cmp(m->pos, after) > 0 &&
            (!fault_pos_known(best) || fault_pos_cmp(m->pos, best) < 0))
            best = m->pos;
    }
    return best;
}

/*
 * What check 3 asks (DESIGN.md, "Per-key order"). Within one member
 * incarnation, between revokes, on every transport: the core never runs
 * two handlers of a key at once, starts nothing later of a key while a
 * retry of it is pending, and handles nothing twice. That the transport
 * hands a key's messages over in the order it stored them, none skipped,
 * is promised by KEY_ORDER (memory, Kafka, Redis in keyed mode, where a
 * partition's new owner first finishes what the one before left, in id
 * order), and by KEY_ORDER_SINGLE_MEMBER (Redis in shared mode) only
 * while the group has one member at a time under one consumer name (a
 * scenario's one_member_at_a_time; not the verifying member, which has a
 * name of its own): with several members each one gets some of a key's
 * entries, and an entry claimed from a member that died or left runs
 * after newer ones.
 */
static bool stored_order_promised(const recorder *r, int inc)
{
    if (r->features & EB_FEATURE_KEY_ORDER)
        return true;
    return (r->features & EB_FEATURE_KEY_ORDER_SINGLE_MEMBER) && r->s->one_member_at_a_time &&
           r->incarnations[inc].member >= 0;
}

static const char *order_break(const recorder *r, const call_record *prev,
                               const call_record *cur, bool stored_order)
{
    if (!prev->finished || prev->end_seq > cur->start_seq)
        return "two handlers of one key at once";
    int cmp = fault_pos_cmp(cur->pos, prev->pos);
    if (prev->result == EB_RETRY && prev->attempt < (uint32_t)r->s->retry_max_attempts)
        return cmp == 0 ? NULL : "another message of the key ran while a retry was pending";
    if (cmp == 0)
        return "handled again after it finished";
    if (!stored_order)
        return NULL;
    if (cmp < 0)
        return "an earlier message after a later one";
    fault_pos next = next_confirmed(r, cur->topic, cur->key, prev->pos);
    if (fault_pos_known(next) && fault_pos_cmp(next, cur->pos) < 0)
        return "a confirmed message of the key skipped";
    return NULL;
}

void check_order(recorder *r)
{
    size_t slots = (size_t)FAULT_MAX_INCARNATIONS * FAULT_MAX_TOPICS * FAULT_MAX_KEYS;
    long *last = malloc(slots * sizeof *last);
    if (!last) {
        recorder_fail(r, CHECK_SETUP, "out of memory checking order");
        return;
    }
    for (size_t i = 0; i < slots; i++)
        last[i] = -1;
    int reported = 0;
    for (size_t i = 0; i < r->n_calls; i++) {
        const call_record *cur = &r->calls[i];
        if (cur->key < 0 || cur->key >= FAULT_MAX_KEYS || !fault_pos_known(cur->pos))
            continue;
        size_t slot = ((size_t)cur->incarnation * FAULT_MAX_TOPICS + (size_t)cur->topic) *
                          FAULT_MAX_KEYS + (size_t)cur->key;
        long p = last[slot];
        last[slot] = (long)i;
        if (p < 0)
            continue;
        const call_record *prev = &r->calls[p];
        if (revoked_between(r, cur->incarnation, cur->topic, prev->start_seq, cur->start_seq))
            continue;
        const char *why = order_break(r, prev, cur, stored_order_promised(r, cur->incarnation));
        char prev_pos[FAULT_POS_TEXT], cur_pos[FAULT_POS_TEXT];
        if (why && reported++ < EXAMPLES)
            recorder_fail(r, CHECK_ORDER, "member %d (incarnation %d), topic %d, key %d: %s: "
                          "message %ld at %s (attempt %u, result %d) then message %ld at %s "
                          "(attempt %u), no revoke between",
                          r->incarnations[cur->incarnation].member, cur->incarnation,
                          cur->topic, cur->key, why, prev->message,
                          fault_pos_text(prev->pos, prev_pos, sizeof prev_pos), prev->attempt,
                          prev->finished ? (int)prev->result : -2, cur->message,
                          fault_pos_text(cur->pos, cur_pos, sizeof cur_pos), cur->attempt);
    }
    free(last);
}

/* -------------------------------------------------------------- close */

/* The leave (final acknowledgements or commits, leaving the group) gets
 * at least EB_LEAVE_MIN_MS from when the handlers finished, in a close
 * and in an unsubscribe (eventbus.h, eb_bus_close and eb_unsubscribe). */
enum { LEAVE_MIN_MS = 500, MOCK_JOIN_MS = 3000 };

/* Redis: the transport's leave honours its deadline, but its keeper may
 * be inside one command or one connect when the deadline passes
 * (redis.command.timeout.ms + redis.connect.timeout.ms, env.c). */
int check_close_slack_ms(const scenario *s)
{
    switch (s->transport) {
    case FAULT_MEMORY:
        return 300;
    case FAULT_REDIS:
    case FAULT_REDIS_KEYED:
        return REDIS_COMMAND_TIMEOUT_MS + REDIS_CONNECT_TIMEOUT_MS + 300;
    default:
        return 1000;
    }
}

/** eb_unsubscribe: the handlers get the revoke timeout, then the leave. */
static int64_t unsubscribe_extra_ns(const scenario *s)
{
    (void)s;
    return LEAVE_MIN_MS * 1000000LL;
}

/** eb_bus_close, past max(deadline, end of the handlers running at it):
 *  Redis's leave may use all of its EB_LEAVE_MIN_MS (its keeper runs to
 *  the deadline while an acknowledgement is unanswered); memory's leave
 *  takes no time and Kafka's fits in its slack. */
static int64_t close_extra_ns(const scenario *s)
{
    return fault_transport_is_redis(s->transport) ? LEAVE_MIN_MS * 1000000LL : 0;
}

/** The latest end of a handler of `inc` that was running at `at_ns`. */
static int64_t longest_running_end(const recorder *r, int inc, int64_t at_ns)
{
    int64_t end = 0;
    for (size_t i = 0; i < r->n_calls; i++) {
        const call_record *c = &r->calls[i];
        if (c->incarnation == inc && c->start_ns < at_ns && c->finished && c->end_ns > at_ns &&
            c->end_ns > end)
            end = c->end_ns;
    }
    return end;
}

void check_close(recorder *r, bool allow_slow_kafka_leave)
{
    bool lenient = allow_slow_kafka_leave && fault_transport_is_kafka(r->s->transport);
    /* How far past the bound a JoinGroup in flight may hold a Kafka close
     * or unsubscribe (a topic change waits for the join's assign, issue 7
     * defect 11): the revoke timeout and a join (the mock cluster's take
     * 3 s). Seen: an unsubscribe 137 ms after the member joined, 4 s. */
    int64_t join_wait = ((int64_t)r->s->revoke_timeout_ms + MOCK_JOIN_MS) * 1000000;
    int64_t slack = (int64_t)check_close_slack_ms(r->s) * 1000000;
    for (size_t i = 0; i < r->n_leaves; i++) {
        const leave_record *l = &r->leaves[i];
        int64_t bound;
        const char *what;
        if (l->is_close) {
            int64_t deadline = l->start_ns + (int64_t)l->deadline_ms * 1000000;
            int64_t handlers = longest_running_end(r, l->incarnation, deadline);
            bound = (handlers > deadline ? handlers : deadline) + close_extra_ns(r->s) + slack;
            what = "eb_bus_close";
        } else {
            bound = l->start_ns + (int64_t)r->s->revoke_timeout_ms * 1000000 +
                    unsubscribe_extra_ns(r->s) + slack;
            what = "eb_unsubscribe";
        }
        if (l->end_ns <= bound)
            continue;
        if (lenient && l->end_ns <= bound + join_wait)
            recorder_note(r, "Kafka leave held by librdkafka (a JoinGroup in flight); a "
                          "failure with --no-allow-slow-kafka-leave", "member %d (incarnation "
                          "%d): %s took %lld ms (deadline %d ms), %lld ms past check 5's bound",
                          r->incarnations[l->incarnation].member, l->incarnation, what,
                          (long long)((l->end_ns - l->start_ns) / 1000000), l->deadline_ms,
                          (long long)((l->end_ns - bound) / 1000000));
        else
            recorder_fail(r, CHECK_CLOSE, "member %d (incarnation %d): %s took %lld ms "
                          "(deadline %d ms, revoke timeout %d ms), %lld ms past its bound",
                          r->incarnations[l->incarnation].member, l->incarnation, what,
                          (long long)((l->end_ns - l->start_ns) / 1000000), l->deadline_ms,
                          r->s->revoke_timeout_ms, (long long)((l->end_ns - bound) / 1000000));
    }
}
