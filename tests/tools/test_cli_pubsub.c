/*
 * test_cli_pubsub.c — `eventbus pub` and `eventbus sub` as a user runs
 * them, against the redis-server of tests/servers/redis.sh (skipped
 * without $EB_REDIS_URL): what pub publishes is read back through the
 * library and the stream's length, what sub prints is compared with what
 * the library published. Bad lines are skipped, named, and nothing of
 * them published; -K splits; sub acknowledges only what it wrote: -n
 * COUNT and a closed pipe leave the rest to the group, a signal closes
 * cleanly with everything acknowledged, a second one exits at once; a
 * signal stops pub's reading of an open stdin, and it still waits for
 * the confirmations of what it read.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "json_line.h"
#include "pubsub_redis.h"
#include "spawn_cli.h"

enum { EXIT_WITHIN_MS = 30000 };

/** Entries of `group` on `topic` delivered and not acknowledged. */
static long pending_count(const char *topic, const char *group)
{
    char command[1024];
    snprintf(command, sizeof command, "redis-cli -u '%s' XPENDING '%s' '%s'", pr_url(), topic,
             group);
    FILE *p = popen(command, "r");
    cr_assert_not_null(p);
    long n = -1;
    cr_assert_eq(fscanf(p, "%ld", &n), 1, "%s printed no count", command);
    pclose(p);
    return n;
}

/** Runs the command to its end with `input` on stdin. */
static cli_child *run(char **argv, const char *input)
{
    cli_child *c = cli_start(argv, input, input ? strlen(input) : 0);
    cli_finish(c, EXIT_WITHIN_MS);
    return c;
}

static void expect_header(const eb_msg *m, size_t i, const char *name, const void *value,
                          size_t len)
{
    const char *got_name;
    const void *got;
    size_t got_len;
    cr_assert_eq(eb_msg_header(m, i, &got_name, &got, &got_len), 0, "no header %zu", i);
    cr_expect_str_eq(got_name, name);
    cr_expect_eq(got_len, len, "header %zu: %zu bytes, not %zu", i, got_len, len);
    cr_expect_eq(memcmp(got, value, len), 0, "header %zu's value", i);
}

/* ------------------------------------------------------------------ pub */

/** Waits, at most timeout_ms, until topic's stream holds `n` entries. */
static bool stream_reaches(const char *topic, long n, int timeout_ms)
{
    long long deadline = cli_now_ms() + timeout_ms;
    for (;;) {
        if (pr_stream_length(topic) >= n)
            return true;
        if (cli_now_ms() >= deadline)
            return false;
        struct timespec pace = {0, 20 * 1000000};
        nanosleep(&pace, NULL); /* between two looks, within the deadline */
    }
}

Test(cli_pub, a_signal_stops_the_reading_and_waits_for_what_was_published)
{
    const char *topic = pr_topic("pub-sigterm");
    pr_args a;
    /* stdin stays open: only the signal can end the reading. */
    cli_child *c = cli_start_open(pr_command(&a, "pub", topic, NULL), "p1\np2\np3\n");
    cr_assert(stream_reaches(topic, 3, EXIT_WITHIN_MS), "pub published %ld of 3",
              pr_stream_length(topic));
    kill(c->pid, SIGTERM);
    cr_expect_eq(cli_finish(c, EXIT_WITHIN_MS), 0, "%s", c->err.text);
    cr_expect_eq(c->err.len, 0, "%s", c->err.text);
    pr_received *r = pr_read_back(topic, 3);
    pr_find(r, "p1");
    pr_find(r, "p3");
    pr_received_free(r);
    cli_child_free(c);
}

Test(cli_pub, arguments_with_key_and_headers_arrive_byte_exact)
{
    const char *topic = pr_topic("args");
    pr_args a;
    cli_child *c = run(pr_command(&a, "pub", topic, "-k", "k1", "-H", "h=1", "-H", "h=2",
                                  "-H", "empty=", "one", "--", "-two", NULL), NULL);
    cr_assert_eq(c->rc, 0, "%s", c->err.text);
    cr_expect_eq(c->err.len, 0, "a success printed: %s", c->err.text);
    pr_received *r = pr_read_back(topic, 2);
    for (int i = 0; i < 2; i++) {
        const eb_msg *m = pr_find(r, i == 0 ? "one" : "-two");
        pr_expect_key(m, "k1", 2);
        cr_assert_eq(eb_msg_header_count(m), 3);
        expect_header(m, 0, "h", "1", 1);
        expect_header(m, 1, "h", "2", 1);
        expect_header(m, 2, "empty", "", 0);
    }
    pr_received_free(r);
    cli_child_free(c);
}

Test(cli_pub, splits_each_stdin_line_at_the_K_delimiter_as_kcat)
{
    const char *topic = pr_topic("split");
    pr_args a;
    cli_child *c = run(pr_command(&a, "pub", topic, "-K", "::", NULL),
                       "x::1\ny::::2\nno delimiter\n::empty key\n\nlast, no newline");
    cr_assert_eq(c->rc, 0, "%s", c->err.text);
    pr_received *r = pr_read_back(topic, 6);
    pr_expect_key(pr_find(r, "1"), "x", 1);
    pr_expect_key(pr_find(r, "::2"), "y", 1);     /* at the first delimiter */
    pr_expect_key(pr_find(r, "no delimiter"), NULL, 0);
    pr_expect_key(pr_find(r, "empty key"), "", 0); /* an empty key, not none */
    pr_expect_key(pr_find(r, ""), NULL, 0);       /* an empty line: an empty payload */
    pr_expect_key(pr_find(r, "last, no newline"), NULL, 0);
    pr_received_free(r);
    cli_child_free(c);
}

Test(cli_pub, json_lines_that_are_bad_are_skipped_by_number_and_the_rest_published)
{
    const char *topic = pr_topic("json-bad");
    pr_args a;
    cli_child *c = run(
        pr_command(&a, "pub", topic, "--format", "json", NULL),
        "{\"key\":\"a\",\"payload\":\"first\"}\n"
        "{\"key\":\"a\",\"payload\":\"second\"\n"
        "{\"key_b64\":\"/wA=\",\"headers\":[{\"name\":\"h\",\"value_b64\":\"AAE=\"},"
        "{\"name\":\"h\",\"value\":\"\"}],\"payload\":\"third\"}\n"
        "{\"key\":\"a\",\"payload_b64\":\"fourth!!\"}\n"
        "{\"key\":null,\"payload_b64\":\"/w==\",\"id\":\"0@1-1\",\"attempt\":4}\n");
    cr_assert_eq(c->rc, 1, "exit %d: %s", c->rc, c->err.text);
    cr_expect(strstr(c->err.text, "eventbus: pub: line 2: skipped: not JSON"), "%s", c->err.text);
    cr_expect(strstr(c->err.text, "eventbus: pub: line 4: skipped: 'payload_b64' is not "
                                  "base64: character 7"), "%s", c->err.text);
    cr_expect(strstr(c->err.text, "3 of 5 messages published and confirmed; 2 skipped"), "%s",
              c->err.text);
    cr_expect_eq(cli_count_lines(&c->err), 3, "one line each: %s", c->err.text);
    pr_received *r = pr_read_back(topic, 3); /* and the stream holds no more */
    pr_expect_key(pr_find(r, "first"), "a", 1);
    const eb_msg *third = pr_find(r, "third");
    pr_expect_key(third, "\xff\x00", 2);
    cr_assert_eq(eb_msg_header_count(third), 2);
    expect_header(third, 0, "h", "\x00\x01", 2);
    expect_header(third, 1, "h", "", 0);
    pr_expect_key(pr_find(r, "\xff"), NULL, 0);
    pr_received_free(r);
    cli_child_free(c);
}

Test(cli_pub, a_TOPIC_argument_wins_over_the_lines_own_and_a_line_without_one_is_skipped)
{
    const char *own = pr_topic("own"), *given = pr_topic("given");
    char input[512];
    snprintf(input, sizeof input,
             "{\"topic\":\"%s\",\"payload\":\"to its own\"}\n{\"payload\":\"nowhere\"}\n", own);
    pr_args a;
    cli_child *c = run(pr_command(&a, "pub", "--format", "json", NULL), input);
    cr_expect_eq(c->rc, 1);
    cr_expect(strstr(c->err.text, "line 2: skipped: no topic"), "%s", c->err.text);
    cli_child_free(c);
    snprintf(input, sizeof input, "{\"topic\":\"%s\",\"payload\":\"to the given\"}\n", own);
    c = run(pr_command(&a, "pub", given, "--format", "json", NULL), input);
    cr_assert_eq(c->rc, 0, "%s", c->err.text);
    cli_child_free(c);
    pr_received *r = pr_read_back(own, 1);
    pr_find(r, "to its own");
    pr_received_free(r);
    r = pr_read_back(given, 1);
    pr_find(r, "to the given");
    pr_received_free(r);
}

Test(cli_pub, long_lines_are_whole_and_one_above_the_limit_is_refused_by_number)
{
    const char *topic = pr_topic("long");
    size_t above = 150000, below = 90000;
    char *input = malloc(above + below + 64);
    cr_assert_not_null(input);
    char *at = input + sprintf(input, "small\n");
    memset(at, 'x', above);
    at += above;
    *at++ = '\n';
    memset(at, 'y', below);
    at += below;
    strcpy(at, "\nsmall again\n");
    pr_args a;
    cli_child *c = run(pr_command(&a, "pub", topic, "-X", "message.max.bytes=100000", NULL),
                       input);
    cr_expect_eq(c->rc, 1);
    cr_expect(strstr(c->err.text, "line 2: not published: message larger than "
                                  "message.max.bytes"), "%s", c->err.text);
    cr_expect(strstr(c->err.text, "3 of 4 messages published and confirmed; 0 skipped (not a "
                                  "message), 1 not published, 0 not confirmed"),
              "%s", c->err.text);
    pr_received *r = pr_read_back(topic, 3);
    pr_find(r, "small");
    pr_find(r, "small again");
    input[6 + above + 1 + below] = '\0';
    pr_find(r, input + 6 + above + 1); /* the 90,000 y's, whole */
    pr_received_free(r);
    cli_child_free(c);
    free(input);
}

/* ------------------------------------------------------------------ sub */

/** A message's bytes as one comparable string of *len bytes: key (or
 *  none), headers in order, payload, each with its length. */
static char *fingerprint(const void *key, size_t key_len, const eb_header *headers, size_t n,
                         const void *payload, size_t len, size_t *out_len)
{
    size_t cap = 64 + key_len + len;
    for (size_t i = 0; i < n; i++)
        cap += 64 + strlen(headers[i].name) + headers[i].value_len;
    char *f = malloc(cap), *at = f;
    cr_assert_not_null(f);
    at += key ? sprintf(at, "K%zu:", key_len) : sprintf(at, "K-:");
    memcpy(at, key ? key : "", key_len);
    at += key_len;
    for (size_t i = 0; i < n; i++) {
        at += sprintf(at, "H%s:%zu:", headers[i].name, headers[i].value_len);
        memcpy(at, headers[i].value, headers[i].value_len);
        at += headers[i].value_len;
    }
    at += sprintf(at, "P%zu:", len);
    memcpy(at, payload, len);
    *out_len = (size_t)(at - f) + len;
    return f;
}

typedef struct sample {
    const char *key;
    size_t key_len;
    eb_header headers[3];
    size_t header_count;
    const char *payload;
    size_t len;
} sample;

static const sample SAMPLES[] = {
    {"\x00\xff", 2, {{"dup", "\xfe\x01", 2}, {"dup", "caf\xc3\xa9", 5}}, 2, "text \xc3\xa9", 7},
    {NULL, 0, {{"e", "", 0}}, 1, "\x80\x81\x00\x01 binary", 11},
    {"", 0, {{0}}, 0, "", 0},
};
enum { SAMPLE_COUNT = sizeof SAMPLES / sizeof *SAMPLES };

static bool matches_a_sample(const void *key, size_t key_len, const eb_header *headers,
                             size_t n, const void *payload, size_t len)
{
    size_t got_len, want_len;
    char *got = fingerprint(key, key_len, headers, n, payload, len, &got_len);
    bool found = false;
    for (size_t i = 0; i < SAMPLE_COUNT && !found; i++) {
        const sample *s = &SAMPLES[i];
        char *want = fingerprint(s->key, s->key_len, s->headers, s->header_count, s->payload,
                                 s->len, &want_len);
        found = got_len == want_len && memcmp(got, want, got_len) == 0;
        free(want);
    }
    free(got);
    return found;
}

Test(cli_sub, prints_json_lines_that_pub_publishes_again_byte_for_byte)
{
    const char *topic = pr_topic("sub-json"), *copy = pr_topic("sub-copy");
    for (size_t i = 0; i < SAMPLE_COUNT; i++)
        pr_publish(topic, SAMPLES[i].key, SAMPLES[i].key_len, SAMPLES[i].payload,
                   SAMPLES[i].len, SAMPLES[i].headers, SAMPLES[i].header_count);
    pr_args a;
    cli_child *c = run(pr_command(&a, "sub", topic, "-g", "g", "-n", "3", "--format", "json",
                                  NULL), NULL);
    cr_assert_eq(c->rc, 0, "%s", c->err.text);
    cr_assert_eq(cli_count_lines(&c->out), SAMPLE_COUNT, "%s", c->out.text);
    char *line = c->out.text;
    for (size_t i = 0; i < SAMPLE_COUNT; i++) {
        char *end = strchr(line, '\n');
        json_line back;
        char err[256];
        cr_assert_eq(json_line_decode(line, (size_t)(end - line), &back, err, sizeof err), 0,
                     "%s: %.*s", err, (int)(end - line), line);
        const json_message *m = &back.msg;
        cr_expect_str_eq(m->topic, topic);
        cr_expect(strstr(line, "\"attempt\":1}"), "%.*s", (int)(end - line), line);
        cr_expect(strstr(line, "\"id\":\"0@"), "%.*s", (int)(end - line), line);
        cr_expect(matches_a_sample(m->key, m->key_len, m->headers, m->header_count, m->payload,
                                   m->payload_len), "no such message was published: %.*s",
                  (int)(end - line), line);
        json_line_free(&back);
        line = end + 1;
    }
    /* sub | pub: the lines publish the same messages to another topic. */
    cli_child *p = run(pr_command(&a, "pub", copy, "--format", "json", NULL), c->out.text);
    cr_assert_eq(p->rc, 0, "%s", p->err.text);
    pr_received *r = pr_read_back(copy, SAMPLE_COUNT);
    for (size_t i = 0; i < r->n; i++) {
        const eb_msg *m = r->msgs[i];
        size_t n = eb_msg_header_count(m), key_len, len;
        eb_header headers[3];
        cr_assert_leq(n, 3);
        for (size_t h = 0; h < n; h++)
            eb_msg_header(m, h, &headers[h].name, &headers[h].value, &headers[h].value_len);
        const void *key = eb_msg_key(m, &key_len), *payload = eb_msg_payload(m, &len);
        cr_expect(matches_a_sample(key, key_len, headers, n, payload, len),
                  "message %zu read back differs from every one published", i);
    }
    pr_received_free(r);
    cli_child_free(p);
    cli_child_free(c);
}

Test(cli_sub, n_acknowledges_count_messages_and_leaves_the_rest_to_the_group)
{
    const char *topic = pr_topic("count");
    static const char *const texts[] = {"m1", "m2", "m3", "m4", "m5"};
    pr_publish_texts(topic, "k", 5, texts); /* one key: handled in this order */
    pr_args a;
    cli_child *c = run(pr_command(&a, "sub", topic, "-g", "g", "-n", "2", NULL), NULL);
    cr_assert_eq(c->rc, 0, "%s", c->err.text);
    cr_expect_str_eq(c->out.text, "m1\nm2\n");
    cli_child_free(c);
    /* m3.. reached the first member (Redis reads up to 512 at a time) but
     * were not written: not acknowledged, so the group gets them again. */
    c = run(pr_command(&a, "sub", topic, "-g", "g", "-n", "3", NULL), NULL);
    cr_assert_eq(c->rc, 0, "%s", c->err.text);
    cr_expect_str_eq(c->out.text, "m3\nm4\nm5\n");
    cli_child_free(c);
    cr_expect_eq(pending_count(topic, "g"), 0, "messages left unacknowledged");
}

Test(cli_sub, a_closed_pipe_stops_it_without_acknowledging_the_message)
{
    const char *topic = pr_topic("epipe");
    static const char *const first[] = {"m1"}, *const second[] = {"m2"}, *const third[] = {"m3"};
    pr_publish_texts(topic, "k", 1, first);
    pr_args a;
    cli_child *c = cli_start(pr_command(&a, "sub", topic, "-g", "g", NULL), NULL, 0);
    cr_assert(cli_read_until(c, 1, EXIT_WITHIN_MS), "no line; stderr: %s", c->err.text);
    cr_expect_str_eq(c->out.text, "m1\n");
    cli_close_stdout(c); /* as `sub | head -1` once head exits */
    pr_publish_texts(topic, "k", 1, second);
    cr_expect_eq(cli_finish(c, EXIT_WITHIN_MS), 1, "%s", c->err.text);
    cr_expect(strstr(c->err.text, "cannot write to stdout (Broken pipe) after 1 line; the "
                                  "message not written was left unacknowledged"),
              "%s", c->err.text);
    cli_child_free(c);
    pr_publish_texts(topic, "k", 1, third);
    c = run(pr_command(&a, "sub", topic, "-g", "g", "-n", "2", NULL), NULL);
    cr_assert_eq(c->rc, 0, "%s", c->err.text);
    /* m2 comes back (claimed from the member that left it), m1 does not;
     * a claimed entry may come after a newer one. */
    cr_expect(strcmp(c->out.text, "m2\nm3\n") == 0 || strcmp(c->out.text, "m3\nm2\n") == 0,
              "%s", c->out.text);
    cli_child_free(c);
}

Test(cli_sub, sigterm_closes_the_bus_cleanly_with_every_line_acknowledged)
{
    const char *topic = pr_topic("sigterm");
    static const char *const texts[] = {"a1", "a2", "a3"};
    pr_publish_texts(topic, "k", 3, texts);
    pr_args a;
    cli_child *c = cli_start(pr_command(&a, "sub", topic, "-g", "g", NULL), NULL, 0);
    cr_assert(cli_read_until(c, 3, EXIT_WITHIN_MS), "stdout: %s stderr: %s", c->out.text,
              c->err.text);
    kill(c->pid, SIGTERM);
    cr_expect_eq(cli_finish(c, EXIT_WITHIN_MS), 0, "%s", c->err.text);
    cr_expect_str_eq(c->out.text, "a1\na2\na3\n");
    cr_expect_eq(c->err.len, 0, "%s", c->err.text);
    cr_expect_eq(pending_count(topic, "g"), 0, "printed but not acknowledged");
    cli_child_free(c);
}

Test(cli_sub, a_second_signal_exits_at_once)
{
    const char *topic = pr_topic("second");
    size_t size = 200000; /* above a pipe's 64 KiB: the write blocks */
    char *big = malloc(size);
    cr_assert_not_null(big);
    memset(big, 'z', size);
    pr_publish(topic, "k", 1, big, size, NULL, 0);
    free(big);
    pr_args a;
    cli_child *c = cli_start(pr_command(&a, "sub", topic, "-g", "g", NULL), NULL, 0);
    /* One byte read: the handler is inside write(), and stays there. */
    struct pollfd p = {c->out_fd, POLLIN, 0};
    cr_assert_eq(poll(&p, 1, EXIT_WITHIN_MS), 1, "sub wrote nothing");
    char byte;
    cr_assert_eq(read(c->out_fd, &byte, 1), 1);
    /* The first closes and waits for that handler; the second ends it.
     * (Two signals of one kind could merge into one while pending.) */
    kill(c->pid, SIGINT);
    kill(c->pid, SIGTERM);
    /* Its stdout stays unread: the handler cannot finish meanwhile. */
    cr_expect_eq(cli_finish_reading(c, EXIT_WITHIN_MS, false), 1, "%s", c->err.text);
    cr_expect(strstr(c->err.text, "a second signal: exiting without closing the bus"), "%s",
              c->err.text);
    cli_child_free(c);
}
