/*
 * cmd_pub.c — `eventbus pub`: publishes one message per MESSAGE argument,
 * or per line of stdin, through the configured transport (never memory:
 * its broker lives in this process), and waits for every delivery
 * callback. As payloads (with -k, -K and -H, kcat's way) or as JSON
 * lines (json_line.h). A line that cannot be read as a message is
 * skipped with a one-line error naming it, the rest is published, and the
 * exit code says something went wrong. The first SIGINT or SIGTERM stops
 * the reading (what was not read is not published) and still waits for
 * the callbacks of what was; a second exits at once. Public API only.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_signals.h"
#include "json_line.h"
#include "line_reader.h"

static const char USAGE[] =
    "usage: eventbus pub TOPIC [-k KEY] [-K DELIM] [-H name=value]...\n"
    "                    [--format payload|json] [-c FILE] [-X key=value]... [MESSAGE]...\n"
    "\n"
    "Publishes each MESSAGE, or each line of stdin when there is none (its\n"
    "newline left out; lines of any length), to TOPIC through the configured\n"
    "transport, then waits until every publish is confirmed or failed.\n"
    "\n"
    "  --format payload  (the default) each line is a payload:\n"
    "    -k KEY          the key of every message (none by default)\n"
    "    -K DELIM        split each line at its first DELIM: key before,\n"
    "                    payload after (as kcat -K); a line without DELIM is\n"
    "                    all payload, with -k's key or none\n"
    "    -H name=value   a header on every message; repeatable, kept in order\n"
    "  --format json     each line is one JSON object, as `eventbus sub\n"
    "                    --format json` prints them:\n"
    "                    {\"topic\": s, \"key\": null | s, \"key_b64\": s,\n"
    "                     \"headers\": [{\"name\": s, \"value\": s | \"value_b64\": s}],\n"
    "                     \"payload\": s | \"payload_b64\": s, \"id\": s, \"attempt\": n}\n"
    "                    (_b64: the bytes in base64; id and attempt are ignored;\n"
    "                    TOPIC, when given, wins over a line's topic)\n"
    "  --                the arguments after it are messages\n"
    "\n"
    "A line that is not a message (bad JSON, bad base64, no topic, refused by\n"
    "the transport) is skipped with an error naming its line; the others are\n"
    "published. Then a summary counts what was skipped or not confirmed.\n"
    "The memory transport is refused: its broker lives inside one process.\n"
    "The first SIGINT or SIGTERM stops reading (what was not read is not\n"
    "published) and waits for what was; a second exits at once.\n"
    "\n"
    "Exit: 0 every message read was confirmed (also when a signal stopped\n"
    "the reading); 1 a line skipped, a publish not confirmed, stdin\n"
    "unreadable, or a second signal; 2 bad usage or configuration.\n";

/** Failures beyond this many are counted, not printed one by one. */
enum { FAILURES_PRINTED = 20 };

typedef struct pub_options {
    const char *topic;           /* NULL: each JSON line names its own */
    const char *key;             /* -k, or NULL */
    const char *key_delim;       /* -K, or NULL */
    eb_header *headers;          /* -H, names owned */
    size_t header_count;
    bool json;
    char **messages;             /* MESSAGE arguments (argv's) */
    int message_count;
} pub_options;

/* What became of the messages; the delivery callbacks run on a transport
 * thread. */
typedef struct pub_tally {
    pthread_mutex_t mu;
    pthread_cond_t settled_cv;
    long inputs;                 /* lines or arguments read */
    long skipped;                /* not a message */
    long refused;                /* eb_publish said no */
    long accepted;               /* eb_publish said yes */
    long settled;                /* their callbacks, under mu */
    long confirmed;              /* status 0, under mu */
    long failures_printed;       /* under mu */
    atomic_bool stopping;        /* a signal: read no more */
    int wake[2];                 /* the signal thread writes to wake[1] */
} pub_tally;

/** One accepted publish, until its callback. */
typedef struct ticket {
    pub_tally *tally;
    const char *source;          /* "line" or "argument" */
    long number;
} ticket;

/** Prints one failure (the first FAILURES_PRINTED of them). */
static void report_failure(pub_tally *t, const char *source, long number, const char *what,
                           int rc)
{
    pthread_mutex_lock(&t->mu);
    bool print = t->failures_printed++ < FAILURES_PRINTED;
    pthread_mutex_unlock(&t->mu);
    if (print)
        cli_fail(CLI_FAILED, "pub: %s %ld: %s: %s (%s)", source, number, what, eb_strerror(rc),
                 eb_err_name(rc));
}

static void delivered(int status, const char *id, void *opaque)
{
    (void)id;
    ticket *tk = opaque;
    pub_tally *t = tk->tally;
    if (status != 0)
        report_failure(t, tk->source, tk->number, "not confirmed", status);
    pthread_mutex_lock(&t->mu);
    t->settled++;
    t->confirmed += status == 0;
    pthread_cond_broadcast(&t->settled_cv);
    pthread_mutex_unlock(&t->mu);
    free(tk);
}

/** Publishes m; counts and reports the outcome of the call. @returns
 *  false when the bus is closed (nothing more can be published). */
static bool publish(eb_bus *bus, pub_tally *t, const eb_outgoing *m, const char *source,
                    long number)
{
    ticket *tk = malloc(sizeof *tk);
    int rc = EB_ERR_NOMEM;
    if (tk) {
        *tk = (ticket){.tally = t, .source = source, .number = number};
        rc = eb_publish(bus, m, delivered, tk);
    }
    if (rc == 0) {
        pthread_mutex_lock(&t->mu);
        t->accepted++;
        pthread_mutex_unlock(&t->mu);
        return true;
    }
    free(tk);
    t->refused++;
    report_failure(t, source, number, "not published", rc);
    return rc != EB_ERR_CLOSED;
}

/** A line skipped: not a message. */
static void skip(pub_tally *t, const char *source, long number, const char *why)
{
    t->skipped++;
    cli_fail(CLI_FAILED, "pub: %s %ld: skipped: %s", source, number, why);
}

/** One line or argument (`len` bytes, no newline) as a message. */
static bool publish_input(eb_bus *bus, const pub_options *o, pub_tally *t, const char *source,
                          const char *text, size_t len)
{
    long number = ++t->inputs;
    eb_outgoing m = {.topic = o->topic, .headers = o->headers,
                     .header_count = o->header_count, .payload = text, .payload_len = len};
    if (!o->json) {
        if (o->key) {
            m.key = o->key;
            m.key_len = strlen(o->key);
        }
        size_t delim_len = o->key_delim ? strlen(o->key_delim) : 0;
        const char *at = delim_len ? memmem(text, len, o->key_delim, delim_len) : NULL;
        if (at) {
            m.key = text;
            m.key_len = (size_t)(at - text);
            m.payload = at + delim_len;
            m.payload_len = len - m.key_len - delim_len;
        }
        return publish(bus, t, &m, source, number);
    }
    json_line line;
    char why[512];
    if (json_line_decode(text, len, &line, why, sizeof why) != 0) {
        skip(t, source, number, why);
        return true;
    }
    const json_message *jm = &line.msg;
    m = (eb_outgoing){.topic = o->topic ? o->topic : jm->topic, .key = jm->key,
                      .key_len = jm->key_len, .payload = jm->payload,
                      .payload_len = jm->payload_len, .headers = jm->headers,
                      .header_count = jm->header_count};
    bool more = true;
    if (!m.topic)
        skip(t, source, number, "no topic: give TOPIC or a \"topic\" field");
    else
        more = publish(bus, t, &m, source, number);
    json_line_free(&line);
    return more;
}

/** Publishes every line of stdin, until its end or a signal. @returns
 *  false when stdin failed. */
static bool publish_stdin(eb_bus *bus, const pub_options *o, pub_tally *t)
{
    line_reader r;
    line_reader_init(&r, STDIN_FILENO, t->wake[0]);
    const char *line;
    size_t n;
    int rc;
    bool more = true;
    while (more && (rc = line_reader_next(&r, &line, &n)) == LINE_OK)
        more = publish_input(bus, o, t, "line", line, n);
    bool ok = !more || rc != LINE_ERROR;
    if (!ok)
        cli_fail(CLI_FAILED, "pub: reading stdin: %s", strerror(errno));
    line_reader_free(&r);
    return ok;
}

/** The first signal (on the signal thread): no more input. */
static void stop_reading(void *arg)
{
    pub_tally *t = arg;
    atomic_store(&t->stopping, true);
    ssize_t ignored = write(t->wake[1], "", 1);
    (void)ignored;
}

/** Waits for the callback of every accepted publish. The transport bounds
 *  each (its delivery timeout), so this needs no deadline of its own. */
static void wait_settled(pub_tally *t)
{
    pthread_mutex_lock(&t->mu);
    while (t->settled < t->accepted)
        pthread_cond_wait(&t->settled_cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
}

static int summarize(const pub_tally *t, bool input_ok)
{
    long not_confirmed = t->accepted - t->confirmed;
    if (input_ok && t->skipped == 0 && t->refused == 0 && not_confirmed == 0)
        return CLI_OK;
    return cli_fail(CLI_FAILED,
                    "pub: %ld of %ld %s published and confirmed; %ld skipped (not a "
                    "message), %ld not published, %ld not confirmed%s",
                    t->confirmed, t->inputs, t->inputs == 1 ? "message" : "messages",
                    t->skipped, t->refused, not_confirmed,
                    input_ok ? "" : "; stdin could not be read to its end");
}

/** Opens the bus, publishes, waits for the callbacks. */
static int publish_all(cli *c, const pub_options *o, pub_tally *t)
{
    eb_bus *bus = NULL;
    int rc = cli_open_shared_bus(c, "pub", &bus);
    if (rc != CLI_OK)
        return rc;
    bool input_ok = true, more = true;
    for (int i = 0; i < o->message_count && more && !atomic_load(&t->stopping); i++)
        more = publish_input(bus, o, t, "argument", o->messages[i], strlen(o->messages[i]));
    if (o->message_count == 0)
        input_ok = publish_stdin(bus, o, t);
    wait_settled(t);
    eb_bus_destroy(bus);
    return summarize(t, input_ok);
}

static int run(cli *c, const pub_options *o)
{
    pub_tally t = {.wake = {-1, -1}};
    pthread_mutex_init(&t.mu, NULL);
    pthread_cond_init(&t.settled_cv, NULL);
    cli_signals sig = {.started = false};
    int rc;
    if (pipe2(t.wake, O_CLOEXEC) != 0)
        rc = cli_fail(CLI_FAILED, "pub: pipe: %s", strerror(errno));
    else if (!cli_signals_start(&sig, stop_reading, &t,
                                "pub: a second signal: exiting without waiting for the "
                                "publishes not yet confirmed"))
        rc = cli_fail(CLI_FAILED, "pub: cannot start the signal thread");
    else
        rc = publish_all(c, o, &t);
    cli_signals_stop(&sig);
    if (t.wake[0] >= 0) {
        close(t.wake[0]);
        close(t.wake[1]);
    }
    pthread_cond_destroy(&t.settled_cv);
    pthread_mutex_destroy(&t.mu);
    return rc;
}

/* -------------------------------------------------------------- options */

/** -H name=value: appends a header. @returns false (printed) when bad. */
static bool add_header(pub_options *o, const char *arg)
{
    const char *eq = arg ? strchr(arg, '=') : NULL;
    if (!eq || eq == arg) {
        cli_fail(CLI_USAGE, "pub: -H needs name=value with a non-empty name, not '%s'",
                 arg ? arg : "");
        return false;
    }
    eb_header *more = realloc(o->headers, (o->header_count + 1) * sizeof *more);
    char *name = strndup(arg, (size_t)(eq - arg));
    if (more)
        o->headers = more;
    if (!more || !name) {
        free(name);
        cli_fail(CLI_FAILED, "pub: out of memory");
        return false;
    }
    o->headers[o->header_count++] =
        (eb_header){.name = name, .value = eq + 1, .value_len = strlen(eq + 1)};
    return true;
}

/** The value of option argv[*i], or NULL (printed). */
static const char *option_value(int argc, char **argv, int *i)
{
    if (*i + 1 < argc)
        return argv[++*i];
    cli_fail(CLI_USAGE, "pub: %s needs a value", argv[*i]);
    return NULL;
}

/** @returns CLI_OK, -1 for --help (printed), or the exit code. */
static int parse(cli *c, pub_options *o, int argc, char **argv)
{
    bool options_end = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int rc = CLI_OK;
        if (!options_end && cli_common_option(c, argc, argv, &i, &rc)) {
            if (rc != CLI_OK)
                return rc;
        } else if (options_end || a[0] != '-' || a[1] == '\0') {
            if (!o->topic)
                o->topic = a;
            else
                o->messages[o->message_count++] = argv[i];
        } else if (strcmp(a, "--") == 0) {
            options_end = true;
        } else if (strcmp(a, "-k") == 0 || strcmp(a, "-K") == 0) {
            if (!(v = option_value(argc, argv, &i)))
                return CLI_USAGE;
            if (a[1] == 'K' && !*v)
                return cli_fail(CLI_USAGE, "pub: -K needs a non-empty delimiter");
            *(a[1] == 'k' ? &o->key : &o->key_delim) = v;
        } else if (strcmp(a, "-H") == 0) {
            if (!(v = option_value(argc, argv, &i)) || !add_header(o, v))
                return CLI_USAGE;
        } else if (strcmp(a, "--format") == 0) {
            if (!(v = option_value(argc, argv, &i)))
                return CLI_USAGE;
            if (strcmp(v, "json") != 0 && strcmp(v, "payload") != 0)
                return cli_fail(CLI_USAGE, "pub: --format is payload or json, not '%s'", v);
            o->json = strcmp(v, "json") == 0;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(USAGE, stdout);
            return -1;
        } else {
            return cli_fail(CLI_USAGE, "pub: unknown option '%s' (see eventbus pub --help)", a);
        }
    }
    if (o->json && (o->key || o->key_delim || o->header_count))
        return cli_fail(CLI_USAGE, "pub: -k, -K and -H are for --format payload; a JSON "
                                   "line carries its own key and headers");
    if (!o->topic && !o->json)
        return cli_fail(CLI_USAGE, "pub: no TOPIC given (eventbus pub TOPIC [MESSAGE]...; "
                                   "see eventbus pub --help)");
    return CLI_OK;
}

int cmd_pub(cli *c, int argc, char **argv)
{
    pub_options o = {.messages = calloc((size_t)argc, sizeof(char *))};
    if (!o.messages)
        return cli_fail(CLI_FAILED, "pub: out of memory");
    int rc = parse(c, &o, argc, argv);
    if (rc == CLI_OK)
        rc = run(c, &o);
    else if (rc < 0)
        rc = CLI_OK;
    for (size_t i = 0; i < o.header_count; i++)
        free((char *)o.headers[i].name);
    free(o.headers);
    free(o.messages);
    return rc;
}
