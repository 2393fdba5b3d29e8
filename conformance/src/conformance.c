/*
 * conformance.c — the case table, running one case (feature probe, checks,
 * teardown) and the plain runner that forks each case with a timeout.
 *
 * The helpers the cases share (config, buses, waits, recorder, delivery
 * tracker) live in helpers.c.
 */
#include "eventbus/conformance.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ the table */

#define EB_CONF_ROW_(name, req, any, flags) {#name, req, any, flags, eb_case_##name},
static const eb_conf_case conf_cases[] = {EB_CONF_CASE_LIST(EB_CONF_ROW_)};
#undef EB_CONF_ROW_

const eb_conf_case *eb_conformance_cases(size_t *count)
{
    if (count)
        *count = sizeof conf_cases / sizeof conf_cases[0];
    return conf_cases;
}

const eb_conf_case *eb_conformance_find(const char *name)
{
    size_t n;
    const eb_conf_case *cases = eb_conformance_cases(&n);
    for (size_t i = 0; name && i < n; i++)
        if (strcmp(cases[i].name, name) == 0)
            return &cases[i];
    return NULL;
}

static const struct {
    uint64_t flag;
    const char *name;
} conf_feature_names[] = {
    {EB_FEATURE_DURABLE, "DURABLE"},
    {EB_FEATURE_GROUPS, "GROUPS"},
    {EB_FEATURE_KEY_ORDER, "KEY_ORDER"},
    {EB_FEATURE_KEY_ORDER_SINGLE_MEMBER, "KEY_ORDER_SINGLE_MEMBER"},
    {EB_FEATURE_REDELIVERY, "REDELIVERY"},
    {EB_FEATURE_HEADERS, "HEADERS"},
    {EB_FEATURE_TIMESTAMPS, "TIMESTAMPS"},
    {EB_FEATURE_DELIVERY_COUNT, "DELIVERY_COUNT"},
    {EB_FEATURE_FAILOVER_GROUPS, "FAILOVER_GROUPS"},
};

static void conf_feature_list(uint64_t mask, const char *sep, char *buf,
                              size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof conf_feature_names / sizeof conf_feature_names[0]; i++) {
        if (!(mask & conf_feature_names[i].flag))
            continue;
        int n = snprintf(buf + used, size - used, "%s%s", used ? sep : "",
                         conf_feature_names[i].name);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
}

/* ------------------------------------------------------- the case context */

static eb_conf_ctx *conf_current;

eb_conf_ctx *eb_conf_current(void) { return conf_current; }

uint64_t eb_conf_features(eb_conf_ctx *ctx) { return ctx->features; }

int eb_conf_has(eb_conf_ctx *ctx, uint64_t features)
{
    return (ctx->features & features) == features;
}

const char *eb_conf_case_name(eb_conf_ctx *ctx) { return ctx->c->name; }

unsigned long eb_conf_event_count(eb_conf_ctx *ctx, eb_event_type type)
{
    if ((unsigned)type >= EB_CONF_MAX_EVENT)
        return 0;
    return atomic_load(&ctx->events[type]);
}

int eb_conf_failed(eb_conf_ctx *ctx)
{
    pthread_mutex_lock(&ctx->lock);
    int failed = ctx->failed;
    pthread_mutex_unlock(&ctx->lock);
    return failed;
}

void eb_conf_note(eb_conf_ctx *ctx, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "  [%s] note: %s\n", ctx->c->name, line);
}

/* Tears the case down: its hooks (stop its threads), its buses (close,
 * destroy), then its memory. Safe to call twice. */
static void conf_teardown(eb_conf_ctx *ctx)
{
    ctx->in_teardown = 1;
    while (ctx->nhooks > 0) {
        struct eb_conf_hook h = ctx->hooks[--ctx->nhooks];
        h.fn(h.arg);
    }
    while (ctx->nbuses > 0) {
        eb_bus *bus = ctx->buses[--ctx->nbuses];
        eb_bus_close(bus, ctx->failed ? 5000 : EB_CONF_CLOSE_MS);
        eb_bus_destroy(bus);
    }
    while (ctx->nfrees > 0) {
        struct eb_conf_free f = ctx->frees[--ctx->nfrees];
        f.fn(f.ptr);
    }
    free(ctx->hooks);
    free(ctx->buses);
    free(ctx->frees);
    ctx->hooks = NULL;
    ctx->buses = NULL;
    ctx->frees = NULL;
    ctx->cap_hooks = ctx->cap_buses = ctx->cap_frees = 0;
}

static int conf_on_case_thread(eb_conf_ctx *ctx)
{
    return pthread_equal(ctx->thread, pthread_self()) && !ctx->in_teardown;
}

static void conf_record(eb_conf_ctx *ctx, int skip, const char *file, int line,
                        const char *fmt, va_list ap)
{
    char text[1536];
    vsnprintf(text, sizeof text, fmt, ap);
    pthread_mutex_lock(&ctx->lock);
    int first = !ctx->failed && !ctx->skipped;
    if (first) {
        if (skip) {
            ctx->skipped = 1;
            snprintf(ctx->message, sizeof ctx->message, "%s", text);
        } else {
            ctx->failed = 1;
            snprintf(ctx->message, sizeof ctx->message, "%s:%d: %s", file,
                     line, text);
        }
    }
    unsigned printed = ctx->printed_failures++;
    pthread_mutex_unlock(&ctx->lock);
    /* Printed at once: the evidence survives even if teardown then hangs. */
    if (!skip && printed < 20)
        fprintf(stderr, "  [%s] %s:%d: %s\n", ctx->c->name, file, line, text);
}

void eb_conf_fail_at(const char *file, int line, const char *fmt, ...)
{
    eb_conf_ctx *ctx = conf_current;
    va_list ap;
    va_start(ap, fmt);
    if (!ctx) {
        fprintf(stderr, "%s:%d: check failed outside a case: ", file, line);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        abort();
    }
    conf_record(ctx, 0, file, line, fmt, ap);
    va_end(ap);
    if (conf_on_case_thread(ctx)) {
        conf_teardown(ctx);
        longjmp(ctx->jmp, 1);
    }
}

void eb_conf_skip_at(const char *file, int line, const char *fmt, ...)
{
    eb_conf_ctx *ctx = conf_current;
    va_list ap;
    va_start(ap, fmt);
    if (!ctx || !conf_on_case_thread(ctx)) {
        fprintf(stderr, "%s:%d: EB_SKIP outside the case's thread\n", file, line);
        abort();
    }
    conf_record(ctx, 1, file, line, fmt, ap);
    va_end(ap);
    conf_teardown(ctx);
    longjmp(ctx->jmp, 1);
}

/* Opens a bus with the suite config to read the transport's features. */
static void conf_probe_features(eb_conf_ctx *ctx)
{
    eb_config *cfg = eb_conf_config(ctx);
    char err[512] = "";
    eb_bus *bus = NULL;
    int rc = eb_bus_open(cfg, &bus, err, sizeof err);
    EB_CHECK(rc == 0, "cannot open a bus with the suite config (%s): %s: %s",
             getenv("EB_CONFORMANCE_CONFIG") ? getenv("EB_CONFORMANCE_CONFIG")
                                             : "memory defaults",
             eb_err_name(rc), err);
    ctx->features = eb_bus_features(bus);
    snprintf(ctx->transport, sizeof ctx->transport, "%s", eb_bus_transport(bus));
    eb_bus_close(bus, EB_CONF_CLOSE_MS);
    eb_bus_destroy(bus);
}

static void conf_check_features(eb_conf_ctx *ctx)
{
    const eb_conf_case *c = ctx->c;
    char names[256];
    uint64_t missing = c->required_features & ~ctx->features;
    if (missing) {
        conf_feature_list(missing, " ", names, sizeof names);
        EB_SKIP("transport '%s' lacks %s", ctx->transport, names);
    }
    if (c->any_features && !(c->any_features & ctx->features)) {
        conf_feature_list(c->any_features, " or ", names, sizeof names);
        EB_SKIP("transport '%s' has none of %s", ctx->transport, names);
    }
}

int eb_conformance_run_case(const eb_conf_case *c, char *msg, size_t msg_size)
{
    eb_conf_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        snprintf(msg, msg_size, "out of memory");
        return EB_CONF_FAIL;
    }
    ctx->c = c;
    ctx->thread = pthread_self();
    pthread_mutex_init(&ctx->lock, NULL);
    conf_current = ctx;
    if (setjmp(ctx->jmp) == 0) {
        conf_probe_features(ctx);
        conf_check_features(ctx);
        c->fn(ctx);
        conf_teardown(ctx);
    }
    /* A check that failed on another thread after the case returned. */
    conf_teardown(ctx);
    int status = ctx->skipped ? EB_CONF_SKIP
                 : ctx->failed ? EB_CONF_FAIL
                               : EB_CONF_PASS;
    if (msg && msg_size)
        snprintf(msg, msg_size, "%s", ctx->message);
    conf_current = NULL;
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
    return status;
}

/* ------------------------------------------------------------ the runner */

static void conf_usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [--list] [--filter SUBSTR]... [--exclude SUBSTR]...\n"
            "          [--timeout SEC] [--no-server-control] [--config PATH]\n"
            "Runs the eventbus transport conformance cases, each in its own\n"
            "process. The transport comes from the properties file named by\n"
            "--config or EB_CONFORMANCE_CONFIG (default: the memory transport).\n",
            prog);
}

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

static int conf_contains_any(const char *name, char **subs, int n)
{
    for (int i = 0; i < n; i++)
        if (strstr(name, subs[i]))
            return 1;
    return 0;
}

int eb_conformance_run(int argc, char **argv)
{
    const char *prog = argc > 0 ? argv[0] : "conformance";
    char **filters = calloc((size_t)argc + 1, sizeof *filters);
    char **excludes = calloc((size_t)argc + 1, sizeof *excludes);
    int nfilters = 0, nexcludes = 0, list = 0, no_server_control = 0;
    int timeout_s = 120, rc = 0;

    if (!filters || !excludes) {
        fprintf(stderr, "%s: out of memory\n", prog);
        rc = 2;
        goto out;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--list") == 0) {
            list = 1;
        } else if (strcmp(a, "--no-server-control") == 0) {
            no_server_control = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            conf_usage(stdout, prog);
            goto out;
        } else if (strcmp(a, "--filter") == 0 || strcmp(a, "--exclude") == 0 ||
                   strcmp(a, "--timeout") == 0 || strcmp(a, "--config") == 0) {
            if (!val) {
                fprintf(stderr, "%s: %s needs a value\n", prog, a);
                conf_usage(stderr, prog);
                rc = 2;
                goto out;
            }
            i++;
            if (strcmp(a, "--filter") == 0) {
                filters[nfilters++] = argv[i];
            } else if (strcmp(a, "--exclude") == 0) {
                excludes[nexcludes++] = argv[i];
            } else if (strcmp(a, "--config") == 0) {
                setenv("EB_CONFORMANCE_CONFIG", val, 1);
            } else {
                char *end;
                long t = strtol(val, &end, 10);
                if (*end || t <= 0 || t > 86400) {
                    fprintf(stderr, "%s: --timeout wants seconds (1..86400), not '%s'\n",
                            prog, val);
                    rc = 2;
                    goto out;
                }
                timeout_s = (int)t;
            }
        } else {
            fprintf(stderr, "%s: unknown argument '%s'\n", prog, a);
            conf_usage(stderr, prog);
            rc = 2;
            goto out;
        }
    }

    size_t ncases;
    const eb_conf_case *cases = eb_conformance_cases(&ncases);
    int passed = 0, failed = 0, skipped = 0;
    for (size_t i = 0; i < ncases; i++) {
        const eb_conf_case *c = &cases[i];
        if (nfilters && !conf_contains_any(c->name, filters, nfilters))
            continue;
        if (conf_contains_any(c->name, excludes, nexcludes))
            continue;
        if (no_server_control && (c->flags & EB_CASE_NEEDS_SERVER_CONTROL))
            continue;
        if (list) {
            char req[256], any[256];
            conf_feature_list(c->required_features, " ", req, sizeof req);
            conf_feature_list(c->any_features, "|", any, sizeof any);
            printf("%s%s%s%s%s%s\n", c->name, req[0] || any[0] ? "  needs: " : "",
                   req, req[0] && any[0] ? " " : "", any,
                   (c->flags & EB_CASE_NEEDS_SERVER_CONTROL) ? "  [server control]" : "");
            continue;
        }
        char why[2600];
        double elapsed = 0;
        int st = conf_fork_case(c, timeout_s, why, sizeof why, &elapsed);
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
    if (!list) {
        printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
        rc = failed ? 1 : 0;
    }
out:
    free(filters);
    free(excludes);
    fflush(stdout);
    return rc;
}
