/*
 * scenario.c — drawing a scenario from a seed. The ranges aim at the
 * corners where defects were found: lanes of 1-8 in-flight messages with
 * backlogs far larger behind a retry, a pool of 4-64 messages so intake
 * pauses during every join and leave, handlers that outlive the revoke
 * timeout, and one handler blocked longer than the stall limit while other
 * keys keep coming. Redis adds members killed while they hold entries
 * (claimed by the others after the claim idle time; keyed mode: once the
 * member's leases expired) and, in shared mode, runs with one member at a
 * time. Draws for memory and Kafka stay in the order they always had, so
 * their recorded seeds replay the same scenarios; a seed's keyed Redis
 * scenario is its shared one with partition streams and no one member at
 * a time.
 */
#include "scenario.h"

#include <string.h>

#include "rng.h"

/* The Kafka clients' group timeouts (DESIGN.md: test clients). A rebalance
 * on the mock cluster takes session.timeout.ms - 1 s. */
enum { KAFKA_SESSION_TIMEOUT_MS = 3000 };

const char *fault_transport_name(fault_transport t)
{
    switch (t) {
    case FAULT_MEMORY:
        return "memory";
    case FAULT_KAFKA_MOCK:
        return "kafka-mock";
    case FAULT_KAFKA:
        return "kafka";
    case FAULT_REDIS:
        return "redis";
    case FAULT_REDIS_KEYED:
        return "redis-keyed";
    }
    return "?";
}

bool fault_transport_parse(const char *name, fault_transport *out)
{
    for (int t = FAULT_MEMORY; t <= FAULT_REDIS_KEYED; t++) {
        if (strcmp(name, fault_transport_name((fault_transport)t)) == 0) {
            *out = (fault_transport)t;
            return true;
        }
    }
    return false;
}

int scenario_redis_lease_ms(const scenario *s)
{
    return 3 * (s->revoke_timeout_ms + REDIS_COMMAND_TIMEOUT_MS);
}

int scenario_stall_limit_ms(const scenario *s)
{
    /* Memory: nothing legitimate stops every handler for 2 s outside a
     * join or leave (retry backoffs stay under 200 ms). Kafka: a rebalance
     * (session timeout) plus the revoke timeout, with room. Redis: the
     * entries of a killed member wait for the claim idle time and the next
     * claim round, a leave for the revoke timeout, with room. Redis keyed:
     * a killed member's leases and announcement expire after the lease
     * time; the next lease turn of the others sees it gone, a member that
     * owns too many then gives one up (the revoke timeout) and its new
     * owner takes it at its next turn; with room. */
    if (s->transport == FAULT_MEMORY)
        return 2000;
    if (s->transport == FAULT_REDIS)
        return REDIS_CLAIM_IDLE_MS + REDIS_CLAIM_EVERY_MS + s->revoke_timeout_ms + 3000;
    if (s->transport == FAULT_REDIS_KEYED)
        return scenario_redis_lease_ms(s) + 2 * REDIS_LEASE_TURN_MS + s->revoke_timeout_ms +
               3000;
    return KAFKA_SESSION_TIMEOUT_MS + s->revoke_timeout_ms + 3000;
}

static void draw_limits(scenario *s, fault_rng *r)
{
    bool kafka = fault_transport_is_kafka(s->transport);
    bool redis = fault_transport_is_redis(s->transport);
    /* Redis: one stream per topic, whatever this would say (keyed mode
     * draws its partition count apart: scenario_generate). */
    s->partitions = redis ? 1 : (int)fault_rng_range(r, 1, 4);
    s->queue_max = (int)fault_rng_range(r, 4, 64);
    s->lane_max_inflight = (int)fault_rng_range(r, 1, 8);
    /* Kafka's revoke commit gets at least 1 s anyway (README). */
    s->revoke_timeout_ms = kafka ? (int)fault_rng_range(r, 300, 1000)
                           : redis ? (int)fault_rng_range(r, 100, 1000)
                                   : (int)fault_rng_range(r, 50, 400);
    s->retry_max_attempts = (int)fault_rng_range(r, 1, 4);
    /* Kafka, Redis: retries long enough now and then to be pending when a
     * member leaves (memory keeps them far below its 2 s stall limit). */
    s->retry_backoff_ms = (int)fault_rng_range(r, 1, (kafka || redis) && fault_rng_chance(r, 50)
                                                         ? 400 : 40);
    s->retry_backoff_max_ms = s->retry_backoff_ms * (int)fault_rng_range(r, 1, 4);
    s->retention_messages = s->transport == FAULT_MEMORY && fault_rng_chance(r, 20)
                            ? fault_rng_range(r, 32, 256) : 0;
}

static void draw_traffic(scenario *s, fault_rng *r)
{
    bool kafka = fault_transport_is_kafka(s->transport);
    bool redis = fault_transport_is_redis(s->transport);
    s->n_topics = (int)fault_rng_range(r, 1, kafka ? 2 : FAULT_MAX_TOPICS);
    s->n_keys = (int)fault_rng_range(r, 4, FAULT_MAX_KEYS);
    s->null_key_percent = fault_rng_chance(r, 30) ? (int)fault_rng_range(r, 1, 20) : 0;
    s->n_churn_messages = kafka ? (int)fault_rng_range(r, 100, 800)
                          : redis ? (int)fault_rng_range(r, 200, 1500)
                                  : (int)fault_rng_range(r, 300, 3000);
    s->n_tail_messages = (int)fault_rng_range(r, 10, 120);
    s->burst_max = (int)fault_rng_range(r, 1, 200);
    /* Redis: long enough for a killed member's entries to be claimed
     * (3 s) while the others still come and go. */
    s->churn_ms = kafka ? (int)fault_rng_range(r, 4000, 8000)
                  : redis ? (int)fault_rng_range(r, 3000, 7000)
                          : (int)fault_rng_range(r, 800, 3000);
    /* Bursts spread over the churn phase, on average. */
    long bursts = s->n_churn_messages / (s->burst_max / 2 + 1) + 1;
    s->pause_max_ms = (int)(2 * s->churn_ms / bursts);
    s->tail_wait_ms = (int)fault_rng_range(r, 0, 300);
}

static void draw_outcomes(scenario *s, fault_rng *r)
{
    s->retry_percent = (int)fault_rng_range(r, 0, 30);
    s->reject_percent = (int)fault_rng_range(r, 0, 5);
    s->slow_percent = (int)fault_rng_range(r, 0, 20);
    s->blocked_percent = (int)fault_rng_range(r, 0, 3);
    s->past_revoke_percent = fault_rng_chance(r, 50) ? (int)fault_rng_range(r, 0, 1) : 0;
    s->long_block_message = -1;
    if (fault_rng_chance(r, 40)) {
        s->long_block_message = (int)fault_rng_range(r, 0, s->n_churn_messages / 2);
        s->long_block_ms = scenario_stall_limit_ms(s) + (int)fault_rng_range(r, 1000, 2000);
    }
}

static void draw_member(scenario *s, fault_rng *r, member_plan *m, bool stays)
{
    bool kafka = fault_transport_is_kafka(s->transport);
    bool redis = fault_transport_is_redis(s->transport);
    m->join_ms = fault_rng_range(r, 0, s->churn_ms * 3 / 4);
    m->leave_ms = stays ? -1 : fault_rng_range(r, m->join_ms + 100, s->churn_ms);
    m->workers = (int)fault_rng_range(r, 1, 4);
    /* The real servers outlive a member process: some are SIGKILLed. */
    m->in_child = (s->transport == FAULT_KAFKA || redis) && fault_rng_chance(r, 50);
    m->close_deadline_ms = (int)fault_rng_range(r, 0, kafka ? 3000 : redis ? 2000 : 800);
    int how = (int)fault_rng_range(r, 0, m->in_child ? 2 : 1);
    m->leave = how == 0 ? LEAVE_CLOSE : how == 1 ? LEAVE_UNSUBSCRIBE : LEAVE_KILL;
}

static void draw_members(scenario *s, fault_rng *r)
{
    bool kafka = fault_transport_is_kafka(s->transport);
    bool redis = fault_transport_is_redis(s->transport);
    s->n_members = (int)fault_rng_range(r, 2, kafka ? 4 : redis ? 5 : 6);
    /* At least one member stays for the settle phase and the tail. */
    int staying = (int)fault_rng_range(r, 0, s->n_members - 1);
    for (int i = 0; i < s->n_members; i++)
        draw_member(s, r, &s->members[i], i == staying || fault_rng_chance(r, 25));
}

/** Redis, one member at a time: the churn phase split into a turn per
 *  member; each leaves (or is killed) within its turn, the last stays.
 *  A turn starts only once the member before has gone (run.c), so a slow
 *  close moves the turns after it (joins and leaves alike). */
static void plan_one_at_a_time(scenario *s, fault_rng *r)
{
    int turn = s->churn_ms / s->n_members;
    for (int i = 0; i < s->n_members; i++) {
        member_plan *m = &s->members[i];
        m->join_ms = (int64_t)i * turn;
        m->leave_ms = i == s->n_members - 1 ? -1
                      : m->join_ms + fault_rng_range(r, turn / 3, turn - 50);
    }
}

void scenario_generate(uint64_t seed, fault_transport transport, scenario *out)
{
    memset(out, 0, sizeof *out);
    out->seed = seed;
    out->transport = transport;
    fault_rng r = fault_rng_for(seed, 0, 0);
    draw_limits(out, &r);
    draw_traffic(out, &r);
    draw_outcomes(out, &r);
    draw_members(out, &r);
    /* Redis keyed: 1-4 partition streams per topic (a stream of its own,
     * so that the rest is the seed's shared-mode scenario). */
    fault_rng keyed = fault_rng_for(seed, 0, 9);
    if (transport == FAULT_REDIS_KEYED)
        out->partitions = (int)fault_rng_range(&keyed, 1, 4);
    /* Redis shared: a third of the seeds keep one member at a time (a
     * stream of its own, like the pools below). */
    fault_rng single = fault_rng_for(seed, 0, 8);
    if (transport == FAULT_REDIS && fault_rng_chance(&single, 33)) {
        out->one_member_at_a_time = true;
        plan_one_at_a_time(out, &single);
    }
    /* Half the members get an elastic pool that retires workers idle for
     * a few ms, so that it grows and shrinks all along. A stream of its
     * own: the scenarios of seeds recorded before it came are unchanged. */
    fault_rng pool = fault_rng_for(seed, 0, 7);
    for (int i = 0; i < out->n_members; i++) {
        member_plan *m = &out->members[i];
        if (fault_rng_chance(&pool, 50)) {
            m->workers_max = (int)fault_rng_range(&pool, 2, 8);
            m->workers_idle_ms = (int)fault_rng_range(&pool, 1, 20);
            m->workers = 0;
        }
    }
    /* Redis: connections cut during the churn, in half the seeds (a
     * stream of its own, like the pools). */
    fault_rng cuts = fault_rng_for(seed, 0, 6);
    if (fault_transport_is_redis(transport) && fault_rng_chance(&cuts, 50)) {
        out->n_cuts = (int)fault_rng_range(&cuts, 1, FAULT_MAX_CUTS);
        for (int i = 0, from = 0; i < out->n_cuts; i++) {
            int room = (out->churn_ms - from) / (out->n_cuts - i);
            out->cut_ms[i] = from + (int)fault_rng_range(&cuts, 0, room > 1 ? room - 1 : 0);
            from = out->cut_ms[i] + 1;
        }
    }
}

static work_kind draw_work(const scenario *s, fault_rng *r, int *ms)
{
    int roll = (int)fault_rng_range(r, 0, 99);
    if ((roll -= s->past_revoke_percent) < 0) {
        *ms = s->revoke_timeout_ms + (int)fault_rng_range(r, 50, 300);
        return WORK_PAST_REVOKE;
    }
    if ((roll -= s->blocked_percent) < 0) {
        *ms = (int)fault_rng_range(r, 20, 200);
        return WORK_BLOCKED;
    }
    if ((roll -= s->slow_percent) < 0) {
        *ms = (int)fault_rng_range(r, 1, 5);
        return WORK_SLOW;
    }
    *ms = 0;
    return WORK_NONE;
}

handler_plan scenario_handler_plan(const scenario *s, long message, uint32_t attempt)
{
    fault_rng r = fault_rng_for(s->seed, (uint64_t)message + 1, attempt);
    handler_plan p = {EB_ACK, WORK_NONE, 0};
    int roll = (int)fault_rng_range(&r, 0, 99);
    if (roll < s->retry_percent)
        p.result = EB_RETRY;
    else if (roll < s->retry_percent + s->reject_percent)
        p.result = EB_REJECT;
    if (message == s->long_block_message && attempt == 1) {
        p.work = WORK_LONG;
        p.work_ms = s->long_block_ms;
    } else {
        p.work = draw_work(s, &r, &p.work_ms);
    }
    return p;
}

static const char *leave_name(leave_kind k)
{
    return k == LEAVE_CLOSE ? "close" : k == LEAVE_UNSUBSCRIBE ? "unsubscribe+close" : "SIGKILL";
}

void scenario_print(const scenario *s, FILE *out)
{
    char lanes[64];
    if (s->transport == FAULT_REDIS)
        snprintf(lanes, sizeof lanes, "a stream per topic");
    else if (s->transport == FAULT_REDIS_KEYED)
        snprintf(lanes, sizeof lanes, "%d partition stream(s), lease %d ms", s->partitions,
                 scenario_redis_lease_ms(s));
    else
        snprintf(lanes, sizeof lanes, "%d partition(s)", s->partitions);
    fprintf(out,
            "scenario seed=%llu transport=%s: %s, queue.max=%d, "
            "lane.max.inflight=%d, revoke.timeout=%d ms, retry %d attempts %d..%d ms, "
            "retention=%ld; %d topic(s), %d keys (%d%% unkeyed), %d + %d messages "
            "(bursts of <=%d, pauses <=%d ms); retry %d%% reject %d%% slow %d%% "
            "blocked %d%% past-revoke %d%%, long block: message %d for %d ms; "
            "churn %d ms, tail wait %d ms\n",
            (unsigned long long)s->seed, fault_transport_name(s->transport), lanes,
            s->queue_max, s->lane_max_inflight, s->revoke_timeout_ms, s->retry_max_attempts,
            s->retry_backoff_ms, s->retry_backoff_max_ms, s->retention_messages, s->n_topics,
            s->n_keys, s->null_key_percent, s->n_churn_messages, s->n_tail_messages,
            s->burst_max, s->pause_max_ms, s->retry_percent, s->reject_percent,
            s->slow_percent, s->blocked_percent, s->past_revoke_percent,
            s->long_block_message, s->long_block_ms, s->churn_ms, s->tail_wait_ms);
    if (s->one_member_at_a_time)
        fprintf(out, "  one member at a time, each under the same consumer name\n");
    for (int i = 0; i < s->n_cuts; i++)
        fprintf(out, "  every connection cut at %d ms\n", s->cut_ms[i]);
    for (int i = 0; i < s->n_members; i++) {
        const member_plan *m = &s->members[i];
        if (m->workers)
            fprintf(out, "  member %d: %d worker(s)", i, m->workers);
        else
            fprintf(out, "  member %d: elastic pool up to %d workers (idle %d ms)", i,
                    m->workers_max, m->workers_idle_ms);
        fprintf(out, "%s, joins at %lld ms, ", m->in_child ? ", child process" : "",
                (long long)m->join_ms);
        if (m->leave_ms < 0)
            fprintf(out, "stays; ");
        else
            fprintf(out, "leaves at %lld ms by %s; ", (long long)m->leave_ms,
                    leave_name(m->leave));
        fprintf(out, "close deadline %d ms\n", m->close_deadline_ms);
    }
}
