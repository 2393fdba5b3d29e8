/*
 * child.c — members in child processes (see child.h): spawning with the
 * report and command pipes, the parent's reader of report lines, and the
 * child's main with its pipe sink.
 */
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "member.h"
#include "proc_threads.h"

enum { REPORT_FD = 3 };

/* ----------------------------------------------------------- the parent */

int child_spawn(child_member *c, const char *self, const scenario *s, const fault_env *e,
                int index, const char *run_id)
{
    int report[2], command[2];
    if (pipe2(report, O_CLOEXEC) != 0)
        return -1;
    if (pipe2(command, O_CLOEXEC) != 0) {
        close(report[0]);
        close(report[1]);
        return -1;
    }
    char seed[32], member_text[16];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)s->seed);
    snprintf(member_text, sizeof member_text, "%d", index);
    char *const argv[] = {(char *)self, "--child", "--seed", seed, "--member", member_text,
                          "--run-id", (char *)run_id, "--transport",
                          (char *)fault_transport_name(s->transport),
                          e->verbose ? "--verbose" : NULL, NULL};
    pid_t pid = fork();
    if (pid == 0) {
        /* Only async-signal-safe calls until exec. */
        if (dup2(command[0], 0) < 0 || dup2(report[1], REPORT_FD) < 0)
            _exit(126);
        execv(self, argv);
        _exit(127);
    }
    close(report[1]);
    close(command[0]);
    if (pid < 0) {
        close(report[0]);
        close(command[1]);
        return -1;
    }
    *c = (child_member){.pid = pid, .report_fd = report[0], .command_fd = command[1]};
    return 0;
}

static void remember_call(child_member *c, long number, long call)
{
    if ((size_t)number >= c->cap_calls) {
        size_t cap = c->cap_calls ? c->cap_calls * 2 : 1024;
        while (cap <= (size_t)number)
            cap *= 2;
        long *more = realloc(c->calls, cap * sizeof *more);
        if (!more) {
            fprintf(stderr, "fault: out of memory reading a child's reports\n");
            exit(2);
        }
        c->calls = more;
        c->cap_calls = cap;
    }
    c->calls[number] = call;
}

/** @returns 1 for "ready", 0 otherwise. */
static int parse_line(child_member *c, recorder *r, char *line)
{
    call_record k = {.incarnation = c->incarnation};
    long number, message;
    long long lane, major, minor, start, end, ns;
    int result, topic, is_close, deadline, rc, before, after, check, stream_id, used = 0;
    unsigned attempt;
    if (strcmp(line, "ready") == 0)
        return 1;
    if (sscanf(line, "S %ld %d %d %ld %lld %lld %lld %d %u %lld", &number, &k.topic, &k.key,
               &message, &lane, &major, &minor, &stream_id, &attempt, &ns) == 10) {
        k.message = message;
        k.pos = (fault_pos){(int32_t)lane, major, minor, stream_id != 0};
        k.attempt = attempt;
        k.start_ns = ns;
        remember_call(c, number, (long)recorder_call_start(r, &k));
    } else if (sscanf(line, "E %ld %d %lld", &number, &result, &ns) == 3 && number >= 0 &&
               (size_t)number < c->cap_calls) {
        recorder_call_end(r, (size_t)c->calls[number], (eb_result)result, ns);
    } else if (sscanf(line, "R %d", &topic) == 1) {
        recorder_revoked(r, c->incarnation, topic);
    } else if (sscanf(line, "L %d %d %lld %lld %d", &is_close, &deadline, &start, &end,
                      &rc) == 5) {
        leave_record l = {c->incarnation, is_close != 0, deadline, start, end, rc};
        recorder_leave(r, &l);
    } else if (sscanf(line, "T %d %d", &before, &after) == 2) {
        if (before != after)
            recorder_fail(r, CHECK_THREADS, "child member (incarnation %d): %d threads "
                          "before open, %d after close", c->incarnation, before, after);
    } else if (sscanf(line, "F %d %n", &check, &used) == 1 && used > 0) {
        recorder_fail(r, (fault_check)check, "child (incarnation %d): %s", c->incarnation,
                      line + used);
    } else {
        recorder_fail(r, CHECK_SETUP, "child (incarnation %d): unreadable report '%s'",
                      c->incarnation, line);
    }
    return 0;
}

int child_pump(child_member *c, recorder *r, int64_t until_ns, bool stop_at_ready)
{
    for (;;) {
        char *nl;
        while ((nl = memchr(c->line, '\n', c->line_len))) {
            *nl = '\0';
            int ready = parse_line(c, r, c->line);
            size_t rest = c->line_len - (size_t)(nl + 1 - c->line);
            memmove(c->line, nl + 1, rest);
            c->line_len = rest;
            if (ready && stop_at_ready)
                return 1;
        }
        int64_t left_ms = (until_ns - fault_now_ns()) / 1000000;
        if (left_ms <= 0)
            return 0;
        struct pollfd p = {.fd = c->report_fd, .events = POLLIN};
        int n = poll(&p, 1, left_ms > 1000 ? 1000 : (int)left_ms);
        if (n < 0 && errno != EINTR)
            return -1;
        if (n <= 0)
            continue;
        ssize_t got = read(c->report_fd, c->line + c->line_len,
                           sizeof c->line - 1 - c->line_len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        c->line_len += (size_t)got;
        if (c->line_len == sizeof c->line - 1 && !memchr(c->line, '\n', c->line_len))
            c->line_len = 0; /* a line longer than any the child writes: drop it */
    }
}

void child_ask_leave(child_member *c)
{
    if (c->command_fd >= 0)
        close(c->command_fd);
    c->command_fd = -1;
}

void child_kill(child_member *c)
{
    kill(c->pid, SIGKILL);
    child_ask_leave(c);
}

void child_finish(child_member *c, recorder *r, int64_t deadline_ns, bool killed)
{
    child_ask_leave(c);
    bool ended = child_pump(c, r, deadline_ns, false) < 0;
    if (!ended) {
        recorder_fail(r, CHECK_CLOSE, "child member (incarnation %d) did not end in time: "
                      "killed", c->incarnation);
        kill(c->pid, SIGKILL);
    }
    int status = 0;
    while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR)
        ;
    bool ok = killed ? WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL
                     : WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (ended && !ok)
        recorder_fail(r, CHECK_SETUP, "child member (incarnation %d) ended with status 0x%x",
                      c->incarnation, status);
    close(c->report_fd);
    free(c->calls);
    c->calls = NULL;
}

/* ------------------------------------------------------------ the child */

static atomic_long next_call;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    while (write(REPORT_FD, line, (size_t)n) < 0 && errno == EINTR)
        ;
}

static long pipe_call_start(void *ctx, const call_record *c)
{
    (void)ctx;
    long number = atomic_fetch_add(&next_call, 1);
    say("S %ld %d %d %ld %lld %lld %lld %d %u %lld", number, c->topic, c->key, c->message,
        (long long)c->pos.lane, (long long)c->pos.major, (long long)c->pos.minor,
        c->pos.stream_id, c->attempt, (long long)c->start_ns);
    return number;
}

static void pipe_call_end(void *ctx, long call, eb_result result, int64_t end_ns)
{
    (void)ctx;
    say("E %ld %d %lld", call, (int)result, (long long)end_ns);
}

static void pipe_revoked(void *ctx, int topic)
{
    (void)ctx;
    say("R %d", topic);
}

static void pipe_leave(void *ctx, const leave_record *l)
{
    (void)ctx;
    say("L %d %d %lld %lld %d", l->is_close, l->deadline_ms, (long long)l->start_ns,
        (long long)l->end_ns, l->rc);
}

static void pipe_fail(void *ctx, fault_check check, const char *text)
{
    (void)ctx;
    say("F %d %s", (int)check, text);
}

/** Blocks until the parent closes our stdin. */
static void wait_for_leave(void)
{
    char byte;
    for (;;) {
        ssize_t n = read(0, &byte, 1);
        if (n == 0 || (n < 0 && errno != EINTR))
            return;
    }
}

int child_main(int argc, char **argv)
{
    unsigned long long seed = 0;
    int index = -1;
    const char *run_id = NULL;
    fault_env env = {.transport = FAULT_KAFKA};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--member") == 0 && i + 1 < argc)
            index = atoi(argv[++i]);
        else if (strcmp(argv[i], "--run-id") == 0 && i + 1 < argc)
            run_id = argv[++i];
        else if (strcmp(argv[i], "--transport") == 0 && i + 1 < argc)
            fault_transport_parse(argv[++i], &env.transport);
        else if (strcmp(argv[i], "--verbose") == 0)
            env.verbose = true;
    }
    alarm(600); /* a child whose parent died ends by itself */
    scenario s;
    scenario_generate(seed, env.transport, &s);
    char why[512];
    if (!run_id || index < 0 || index >= s.n_members ||
        env_open(&env, &s, run_id, why, sizeof why) != 0) {
        say("F %d child: bad arguments or environment", (int)CHECK_SETUP);
        return 2;
    }
    int before = proc_thread_count();
    const member_plan *plan = &s.members[index];
    member m = {.s = &s, .env = &env, .index = index, .workers = plan->workers,
                .workers_max = plan->workers_max, .workers_idle_ms = plan->workers_idle_ms,
                .sink = {NULL, pipe_call_start, pipe_call_end, pipe_revoked, pipe_leave,
                         pipe_fail}};
    int rc = member_join(&m);
    if (rc == 0) {
        say("ready");
        wait_for_leave();
        member_leave(&m, plan->leave == LEAVE_UNSUBSCRIBE ? LEAVE_UNSUBSCRIBE : LEAVE_CLOSE,
                     plan->close_deadline_ms);
    }
    member_destroy(&m);
    env_close(&env);
    say("T %d %d", before, proc_thread_count_settled(before));
    return rc == 0 ? 0 : 1;
}
