/*
 * test_kafka_interop.c — eventbus and kcat 1.7.1 against the real broker
 * (EB_KAFKA_BOOTSTRAP), in both directions:
 *   - kcat produces (a key, an empty key, no key in two ways, duplicate
 *     headers, a header without a value, a binary value read from a file)
 *     and an eventbus group member consumes every message with its key,
 *     headers and payload intact;
 *   - eventbus publishes the same kinds of messages and `kcat -C` reads
 *     them back, keys (length -1 for none), headers and payloads byte-exact.
 *
 * How kcat 1.7.1 sends a NULL key: without -k/-K every message has none;
 * with -K <delimiter>, a line without the delimiter has none, and with -Z
 * as well an empty key ("<delimiter>value") is sent as none. Without -Z an
 * empty key stays an empty (non-NULL) key.
 */
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kafka_helpers.h"

/* ------------------------------------------------------------- received */

#define MAX_RECEIVED 32

typedef struct received {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    eb_msg *msgs[MAX_RECEIVED];
    size_t n;
} received;

static received *received_new(void)
{
    received *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &attr);
    pthread_condattr_destroy(&attr);
    return r;
}

static void received_free(received *r)
{
    for (size_t i = 0; i < r->n; i++)
        eb_msg_destroy(r->msgs[i]);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static eb_result keep(const eb_msg *msg, void *opaque)
{
    received *r = opaque;
    eb_msg *copy = NULL;
    if (eb_msg_copy(msg, &copy) != 0)
        return EB_RETRY; /* out of memory; no criterion assertion off the test's thread */
    pthread_mutex_lock(&r->mu);
    if (r->n < MAX_RECEIVED)
        r->msgs[r->n++] = copy;
    else
        eb_msg_destroy(copy);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return EB_ACK;
}

static size_t received_count(received *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/** The message whose payload is `payload` (len bytes), or fails. */
static const eb_msg *find_payload(received *r, const void *payload, size_t len)
{
    for (size_t i = 0; i < r->n; i++) {
        size_t plen;
        const void *p = eb_msg_payload(r->msgs[i], &plen);
        if (plen == len && memcmp(p, payload, len) == 0)
            return r->msgs[i];
    }
    cr_assert_fail("no message with payload '%.*s' (%zu bytes) among %zu", (int)len,
                   (const char *)payload, len, r->n);
    return NULL;
}

static void expect_key(const eb_msg *m, const char *key, size_t key_len, const char *what)
{
    size_t len = 99;
    const void *k = eb_msg_key(m, &len);
    if (!key) {
        cr_expect_null(k, "%s: expected no key, got %zu bytes", what, len);
        return;
    }
    cr_assert_not_null(k, "%s: the key came back as no key", what);
    cr_expect_eq(len, key_len, "%s: key length", what);
    if (len == key_len)
        cr_expect_eq(memcmp(k, key, key_len), 0, "%s: key bytes", what);
}

typedef struct header_spec {
    const char *name;
    const char *value;
    size_t len;
} header_spec;

static void expect_headers(const eb_msg *m, const header_spec *want, size_t n, const char *what)
{
    cr_assert_eq(eb_msg_header_count(m), n, "%s: %zu headers, expected %zu", what,
                 eb_msg_header_count(m), n);
    for (size_t i = 0; i < n; i++) {
        const char *name;
        const void *value;
        size_t len;
        cr_assert_eq(eb_msg_header(m, i, &name, &value, &len), 0);
        cr_expect_str_eq(name, want[i].name, "%s: header %zu", what, i);
        cr_expect_eq(len, want[i].len, "%s: header %zu (%s) length", what, i, name);
        cr_expect(len == 0 || value != NULL, "%s: header %zu", what, i);
        if (len == want[i].len && len)
            cr_expect_eq(memcmp(value, want[i].value, len), 0, "%s: header %zu bytes", what, i);
    }
}

/* ----------------------------------------------------------- kcat → eb */

static char tmp_dir[] = "/tmp/eb-interop-XXXXXX";

static void path_in_tmp(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", tmp_dir, name);
}

static void write_file(const char *path, const void *bytes, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(bytes, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

static void kcat_produce(const char *const *argv, const char *stdin_path)
{
    int rc = kt_run(argv, stdin_path, NULL, 30);
    cr_assert_eq(rc, 0, "kcat -P exited %d", rc);
}

/* A value with every byte (NUL, newline, 0xff...), sent from a file: kcat
 * sends each file named on its command line as one message. */
static unsigned char every_byte[256];

static void kcat_produces(const char *bootstrap, const char *topic)
{
    char lines[256], binary[256];
    path_in_tmp(lines, sizeof lines, "lines");
    path_in_tmp(binary, sizeof binary, "binary");
    /* -K '\t': "key\tvalue"; an empty key; a line without the delimiter. */
    const char text[] = "key-1\tvalue one\n"
                        "\tempty key\n"
                        "no delimiter, no key\n";
    write_file(lines, text, sizeof text - 1);
    const char *delimited[] = {"kcat", "-P", "-q", "-b", bootstrap, "-t", topic, "-K", "\t",
                               "-H", "name=value", "-H", "name=value2",
                               "-H", "trace=abc=def", "-H", "novalue", NULL};
    kcat_produce(delimited, lines);

    /* -Z: the empty key of "\tvalue" is sent as no key. */
    const char ztext[] = "\tnull key by -Z\n";
    write_file(lines, ztext, sizeof ztext - 1);
    const char *zkey[] = {"kcat", "-P", "-q", "-b", bootstrap, "-t", topic, "-K", "\t", "-Z",
                          NULL};
    kcat_produce(zkey, lines);

    for (int i = 0; i < 256; i++)
        every_byte[i] = (unsigned char)i;
    write_file(binary, every_byte, sizeof every_byte);
    const char *files[] = {"kcat", "-P", "-q", "-b", bootstrap, "-t", topic, "-k", "bin\x01\xff",
                           "-H", "raw=\x01\x7f\xfe", binary, NULL};
    kcat_produce(files, NULL);
}

static bool received_at_least(received *r, size_t n, int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    pthread_mutex_lock(&r->mu);
    while (r->n < n && pthread_cond_timedwait(&r->cv, &r->mu, &deadline) == 0)
        ;
    bool enough = r->n >= n;
    pthread_mutex_unlock(&r->mu);
    return enough;
}

static void check_kcat_messages(received *r)
{
    const header_spec line_headers[] = {
        {"name", "value", 5}, {"name", "value2", 6}, {"trace", "abc=def", 7}, {"novalue", "", 0}};
    const eb_msg *m = find_payload(r, "value one", 9);
    expect_key(m, "key-1", 5, "keyed line");
    expect_headers(m, line_headers, 4, "keyed line");
    const void *v;
    size_t len;
    cr_expect_eq(eb_msg_header_find(m, "name", &v, &len), 0);
    cr_expect(len == 6 && memcmp(v, "value2", 6) == 0, "header_find gives the last 'name'");

    m = find_payload(r, "empty key", 9);
    expect_key(m, "", 0, "empty key");
    expect_headers(m, line_headers, 4, "empty key");

    m = find_payload(r, "no delimiter, no key", 20);
    expect_key(m, NULL, 0, "line without the delimiter");

    m = find_payload(r, "null key by -Z", 14);
    expect_key(m, NULL, 0, "-Z empty key");
    cr_expect_eq(eb_msg_header_count(m), 0);

    m = find_payload(r, every_byte, sizeof every_byte);
    expect_key(m, "bin\x01\xff", 5, "binary value");
    const header_spec raw[] = {{"raw", "\x01\x7f\xfe", 3}};
    expect_headers(m, raw, 1, "binary value");
}

Test(kafka_interop, kcat_produces_eventbus_consumes, .timeout = 120)
{
    const char *bootstrap = kt_real_broker();
    cr_assert_not_null(mkdtemp(tmp_dir));
    char topic[128], group[128];
    kt_unique(topic, sizeof topic, "interop-in");
    kt_unique(group, sizeof group, "interop-in-g");
    /* The subscription creates the topic (and its DLQ topic). */
    const kt_setting s[] = {{"kafka.topic.partitions", "2"}, {NULL, NULL}};
    eb_bus *bus = kt_open(bootstrap, s, NULL, NULL);
    received *r = received_new();
    eb_sub *sub = kt_subscribe_ready(bus, topic, group, keep, r, 30000);

    kcat_produces(bootstrap, topic);
    cr_assert(received_at_least(r, 5, 30000), "eventbus received %zu of 5 messages",
              received_count(r));
    check_kcat_messages(r);

    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    cr_expect_eq(received_count(r), 5, "received more than kcat produced");
    eb_sub_destroy(sub);
    eb_bus_destroy(bus);
    received_free(r);
    char path[256];
    path_in_tmp(path, sizeof path, "lines");
    unlink(path);
    path_in_tmp(path, sizeof path, "binary");
    unlink(path);
    rmdir(tmp_dir);
}

/* ----------------------------------------------------------- eb → kcat */

typedef struct outgoing_spec {
    const char *key; /* NULL: no key */
    size_t key_len;
    const char *payload;
    size_t payload_len;
    const eb_header *headers;
    size_t header_count;
    const char *json_key;     /* the key as kcat -J prints it */
    const char *json_headers; /* the headers as kcat -J prints them; NULL: none */
} outgoing_spec;

static const eb_header dup_headers[] = {{"a", "1", 1}, {"b", "two", 3}, {"a", "3", 1}};
static const eb_header empty_header[] = {{"empty", NULL, 0}};
static const char binary_key[] = {0, 1, (char)0xff};
static const char binary_header_value[] = {0, (char)0xfe};
static const eb_header binary_header[] = {{"bin", binary_header_value, 2}};

#define N_OUT 4
static outgoing_spec out_specs[N_OUT];

/* kcat -J escapes control bytes as \u00XX and copies other bytes as they
 * are. */
static void build_out_specs(void)
{
    for (int i = 0; i < 256; i++)
        every_byte[i] = (unsigned char)i;
    out_specs[0] = (outgoing_spec){"k1", 2, "hello", 5, dup_headers, 3, "\"key\":\"k1\"",
                                   "\"headers\":[\"a\",\"1\",\"b\",\"two\",\"a\",\"3\"]"};
    out_specs[1] = (outgoing_spec){NULL, 0, "no key", 6, empty_header, 1, "\"key\":null",
                                   "\"headers\":[\"empty\",\"\"]"};
    out_specs[2] = (outgoing_spec){"", 0, "", 0, NULL, 0, "\"key\":\"\"", NULL};
    out_specs[3] = (outgoing_spec){binary_key, 3, (const char *)every_byte, 256, binary_header, 1,
                                   "\"key\":\"\\u0000\\u0001\xff\"",
                                   "\"headers\":[\"bin\",\"\\u0000\xfe\"]"};
}

static void on_published(int status, const char *id, void *opaque)
{
    (void)id;
    int *slot = opaque;
    __atomic_store_n(slot, status == 0 ? 1 : status, __ATOMIC_SEQ_CST);
}


/*
 * kcat's records, with the format "@@%K %S\n%k%s\n": key length (-1: none)
 * and payload length, then the raw key and payload, so binary bytes cannot
 * be mistaken for separators. (%h prints header values only up to a NUL:
 * headers are checked in kcat's JSON output instead.)
 */
typedef struct kcat_record {
    long key_len, payload_len;
    const char *key, *payload;
} kcat_record;

static size_t parse_kcat(const char *buf, size_t len, kcat_record *recs, size_t max)
{
    size_t n = 0, at = 0;
    while (at < len) {
        cr_assert(n < max, "kcat printed more than %zu records", max);
        cr_assert(len - at > 2 && memcmp(buf + at, "@@", 2) == 0,
                  "kcat output at byte %zu: %.40s", at, buf + at);
        kcat_record *r = &recs[n++];
        int used = 0;
        cr_assert_eq(sscanf(buf + at + 2, "%ld %ld%n", &r->key_len, &r->payload_len, &used), 2);
        at += 2 + (size_t)used;
        cr_assert(at < len && buf[at] == '\n', "kcat record %zu: bad first line", n);
        at++;
        r->key = buf + at;
        at += r->key_len > 0 ? (size_t)r->key_len : 0;
        r->payload = buf + at;
        at += (size_t)r->payload_len;
        cr_assert(at < len && buf[at] == '\n', "kcat record %zu: no newline after the payload",
                  n);
        at++;
    }
    return n;
}

/** Runs kcat -C over the whole topic with `format` (NULL: -J). @returns
 *  its output (free it). */
static char *kcat_consume(const char *bootstrap, const char *topic, const char *format,
                          size_t *len)
{
    char out_path[] = "/tmp/eb-interop-kcat-XXXXXX";
    int fd = mkstemp(out_path);
    cr_assert(fd >= 0);
    close(fd);
    const char *argv[] = {"kcat", "-C", "-q", "-e", "-o", "beginning", "-b", bootstrap,
                          "-t", topic, format ? "-f" : "-J", format, NULL};
    int rc = kt_run(argv, NULL, out_path, 60);
    char *buf = kt_read_file(out_path, len);
    unlink(out_path);
    cr_assert_eq(rc, 0, "kcat -C exited %d", rc);
    return buf;
}

static void check_raw_records(const char *buf, size_t len)
{
    kcat_record recs[8];
    size_t n = parse_kcat(buf, len, recs, 8);
    cr_expect_eq(n, N_OUT, "kcat read %zu records", n);
    bool seen[N_OUT] = {false};
    for (size_t j = 0; j < n; j++) {
        for (int i = 0; i < N_OUT; i++) {
            const outgoing_spec *s = &out_specs[i];
            long key_len = s->key ? (long)s->key_len : -1;
            if (recs[j].payload_len == (long)s->payload_len &&
                memcmp(recs[j].payload, s->payload, s->payload_len) == 0 &&
                recs[j].key_len == key_len &&
                (key_len <= 0 || memcmp(recs[j].key, s->key, s->key_len) == 0)) {
                cr_expect_not(seen[i], "message %d read twice", i);
                seen[i] = true;
            }
        }
    }
    for (int i = 0; i < N_OUT; i++)
        cr_expect(seen[i], "kcat did not read message %d (key and payload byte-exact)", i);
}

/** In kcat's JSON lines, the line of each message (found by its key) has
 *  exactly its headers, in order, duplicates and binary bytes included. */
static void check_json_headers(const char *buf, size_t len)
{
    for (int i = 0; i < N_OUT; i++) {
        const outgoing_spec *s = &out_specs[i];
        const char *line = buf, *found = NULL;
        while (line < buf + len && !found) {
            const char *nl = memchr(line, '\n', (size_t)(buf + len - line));
            size_t line_len = nl ? (size_t)(nl - line) : (size_t)(buf + len - line);
            if (memmem(line, line_len, s->json_key, strlen(s->json_key))) {
                found = line;
                if (s->json_headers)
                    cr_expect_not_null(memmem(line, line_len, s->json_headers,
                                              strlen(s->json_headers)),
                                       "message %d: headers: %.*s", i, (int)line_len, line);
                else
                    cr_expect_null(memmem(line, line_len, "\"headers\"", 9),
                                   "message %d has headers: %.*s", i, (int)line_len, line);
            }
            line = nl ? nl + 1 : buf + len;
        }
        cr_expect_not_null(found, "no JSON line with %s", s->json_key);
    }
}

Test(kafka_interop, eventbus_publishes_kcat_consumes, .timeout = 120)
{
    const char *bootstrap = kt_real_broker();
    build_out_specs();
    char topic[128];
    kt_unique(topic, sizeof topic, "interop-out");
    kt_create_topic(bootstrap, topic, 2);
    eb_bus *bus = kt_open(bootstrap, NULL, NULL, NULL);
    int status[N_OUT] = {0};
    for (int i = 0; i < N_OUT; i++) {
        const outgoing_spec *s = &out_specs[i];
        eb_outgoing m = {.topic = topic, .key = s->key, .key_len = s->key_len,
                         .payload = s->payload, .payload_len = s->payload_len,
                         .headers = s->headers, .header_count = s->header_count};
        cr_assert_eq(eb_publish(bus, &m, on_published, &status[i]), 0);
    }
    cr_assert_eq(eb_flush(bus, 30000), 0);
    for (int i = 0; i < N_OUT; i++)
        cr_assert_eq(__atomic_load_n(&status[i], __ATOMIC_SEQ_CST), 1,
                     "message %d: delivery status %s", i, eb_err_name(status[i]));

    size_t len;
    char *buf = kcat_consume(bootstrap, topic, "@@%K %S\\n%k%s\\n", &len);
    check_raw_records(buf, len);
    free(buf);
    buf = kcat_consume(bootstrap, topic, NULL, &len);
    check_json_headers(buf, len);
    free(buf);
    cr_expect_eq(eb_bus_close(bus, 10000), 0);
    eb_bus_destroy(bus);
}
