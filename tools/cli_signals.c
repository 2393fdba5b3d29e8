/*
 * cli_signals.c — the signal thread of pub and sub (see cli_signals.h).
 * sigwait() in a thread of its own, so the reaction to a signal is plain
 * code (locks, condition variables), not a signal handler's. The thread
 * ends by returning, on SIGUSR1 sent to it alone by cli_signals_stop():
 * not by pthread_cancel(), whose unwinding skips the epilogues that clear
 * AddressSanitizer's stack redzones, which then crashes the sanitizer
 * when the thread exits.
 */
#include "cli_signals.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/** SIGINT and SIGTERM, and SIGUSR1 (cli_signals_stop's). */
static void signals_taken(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGUSR1);
}

static void exit_now(const cli_signals *s)
{
    char line[512];
    int n = snprintf(line, sizeof line, "eventbus: %s\n", s->second);
    ssize_t ignored = write(STDERR_FILENO, line,
                            n < 0 ? 0 : (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    (void)ignored;
    _exit(CLI_FAILED);
}

static void *signal_main(void *arg)
{
    cli_signals *s = arg;
    sigset_t set;
    signals_taken(&set);
    for (int seen = 0;;) {
        int sig;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGUSR1) {
            if (atomic_load(&s->stopping))
                return NULL;
            continue; /* not ours */
        }
        if (++seen == 1)
            s->first(s->arg);
        else
            exit_now(s);
    }
}

bool cli_signals_start(cli_signals *s, void (*first)(void *arg), void *arg, const char *second)
{
    *s = (cli_signals){.first = first, .arg = arg, .second = second};
    sigset_t set;
    signals_taken(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    s->started = pthread_create(&s->thread, NULL, signal_main, s) == 0;
    return s->started;
}

void cli_signals_stop(cli_signals *s)
{
    if (!s || !s->started)
        return;
    atomic_store(&s->stopping, true);
    pthread_kill(s->thread, SIGUSR1);
    pthread_join(s->thread, NULL);
    s->started = false;
}
