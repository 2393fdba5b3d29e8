/*
 * cmd_sub.c — `eventbus sub`: prints the messages of a topic as they are
 * handled, one line each (the payload, or a JSON line: json_line.h),
 * through the configured transport (never memory: its broker lives in
 * this process). Public API only.
 *
 * A message is acknowledged only once its line was written whole to
 * stdout (write(2), no stdio buffer: written is flushed); lines are
 * written under one mutex so they never interleave. A message whose line
 * is not written (stdout failed, or -n COUNT reached) is left
 * unacknowledged, for the group to get again.
 *
 * The public API has no handler result for "leave this message
 * unacknowledged": a handler acknowledges (EB_ACK), retries after a
 * backoff (EB_RETRY) or dead-letters (EB_REJECT). So the handler returns
 * EB_RETRY, and sub sets retry.backoff.ms (and .max.ms) to an hour and
 * retry.max.attempts to its maximum: the retry never comes before sub
 * leaves, and leaving (eb_unsubscribe) gives every message waiting for a
 * retry back unacknowledged. sub never dead-letters, so its dead-letter
 * topic is the topic itself and no <topic>.dlq has to exist.
 *
 * Threads: dispatch workers run the handler; a signal thread takes
 * SIGINT and SIGTERM (blocked everywhere else): the first ends the wait
 * (leave and close: drain, commit), the second exits at once. The main
 * thread opens, waits for a reason to stop, leaves and closes.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cli.h"
#include "cli_signals.h"
#include "json_line.h"

static const char USAGE[] =
    "usage: eventbus sub TOPIC [-g GROUP] [-n COUNT] [--from earliest|latest]\n"
    "                    [--format payload|json] [-c FILE] [-X key=value]...\n"
    "\n"
    "Prints the messages of TOPIC as they are handled, one line each, through\n"
    "the configured transport, until COUNT messages were printed or SIGINT\n"
    "or SIGTERM.\n"
    "\n"
    "  -g GROUP          consume as a member of GROUP (default: an anonymous\n"
    "                    member, which gets every message published after it\n"
    "                    started and acknowledges nothing on the server)\n"
    "  -n COUNT          stop after COUNT messages\n"
    "  --from earliest|latest\n"
    "                    where a new group starts (default: earliest for a\n"
    "                    group, latest for an anonymous member)\n"
    "  --format payload  (the default) each line is a payload\n"
    "  --format json     each line is one JSON object, in the shape\n"
    "                    `eventbus pub --format json` reads (so sub | pub\n"
    "                    copies messages):\n"
    "                    {\"topic\": s, \"key\": null | s, \"key_b64\": s,\n"
    "                     \"headers\": [{\"name\": s, \"value\": s | \"value_b64\": s}],\n"
    "                     \"payload\": s | \"payload_b64\": s, \"id\": s, \"attempt\": n}\n"
    "                    (text when the bytes are valid UTF-8, else _b64: base64)\n"
    "\n"
    "A message is acknowledged only after its line was written to stdout.\n"
    "When stdout fails (a closed pipe: EPIPE), sub stops and leaves that\n"
    "message and any later ones unacknowledged; so does it with the messages\n"
    "it was given beyond COUNT: the group gets them again. (It leaves them\n"
    "by asking for a retry it never waits for: it sets retry.max.attempts,\n"
    "retry.backoff.ms and retry.backoff.max.ms itself, and never\n"
    "dead-letters.) The first SIGINT or SIGTERM leaves the group and closes\n"
    "the bus cleanly (what was handed over is printed and acknowledged); a\n"
    "second exits at once. The memory transport is refused: its broker lives\n"
    "inside one process.\n"
    "\n"
    "Exit: 0 COUNT printed, or stopped by a signal; 1 stdout failed, the\n"
    "subscription failed, or a second signal; 2 bad usage or configuration.\n";

typedef enum stop_reason {
    RUNNING = 0,
    STOP_COUNT,                  /* -n COUNT lines written */
    STOP_OUTPUT,                 /* stdout failed */
    STOP_SIGNAL,                 /* SIGINT or SIGTERM */
} stop_reason;

typedef struct sub_options {
    const char *topic, *group;
    long count;                  /* 0: no limit */
    eb_start_position start;
    bool json;
} sub_options;

typedef struct sub_state {
    const sub_options *o;
    /* Lock order: out_mu, then stop_mu. The signal thread takes only
     * stop_mu: a handler may block in write() holding out_mu. */
    pthread_mutex_t out_mu;
    long written;                /* under out_mu */
    int output_errno;            /* under out_mu: stdout failed */
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    stop_reason stop;            /* under stop_mu: the first reason */
} sub_state;

static void stop(sub_state *s, stop_reason why)
{
    pthread_mutex_lock(&s->stop_mu);
    if (s->stop == RUNNING)
        s->stop = why;
    pthread_cond_broadcast(&s->stop_cv);
    pthread_mutex_unlock(&s->stop_mu);
}

/* ---------------------------------------------------------------- output */

/** Writes every byte of iov (n entries; modified). @returns 0 or errno. */
static int write_all(struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(STDOUT_FILENO, iov, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        for (; n > 0 && (size_t)w >= iov->iov_len; iov++, n--)
            w -= (ssize_t)iov->iov_len;
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/** The message's JSON line. @returns NULL when out of memory. */
static char *json_of(const eb_msg *msg, size_t *len)
{
    size_t n = eb_msg_header_count(msg);
    eb_header *headers = calloc(n ? n : 1, sizeof *headers);
    if (!headers)
        return NULL;
    for (size_t i = 0; i < n; i++)
        eb_msg_header(msg, i, &headers[i].name, &headers[i].value, &headers[i].value_len);
    json_message m = {.topic = eb_msg_topic(msg), .headers = headers, .header_count = n,
                      .id = eb_msg_id(msg), .attempt = eb_msg_attempt(msg)};
    m.key = eb_msg_key(msg, &m.key_len);
    m.payload = eb_msg_payload(msg, &m.payload_len);
    char *line = json_line_encode(&m, len);
    free(headers);
    return line;
}

/** Writes msg's line. @returns 0 or an errno. */
static int write_message(const sub_options *o, const eb_msg *msg)
{
    char *line = NULL;
    size_t len;
    const void *bytes;
    if (o->json) {
        if (!(line = json_of(msg, &len)))
            return ENOMEM;
        bytes = line;
    } else {
        bytes = eb_msg_payload(msg, &len);
    }
    struct iovec iov[2] = {{(void *)bytes, len}, {"\n", 1}};
    int err = write_all(iov, 2);
    free(line);
    return err;
}

/** The handler: see the top of the file for EB_RETRY. */
static eb_result handle(const eb_msg *msg, void *opaque)
{
    sub_state *s = opaque;
    pthread_mutex_lock(&s->out_mu);
    bool take = s->output_errno == 0 && (s->o->count == 0 || s->written < s->o->count);
    int err = take ? write_message(s->o, msg) : 0;
    if (take && err == 0)
        s->written++;
    if (err)
        s->output_errno = err;
    bool done = take && (err != 0 || s->written == s->o->count);
    pthread_mutex_unlock(&s->out_mu);
    if (done)
        stop(s, err ? STOP_OUTPUT : STOP_COUNT);
    return take && err == 0 ? EB_ACK : EB_RETRY;
}

/** Reports what the transport says went wrong (any bus thread). */
static void on_event(eb_bus *bus, const eb_event *event, void *opaque)
{
    (void)bus;
    (void)opaque;
    if (event->type == EB_EVENT_DISCONNECTED || event->type == EB_EVENT_ERROR)
        cli_fail(CLI_FAILED, "sub: %s", event->detail);
}

/* --------------------------------------------------------------- signals */

/** The first signal (on the signal thread): leave cleanly. */
static void stop_on_signal(void *arg)
{
    stop(arg, STOP_SIGNAL);
}

/* ------------------------------------------------------------------ run */

/** Settings sub makes itself: see the top of the file. */
static int set_retry_keys(cli *c)
{
    static const char *const keys[][2] = {
        {"retry.max.attempts", "1000000"},
        {"retry.backoff.max.ms", "3600000"},
        {"retry.backoff.ms", "3600000"},
    };
    char err[512];
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (eb_config_set(c->cfg, keys[i][0], keys[i][1], err, sizeof err) != 0)
            return cli_fail(CLI_FAILED, "sub: %s", err);
    return CLI_OK;
}

static stop_reason wait_for_stop(sub_state *s)
{
    pthread_mutex_lock(&s->stop_mu);
    while (s->stop == RUNNING)
        pthread_cond_wait(&s->stop_cv, &s->stop_mu);
    stop_reason why = s->stop;
    pthread_mutex_unlock(&s->stop_mu);
    return why;
}

static int consume(cli *c, sub_state *s)
{
    const sub_options *o = s->o;
    eb_bus *bus = NULL;
    int rc = cli_open_shared_bus(c, "sub", &bus);
    if (rc != CLI_OK)
        return rc;
    eb_sub_options so = {.struct_size = sizeof so, .start = o->start, .dlq_topic = o->topic};
    eb_sub *sub = NULL;
    char err[1024] = "";
    rc = eb_subscribe(bus, o->topic, o->group, handle, s, &so, &sub, err, sizeof err);
    if (rc != 0) {
        eb_bus_destroy(bus);
        return cli_fail(CLI_FAILED, "sub: subscribing to %s: %s", o->topic,
                        err[0] ? err : eb_strerror(rc));
    }
    stop_reason why = wait_for_stop(s);
    /* Leaving hands over what the bus holds: handled and acknowledged
     * while lines can still be written (a signal), else left
     * unacknowledged; messages waiting for a retry go back too. */
    eb_unsubscribe(sub);
    eb_bus_destroy(bus);
    if (why == STOP_OUTPUT) {
        pthread_mutex_lock(&s->out_mu);
        int e = s->output_errno;
        long written = s->written;
        pthread_mutex_unlock(&s->out_mu);
        return cli_fail(CLI_FAILED, "sub: cannot write to stdout (%s) after %ld %s; the "
                        "message not written was left unacknowledged", strerror(e),
                        written, written == 1 ? "line" : "lines");
    }
    return CLI_OK;
}

static int run(cli *c, const sub_options *o)
{
    if (set_retry_keys(c) != CLI_OK)
        return CLI_FAILED;
    eb_config_set_event_cb(c->cfg, on_event, NULL);
    /* A closed pipe must fail the write (EPIPE), not kill the process
     * before it can leave the message unacknowledged. */
    signal(SIGPIPE, SIG_IGN);
    sub_state s = {.o = o};
    pthread_mutex_init(&s.out_mu, NULL);
    pthread_mutex_init(&s.stop_mu, NULL);
    pthread_cond_init(&s.stop_cv, NULL);
    cli_signals sig;
    int rc;
    if (!cli_signals_start(&sig, stop_on_signal, &s,
                           "sub: a second signal: exiting without closing the bus (what "
                           "was not acknowledged comes again)")) {
        rc = cli_fail(CLI_FAILED, "sub: cannot start the signal thread");
    } else {
        rc = consume(c, &s);
        cli_signals_stop(&sig);
    }
    pthread_cond_destroy(&s.stop_cv);
    pthread_mutex_destroy(&s.stop_mu);
    pthread_mutex_destroy(&s.out_mu);
    return rc;
}

/* -------------------------------------------------------------- options */

/** The value of option argv[*i], or NULL (printed). */
static const char *option_value(int argc, char **argv, int *i)
{
    if (*i + 1 < argc)
        return argv[++*i];
    cli_fail(CLI_USAGE, "sub: %s needs a value", argv[*i]);
    return NULL;
}

static bool parse_count(const char *text, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < 1) {
        cli_fail(CLI_USAGE, "sub: -n needs a whole number >= 1, not '%s'", text);
        return false;
    }
    *out = v;
    return true;
}

/** @returns CLI_OK, -1 for --help (printed), or the exit code. */
static int parse(cli *c, sub_options *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int rc = CLI_OK;
        if (cli_common_option(c, argc, argv, &i, &rc)) {
            if (rc != CLI_OK)
                return rc;
        } else if (a[0] != '-') {
            if (o->topic)
                return cli_fail(CLI_USAGE, "sub: unexpected argument '%s' (one TOPIC only)",
                                a);
            o->topic = a;
        } else if (strcmp(a, "-g") == 0) {
            if (!(v = option_value(argc, argv, &i)))
                return CLI_USAGE;
            o->group = v;
        } else if (strcmp(a, "-n") == 0) {
            if (!(v = option_value(argc, argv, &i)) || !parse_count(v, &o->count))
                return CLI_USAGE;
        } else if (strcmp(a, "--from") == 0) {
            if (!(v = option_value(argc, argv, &i)))
                return CLI_USAGE;
            if (strcmp(v, "earliest") != 0 && strcmp(v, "latest") != 0)
                return cli_fail(CLI_USAGE, "sub: --from is earliest or latest, not '%s'", v);
            o->start = strcmp(v, "earliest") == 0 ? EB_START_EARLIEST : EB_START_LATEST;
        } else if (strcmp(a, "--format") == 0) {
            if (!(v = option_value(argc, argv, &i)))
                return CLI_USAGE;
            if (strcmp(v, "json") != 0 && strcmp(v, "payload") != 0)
                return cli_fail(CLI_USAGE, "sub: --format is payload or json, not '%s'", v);
            o->json = strcmp(v, "json") == 0;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(USAGE, stdout);
            return -1;
        } else {
            return cli_fail(CLI_USAGE, "sub: unknown option '%s' (see eventbus sub --help)", a);
        }
    }
    if (!o->topic)
        return cli_fail(CLI_USAGE, "sub: no TOPIC given (eventbus sub TOPIC; see eventbus "
                                   "sub --help)");
    return CLI_OK;
}

int cmd_sub(cli *c, int argc, char **argv)
{
    sub_options o = {.start = EB_START_DEFAULT};
    int rc = parse(c, &o, argc, argv);
    if (rc == CLI_OK)
        rc = run(c, &o);
    return rc < 0 ? CLI_OK : rc;
}
