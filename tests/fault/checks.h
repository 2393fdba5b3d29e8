/*
 * checks.h — the checks made from the recorder once the run is over:
 *   1 redelivery  every confirmed message not ACKed nor dead-lettered by
 *                 the scenario's members reached the verifying member (the
 *                 committed position never passed it), less the messages
 *                 memory retention is known to have dropped;
 *   2 handled     every confirmed message published before the settle
 *                 phase was ACKed or dead-lettered while members were live;
 *   3 order       per member incarnation, topic and key, between revokes:
 *                 no two handlers at once, a retry before anything later,
 *                 nothing handled twice; and where the transport promises
 *                 per-key order (KEY_ORDER; Redis's KEY_ORDER_SINGLE_MEMBER
 *                 in runs with one member at a time) positions rising
 *                 without a gap;
 *   5 close       each close within max(deadline, end of the longest
 *                 handler running at the deadline) + slack (Redis: + the
 *                 500 ms its leave gets); each unsubscribe within the
 *                 revoke timeout + 500 ms for the leave + slack (Redis:
 *                 one command and one connect past the leave's deadline).
 * Checks 4 (progress.c) and 6 (run.c) are made while and after the run.
 */
#ifndef FAULT_CHECKS_H
#define FAULT_CHECKS_H

#include <stdbool.h>

#include "recorder.h"

/** lost[t]: messages of topic t memory retention dropped for the group. */
void check_redelivery(recorder *r, const long *lost);
/** unfinished_at_settle[i]: message i was outstanding when settling ended. */
void check_handled(recorder *r, const bool *unfinished_at_settle, const long *lost);
void check_order(recorder *r);
/** allow_slow_kafka_leave: a Kafka close past the bound above by less
 *  than a revoke timeout and 3 s (a join) is a note, not a failure: librdkafka
 *  2.0.2 stops its consumer only once a JoinGroup in flight is answered
 *  (a close during a rebalance; the mock cluster's joins take 3 s). */
void check_close(recorder *r, bool allow_slow_kafka_leave);

/** The slack of check 5 for this transport (ms). */
int check_close_slack_ms(const scenario *s);

#endif
