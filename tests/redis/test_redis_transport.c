/*
 * test_redis_transport.c — the Redis transport through the public API only
 * (eb_config_set, eb_bus_open, eb_subscribe, eb_publish, eb_bus_stats,
 * eb_bus_health, eb_bus_close/destroy) against the real redis-server of
 * tests/servers/redis.sh ($EB_REDIS_URL; skipped without it). Direct
 * commands (XADD, XRANGE, XPENDING, XINFO) go through rd_conn to look at
 * what the transport left on the server.
 *
 * Its divisions, in order:
 *   - bad input at open: a wrong password (never shown), the ACL user,
 *     a missing server, a server that never answers, rediss://, the claim
 *     idle time, BLOCK against the command timeout, group mode settings,
 *     a misspelt key;
 *   - interop both ways with the entry layout of plugins/redis/fields.h:
 *     entries written by XADD are consumed byte-exact; messages published
 *     read back with XRANGE field by field;
 *   - stats and health; a second bus under the same redis.consumer takes
 *     over what the first left unacknowledged at close, and a member
 *     restarted without leaving (a crash) reads its own pending entries
 *     at once, not after the claim idle time;
 *   - lifecycle: open, subscribe, publish, handle, close, destroy, twenty
 *     times, threads back every time;
 *   - an anonymous member: later messages only, no group left behind.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bus_stat.h"
#include "eventbus/eventbus.h"
#include "proc_threads.h"
#include "redis_test.h"
#include "test_wait.h"

/* ------------------------------------------------------------ the suite */

enum { MAX_STREAMS = 8 };

static rd_url url;            /* the server's, parsed */
static const char *url_text;  /* $EB_REDIS_URL */
static rd_conn conn;          /* the test's own connection */
static char streams[MAX_STREAMS][96];
static int n_streams;

static void suite_init(void)
{
    url = rt_server_url();
    url_text = getenv("EB_REDIS_URL");
    rt_connect(&conn, &url);
}

static void suite_fini(void)
{
    for (int i = 0; i < n_streams; i++)
        rt_delete(&conn, streams[i]);
    rd_conn_close(&conn);
}

TestSuite(redis_transport, .init = suite_init, .fini = suite_fini, .timeout = 30);

/** A stream of this test, deleted when the test ends. */
static const char *new_stream(const char *prefix)
{
    cr_assert_lt(n_streams, MAX_STREAMS);
    char *s = streams[n_streams++];
    rt_stream_name(s, sizeof streams[0], prefix);
    return s;
}

/* --------------------------------------------------------------- buses */

typedef struct setting {
    const char *key, *value;
} setting;

/** eb_bus_open of transport=redis at the test server, then `n` settings
 *  (later ones win, so a setting may replace redis.url). Each setting is
 *  accepted by eb_config_set (transport keys are checked at open). */
static int try_open(const setting *s, size_t n, eb_bus **out, char *err, size_t err_size)
{
    eb_config *cfg = eb_config_new();
    cr_assert_not_null(cfg);
    cr_assert_eq(eb_config_set(cfg, "transport", "redis", err, err_size), 0, "%s", err);
    cr_assert_eq(eb_config_set(cfg, "redis.url", url_text, err, err_size), 0, "%s", err);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(eb_config_set(cfg, s[i].key, s[i].value, err, err_size), 0,
                     "eb_config_set(%s, %s): %s", s[i].key, s[i].value, err);
    *out = NULL;
    int rc = eb_bus_open(cfg, out, err, err_size);
    eb_config_destroy(cfg);
    return rc;
}

static eb_bus *open_bus(const setting *s, size_t n)
{
    char err[1024];
    eb_bus *bus;
    int rc = try_open(s, n, &bus, err, sizeof err);
    cr_assert_eq(rc, 0, "eb_bus_open: %s: %s", eb_err_name(rc), err);
    cr_assert_str_eq(eb_bus_transport(bus), "redis");
    return bus;
}

/** eb_bus_open must fail with `want`; @returns its sentence in err. */
static void open_fails(const setting *s, size_t n, int want, char *err, size_t err_size)
{
    eb_bus *bus;
    int rc = try_open(s, n, &bus, err, err_size);
    if (rc == 0)
        eb_bus_destroy(bus);
    cr_assert_eq(rc, want, "eb_bus_open returned %s, expected %s (%s)", eb_err_name(rc),
                 eb_err_name(want), err);
    cr_assert_null(bus);
    cr_assert_neq(err[0], '\0', "no sentence");
}

static eb_sub *subscribe_ready(eb_bus *bus, const char *topic, const char *group, eb_handler h,
                               void *opaque)
{
    char err[1024];
    eb_sub *sub = NULL;
    int rc = eb_subscribe(bus, topic, group, h, opaque, NULL, &sub, err, sizeof err);
    cr_assert_eq(rc, 0, "eb_subscribe: %s: %s", eb_err_name(rc), err);
    cr_assert_eq(eb_sub_wait_ready(sub, 10000), 0, "the subscription was not ready in 10 s");
    return sub;
}

static void publish(eb_bus *bus, const char *topic, const void *key, size_t key_len,
                    const void *payload, size_t payload_len, const eb_header *headers,
                    size_t header_count, eb_delivery_cb cb, void *opaque)
{
    eb_outgoing m = {.topic = topic, .key = key, .key_len = key_len, .payload = payload,
                     .payload_len = payload_len, .headers = headers,
                     .header_count = header_count};
    int rc = eb_publish(bus, &m, cb, opaque);
    cr_assert_eq(rc, 0, "eb_publish: %s", eb_err_name(rc));
}

static void publish_text(eb_bus *bus, const char *topic, const char *key, const char *payload)
{
    publish(bus, topic, key, key ? strlen(key) : 0, payload, strlen(payload), NULL, 0, NULL,
            NULL);
}

/* ------------------------------------------------------------ received */

enum { MAX_RECEIVED = 64 };

/** Copies of the messages a handler got, for the test's thread to check
 *  (no criterion assertion runs on a bus thread). */
typedef struct received {
    pthread_mutex_t mu;
    eb_msg *msgs[MAX_RECEIVED];
    size_t n;
    atomic_int calls;
    const char *retry_payload; /* RETRY this payload's first delivery */
    bool retried;
} received;

static void received_init(received *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
}

static void received_free(received *r)
{
    for (size_t i = 0; i < r->n; i++)
        eb_msg_destroy(r->msgs[i]);
    pthread_mutex_destroy(&r->mu);
}

static eb_result keep(const eb_msg *msg, void *opaque)
{
    received *r = opaque;
    atomic_fetch_add(&r->calls, 1);
    size_t len;
    const char *p = eb_msg_payload(msg, &len);
    pthread_mutex_lock(&r->mu);
    if (r->retry_payload && !r->retried && len == strlen(r->retry_payload) &&
        memcmp(p, r->retry_payload, len) == 0) {
        r->retried = true;
        pthread_mutex_unlock(&r->mu);
        return EB_RETRY;
    }
    eb_msg *copy = NULL;
    if (eb_msg_copy(msg, &copy) != 0) {
        pthread_mutex_unlock(&r->mu);
        return EB_RETRY; /* out of memory: no assertion off the test's thread */
    }
    if (r->n < MAX_RECEIVED)
        r->msgs[r->n++] = copy;
    else
        eb_msg_destroy(copy);
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

typedef struct count_wait {
    received *r;
    size_t n;
} count_wait;

static bool has_received(void *arg)
{
    count_wait *w = arg;
    return received_count(w->r) >= w->n;
}

static void wait_received(received *r, size_t n, int timeout_ms)
{
    count_wait w = {r, n};
    cr_assert(test_wait_for(has_received, &w, timeout_ms), "received %zu of %zu messages",
              received_count(r), n);
}

/** The message whose payload is `payload` (len bytes), or the test fails. */
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
    cr_expect_eq(len, key_len, "%s: key length %zu, expected %zu", what, len, key_len);
    if (len == key_len && len)
        cr_expect_eq(memcmp(k, key, key_len), 0, "%s: key bytes", what);
}

typedef struct bytes {
    const char *p;
    size_t len;
} bytes;

#define TEXT(s) ((bytes){(s), sizeof(s) - 1})

typedef struct header_spec {
    const char *name;
    bytes value;
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
        cr_expect_eq(len, want[i].value.len, "%s: header %zu (%s) length", what, i, name);
        if (len == want[i].value.len && len)
            cr_expect_eq(memcmp(value, want[i].value.p, len), 0, "%s: header %zu bytes", what,
                         i);
    }
}

/* --------------------------------------------------- direct commands */

/** XADD of binary fields (pairs of field, value); @returns the entry id. */
static void xadd(const char *stream, const bytes *fields, size_t n, char *id, size_t id_size)
{
    const char *argv[32];
    size_t lens[32];
    cr_assert_leq(n + 3, 32);
    argv[0] = "XADD", lens[0] = 4;
    argv[1] = stream, lens[1] = strlen(stream);
    argv[2] = "*", lens[2] = 1;
    for (size_t i = 0; i < n; i++)
        argv[3 + i] = fields[i].p, lens[3 + i] = fields[i].len;
    redisReply *r = rt_run_lens(&conn, (int)(n + 3), argv, lens);
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    snprintf(id, id_size, "%s", r->str);
    freeReplyObject(r);
}

/** The pending count of `group` on `stream` (XPENDING's summary). */
static long long pending_count(const char *stream, const char *group)
{
    const char *argv[] = {"XPENDING", stream, group};
    redisReply *r = rt_run(&conn, 3, argv);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    cr_assert_geq(r->elements, 1);
    long long n = r->element[0]->integer;
    freeReplyObject(r);
    return n;
}

typedef struct pending_wait {
    const char *stream, *group;
} pending_wait;

static bool nothing_pending(void *arg)
{
    pending_wait *w = arg;
    return pending_count(w->stream, w->group) == 0;
}

/** The number of groups (XINFO GROUPS) or of a group's consumers (XINFO
 *  CONSUMERS); a missing stream has none. */
static size_t xinfo_count(const char *what, const char *stream, const char *group)
{
    const char *argv[] = {"XINFO", what, stream, group};
    char err[512];
    redisReply *r = rd_conn_command(&conn, group ? 4 : 3, argv, NULL, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "no such key")) {
        freeReplyObject(r);
        return 0;
    }
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY, "XINFO %s: %s", what,
                 r->type == REDIS_REPLY_ERROR ? r->str : "not an array");
    size_t n = r->elements;
    freeReplyObject(r);
    return n;
}

/* ========================================================= bad input */

Test(redis_transport, a_wrong_password_fails_open_naming_the_url_without_the_password)
{
    const char *user = getenv("EB_REDIS_TEST_USER");
    cr_assert_not_null(user, "EB_REDIS_TEST_USER is not set (tests/servers/redis.sh start)");
    const char *wrong = "Not-The-Secret-4711";
    char bad_url[512], shown[512];
    snprintf(bad_url, sizeof bad_url, "redis://%s:%s@%s:%d", user, wrong, url.host, url.port);
    snprintf(shown, sizeof shown, "redis://%s:***@%s:%d", user, url.host, url.port);
    const setting s[] = {{"redis.url", bad_url}};
    char err[1024] = "";
    open_fails(s, 1, EB_ERR_TRANSPORT, err, sizeof err);
    cr_expect(strstr(err, shown), "the error does not name %s: %s", shown, err);
    cr_expect(strstr(err, "AUTH"), "the error does not say AUTH failed: %s", err);
    cr_expect_null(strstr(err, wrong), "the error shows the password: %s", err);
}

Test(redis_transport, the_acl_user_with_its_password_publishes_and_consumes)
{
    const char *user = getenv("EB_REDIS_TEST_USER");
    const char *password = getenv("EB_REDIS_TEST_PASSWORD");
    cr_assert(user && password, "EB_REDIS_TEST_USER/PASSWORD are not set");
    const char *stream = new_stream("acl");
    char acl_url[512];
    snprintf(acl_url, sizeof acl_url, "redis://%s:%s@%s:%d", user, password, url.host, url.port);
    const setting s[] = {{"redis.url", acl_url}};
    eb_bus *bus = open_bus(s, 1);
    received r;
    received_init(&r);
    eb_sub *sub = subscribe_ready(bus, stream, "g", keep, &r);
    publish_text(bus, stream, "k", "through the ACL user");
    wait_received(&r, 1, 10000);
    find_payload(&r, "through the ACL user", 20);

    /* The bus's connections logged in as that user... */
    const char *list[] = {"CLIENT", "LIST"};
    redisReply *clients = rt_run(&conn, 2, list);
    char as_user[160];
    snprintf(as_user, sizeof as_user, " user=%s ", user);
    cr_expect(clients->str && strstr(clients->str, as_user), "no connection as %s: %s", user,
              clients->str);
    freeReplyObject(clients);
    /* ...and its stats show the URL without the password. */
    char *json = NULL;
    cr_assert_eq(eb_bus_stats(bus, &json), 0);
    cr_expect_null(strstr(json, password), "the stats show the password: %s", json);
    cr_expect(strstr(json, ":***@"), "the stats do not show the URL masked: %s", json);
    eb_free(json);

    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    eb_sub_destroy(sub);
    eb_bus_destroy(bus);
    received_free(&r);
}

/** A TCP port on 127.0.0.1 nobody listens on (bound, then let go). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

Test(redis_transport, a_missing_server_fails_open_in_time_naming_the_url)
{
    char missing[128], shown[128];
    int port = free_port();
    snprintf(missing, sizeof missing, "redis://127.0.0.1:%d", port);
    snprintf(shown, sizeof shown, "redis://127.0.0.1:%d", port);
    const setting s[] = {{"redis.url", missing}, {"redis.connect.timeout.ms", "1000"}};
    int threads = proc_thread_count();
    char err[1024] = "";
    int64_t start = test_now_ms();
    open_fails(s, 2, EB_ERR_TRANSPORT, err, sizeof err);
    int64_t took = test_now_ms() - start;
    cr_expect_lt(took, 1000 + 2000, "open took %lld ms with a 1000 ms connect timeout",
                 (long long)took);
    cr_expect(strstr(err, shown), "the error does not name %s: %s", shown, err);
    cr_expect(strstr(err, "connect"), "the error does not say the connect failed: %s", err);
    cr_expect_eq(proc_thread_count_settled(threads), threads, "a failed open left threads");
}

/** A server that accepts connections (the kernel does, from the backlog)
 *  and never answers: a socket listening on 127.0.0.1 that nobody reads.
 *  @returns its descriptor; *port its port. */
static int silent_server(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 16), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

Test(redis_transport, a_server_that_never_answers_fails_open_within_the_connect_timeout)
{
    int port;
    int fd = silent_server(&port);
    char silent[128];
    snprintf(silent, sizeof silent, "redis://127.0.0.1:%d", port);
    const setting s[] = {{"redis.url", silent}, {"redis.connect.timeout.ms", "500"}};
    int threads = proc_thread_count();
    char err[1024] = "";
    int64_t start = test_now_ms();
    open_fails(s, 2, EB_ERR_TRANSPORT, err, sizeof err);
    int64_t took = test_now_ms() - start;
    close(fd);
    cr_expect_lt(took, 500 + 1500, "open took %lld ms with a 500 ms connect timeout",
                 (long long)took);
    cr_expect(strstr(err, silent), "the error does not name %s: %s", silent, err);
    cr_expect(strstr(err, "PING"), "the error does not say the PING went unanswered: %s", err);
    cr_expect_eq(proc_thread_count_settled(threads), threads, "a failed open left threads");
}

Test(redis_transport, rediss_is_refused_naming_what_is_supported)
{
    const setting s[] = {{"redis.url", "rediss://user:tls-secret-99@127.0.0.1:6380"}};
    char err[1024] = "";
    open_fails(s, 1, EB_ERR_CONFIG, err, sizeof err);
    const char *key = strstr(err, "redis.url");
    cr_expect(key, "the error does not name the key: %s", err);
    cr_expect(!key || !strstr(key + 1, "redis.url"), "the key is named twice: %s", err);
    cr_expect(strstr(err, "rediss://"), "the error does not name rediss://: %s", err);
    cr_expect(strstr(err, "not supported"), "the error does not say 'not supported': %s", err);
    cr_expect(strstr(err, "supported: redis://"), "the error does not name what is: %s", err);
    cr_expect(strstr(err, "unix://"), "the error does not name unix sockets: %s", err);
    cr_expect_null(strstr(err, "tls-secret-99"), "the error shows the password: %s", err);
}

Test(redis_transport, a_claim_idle_time_below_3000_ms_is_refused_and_3000_accepted)
{
    const setting low[] = {{"redis.claim.idle.ms", "2999"}};
    char err[1024] = "";
    open_fails(low, 1, EB_ERR_CONFIG, err, sizeof err);
    cr_expect(strstr(err, "redis.claim.idle.ms"), "the error does not name the key: %s", err);
    cr_expect(strstr(err, "2999"), "the error does not quote the value: %s", err);
    cr_expect(strstr(err, "3000"), "the error does not name the least: %s", err);

    const setting least[] = {{"redis.claim.idle.ms", "3000"}};
    eb_bus *bus = open_bus(least, 1);
    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    eb_bus_destroy(bus);
}

Test(redis_transport, a_block_not_100_ms_below_the_command_timeout_is_refused_naming_both)
{
    const char *blocks[] = {"901", "1000", "5000"};
    for (size_t i = 0; i < sizeof blocks / sizeof *blocks; i++) {
        const setting s[] = {{"redis.command.timeout.ms", "1000"}, {"redis.block.ms", blocks[i]}};
        char err[1024] = "";
        open_fails(s, 2, EB_ERR_CONFIG, err, sizeof err);
        cr_expect(strstr(err, "redis.block.ms"), "block %s: the key is not named: %s",
                  blocks[i], err);
        cr_expect(strstr(err, "redis.command.timeout.ms"),
                  "block %s: the command timeout is not named: %s", blocks[i], err);
    }
    /* Exactly 100 ms below is what the sentence asks for. */
    const setting fits[] = {{"redis.command.timeout.ms", "1000"}, {"redis.block.ms", "900"}};
    eb_bus *bus = open_bus(fits, 2);
    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    eb_bus_destroy(bus);
}

Test(redis_transport, group_mode_settings_that_cannot_work_are_refused_with_a_sentence)
{
    char err[1024] = "";
    const setting unknown[] = {{"redis.group.mode", "sharded"}};
    open_fails(unknown, 1, EB_ERR_CONFIG, err, sizeof err);
    cr_expect(strstr(err, "redis.group.mode") && strstr(err, "shared, keyed"),
              "the key or the modes that work are not named: %s", err);

    const setting shared_parts[] = {{"redis.partitions", "4"}};
    open_fails(shared_parts, 1, EB_ERR_CONFIG, err, sizeof err);
    cr_expect(strstr(err, "redis.partitions") && strstr(err, "keyed"),
              "partitions without keyed mode: %s", err);

    /* The least lease: 3 x (revoke 10 s + command 5 s) by default. */
    const setting short_lease[] = {{"redis.group.mode", "keyed"}, {"redis.lease.ms", "44999"}};
    open_fails(short_lease, 2, EB_ERR_CONFIG, err, sizeof err);
    cr_expect(strstr(err, "redis.lease.ms") && strstr(err, "45000"),
              "the lease bound is not named: %s", err);

    const setting keyed[] = {{"redis.group.mode", "keyed"}, {"redis.lease.ms", "45000"}};
    eb_bus *bus = open_bus(keyed, 2);
    cr_expect(eb_bus_features(bus) & EB_FEATURE_KEY_ORDER, "keyed mode: per-key order");
    eb_bus_destroy(bus);
    const setting shared[] = {{"redis.group.mode", "shared"}};
    bus = open_bus(shared, 1);
    cr_expect(!(eb_bus_features(bus) & EB_FEATURE_KEY_ORDER) &&
                  (eb_bus_features(bus) & EB_FEATURE_KEY_ORDER_SINGLE_MEMBER),
              "shared mode: per-key order with one member only");
    eb_bus_destroy(bus);
}

Test(redis_transport, a_misspelt_key_gets_the_nearest_known_one)
{
    /* eb_config_set takes transport keys as they are (try_open asserts
     * it); open refuses it. */
    const setting s[] = {{"redis.clam.idle.ms", "30000"}};
    char err[1024] = "";
    open_fails(s, 1, EB_ERR_CONFIG, err, sizeof err);
    cr_expect(strstr(err, "redis.clam.idle.ms"), "the key is not named: %s", err);
    cr_expect(strstr(err, "did you mean 'redis.claim.idle.ms'"), "no suggestion: %s", err);
}

/* =========================================================== interop */

static unsigned char every_byte[256];

static void fill_every_byte(void)
{
    for (int i = 0; i < 256; i++)
        every_byte[i] = (unsigned char)i;
}

static void expect_id(const eb_msg *m, const char *entry_id, const char *what)
{
    char want[80];
    snprintf(want, sizeof want, "0@%s", entry_id);
    cr_expect_str_eq(eb_msg_id(m), want, "%s: id", what);
    cr_expect_eq(eb_msg_timestamp_ms(m), strtoll(entry_id, NULL, 10), "%s: timestamp", what);
    cr_expect_eq(eb_msg_attempt(m), 1, "%s: attempt", what);
}

Test(redis_transport, entries_added_with_xadd_are_consumed_byte_exact)
{
    fill_every_byte();
    const char *stream = new_stream("interop-in");
    static const char bin_key[] = {'b', 0, (char)0xff};
    static const char bin_value[] = {0, (char)0xfe};
    char ids[7][64];
    /* The documented layout: k, h:NAME..., p. */
    const bytes keyed[] = {TEXT("k"), TEXT("key-1"), TEXT("h:a"), TEXT("1"), TEXT("h:b"),
                           TEXT("two"), TEXT("h:a"), TEXT("3"), TEXT("h:empty"), TEXT(""),
                           TEXT("p"), TEXT("keyed")};
    xadd(stream, keyed, 12, ids[0], 64);
    const bytes empty_key[] = {TEXT("k"), TEXT(""), TEXT("p"), TEXT("empty key")};
    xadd(stream, empty_key, 4, ids[1], 64);
    const bytes no_key[] = {TEXT("p"), TEXT("no key")};
    xadd(stream, no_key, 2, ids[2], 64);
    const bytes binary[] = {TEXT("k"), {bin_key, 3}, TEXT("h:bin"), {bin_value, 2},
                            TEXT("p"), {(const char *)every_byte, 256}};
    xadd(stream, binary, 6, ids[3], 64);
    /* Another program's entries: `redis-cli XADD s '*' f v`, and foreign
     * fields around a payload. */
    const bytes foreign[] = {TEXT("f"), TEXT("v")};
    xadd(stream, foreign, 2, ids[4], 64);
    const bytes mixed[] = {TEXT("sensor"), TEXT("7"), TEXT("p"), TEXT("foreign payload"),
                           TEXT("unit"), TEXT("C")};
    xadd(stream, mixed, 6, ids[5], 64);
    /* Field names no header can have: empty (header "_"), and one with a
     * NUL (read up to it). */
    static const char nul_name[] = {'a', 0, 'b'};
    const bytes odd_names[] = {TEXT(""), TEXT("x"), {nul_name, 3}, TEXT("y"), TEXT("p"),
                               TEXT("odd names")};
    xadd(stream, odd_names, 6, ids[6], 64);

    eb_bus *bus = open_bus(NULL, 0);
    received r;
    received_init(&r);
    eb_sub *sub = subscribe_ready(bus, stream, "g", keep, &r); /* a new group: from the start */
    wait_received(&r, 7, 10000);

    const eb_msg *m = find_payload(&r, "keyed", 5);
    expect_key(m, "key-1", 5, "keyed");
    const header_spec keyed_headers[] = {
        {"a", TEXT("1")}, {"b", TEXT("two")}, {"a", TEXT("3")}, {"empty", TEXT("")}};
    expect_headers(m, keyed_headers, 4, "keyed");
    const void *v;
    size_t len;
    cr_expect_eq(eb_msg_header_find(m, "a", &v, &len), 0);
    cr_expect(len == 1 && memcmp(v, "3", 1) == 0, "header_find gives the last 'a'");
    expect_id(m, ids[0], "keyed");

    m = find_payload(&r, "empty key", 9);
    expect_key(m, "", 0, "empty key");
    expect_headers(m, NULL, 0, "empty key");
    expect_id(m, ids[1], "empty key");

    m = find_payload(&r, "no key", 6);
    expect_key(m, NULL, 0, "no key");
    expect_headers(m, NULL, 0, "no key");
    expect_id(m, ids[2], "no key");

    m = find_payload(&r, every_byte, sizeof every_byte);
    expect_key(m, bin_key, 3, "binary");
    const header_spec bin_headers[] = {{"bin", {bin_value, 2}}};
    expect_headers(m, bin_headers, 1, "binary");
    expect_id(m, ids[3], "binary");

    m = find_payload(&r, "", 0); /* the only entry without p */
    expect_key(m, NULL, 0, "foreign f v");
    const header_spec f_headers[] = {{"f", TEXT("v")}};
    expect_headers(m, f_headers, 1, "foreign f v");
    expect_id(m, ids[4], "foreign f v");

    m = find_payload(&r, "foreign payload", 15);
    expect_key(m, NULL, 0, "foreign mixed");
    const header_spec mixed_headers[] = {{"sensor", TEXT("7")}, {"unit", TEXT("C")}};
    expect_headers(m, mixed_headers, 2, "foreign mixed");
    expect_id(m, ids[5], "foreign mixed");

    m = find_payload(&r, "odd names", 9);
    expect_key(m, NULL, 0, "odd names");
    const header_spec odd_headers[] = {{"_", TEXT("x")}, {"a", TEXT("y")}};
    expect_headers(m, odd_headers, 2, "odd names");
    expect_id(m, ids[6], "odd names");

    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    cr_expect_eq(received_count(&r), 7, "received more entries than were added");
    cr_expect_eq(pending_count(stream, "g"), 0, "entries left unacknowledged");
    eb_sub_destroy(sub);
    eb_bus_destroy(bus);
    received_free(&r);
}

/* ----------------------------------------------- published, XRANGE'd */

enum { N_OUT = 4 };

typedef struct published {
    atomic_int status[N_OUT]; /* 1: not reported yet */
    char ids[N_OUT][80];
} published;

typedef struct publish_slot {
    published *p;
    int i;
} publish_slot;

static void on_published(int status, const char *id, void *opaque)
{
    publish_slot *slot = opaque;
    if (status == 0 && id)
        snprintf(slot->p->ids[slot->i], sizeof slot->p->ids[0], "%s", id);
    atomic_store(&slot->p->status[slot->i], status);
}

/** The entry `id` of an XRANGE reply has exactly `want` as its fields. */
static void expect_entry(const redisReply *range, const char *id, const bytes *want, size_t n,
                         const char *what)
{
    const redisReply *entry = NULL;
    for (size_t i = 0; i < range->elements && !entry; i++)
        if (strcmp(range->element[i]->element[0]->str, id) == 0)
            entry = range->element[i];
    cr_assert_not_null(entry, "%s: no entry %s in the stream", what, id);
    const redisReply *fields = entry->element[1];
    cr_assert_eq(fields->elements, n, "%s: %zu fields and values, expected %zu", what,
                 fields->elements, n);
    for (size_t i = 0; i < n; i++) {
        const redisReply *f = fields->element[i];
        cr_expect(f->len == want[i].len && memcmp(f->str, want[i].p, f->len) == 0,
                  "%s: field %zu is '%.*s' (%zu bytes), expected '%.*s' (%zu bytes)", what, i,
                  (int)f->len, f->str, f->len, (int)want[i].len, want[i].p, want[i].len);
    }
}

Test(redis_transport, published_messages_have_the_documented_fields_in_order)
{
    fill_every_byte();
    const char *stream = new_stream("interop-out");
    static const char bin_key[] = {0, 1, (char)0xff};
    static const char bin_value[] = {0, (char)0xfe};
    const eb_header dup_headers[] = {{"a", "1", 1}, {"b", "two", 3}, {"a", "3", 1}};
    const eb_header empty_header[] = {{"empty", NULL, 0}};
    const eb_header bin_header[] = {{"bin", bin_value, 2}};

    eb_bus *bus = open_bus(NULL, 0);
    published p = {0};
    publish_slot slots[N_OUT];
    for (int i = 0; i < N_OUT; i++) {
        atomic_init(&p.status[i], 1);
        slots[i] = (publish_slot){&p, i};
    }
    publish(bus, stream, "k1", 2, "hello", 5, dup_headers, 3, on_published, &slots[0]);
    publish(bus, stream, "", 0, NULL, 0, NULL, 0, on_published, &slots[1]);
    publish(bus, stream, NULL, 0, "no key", 6, empty_header, 1, on_published, &slots[2]);
    publish(bus, stream, bin_key, 3, every_byte, 256, bin_header, 1, on_published, &slots[3]);
    cr_assert_eq(eb_flush(bus, 10000), 0, "the publishes were not reported in 10 s");
    for (int i = 0; i < N_OUT; i++) {
        cr_assert_eq(atomic_load(&p.status[i]), 0, "publish %d: %s", i,
                     eb_err_name(atomic_load(&p.status[i])));
        cr_assert_eq(strncmp(p.ids[i], "0@", 2), 0, "publish %d: id '%s' is not 0@<entry id>",
                     i, p.ids[i]);
    }

    const char *argv[] = {"XRANGE", stream, "-", "+"};
    redisReply *range = rt_run(&conn, 4, argv);
    cr_assert_eq(range->type, REDIS_REPLY_ARRAY);
    cr_expect_eq(range->elements, N_OUT, "%zu entries in the stream", range->elements);
    const bytes keyed[] = {TEXT("k"), TEXT("k1"), TEXT("h:a"), TEXT("1"), TEXT("h:b"),
                           TEXT("two"), TEXT("h:a"), TEXT("3"), TEXT("p"), TEXT("hello")};
    expect_entry(range, p.ids[0] + 2, keyed, 10, "key and duplicate headers");
    const bytes empty_key[] = {TEXT("k"), TEXT(""), TEXT("p"), TEXT("")};
    expect_entry(range, p.ids[1] + 2, empty_key, 4, "empty key, empty payload");
    const bytes no_key[] = {TEXT("h:empty"), TEXT(""), TEXT("p"), TEXT("no key")};
    expect_entry(range, p.ids[2] + 2, no_key, 4, "no key");
    const bytes binary[] = {TEXT("k"), {bin_key, 3}, TEXT("h:bin"), {bin_value, 2},
                            TEXT("p"), {(const char *)every_byte, 256}};
    expect_entry(range, p.ids[3] + 2, binary, 6, "binary");
    freeReplyObject(range);

    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    eb_bus_destroy(bus);
}

/* ==================================================== stats, health */

/** The number after `"field":` in the subscription object of `stream`
 *  inside the "transport" object of `json`, or -1. */
static long long sub_stat(const char *json, const char *stream, const char *field)
{
    const char *tp = strstr(json, "\"transport\":");
    char key[128];
    snprintf(key, sizeof key, "\"stream\":\"%s\"", stream);
    const char *sub = tp ? strstr(tp, key) : NULL;
    if (!sub)
        return -1;
    const char *end = strchr(sub, '}');
    snprintf(key, sizeof key, "\"%s\":", field);
    const char *at = strstr(sub, key);
    return at && at < end ? atoll(at + strlen(key)) : -1;
}

typedef struct acked_wait {
    eb_bus *bus;
    const char *stream;
    long long n;
} acked_wait;

static bool transport_acked(void *arg)
{
    acked_wait *w = arg;
    char *json = NULL;
    if (eb_bus_stats(w->bus, &json) != 0)
        return false;
    bool done = sub_stat(json, w->stream, "acked") >= w->n;
    eb_free(json);
    return done;
}

Test(redis_transport, stats_show_the_mode_consumer_and_counts_and_health_is_ok)
{
    const char *stream = new_stream("stats");
    char consumer[64];
    snprintf(consumer, sizeof consumer, "stats-consumer-%d", (int)getpid());
    const setting s[] = {{"redis.consumer", consumer}, {"retry.backoff.ms", "10"}};
    eb_bus *bus = open_bus(s, 2);
    received r;
    received_init(&r);
    r.retry_payload = "m3";
    eb_sub *sub = subscribe_ready(bus, stream, "g", keep, &r);
    for (int i = 0; i < 10; i++) {
        char payload[16];
        snprintf(payload, sizeof payload, "m%d", i);
        publish_text(bus, stream, "key", payload);
    }
    wait_received(&r, 10, 10000);
    acked_wait w = {bus, stream, 10};
    cr_assert(test_wait_for(transport_acked, &w, 10000), "the transport did not count 10 acks");
    const eb_msg *again = find_payload(&r, "m3", 2);
    cr_expect_eq(eb_msg_attempt(again), 2, "the retried message's attempt");

    char *json = NULL;
    cr_assert_eq(eb_bus_stats(bus, &json), 0);
    const char *tp = strstr(json, "\"transport\":{");
    cr_assert_not_null(tp, "no transport object: %s", json);
    cr_expect(strstr(tp, "\"mode\":\"shared\""), "no shared mode: %s", json);
    char want[128];
    snprintf(want, sizeof want, "\"consumer\":\"%s\"", consumer);
    cr_expect(strstr(tp, want), "no %s: %s", want, json);
    cr_expect_eq(sub_stat(json, stream, "delivered"), 10, "%s", json);
    cr_expect_eq(sub_stat(json, stream, "acked"), 10, "%s", json);
    cr_expect_eq(sub_stat(json, stream, "held"), 0, "%s", json);
    snprintf(want, sizeof want, "\"stream\":\"%s\",\"group\":\"g\"", stream);
    cr_expect(strstr(tp, want), "no subscription of group g: %s", json);
    eb_free(json);
    cr_expect_eq(bus_stat(bus, "handled"), 11, "handler calls: 10 messages, one retried");
    cr_expect_eq(bus_stat(bus, "retried"), 1);
    cr_expect_eq(atomic_load(&r.calls), 11);

    eb_health h;
    cr_assert_eq(eb_bus_health(bus, &h), 0);
    cr_expect_eq(h.state, EB_HEALTH_OK, "health %d: %s", h.state, h.detail);
    cr_expect_neq(h.detail[0], '\0');
    pending_wait pw = {stream, "g"};
    cr_expect(test_wait_for(nothing_pending, &pw, 5000), "acks did not reach the server");

    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    cr_assert_eq(eb_bus_health(bus, &h), 0);
    cr_expect_eq(h.state, EB_HEALTH_CLOSED);
    eb_sub_destroy(sub);
    eb_bus_destroy(bus);
    received_free(&r);
}

/* ------------------------------------------- the same consumer name */

/** A handler that holds the first message until released. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int entered;
    bool released;
} gate;

static eb_result hold(const eb_msg *msg, void *opaque)
{
    (void)msg;
    gate *g = opaque;
    struct timespec limit;
    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_sec += 20; /* never forever, should the test fail first */
    pthread_mutex_lock(&g->mu);
    g->entered++;
    pthread_cond_broadcast(&g->cv);
    while (!g->released && pthread_cond_timedwait(&g->cv, &g->mu, &limit) == 0)
        ;
    pthread_mutex_unlock(&g->mu);
    return EB_ACK;
}

static bool gate_entered(void *arg)
{
    gate *g = arg;
    pthread_mutex_lock(&g->mu);
    bool in = g->entered > 0;
    pthread_mutex_unlock(&g->mu);
    return in;
}

typedef struct closer {
    eb_bus *bus;
    int rc;
} closer;

static void *close_now(void *arg)
{
    closer *c = arg;
    c->rc = eb_bus_close(c->bus, 0);
    return NULL;
}

static bool bus_closing(void *arg)
{
    eb_health h;
    return eb_bus_health(arg, &h) == 0 && h.state == EB_HEALTH_CLOSED;
}

typedef struct stat_wait {
    eb_bus *bus;
    const char *name;
    long long n;
} stat_wait;

static bool stat_reached(void *arg)
{
    stat_wait *w = arg;
    return bus_stat(w->bus, w->name) >= w->n;
}

Test(redis_transport, the_same_consumer_name_takes_over_what_a_closed_bus_left_unacknowledged)
{
    const char *stream = new_stream("consumer");
    char consumer[64];
    snprintf(consumer, sizeof consumer, "same-%d", (int)getpid());
    const setting s[] = {{"redis.consumer", consumer}};

    /* The first bus: "first" blocks in its handler, "second" (same key)
     * waits behind it; a close with a deadline already passed abandons
     * "second" while "first" finishes (ACK). */
    eb_bus *first_bus = open_bus(s, 1);
    gate g = {.entered = 0};
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cv, NULL);
    eb_sub *first_sub = subscribe_ready(first_bus, stream, "g", hold, &g);
    publish_text(first_bus, stream, "k", "first");
    publish_text(first_bus, stream, "k", "second");
    cr_assert(test_wait_for(gate_entered, &g, 10000), "the handler never ran");
    stat_wait delivered = {first_bus, "delivered", 2};
    cr_assert(test_wait_for(stat_reached, &delivered, 10000), "'second' was not delivered");
    closer c = {first_bus, 0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, close_now, &c), 0);
    cr_assert(test_wait_for(bus_closing, first_bus, 10000), "the close did not begin");
    pthread_mutex_lock(&g.mu);
    g.released = true;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    pthread_join(t, NULL);
    cr_expect_eq(c.rc, EB_ERR_TIMEOUT, "close returned %s", eb_err_name(c.rc));
    cr_expect_eq(g.entered, 1, "'second' ran although the deadline had passed");
    eb_sub_destroy(first_sub);
    eb_bus_destroy(first_bus);
    /* "second" stays pending under the consumer name. */
    cr_expect_eq(pending_count(stream, "g"), 1);

    /* The second bus, same consumer name: its own pending entry first. */
    eb_bus *second_bus = open_bus(s, 1);
    received r;
    received_init(&r);
    eb_sub *second_sub = subscribe_ready(second_bus, stream, "g", keep, &r);
    wait_received(&r, 1, 10000);
    const eb_msg *m = find_payload(&r, "second", 6);
    cr_expect_gt(eb_msg_attempt(m), 1, "attempt %u of a redelivered message",
                 eb_msg_attempt(m));
    /* One name, one consumer of the group: the second bus is the first's
     * consumer again, not a new one that claimed the entry. */
    cr_expect_eq(xinfo_count("CONSUMERS", stream, "g"), 1);
    pending_wait pw = {stream, "g"};
    cr_expect(test_wait_for(nothing_pending, &pw, 5000), "'second' was not acknowledged");
    cr_expect_eq(received_count(&r), 1, "'first' (acknowledged) was delivered again");
    cr_expect_eq(eb_bus_close(second_bus, 5000), 0);
    eb_sub_destroy(second_sub);
    eb_bus_destroy(second_bus);
    received_free(&r);
    pthread_cond_destroy(&g.cv);
    pthread_mutex_destroy(&g.mu);
}

Test(redis_transport, a_member_restarted_without_leaving_reads_its_own_pending_entries_first)
{
    /* What a member that crashed under the name leaves: entries read and
     * never acknowledged, idle far below redis.claim.idle.ms, so no
     * claim takes them; only the own pending read does. */
    const char *stream = new_stream("restart");
    char consumer[64], ids[3][64];
    snprintf(consumer, sizeof consumer, "crashed-%d", (int)getpid());
    rt_pending_entries(&conn, stream, "g", consumer, 3, ids);
    const setting s[] = {{"redis.consumer", consumer}};
    eb_bus *bus = open_bus(s, 1);
    received r;
    received_init(&r);
    eb_sub *sub = subscribe_ready(bus, stream, "g", keep, &r);
    wait_received(&r, 3, 5000); /* the claim idle time is 30 s */
    for (int i = 0; i < 3; i++) {
        char payload[4];
        snprintf(payload, sizeof payload, "%d", i);
        const eb_msg *m = find_payload(&r, payload, 1);
        char want[200];
        snprintf(want, sizeof want, "0@%s", ids[i]);
        cr_expect_str_eq(eb_msg_id(m), want);
        cr_expect_eq(eb_msg_attempt(m), 2, "entry %d: attempt %u, delivered once before", i,
                     eb_msg_attempt(m));
    }
    char *json = NULL;
    cr_assert_eq(eb_bus_stats(bus, &json), 0);
    cr_expect_eq(sub_stat(json, stream, "claimed"), 0, "taken by a claim, not read: %s", json);
    eb_free(json);
    pending_wait pw = {stream, "g"};
    cr_expect(test_wait_for(nothing_pending, &pw, 5000), "the entries were not acknowledged");
    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    cr_expect_eq(received_count(&r), 3);
    eb_sub_destroy(sub);
    eb_bus_destroy(bus);
    received_free(&r);
}

/* ========================================================= lifecycle */

static eb_result count_only(const eb_msg *msg, void *opaque)
{
    (void)msg;
    atomic_fetch_add((atomic_int *)opaque, 1);
    return EB_ACK;
}

typedef struct int_wait {
    atomic_int *n;
    int want;
} int_wait;

static bool count_reached(void *arg)
{
    int_wait *w = arg;
    return atomic_load(w->n) >= w->want;
}

Test(redis_transport, twenty_cycles_of_open_subscribe_publish_close_leave_no_threads)
{
    const char *stream = new_stream("cycles");
    int threads = proc_thread_count();
    for (int cycle = 0; cycle < 20; cycle++) {
        eb_bus *bus = open_bus(NULL, 0);
        atomic_int handled = 0;
        eb_sub *sub = subscribe_ready(bus, stream, "g", count_only, &handled);
        for (int i = 0; i < 100; i++) {
            char key[16], payload[32];
            snprintf(key, sizeof key, "k%d", i % 8);
            snprintf(payload, sizeof payload, "%d-%d", cycle, i);
            publish_text(bus, stream, key, payload);
        }
        int_wait w = {&handled, 100};
        cr_assert(test_wait_for(count_reached, &w, 10000), "cycle %d: handled %d of 100", cycle,
                  atomic_load(&handled));
        cr_assert_eq(eb_bus_close(bus, 5000), 0, "cycle %d: close", cycle);
        eb_sub_destroy(sub);
        eb_bus_destroy(bus);
        cr_assert_eq(atomic_load(&handled), 100, "cycle %d: handled %d, expected 100", cycle,
                     atomic_load(&handled));
        cr_assert_eq(proc_thread_count_settled(threads), threads,
                     "cycle %d: %d threads after close, %d before open", cycle,
                     proc_thread_count(), threads);
    }
    cr_expect_eq(pending_count(stream, "g"), 0, "entries left unacknowledged");
    cr_expect_eq(xinfo_count("CONSUMERS", stream, "g"), 0,
                 "members that left are still consumers of the group");
}

/* ================================================== anonymous member */

Test(redis_transport, an_anonymous_member_gets_later_messages_and_leaves_no_group)
{
    const char *stream = new_stream("anon");
    const bytes before[] = {TEXT("p"), TEXT("before")};
    char id[64];
    xadd(stream, before, 2, id, sizeof id);

    eb_bus *bus = open_bus(NULL, 0);
    received r;
    received_init(&r);
    eb_sub *sub = subscribe_ready(bus, stream, NULL, keep, &r);
    for (int i = 0; i < 5; i++) {
        char payload[16];
        snprintf(payload, sizeof payload, "after-%d", i);
        publish_text(bus, stream, i % 2 ? "k" : NULL, payload);
    }
    wait_received(&r, 5, 10000);
    for (int i = 0; i < 5; i++) {
        char payload[16];
        snprintf(payload, sizeof payload, "after-%d", i);
        find_payload(&r, payload, strlen(payload));
    }
    cr_expect_eq(xinfo_count("GROUPS", stream, NULL), 0, "a group while subscribed");
    cr_expect_eq(eb_bus_close(bus, 5000), 0);
    cr_expect_eq(received_count(&r), 5, "got %zu messages: one from before subscribe",
                 received_count(&r));
    cr_expect_eq(xinfo_count("GROUPS", stream, NULL), 0, "a group left after close");
    eb_sub_destroy(sub);
    eb_bus_destroy(bus);
    received_free(&r);
}

/* ===================================================== poison entries */

static atomic_int poison_calls;
static atomic_uint poison_attempt;

static eb_result always_retry(const eb_msg *msg, void *opaque)
{
    (void)opaque;
    atomic_fetch_add(&poison_calls, 1);
    atomic_store(&poison_attempt, eb_msg_attempt(msg));
    return EB_RETRY;
}

static bool stream_has_one(void *arg)
{
    const char *argv[] = {"XLEN", arg};
    redisReply *r = rt_run(&conn, 2, argv);
    bool one = r->integer == 1;
    freeReplyObject(r);
    return one;
}

/*
 * A poison entry whose earlier handlers all died: read five times by a
 * consumer that crashed each time (XREADGROUP of its own pending entry
 * counts a delivery), then left idle. The member that claims it goes on
 * counting from there (XPENDING's delivery count), so with
 * retry.max.attempts = 3 its first failure dead-letters it instead of
 * starting over at attempt 1 after every crash.
 */
Test(redis_transport, a_poison_entry_dead_letters_across_crashes)
{
    const char *topic = new_stream("poison");
    char *dlq = streams[n_streams++];
    snprintf(dlq, sizeof streams[0], "%s.dlq", topic);
    char id[64];
    xadd(topic, (bytes[]){{"p", 1}, {"poison", 6}}, 2, id, sizeof id);
    const char *create[] = {"XGROUP", "CREATE", topic, "g", "0"};
    rt_do(&conn, 5, create);
    const char *first[] = {"XREADGROUP", "GROUP", "g", "ghost", "STREAMS", topic, ">"};
    rt_do(&conn, 7, first);
    const char *again[] = {"XREADGROUP", "GROUP", "g", "ghost", "STREAMS", topic, "0"};
    for (int i = 0; i < 4; i++)
        rt_do(&conn, 7, again);
    const char *idle[] = {"XCLAIM", topic, "g", "ghost", "0", id, "IDLE", "86400000", "JUSTID"};
    rt_do(&conn, 9, idle);

    const setting s[] = {{"retry.max.attempts", "3"}, {"redis.claim.idle.ms", "3000"}};
    eb_bus *bus = open_bus(s, 2);
    eb_sub *sub = subscribe_ready(bus, topic, "g", always_retry, NULL);
    cr_assert(test_wait_for(stream_has_one, dlq, 10000), "nothing reached %s", dlq);
    cr_expect_eq(atomic_load(&poison_calls), 1, "the handler ran %d times",
                 atomic_load(&poison_calls));
    cr_expect_geq(atomic_load(&poison_attempt), 5, "attempt %u: the crashes were not counted",
                  atomic_load(&poison_attempt));
    pending_wait w = {topic, "g"};
    cr_expect(test_wait_for(nothing_pending, &w, 5000), "the poison entry stayed pending");
    cr_assert_eq(eb_unsubscribe(sub), 0);
    eb_sub_destroy(sub);
    cr_assert_eq(eb_bus_close(bus, 5000), 0);
    eb_bus_destroy(bus);
}

/* ============================================================ trimming */

static long long xlen(const char *stream)
{
    const char *argv[] = {"XLEN", stream};
    redisReply *r = rt_run(&conn, 2, argv);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

/*
 * redis.stream.maxlen trims with every XADD (MAXLEN ~: whole nodes of
 * stream-node-max-entries, 100 by default, so the stream keeps at most
 * about maxlen + 100 entries); without it nothing is trimmed.
 */
Test(redis_transport, maxlen_trims_the_stream_and_its_absence_does_not)
{
    const char *trimmed = new_stream("trimmed"), *kept = new_stream("kept");
    const setting s[] = {{"redis.stream.maxlen", "10"}};
    eb_bus *a = open_bus(s, 1), *b = open_bus(NULL, 0);
    for (int i = 0; i < 1000; i++) {
        publish_text(a, trimmed, NULL, "x");
        publish_text(b, kept, NULL, "x");
    }
    cr_assert_eq(eb_flush(a, 10000), 0);
    cr_assert_eq(eb_flush(b, 10000), 0);
    cr_expect_leq(xlen(trimmed), 10 + 100, "not trimmed: %lld entries", xlen(trimmed));
    cr_expect_eq(xlen(kept), 1000, "trimmed without redis.stream.maxlen");
    cr_assert_eq(eb_bus_close(a, 5000), 0);
    cr_assert_eq(eb_bus_close(b, 5000), 0);
    eb_bus_destroy(a);
    eb_bus_destroy(b);
}

/*
 * An entry trimmed away while it was pending (its member died): the
 * member that reads its own pending entries again finds no fields, counts
 * it lost and acknowledges it, so it does not stay pending for ever; the
 * others are handled.
 */
typedef struct lost_wait {
    eb_bus *bus;
} lost_wait;

static bool one_lost(void *arg)
{
    return bus_stat(((lost_wait *)arg)->bus, "lost") == 1;
}

Test(redis_transport, a_pending_entry_deleted_from_the_stream_is_counted_lost)
{
    const char *topic = new_stream("deleted");
    char ids[3][64];
    rt_pending_entries(&conn, topic, "g", "stable", 3, ids);
    const char *del[] = {"XDEL", topic, ids[1]};
    rt_do(&conn, 3, del);
    const setting s[] = {{"redis.consumer", "stable"}};
    eb_bus *bus = open_bus(s, 1);
    received r;
    received_init(&r);
    eb_sub *sub = subscribe_ready(bus, topic, "g", keep, &r);
    wait_received(&r, 2, 5000);
    lost_wait w = {bus};
    cr_expect(test_wait_for(one_lost, &w, 5000), "lost = %lld", bus_stat(bus, "lost"));
    pending_wait pw = {topic, "g"};
    cr_expect(test_wait_for(nothing_pending, &pw, 5000), "%lld still pending",
              pending_count(topic, "g"));
    cr_assert_eq(eb_unsubscribe(sub), 0);
    eb_sub_destroy(sub);
    cr_assert_eq(eb_bus_close(bus, 5000), 0);
    eb_bus_destroy(bus);
    received_free(&r);
}
