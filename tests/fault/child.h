/*
 * child.h — members in child processes (real Kafka and Redis, where the
 * server outlives them): the parent starts the driver's own executable with
 * --child, reads what the child reports through a pipe into the recorder,
 * and either closes the child's stdin (leave as planned) or kills it with
 * SIGKILL. The child runs an ordinary member whose sink writes one line
 * per report (one write(2) each, shorter than PIPE_BUF).
 *
 * Lines, times in CLOCK_MONOTONIC ns (the same clock in every process):
 *   ready
 *   S <call> <topic> <key> <message> <lane> <major> <minor> <stream id?> <attempt> <ns>
 *     (the message's position, position.h)
 *   E <call> <result> <ns>
 *   R <topic>
 *   L <is_close> <deadline_ms> <start_ns> <end_ns> <rc>
 *   T <threads before> <threads after>
 *   F <check> <text>
 */
#ifndef FAULT_CHILD_H
#define FAULT_CHILD_H

#include <stdbool.h>
#include <sys/types.h>

#include "env.h"
#include "recorder.h"

typedef struct child_member {
    pid_t pid;
    int report_fd;   /* the parent's end of the report pipe */
    int command_fd;  /* the child's stdin: closing it means "leave now" */
    int incarnation;
    long *calls;     /* child's call number -> recorder call */
    size_t cap_calls;
    char line[8192]; /* a partial line read so far */
    size_t line_len;
} child_member;

/** Starts member `index` of the run in a child. @returns 0 or -1. */
int child_spawn(child_member *c, const char *self, const scenario *s, const fault_env *e,
                int index, const char *run_id);

/**
 * Reads the child's reports into `r` until `until_ns` (CLOCK_MONOTONIC),
 * or until the child said "ready" when stop_at_ready. @returns 1 on
 * "ready", 0 at the deadline, -1 at end of file (the child ended).
 */
int child_pump(child_member *c, recorder *r, int64_t until_ns, bool stop_at_ready);

/** Asks the child to leave as planned (closes its stdin). */
void child_ask_leave(child_member *c);
/** Kills the child with SIGKILL. */
void child_kill(child_member *c);
/** Reads what is left, reaps the child (at most until deadline_ns, then
 *  SIGKILL); a child that failed or did not end is a failure. */
void child_finish(child_member *c, recorder *r, int64_t deadline_ns, bool killed);

/** The child's side: `fault --child ...`. @returns the exit status. */
int child_main(int argc, char **argv);

#endif
