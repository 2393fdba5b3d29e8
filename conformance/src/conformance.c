/*
 * conformance.c — the case table and running one case in this process:
 * the feature probe, the checks (a failure on the case's thread longjmps
 * out), the skip rules (features, declared retention) and the teardown.
 *
 * The plain runner that forks each case lives in runner.c, the settings
 * every case's config gets in settings.c, the helpers the cases share
 * (buses, waits, recorder, delivery tracker) in helpers.c.
 */
#include "eventbus/conformance.h"
#include "internal.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ the table */

#define EB_CONF_ROW_(name, req, any, flags, retention)                        \
    {#name, req, any, flags, retention, eb_case_##name},
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

void eb__conf_feature_list(uint64_t mask, const char *sep, char *buf, size_t size)
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
    EB_CHECK(rc == 0, "cannot open a bus with the suite's config (transport %s): %s: %s",
             eb_config_get(cfg, "transport") ? eb_config_get(cfg, "transport") : "memory",
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
        eb__conf_feature_list(missing, " ", names, sizeof names);
        EB_SKIP("transport '%s' lacks %s", ctx->transport, names);
    }
    if (c->any_features && !(c->any_features & ctx->features)) {
        eb__conf_feature_list(c->any_features, " or ", names, sizeof names);
        EB_SKIP("transport '%s' has none of %s", ctx->transport, names);
    }
    unsigned long kept = eb__conf_retention();
    if (kept && c->retention > kept)
        EB_SKIP("needs %lu messages kept for a group none of whose members is "
                "receiving; the transport declared it keeps %lu (--retention)",
                c->retention, kept);
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
