/*
 * json_lines.c — test data for the pub/sub round trip (roundtrip.sh), in
 * the JSON line format of tools/json_line.h, and the check of what came
 * back. Built in the tree, not installed.
 *
 *   json_lines gen N SEED
 *       prints N lines: keys null, empty, binary and text (about 50
 *       distinct), headers none to four (duplicate names, binary, empty
 *       and NUL-holding values), payloads empty, binary, text and some
 *       long; each carries its sequence number (at the start of its
 *       payload, or in a "seq" header when the payload is empty). The
 *       same N and SEED print the same lines.
 *   json_lines compare [--ignore FIELD[,FIELD]...] SENT RECEIVED
 *       checks that RECEIVED holds the messages of SENT byte for byte
 *       (every field but those ignored: id, attempt, topic), in SENT's
 *       order among the messages of each key, and as a multiset overall;
 *       and that each field is in the form the format asks for (text
 *       when the bytes are valid UTF-8, else _b64). Prints the first
 *       difference; exit 0 same, 1 different, 2 bad usage or input.
 *
 * It reads and writes the format with jansson and the tool's base64
 * alone, not with the tool's json_line.c, so that the codec under test
 * is not also the judge.
 */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

/* ------------------------------------------------------------- bytes */

typedef struct bytes {
    unsigned char *p;
    size_t len, cap;
} bytes;

static void die(const char *what)
{
    fprintf(stderr, "json_lines: %s\n", what);
    exit(2);
}

static void put(bytes *b, const void *data, size_t len)
{
    if (b->cap - b->len < len + 1) {
        b->cap = (b->len + len + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            die("out of memory");
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = 0;
}

static void put_text(bytes *b, const char *s) { put(b, s, strlen(s)); }

/* A field's bytes with their length, so that concatenations compare
 * field by field. */
static void put_field(bytes *b, char tag, const void *data, size_t len)
{
    char head[32];
    int n = snprintf(head, sizeof head, "%c%zu:", tag, len);
    put(b, head, (size_t)n);
    put(b, data, len);
}

/* -------------------------------------------------------------- gen */

static uint64_t rng_state;

/** splitmix64: small, seeded, the same everywhere. */
static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned below(unsigned n) { return (unsigned)(rng() % n); }

/** obj[name] = bytes as text, or obj[name_b64] = base64 when not UTF-8. */
static void set_bytes(json_t *obj, const char *name, const void *data, size_t len)
{
    json_t *text = json_stringn(len ? data : "", len);
    if (text) {
        json_object_set_new(obj, name, text);
        return;
    }
    char *b64 = malloc(base64_encoded_len(len) + 1), field[32];
    if (!b64)
        die("out of memory");
    base64_encode(data, len, b64);
    snprintf(field, sizeof field, "%s_b64", name);
    json_object_set_new(obj, field, json_string(b64));
    free(b64);
}

static const char *const WORDS[] = {"alpha", "beta", "caf\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac",
                                    "\"quoted\"", "back\\slash", "tab\there", "new\nline",
                                    "nul\0byte", "\xf0\x9f\x98\x80", "", "x"};
static const size_t WORD_LENS[] = {5, 4, 5, 6, 8, 10, 8, 8, 8, 4, 0, 1};

static void random_binary(bytes *b, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)rng();
        put(b, &c, 1);
    }
}

static void random_text(bytes *b, size_t len)
{
    while (b->len < len) {
        unsigned w = below(sizeof WORDS / sizeof *WORDS);
        put(b, WORDS[w], WORD_LENS[w]);
        put(b, " ", 1);
    }
}

/** The key of a message: none, empty, one of 10 binary or 38 text keys. */
static void gen_key(json_t *o)
{
    static const char *const forms[] = {"user-%u", "\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87-%u",
                                        "\xe9\x8d\xb5%u", "q\"%u\\"};
    unsigned r = below(100);
    if (r < 10) {
        json_object_set_new(o, "key", json_null());
    } else if (r < 15) {
        set_bytes(o, "key", "", 0);
    } else if (r < 35) {
        unsigned k = below(10);
        unsigned char bin[4] = {0xff, (unsigned char)k, 0x00, (unsigned char)(0x80 + k)};
        set_bytes(o, "key", bin, sizeof bin);
    } else {
        unsigned k = below(38);
        char text[64];
        snprintf(text, sizeof text, forms[k % 4], k);
        set_bytes(o, "key", text, strlen(text));
    }
}

static void gen_headers(json_t *o, bool seq_header, long seq)
{
    json_t *list = json_array();
    unsigned n = below(5);
    static const char *const names[] = {"trace", "ctype", "\xc3\xbc" "ber", "x-bin"};
    for (unsigned i = 0; i < n; i++) {
        json_t *h = json_object();
        const char *name = i < 2 && n >= 3 ? "dup" : names[below(4)]; /* duplicates */
        set_bytes(h, "name", name, strlen(name));
        bytes v = {0};
        switch (below(4)) {
        case 0: put(&v, "", 0); break;                 /* empty */
        case 1: put(&v, "a\0b", 3); break;             /* text holding a NUL */
        case 2: put(&v, "\xfe", 1); random_binary(&v, below(40)); break;
        default: random_text(&v, below(60)); break;
        }
        set_bytes(h, "value", v.p, v.len);
        free(v.p);
        json_array_append_new(list, h);
    }
    if (seq_header) {
        char text[32];
        snprintf(text, sizeof text, "%ld", seq);
        json_t *h = json_object();
        set_bytes(h, "name", "seq", 3);
        set_bytes(h, "value", text, strlen(text));
        json_array_append_new(list, h);
    }
    json_object_set_new(o, "headers", list);
}

/** Payload: empty (10%), binary (25%), text, long (1 in 200). */
static bool gen_payload(bytes *p, long seq)
{
    unsigned r = below(200);
    char head[32];
    if (r < 20)
        return false;
    size_t len = r == 199 ? 20000 + below(180000) : below(300);
    if (r < 70) {
        snprintf(head, sizeof head, "\xfeseq=%ld;", seq); /* 0xfe: never UTF-8 */
        put_text(p, head);
        random_binary(p, len);
    } else {
        snprintf(head, sizeof head, "seq=%ld; ", seq);
        put_text(p, head);
        random_text(p, len);
    }
    return true;
}

static int gen(long n, uint64_t seed)
{
    rng_state = seed;
    for (long seq = 0; seq < n; seq++) {
        json_t *o = json_object();
        gen_key(o);
        bytes payload = {0};
        bool has_payload = gen_payload(&payload, seq);
        gen_headers(o, !has_payload, seq);
        set_bytes(o, "payload", payload.p, payload.len);
        free(payload.p);
        char *line = json_dumps(o, JSON_COMPACT);
        if (!line || puts(line) == EOF)
            die("cannot write a line");
        free(line);
        json_decref(o);
    }
    return fflush(stdout) == 0 ? 0 : 2;
}

/* ---------------------------------------------------------- compare */

enum { IGNORE_ID = 1, IGNORE_ATTEMPT = 2, IGNORE_TOPIC = 4 };

typedef struct record {
    long line;
    long seq;                    /* -1 when none found */
    bool has_key;
    bytes key;
    bytes all;                   /* every compared field, tagged */
} record;

typedef struct file {
    const char *path;
    record *r;
    size_t n;
} file;

static void bad_line(const file *f, long line, const char *why, const char *field)
{
    fprintf(stderr, "json_lines: %s:%ld: %s%s%s\n", f->path, line, field ? field : "",
            field ? ": " : "", why);
    exit(2);
}

/**
 * Reads field `name` (text) or `name`_b64 of o into *out; checks the form
 * (text exactly when the bytes are valid UTF-8). @returns whether present.
 */
static bool read_field(const file *f, long line, json_t *o, const char *name, bytes *out)
{
    char b64_name[32];
    snprintf(b64_name, sizeof b64_name, "%s_b64", name);
    json_t *text = json_object_get(o, name), *b64 = json_object_get(o, b64_name);
    if (text && b64)
        bad_line(f, line, "both the text and the _b64 form", name);
    if (text && json_is_string(text)) {
        put(out, json_string_value(text), json_string_length(text));
        return true;
    }
    if (text)
        bad_line(f, line, "not a string", name);
    if (!b64)
        return false;
    if (!json_is_string(b64))
        bad_line(f, line, "not a string", b64_name);
    size_t len = json_string_length(b64), n;
    unsigned char *dec = malloc(base64_decoded_max(len) + 1);
    char why[160];
    if (!dec || !base64_decode(json_string_value(b64), len, dec, &n, why, sizeof why))
        bad_line(f, line, dec ? why : "out of memory", b64_name);
    json_t *as_text = json_stringn((const char *)dec, n);
    put(out, dec, n);
    free(dec);
    if (as_text) {
        json_decref(as_text);
        bad_line(f, line, "valid UTF-8 written as base64 (the format writes it as text)",
                 b64_name);
    }
    return true;
}

static long seq_of(const bytes *payload, json_t *headers)
{
    const char *p = (const char *)payload->p;
    long seq;
    if (payload->len && (sscanf(p, "seq=%ld;", &seq) == 1 || sscanf(p, "\xfeseq=%ld;", &seq) == 1))
        return seq;
    size_t i;
    json_t *h;
    json_array_foreach(headers, i, h) {
        const char *name = json_string_value(json_object_get(h, "name"));
        json_t *value = json_object_get(h, "value");
        if (name && json_is_string(value) && strcmp(name, "seq") == 0)
            return strtol(json_string_value(value), NULL, 10);
    }
    return -1;
}

static void read_record(const file *f, long line, const char *text, size_t len, int ignore,
                        record *r)
{
    json_error_t err;
    json_t *o = json_loadb(text, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &err);
    if (!o || !json_is_object(o))
        bad_line(f, line, o ? "not an object" : err.text, NULL);
    *r = (record){.line = line};
    bytes field = {0};
    if (!(ignore & IGNORE_TOPIC) && read_field(f, line, o, "topic", &field))
        put_field(&r->all, 'T', field.p, field.len);
    json_t *key = json_object_get(o, "key");
    r->has_key = !(key && json_is_null(key)) && read_field(f, line, o, "key", &r->key);
    if (r->has_key)
        put_field(&r->all, 'K', r->key.p, r->key.len);
    else
        put_text(&r->all, "K-");
    json_t *headers = json_object_get(o, "headers");
    if (!json_is_array(headers))
        bad_line(f, line, "missing or not a list", "headers");
    size_t i;
    json_t *h;
    json_array_foreach(headers, i, h) {
        field.len = 0;
        if (!read_field(f, line, h, "name", &field))
            bad_line(f, line, "a header without a name", "headers");
        put_field(&r->all, 'N', field.p, field.len);
        field.len = 0;
        if (!read_field(f, line, h, "value", &field))
            bad_line(f, line, "a header without a value", "headers");
        put_field(&r->all, 'V', field.p, field.len);
    }
    field.len = 0;
    read_field(f, line, o, "payload", &field);
    put_field(&r->all, 'P', field.p, field.len);
    r->seq = seq_of(&field, headers);
    json_t *id = json_object_get(o, "id"), *attempt = json_object_get(o, "attempt");
    if (!(ignore & IGNORE_ID) && id)
        put_field(&r->all, 'I', json_string_value(id), strlen(json_string_value(id)));
    if (!(ignore & IGNORE_ATTEMPT) && attempt) {
        char n[32];
        snprintf(n, sizeof n, "%lld", (long long)json_integer_value(attempt));
        put_field(&r->all, 'A', n, strlen(n));
    }
    free(field.p);
    json_decref(o);
}

static void read_file(file *f, int ignore)
{
    FILE *in = fopen(f->path, "r");
    if (!in) {
        fprintf(stderr, "json_lines: %s: %s\n", f->path, strerror(errno));
        exit(2);
    }
    char *line = NULL;
    size_t cap = 0, room = 0;
    ssize_t len;
    for (long number = 1; (len = getline(&line, &cap, in)) >= 0; number++) {
        if (len > 0 && line[len - 1] == '\n')
            len--;
        if (f->n == room) {
            room = room ? room * 2 : 1024;
            f->r = realloc(f->r, room * sizeof *f->r);
            if (!f->r)
                die("out of memory");
        }
        read_record(f, number, line, (size_t)len, ignore, &f->r[f->n++]);
    }
    free(line);
    fclose(in);
}

static int cmp_bytes(const bytes *a, const bytes *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->p, b->p, n);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

/* Keyed records first, by key, then by line: each key's messages in file
 * order. Unkeyed ones last. */
static int by_key_then_line(const void *x, const void *y)
{
    const record *a = *(record *const *)x, *b = *(record *const *)y;
    if (a->has_key != b->has_key)
        return a->has_key ? -1 : 1;
    int c = a->has_key ? cmp_bytes(&a->key, &b->key) : 0;
    return c ? c : (a->line > b->line) - (a->line < b->line);
}

static int by_content(const void *x, const void *y)
{
    const record *a = *(record *const *)x, *b = *(record *const *)y;
    return cmp_bytes(&a->all, &b->all);
}

static record **sorted(const file *f, int (*order)(const void *, const void *))
{
    record **v = malloc((f->n ? f->n : 1) * sizeof *v);
    if (!v)
        die("out of memory");
    for (size_t i = 0; i < f->n; i++)
        v[i] = &f->r[i];
    qsort(v, f->n, sizeof *v, order);
    return v;
}

/** The key, printable: text as is (up to 40 bytes), others in hex. */
static const char *shown(const bytes *key)
{
    static char out[200];
    char *at = out;
    for (size_t i = 0; i < key->len && i < 40; i++)
        at += key->p[i] >= 0x20 && key->p[i] < 0x7f ? sprintf(at, "%c", key->p[i])
                                                      : sprintf(at, "\\x%02x", key->p[i]);
    *at = '\0';
    return out;
}

/** The end of the run of records of r[i]'s key in v (n records). */
static size_t key_run_end(record *const *v, size_t n, size_t i)
{
    size_t end = i + 1;
    while (end < n && v[end]->has_key && cmp_bytes(&v[end]->key, &v[i]->key) == 0)
        end++;
    return end;
}

/** In order per key: the messages of each key in SENT's order (unkeyed
 *  messages have no order to keep). */
static bool same_order_per_key(const file *sent, const file *got)
{
    record **s = sorted(sent, by_key_then_line), **g = sorted(got, by_key_then_line);
    size_t i = 0, j = 0, keys = 0, keyed = 0;
    bool ok = true;
    while (ok && ((i < sent->n && s[i]->has_key) || (j < got->n && g[j]->has_key))) {
        bool in_sent = i < sent->n && s[i]->has_key, in_got = j < got->n && g[j]->has_key;
        int c = !in_sent ? 1 : !in_got ? -1 : cmp_bytes(&s[i]->key, &g[j]->key);
        size_t s_end = c <= 0 ? key_run_end(s, sent->n, i) : i;
        size_t g_end = c >= 0 ? key_run_end(g, got->n, j) : j;
        const record *first = c <= 0 ? s[i] : g[j];
        size_t k = 0;
        while (i + k < s_end && j + k < g_end && cmp_bytes(&s[i + k]->all, &g[j + k]->all) == 0)
            k++;
        if (k < s_end - i || k < g_end - j) {
            printf("json_lines: key '%s': %zu messages sent, %zu received; they differ from "
                   "the key's message %zu on: ", shown(&first->key), s_end - i, g_end - j, k + 1);
            if (i + k < s_end)
                printf("%s line %ld (seq %ld)", sent->path, s[i + k]->line, s[i + k]->seq);
            else
                printf("nothing more sent");
            if (j + k < g_end)
                printf(" against %s line %ld (seq %ld)\n", got->path, g[j + k]->line,
                       g[j + k]->seq);
            else
                printf(" against nothing more received\n");
            ok = false;
        }
        keys++;
        keyed += s_end - i;
        i = s_end;
        j = g_end;
    }
    if (ok)
        printf("json_lines: in order per key: %zu keyed messages under %zu keys\n", keyed, keys);
    free(s);
    free(g);
    return ok;
}

/** As a multiset: every message as often in both. */
static bool same_multiset(const file *sent, const file *got)
{
    record **s = sorted(sent, by_content), **g = sorted(got, by_content);
    size_t i = 0, j = 0;
    bool ok = true;
    while (ok && (i < sent->n || j < got->n)) {
        int c = i == sent->n ? 1 : j == got->n ? -1 : cmp_bytes(&s[i]->all, &g[j]->all);
        if (c == 0) {
            i++;
            j++;
            continue;
        }
        const record *r = c < 0 ? s[i] : g[j];
        printf("json_lines: %s line %ld (seq %ld) %s\n", c < 0 ? sent->path : got->path,
               r->line, r->seq,
               c < 0 ? "was not received (or received changed)" : "was not sent (a duplicate, "
                                                                   "or changed on its way)");
        ok = false;
    }
    if (ok)
        printf("json_lines: as a multiset: %zu messages, every field byte for byte\n", i);
    free(s);
    free(g);
    return ok;
}

static int parse_ignore(const char *list)
{
    int ignore = 0;
    char *copy = strdup(list), *save = NULL;
    for (char *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
        int bit = strcmp(f, "id") == 0        ? IGNORE_ID
                  : strcmp(f, "attempt") == 0 ? IGNORE_ATTEMPT
                  : strcmp(f, "topic") == 0   ? IGNORE_TOPIC
                                              : 0;
        if (!bit) {
            fprintf(stderr, "json_lines: --ignore takes id, attempt, topic; not '%s'\n", f);
            exit(2);
        }
        ignore |= bit;
    }
    free(copy);
    return ignore;
}

static void free_file(file *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->r[i].key.p);
        free(f->r[i].all.p);
    }
    free(f->r);
}

static int compare(int argc, char **argv)
{
    int ignore = 0, i = 2;
    if (i < argc && strcmp(argv[i], "--ignore") == 0 && i + 1 < argc) {
        ignore = parse_ignore(argv[i + 1]);
        i += 2;
    }
    if (argc - i != 2)
        die("usage: json_lines compare [--ignore id,attempt,topic] SENT RECEIVED");
    file sent = {.path = argv[i]}, got = {.path = argv[i + 1]};
    read_file(&sent, ignore);
    read_file(&got, ignore);
    printf("json_lines: %zu sent, %zu received\n", sent.n, got.n);
    bool ok = same_order_per_key(&sent, &got);
    ok = same_multiset(&sent, &got) && ok;
    free_file(&sent);
    free_file(&got);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "gen") == 0) {
        char *end1, *end2;
        long n = strtol(argv[2], &end1, 10);
        unsigned long long seed = strtoull(argv[3], &end2, 10);
        if (*end1 || *end2 || n < 0)
            die("usage: json_lines gen N SEED (whole numbers)");
        return gen(n, seed);
    }
    if (argc >= 2 && strcmp(argv[1], "compare") == 0)
        return compare(argc, argv);
    die("usage: json_lines gen N SEED | json_lines compare [--ignore id,attempt,topic] SENT "
        "RECEIVED");
    return 2;
}
