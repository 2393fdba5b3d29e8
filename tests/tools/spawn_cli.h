/*
 * spawn_cli.h — the eventbus command as a long-running child, for the
 * pub and sub tests: stdin given (or /dev/null), stdout and stderr read
 * as they come, waits bounded by deadlines (a child still running at one
 * is killed and the test fails), signals, and the read end of stdout
 * closed on purpose (EPIPE). EVENTBUS_PLUGIN_PATH comes from ctest.
 */
#ifndef EB_SPAWN_CLI_H
#define EB_SPAWN_CLI_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct cli_buf {
    char *text;                  /* NUL-terminated, may hold NULs before */
    size_t len, cap;
} cli_buf;

typedef struct cli_child {
    pid_t pid;
    int in_fd;                   /* its stdin's write end (cli_start_open), else -1 */
    int out_fd, err_fd;          /* -1 once at their end (or closed) */
    cli_buf out, err;
    int rc;                      /* exit code or 128 + signal, once waited */
} cli_child;

static inline long long cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/** The child's $EVENTBUS_PLUGIN_PATH when not inherited (ctest's). */
typedef struct cli_plugin_path {
    const char *value;           /* NULL: unset */
} cli_plugin_path;

/** Starts EB_CLI_PATH with argv (argv[0] included, NULL-terminated) and
 *  `input` (len bytes) on its stdin, which then ends unless `keep_open`
 *  (c->in_fd is then its write end); NULL input: /dev/null. `path`: the
 *  child's $EVENTBUS_PLUGIN_PATH (NULL: this process's). */
static inline cli_child *cli_spawn(char *const argv[], const char *input, size_t len,
                                   bool keep_open, const cli_plugin_path *path)
{
    cli_child *c = calloc(1, sizeof *c);
    cr_assert_not_null(c);
    int in[2], out[2], err[2];
    cr_assert_eq(pipe(in), 0);
    cr_assert_eq(pipe(out), 0);
    cr_assert_eq(pipe(err), 0);
    c->pid = fork();
    cr_assert_geq(c->pid, 0);
    if (c->pid == 0) {
        if (input) {
            dup2(in[0], 0);
        } else {
            int null = open("/dev/null", O_RDONLY);
            dup2(null, 0);
        }
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(in[1]);
        close(out[0]);
        close(err[0]);
        if (path && path->value)
            setenv("EVENTBUS_PLUGIN_PATH", path->value, 1);
        else if (path)
            unsetenv("EVENTBUS_PLUGIN_PATH");
        execv(EB_CLI_PATH, argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    /* The inputs of these tests are small (below a pipe's 64 KiB) or the
     * child reads them at once: write them all now. */
    signal(SIGPIPE, SIG_IGN);
    for (size_t done = 0; input && done < len;) {
        ssize_t w = write(in[1], input + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        cr_assert_gt(w, 0, "writing the child's stdin: %s", strerror(errno));
        done += (size_t)w;
    }
    c->in_fd = -1;
    if (keep_open && input)
        c->in_fd = in[1];
    else
        close(in[1]);
    c->out_fd = out[0];
    c->err_fd = err[0];
    return c;
}

/** cli_spawn(), its stdin ending after `input`. */
static inline cli_child *cli_start(char *const argv[], const char *input, size_t len)
{
    return cli_spawn(argv, input, len, false, NULL);
}

/** cli_spawn() with `input` written and stdin left open (c->in_fd). */
static inline cli_child *cli_start_open(char *const argv[], const char *input)
{
    return cli_spawn(argv, input, strlen(input), true, NULL);
}

/** Makes room for 4 KiB more (and a NUL). */
static inline void cli_buf_reserve(cli_buf *b)
{
    if (b->cap - b->len < 4097) {
        b->cap = b->cap ? b->cap * 2 : 65536;
        b->text = realloc(b->text, b->cap);
        cr_assert_not_null(b->text);
        b->text[b->len] = '\0';
    }
}

static inline void cli_buf_read(int *fd, cli_buf *b)
{
    cli_buf_reserve(b);
    ssize_t got = read(*fd, b->text + b->len, b->cap - b->len - 1);
    if (got < 0 && errno == EINTR)
        return;
    if (got <= 0) {
        close(*fd);
        *fd = -1;
    } else {
        b->len += (size_t)got;
    }
    b->text[b->len] = '\0';
}

static inline size_t cli_count_lines(const cli_buf *b)
{
    size_t n = 0;
    for (size_t i = 0; i < b->len; i++)
        n += b->text[i] == '\n';
    return n;
}

/** Reads stdout and stderr until stdout holds `lines` lines (-1: until
 *  both end) or timeout_ms passed. @returns whether it got there. */
static inline bool cli_read_until(cli_child *c, long lines, int timeout_ms)
{
    long long deadline = cli_now_ms() + timeout_ms;
    for (;;) {
        bool done = lines >= 0 ? cli_count_lines(&c->out) >= (size_t)lines
                               : c->out_fd < 0 && c->err_fd < 0;
        long long left = deadline - cli_now_ms();
        if (done || left <= 0 || (c->out_fd < 0 && c->err_fd < 0))
            return done;
        struct pollfd p[2] = {{c->out_fd, POLLIN, 0}, {c->err_fd, POLLIN, 0}};
        if (poll(p, 2, (int)left) <= 0)
            continue;
        if (p[0].revents)
            cli_buf_read(&c->out_fd, &c->out);
        if (p[1].revents)
            cli_buf_read(&c->err_fd, &c->err);
    }
}

/** Closes our end of the child's stdout: its next write fails (EPIPE). */
static inline void cli_close_stdout(cli_child *c)
{
    if (c->out_fd >= 0)
        close(c->out_fd);
    c->out_fd = -1;
}

/** Waits for the child's exit, at most timeout_ms, reading its stderr
 *  and (when `read_stdout`) its stdout meanwhile, then what is left of
 *  them; past the deadline it is killed and the test fails.
 *  @returns its exit code (128 + signal when a signal ended it). */
static inline int cli_finish_reading(cli_child *c, int timeout_ms, bool read_stdout)
{
    long long deadline = cli_now_ms() + timeout_ms;
    int pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0);
    cr_assert_geq(pidfd, 0, "pidfd_open: %s", strerror(errno));
    bool exited = false;
    while (!exited && cli_now_ms() < deadline) {
        struct pollfd p[3] = {{pidfd, POLLIN, 0},
                              {read_stdout ? c->out_fd : -1, POLLIN, 0},
                              {c->err_fd, POLLIN, 0}};
        if (poll(p, 3, (int)(deadline - cli_now_ms())) <= 0)
            continue;
        exited = p[0].revents != 0;
        if (p[1].revents)
            cli_buf_read(&c->out_fd, &c->out);
        if (p[2].revents)
            cli_buf_read(&c->err_fd, &c->err);
    }
    close(pidfd);
    int status;
    if (!exited) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, &status, 0);
        cli_buf_reserve(&c->out);
        cli_buf_reserve(&c->err);
        cr_assert_fail("the eventbus command did not exit within %d ms; stdout: %.500s "
                       "stderr: %.2000s", timeout_ms, c->out.text, c->err.text);
    }
    waitpid(c->pid, &status, 0);
    c->rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (read_stdout)
        cli_read_until(c, -1, timeout_ms); /* what it wrote last; the pipes end now */
    cli_buf_reserve(&c->out);
    cli_buf_reserve(&c->err);
    return c->rc;
}

/** cli_finish_reading(), stdout read. */
static inline int cli_finish(cli_child *c, int timeout_ms)
{
    return cli_finish_reading(c, timeout_ms, true);
}

static inline void cli_child_free(cli_child *c)
{
    if (c->in_fd >= 0)
        close(c->in_fd);
    if (c->out_fd >= 0)
        close(c->out_fd);
    if (c->err_fd >= 0)
        close(c->err_fd);
    free(c->out.text);
    free(c->err.text);
    free(c);
}

#endif
