/*
 * run_cli.h — runs the eventbus command as a child process with a chosen
 * $EVENTBUS_PLUGIN_PATH (NULL: unset), stdin from /dev/null, and collects
 * its exit code, stdout and stderr (each cut at 64 KiB).
 */
#ifndef EB_RUN_CLI_H
#define EB_RUN_CLI_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct cli_result {
    int rc;                 /* exit code, or 128 + signal */
    char out[65536], err[65536];
} cli_result;

/** Reads both pipes to their end. */
static inline void cli_drain(int out_fd, int err_fd, cli_result *r)
{
    size_t n_out = 0, n_err = 0;
    struct pollfd p[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    int open_fds = 2;
    while (open_fds > 0) {
        if (poll(p, 2, 30000) <= 0)
            break;
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP)))
                continue;
            char *buf = i == 0 ? r->out : r->err;
            size_t *n = i == 0 ? &n_out : &n_err;
            char sink[4096];
            size_t room = sizeof r->out - 1 - *n;
            ssize_t got = read(p[i].fd, room ? buf + *n : sink, room ? room : sizeof sink);
            if (got <= 0) {
                close(p[i].fd);
                p[i].fd = -1;
                open_fds--;
            } else if (room) {
                *n += (size_t)got;
            }
        }
    }
    r->out[n_out] = r->err[n_err] = '\0';
}

/** Runs EB_CLI_PATH with argv (NULL-terminated, argv[0] included). */
static inline cli_result *cli_run(const char *plugin_path, char *const argv[])
{
    cli_result *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    int out[2], err[2];
    cr_assert_eq(pipe(out), 0);
    cr_assert_eq(pipe(err), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]);
        close(err[0]);
        if (plugin_path)
            setenv("EVENTBUS_PLUGIN_PATH", plugin_path, 1);
        else
            unsetenv("EVENTBUS_PLUGIN_PATH");
        execv(EB_CLI_PATH, argv);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    cli_drain(out[0], err[0], r);
    int status;
    waitpid(pid, &status, 0);
    r->rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r;
}

/** Lines in s. */
static inline int cli_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

#endif
