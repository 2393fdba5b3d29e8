/*
 * cli_signals.h — Ctrl-C and SIGTERM for the subcommands that run until
 * told to stop (pub reading stdin, sub): a thread takes both signals; the
 * first asks the subcommand to finish cleanly, the second exits at once.
 */
#ifndef EB_CLI_SIGNALS_H
#define EB_CLI_SIGNALS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

typedef struct cli_signals {
    pthread_t thread;
    void (*first)(void *arg);   /* the first signal: finish cleanly */
    void *arg;
    const char *second;         /* the line printed at the second */
    bool started;
    atomic_bool stopping;       /* cli_signals_stop() asked it to end */
} cli_signals;

/**
 * Blocks SIGINT, SIGTERM and SIGUSR1 (the thread's own stop) in the
 * calling thread, and so in every thread it starts afterwards (call it
 * before opening the bus), and starts the thread that takes them. The first calls first(arg) on that thread; the
 * second writes "eventbus: <second>" on stderr and exits with CLI_FAILED
 * without any clean-up. @returns false if the thread could not start.
 */
bool cli_signals_start(cli_signals *s, void (*first)(void *arg), void *arg, const char *second);

/** Stops the thread (NULL-safe if it never started). */
void cli_signals_stop(cli_signals *s);

#endif
