/*
 * runner.c — the plain runner (no criterion; behind eventbus-conformance,
 * `eventbus conformance` and the TSan build): its options, every selected
 * case in a process of its own with a timeout, one line per case and the
 * final `N passed, N failed, N skipped` line.
 */
#include "eventbus/conformance.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char conf_usage_text[] =
    " [--list] [--case NAME]... [--filter SUBSTR]... [--exclude SUBSTR]...\n"
    "       [--config FILE]... [-X key=value]... [--retention N] [--timeout SEC]\n"
    "       [--no-server-control]\n"
    "\n"
    "Runs the eventbus transport conformance cases, each in a process of its\n"
    "own: one line per case (ok, FAIL or skip, with the reason) and a final\n"
    "`N passed, N failed, N skipped` line. Every case's config is\n"
    "$EB_CONFORMANCE_CONFIG's file, then each --config FILE and -X key=value\n"
    "in order (none: the memory transport).\n"
    "\n"
    "  --list             the cases, with the flags and retention each needs\n"
    "  --case NAME        run this case (repeatable; exact name)\n"
    "  --filter SUBSTR    run the cases whose name contains SUBSTR (repeatable)\n"
    "  --exclude SUBSTR   leave out the cases whose name contains SUBSTR\n"
    "  --retention N      the transport keeps only N messages of a topic for a\n"
    "                     group none of whose members is receiving: cases that\n"
    "                     need more are skipped (default: no limit)\n"
    "  --timeout SEC      kill a case after SEC seconds (default 120)\n"
    "  --no-server-control  leave out the cases that kill or stop a server or a\n"
    "                     member process (the ThreadSanitizer build)\n"
    "\n"
    "Exit: 0 nothing failed (skips allowed), 1 a case failed, 2 bad usage or\n"
    "a bad setting.\n";

static double conf_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs one case in a child process. Returns its outcome; `why` gets the
 * failure or skip reason. */
static int conf_fork_case(const eb_conf_case *c, int timeout_s, char *why,
                          size_t why_size, double *elapsed)
{
    int fds[2];
    why[0] = '\0';
    if (pipe(fds) != 0) {
        snprintf(why, why_size, "pipe: %s", strerror(errno));
        return EB_CONF_FAIL;
    }
    fflush(stdout);
    fflush(stderr);
    double start = conf_mono_s();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, why_size, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return EB_CONF_FAIL;
    }
    if (pid == 0) {
        close(fds[0]);
        char msg[2048];
        int status = eb_conformance_run_case(c, msg, sizeof msg);
        size_t len = strlen(msg);
        /* Less than PIPE_BUF: written at once, never blocks. */
        if (len && write(fds[1], msg, len) < 0)
            _exit(3);
        close(fds[1]);
        fflush(stdout);
        fflush(stderr);
        /* exit(), not _exit(): LeakSanitizer reports at exit. */
        exit(status == EB_CONF_PASS ? 0
             : status == EB_CONF_SKIP ? EB_CONF_EXIT_SKIP
                                      : 1);
    }
    close(fds[1]);
    int wstatus = 0, timed_out = 0;
    for (;;) {
        pid_t r = waitpid(pid, &wstatus, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            snprintf(why, why_size, "waitpid: %s", strerror(errno));
            close(fds[0]);
            return EB_CONF_FAIL;
        }
        if (conf_mono_s() - start > timeout_s) {
            kill(pid, SIGKILL);
            waitpid(pid, &wstatus, 0);
            timed_out = 1;
            break;
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    *elapsed = conf_mono_s() - start;
    char msg[2048];
    ssize_t n = 0;
    int fl = fcntl(fds[0], F_GETFL);
    fcntl(fds[0], F_SETFL, fl | O_NONBLOCK);
    n = read(fds[0], msg, sizeof msg - 1);
    close(fds[0]);
    msg[n > 0 ? n : 0] = '\0';

    if (timed_out) {
        snprintf(why, why_size, "timeout: killed after %d s%s%s", timeout_s,
                 msg[0] ? "; " : "", msg);
        return EB_CONF_FAIL;
    }
    if (WIFSIGNALED(wstatus)) {
        snprintf(why, why_size, "killed by signal %d (%s)%s%s",
                 WTERMSIG(wstatus), strsignal(WTERMSIG(wstatus)),
                 msg[0] ? "; " : "", msg);
        return EB_CONF_FAIL;
    }
    int code = WEXITSTATUS(wstatus);
    if (code == 0 && !msg[0])
        return EB_CONF_PASS;
    if (code == EB_CONF_EXIT_SKIP) {
        snprintf(why, why_size, "%s", msg);
        return EB_CONF_SKIP;
    }
    if (code == 0)
        snprintf(why, why_size, "exit status 0 but: %s", msg);
    else if (msg[0])
        snprintf(why, why_size, "%s", msg);
    else
        snprintf(why, why_size, "exit status %d (a sanitizer report?)", code);
    return EB_CONF_FAIL;
}

/* The options of one run. */
typedef struct conf_run {
    const char *prog;
    char **cases, **filters, **excludes; /* each at most argc long */
    int ncases, nfilters, nexcludes;
    int list, no_server_control, timeout_s;
} conf_run;

static int conf_usage_error(const conf_run *r, const char *fmt, const char *arg)
{
    fprintf(stderr, "%s: ", r->prog);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see %s --help)\n", r->prog);
    return 2;
}

static int conf_whole_number(const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Takes the option at argv[*i] and its value. @returns 0, -1 for --help
 * (printed), or 2 (printed). */
static int conf_parse_one(conf_run *r, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (strcmp(a, "--list") == 0) {
        r->list = 1;
        return 0;
    }
    if (strcmp(a, "--no-server-control") == 0) {
        r->no_server_control = 1;
        return 0;
    }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        printf("usage: %s", r->prog);
        fputs(conf_usage_text, stdout);
        return -1;
    }
    static const char *const with_value[] = {"--case", "--filter", "--exclude", "--config",
                                             "-X", "--retention", "--timeout", NULL};
    int takes_value = 0;
    for (int k = 0; with_value[k]; k++)
        takes_value |= strcmp(a, with_value[k]) == 0;
    if (!takes_value)
        return conf_usage_error(r, a[0] == '-' ? "unknown option '%s'" : "unexpected argument '%s'",
                                a);
    if (*i + 1 >= argc)
        return conf_usage_error(r, "%s needs a value", a);
    const char *v = argv[++*i];
    char err[1024] = "";
    long n;
    if (strcmp(a, "--case") == 0) {
        if (!eb_conformance_find(v)) {
            fprintf(stderr, "%s: no case named '%s' (--list shows them)\n", r->prog, v);
            return 2;
        }
        r->cases[r->ncases++] = (char *)v;
    } else if (strcmp(a, "--filter") == 0) {
        r->filters[r->nfilters++] = (char *)v;
    } else if (strcmp(a, "--exclude") == 0) {
        r->excludes[r->nexcludes++] = (char *)v;
    } else if (strcmp(a, "--config") == 0) {
        if (eb_conformance_add_file(v, err, sizeof err) != 0) {
            fprintf(stderr, "%s: --config %s: %s\n", r->prog, v, err);
            return 2;
        }
    } else if (strcmp(a, "-X") == 0) {
        const char *eq = strchr(v, '=');
        char key[256];
        if (!eq || eq == v || (size_t)(eq - v) >= sizeof key)
            return conf_usage_error(r, "-X %s: expected key=value", v);
        snprintf(key, sizeof key, "%.*s", (int)(eq - v), v);
        if (eb_conformance_add_setting(key, eq + 1, err, sizeof err) != 0) {
            fprintf(stderr, "%s: -X %s: %s\n", r->prog, v, err);
            return 2;
        }
    } else if (strcmp(a, "--retention") == 0) {
        if (conf_whole_number(v, 1, 2000000000L, &n) != 0)
            return conf_usage_error(r, "--retention wants a number of messages (1 or more), not '%s'",
                                    v);
        eb_conformance_set_retention((unsigned long)n);
    } else {
        if (conf_whole_number(v, 1, 86400, &n) != 0)
            return conf_usage_error(r, "--timeout wants seconds (1..86400), not '%s'", v);
        r->timeout_s = (int)n;
    }
    return 0;
}

static int conf_contains_any(const char *name, char **subs, int n)
{
    for (int i = 0; i < n; i++)
        if (strstr(name, subs[i]))
            return 1;
    return 0;
}

static int conf_selected(const conf_run *r, const eb_conf_case *c)
{
    int named = 0;
    for (int i = 0; i < r->ncases; i++)
        named |= strcmp(r->cases[i], c->name) == 0;
    if ((r->ncases || r->nfilters) && !named &&
        !conf_contains_any(c->name, r->filters, r->nfilters))
        return 0;
    if (conf_contains_any(c->name, r->excludes, r->nexcludes))
        return 0;
    return !(r->no_server_control && (c->flags & EB_CASE_NEEDS_SERVER_CONTROL));
}

static void conf_print_listing(const eb_conf_case *c)
{
    char req[256], any[256], kept[64] = "";
    eb__conf_feature_list(c->required_features, " ", req, sizeof req);
    eb__conf_feature_list(c->any_features, "|", any, sizeof any);
    if (c->retention)
        snprintf(kept, sizeof kept, "  keeps: %lu", c->retention);
    printf("%s%s%s%s%s%s%s\n", c->name, req[0] || any[0] ? "  needs: " : "", req,
           req[0] && any[0] ? " " : "", any, kept,
           (c->flags & EB_CASE_NEEDS_SERVER_CONTROL) ? "  [server control]" : "");
}

/* Runs (or lists) the selected cases. @returns the exit status. */
static int conf_run_selected(const conf_run *r)
{
    size_t ncases;
    const eb_conf_case *cases = eb_conformance_cases(&ncases);
    int passed = 0, failed = 0, skipped = 0;
    for (size_t i = 0; i < ncases; i++) {
        const eb_conf_case *c = &cases[i];
        if (!conf_selected(r, c))
            continue;
        if (r->list) {
            conf_print_listing(c);
            continue;
        }
        char why[2600];
        double elapsed = 0;
        int st = conf_fork_case(c, r->timeout_s, why, sizeof why, &elapsed);
        if (st == EB_CONF_PASS) {
            passed++;
            printf("ok %s (%.2f s)\n", c->name, elapsed);
        } else if (st == EB_CONF_SKIP) {
            skipped++;
            printf("skip %s (%s)\n", c->name, why);
        } else {
            failed++;
            printf("FAIL %s (%.2f s): %s\n", c->name, elapsed, why);
        }
        fflush(stdout);
    }
    if (r->list)
        return 0;
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}

int eb_conformance_run(int argc, char **argv)
{
    conf_run r = {.prog = argc > 0 && argv[0] ? argv[0] : "eventbus-conformance",
                  .timeout_s = 120};
    size_t room = (size_t)(argc > 0 ? argc : 1);
    r.cases = calloc(room, sizeof *r.cases);
    r.filters = calloc(room, sizeof *r.filters);
    r.excludes = calloc(room, sizeof *r.excludes);
    int rc = 0;
    if (!r.cases || !r.filters || !r.excludes) {
        fprintf(stderr, "%s: out of memory\n", r.prog);
        rc = 2;
    }
    for (int i = 1; rc == 0 && i < argc; i++)
        rc = conf_parse_one(&r, argc, argv, &i);
    if (rc == 0)
        rc = conf_run_selected(&r);
    else if (rc < 0)
        rc = 0; /* --help */
    free(r.cases);
    free(r.filters);
    free(r.excludes);
    fflush(stdout);
    return rc;
}
