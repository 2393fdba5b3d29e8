/*
 * cli.h — what the eventbus command's subcommands share: exit codes, the
 * one-line error on stderr, and the options every subcommand takes
 * (-c FILE: a properties file; -X key=value: one setting, repeatable,
 * applied in order after the file, as kcat's -X).
 */
#ifndef EB_CLI_H
#define EB_CLI_H

#include <stdbool.h>

#include "eventbus/eventbus.h"

/** Exit codes (documented in --help and the man page). */
enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

/** One -c or -X as given on the command line. */
typedef struct cli_setting {
    char option;             /* 'c' (value: a file) or 'X' (value: key=value) */
    const char *value;       /* points into argv */
} cli_setting;

typedef struct cli {
    eb_config *cfg;          /* -c and -X settings, in order */
    cli_setting *given;      /* the same as given, for a subcommand that passes
                                them on (conformance); freed by main */
    size_t ngiven;
} cli;

/** Prints "eventbus: <message>" on stderr as one line. @returns `code`. */
int cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * If argv[*i] is -c FILE or -X key=value (or -cFILE, -Xkey=value), applies
 * it to c->cfg, records it in c->given and advances *i past it. @returns 1
 * when it was one (*rc set to CLI_USAGE on a bad one, with the error
 * printed), 0 when not.
 */
int cli_common_option(cli *c, int argc, char **argv, int *i, int *rc);

/**
 * Opens a bus on c->cfg for `command` ("pub", "sub"), whose messages must
 * reach other processes: a transport whose broker lives in this process
 * (memory) is refused with a sentence saying how to pick another.
 * @returns CLI_OK and *out, or the exit code (the error printed).
 */
int cli_open_shared_bus(cli *c, const char *command, eb_bus **out);

/* The subcommands: argv[0] is the subcommand's name. */
int cmd_conformance(cli *c, int argc, char **argv);
int cmd_plugins(cli *c, int argc, char **argv);
int cmd_bench(cli *c, int argc, char **argv);
int cmd_config(cli *c, int argc, char **argv);
int cmd_pub(cli *c, int argc, char **argv);
int cmd_sub(cli *c, int argc, char **argv);

#endif
