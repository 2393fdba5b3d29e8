/*
 * kafka_helpers.c — the helpers of kafka_helpers.h: clock and names,
 * buses, child commands, the message tracker, committed offsets.
 */
#include "kafka_helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------ clock and names */

int64_t kt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *kt_real_broker(void)
{
    const char *bootstrap = getenv("EB_KAFKA_BOOTSTRAP");
    if (!bootstrap || !*bootstrap)
        cr_skip_test("EB_KAFKA_BOOTSTRAP is not set (tests/servers/kafka.sh starts a broker)");
    return bootstrap;
}

void kt_unique(char *out, size_t size, const char *what)
{
    static int serial;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, size, "eb-%s-%d-%lld-%d", what, (int)getpid(),
             (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, ++serial);
}

/* ---------------------------------------------------------------- buses */

/* Test-sized group timeouts (DESIGN.md, "Facts"). */
static const kt_setting test_defaults[] = {
    {"transport", "kafka"},
    {"kafka.session.timeout.ms", "3000"},
    {"kafka.heartbeat.interval.ms", "300"},
    {"kafka.topic.replication", "1"},
    {"dispatch.revoke.timeout.ms", "5000"},
    {NULL, NULL},
};

static void apply(eb_config *cfg, const kt_setting *s)
{
    char err[512];
    for (; s && s->key; s++)
        cr_assert_eq(eb_config_set(cfg, s->key, s->value, err, sizeof err), 0, "%s = %s: %s",
                     s->key, s->value, err);
}

eb_bus *kt_open(const char *bootstrap, const kt_setting *extra, eb_event_cb cb,
                void *opaque)
{
    char err[1024];
    eb_config *cfg = eb_config_new();
    cr_assert_not_null(cfg);
    const kt_setting address[] = {{"kafka.bootstrap.servers", bootstrap}, {NULL, NULL}};
    apply(cfg, test_defaults);
    apply(cfg, address);
    apply(cfg, extra);
    if (cb)
        cr_assert_eq(eb_config_set_event_cb(cfg, cb, opaque), 0);
    eb_bus *bus = NULL;
    int rc = eb_bus_open(cfg, &bus, err, sizeof err);
    eb_config_destroy(cfg);
    cr_assert_eq(rc, 0, "eb_bus_open: %s: %s", eb_err_name(rc), err);
    return bus;
}

eb_sub *kt_subscribe_ready(eb_bus *bus, const char *topic, const char *group,
                           eb_handler handler, void *opaque, int timeout_ms)
{
    char err[1024];
    eb_sub *sub = NULL;
    int rc = eb_subscribe(bus, topic, group, handler, opaque, NULL, &sub, err, sizeof err);
    cr_assert_eq(rc, 0, "eb_subscribe(%s): %s: %s", topic, eb_err_name(rc), err);
    rc = eb_sub_wait_ready(sub, timeout_ms);
    cr_assert_eq(rc, 0, "eb_sub_wait_ready(%s): %s", topic, eb_err_name(rc));
    return sub;
}

/* --------------------------------------------------------- child commands */

/* In the forked child: only async-signal-safe calls until exec. */
static void exec_child(char *const args[], int in, int out)
{
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0)
        _exit(126);
    /* Nothing else of the test process (criterion's pipes, librdkafka's
     * sockets) may outlive it in a broker that kafka.sh starts. */
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    execvp(args[0], args);
    _exit(127);
}

pid_t kt_spawn(const char *const argv[], const char *stdin_path, const char *stdout_path,
               int timeout_s)
{
    const char *args[64];
    char seconds[16];
    snprintf(seconds, sizeof seconds, "%d", timeout_s);
    size_t n = 0;
    args[n++] = "timeout";
    args[n++] = "-k";
    args[n++] = "5";
    args[n++] = seconds;
    for (size_t i = 0; argv[i]; i++) {
        cr_assert_lt(n, 63, "too many arguments");
        args[n++] = argv[i];
    }
    args[n] = NULL;
    int in = open(stdin_path ? stdin_path : "/dev/null", O_RDONLY | O_CLOEXEC);
    cr_assert(in >= 0, "%s: %s", stdin_path, strerror(errno));
    int out = stdout_path ? open(stdout_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)
                          : dup(2);
    cr_assert(out >= 0, "%s: %s", stdout_path ? stdout_path : "stderr", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0)
        exec_child((char *const *)args, in, out);
    close(in);
    close(out);
    return pid;
}

int kt_reap(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        cr_assert_eq(errno, EINTR, "waitpid: %s", strerror(errno));
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int kt_run(const char *const argv[], const char *stdin_path, const char *stdout_path,
           int timeout_s)
{
    return kt_reap(kt_spawn(argv, stdin_path, stdout_path, timeout_s));
}

char *kt_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    cr_assert_not_null(buf);
    for (size_t got; (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            cr_assert_not_null(buf);
        }
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

bool kt_parse_id(const char *id, int32_t *partition, int64_t *offset)
{
    int p;
    long long o;
    char tail;
    if (!id || sscanf(id, "%d@%lld%c", &p, &o, &tail) != 2 || p < 0 || o < 0)
        return false;
    *partition = p;
    *offset = o;
    return true;
}

/* ------------------------------------------------------------- tracker */

kt_tracker *kt_tracker_new(size_t n)
{
    kt_tracker *t = calloc(1, sizeof *t);
    cr_assert_not_null(t);
    t->n = n;
    t->slots = calloc(n, sizeof *t->slots);
    t->status = calloc(n, sizeof *t->status);
    t->reports = calloc(n, sizeof *t->reports);
    t->handled = calloc(n, sizeof *t->handled);
    t->partition = calloc(n, sizeof *t->partition);
    t->offset = calloc(n, sizeof *t->offset);
    cr_assert(t->slots && t->status && t->reports && t->handled && t->partition && t->offset);
    for (size_t i = 0; i < n; i++) {
        t->slots[i] = (kt_slot){t, i};
        t->status[i] = 1;
        t->partition[i] = -1;
        t->offset[i] = -1;
    }
    pthread_mutex_init(&t->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cv, &attr);
    pthread_condattr_destroy(&attr);
    return t;
}

void kt_tracker_free(kt_tracker *t)
{
    if (!t)
        return;
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t->slots);
    free(t->status);
    free(t->reports);
    free(t->handled);
    free(t->partition);
    free(t->offset);
    free(t);
}

int kt_publish(eb_bus *bus, kt_tracker *t, const char *topic, size_t index, const char *key)
{
    char payload[24];
    int len = snprintf(payload, sizeof payload, "%zu", index);
    eb_outgoing m = {.topic = topic,
                     .key = key,
                     .key_len = key ? strlen(key) : 0,
                     .payload = payload,
                     .payload_len = (size_t)len};
    return eb_publish(bus, &m, kt_on_delivery, &t->slots[index]);
}

void kt_on_delivery(int status, const char *id, void *opaque)
{
    kt_slot *slot = opaque;
    kt_tracker *t = slot->t;
    int32_t partition = -1;
    int64_t offset = -1;
    if (status == 0 && !kt_parse_id(id, &partition, &offset))
        status = EB_ERR_INVALID; /* a confirmation without a usable id fails below */
    pthread_mutex_lock(&t->mu);
    size_t i = slot->index;
    t->reports[i]++;
    t->n_reports++;
    if (status == 0 && t->status[i] != 0)
        t->n_confirmed++;
    t->status[i] = status;
    t->partition[i] = partition;
    t->offset[i] = offset;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

bool kt_tracker_count(kt_tracker *t, const eb_msg *msg)
{
    size_t len;
    const char *payload = eb_msg_payload(msg, &len);
    char text[24];
    if (len == 0 || len >= sizeof text)
        return false;
    memcpy(text, payload, len);
    text[len] = '\0';
    char *end;
    unsigned long long i = strtoull(text, &end, 10);
    if (*end || i >= t->n)
        return false;
    pthread_mutex_lock(&t->mu);
    if (t->handled[i]++ == 0)
        t->n_handled_distinct++;
    t->n_handled_calls++;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    return true;
}

eb_result kt_handle(const eb_msg *msg, void *opaque)
{
    kt_tracker_count(opaque, msg);
    return EB_ACK;
}

void kt_tracker_event(eb_bus *bus, const eb_event *event, void *opaque)
{
    (void)bus;
    kt_tracker *t = opaque;
    if (event->type != EB_EVENT_REVOKED)
        return;
    pthread_mutex_lock(&t->mu);
    t->n_revokes++;
    pthread_mutex_unlock(&t->mu);
}

bool kt_wait(kt_tracker *t, bool (*pred)(const kt_tracker *t, void *arg), void *arg,
             int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&t->mu);
    bool holds;
    while (!(holds = pred(t, arg)) &&
           pthread_cond_timedwait(&t->cv, &t->mu, &deadline) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&t->mu);
    return holds;
}

bool kt_reports_at_least(const kt_tracker *t, void *arg)
{
    return t->n_reports >= *(size_t *)arg;
}

bool kt_handled_at_least(const kt_tracker *t, void *arg)
{
    return t->n_handled_distinct >= *(size_t *)arg;
}

bool kt_handled_from(const kt_tracker *t, void *arg)
{
    for (size_t i = *(size_t *)arg; i < t->n; i++)
        if (t->handled[i])
            return true;
    return false;
}

bool kt_all_confirmed_handled(const kt_tracker *t, void *arg)
{
    (void)arg;
    for (size_t i = 0; i < t->n; i++)
        if (t->status[i] == 0 && t->handled[i] == 0)
            return false;
    return true;
}

size_t kt_duplicates(const kt_tracker *t)
{
    size_t dups = 0;
    for (size_t i = 0; i < t->n; i++)
        dups += t->handled[i] > 1;
    return dups;
}

size_t kt_first_lost(const kt_tracker *t)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->status[i] == 0 && t->handled[i] == 0)
            return i;
    return t->n;
}

/* -------------------------------------------------------------- stream */

static void *stream_main(void *arg)
{
    kt_stream *s = arg;
    for (size_t i = 0; i < s->t->n && !atomic_load(&s->stop);) {
        char key[16];
        snprintf(key, sizeof key, "key-%zu", i % s->keys);
        if (kt_publish(s->bus, s->t, s->topic, i, key) == 0) {
            atomic_store(&s->next, ++i);
        } else {
            atomic_fetch_add(&s->refused, 1);
            if (!s->retry_refused)
                break;
        }
        /* The pace is the point: a stream that spans the outage. */
        nanosleep(&(struct timespec){s->period_ms / 1000, (s->period_ms % 1000) * 1000000L},
                  NULL);
    }
    return NULL;
}

void kt_stream_start(kt_stream *s)
{
    cr_assert_eq(pthread_create(&s->thread, NULL, stream_main, s), 0);
}

void kt_stream_join(kt_stream *s, bool stop)
{
    if (stop)
        atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
}

/* ---------------------------------------------------- committed offsets */

rd_kafka_t *kt_raw_consumer(const char *bootstrap, const char *group)
{
    char why[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, why, sizeof why), 0,
                 "%s", why);
    cr_assert_eq(rd_kafka_conf_set(conf, "group.id", group, why, sizeof why), 0, "%s", why);
    cr_assert_eq(rd_kafka_conf_set(conf, "enable.auto.commit", "false", why, sizeof why), 0);
    cr_assert_eq(rd_kafka_conf_set(conf, "log_level", "3", why, sizeof why), 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    cr_assert_not_null(rk, "%s", why);
    return rk;
}

void kt_committed(const char *bootstrap, const char *group, const char *topic,
                  int partitions, int64_t *offsets)
{
    rd_kafka_t *rk = kt_raw_consumer(bootstrap, group);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p);
    rd_kafka_resp_err_t err = rd_kafka_committed(rk, parts, 15000);
    cr_assert_eq(err, 0, "rd_kafka_committed: %s", rd_kafka_err2str(err));
    for (int p = 0; p < partitions; p++) {
        cr_assert_eq(parts->elems[p].err, 0, "partition %d: %s", p,
                     rd_kafka_err2str(parts->elems[p].err));
        offsets[p] = parts->elems[p].offset;
    }
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

void kt_create_topic(const char *bootstrap, const char *topic, int partitions)
{
    char why[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, why, sizeof why), 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    cr_assert_not_null(rk, "%s", why);
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, why, sizeof why);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opts, 15000, why, sizeof why);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    /* Everything is freed before asserting: a failed assertion ends the
     * test, and the leak report would bury the reason. */
    char failure[600] = "";
    if (!ev) {
        snprintf(failure, sizeof failure, "CreateTopics %s: no answer in 30 s", topic);
    } else {
        size_t n = 0;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        if (n != 1)
            snprintf(failure, sizeof failure, "CreateTopics %s: %zu results", topic, n);
        else if (rd_kafka_topic_result_error(res[0]))
            snprintf(failure, sizeof failure, "CreateTopics %s: %s", topic,
                     rd_kafka_topic_result_error_string(res[0]));
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_destroy(rk);
    cr_assert(!failure[0], "%s", failure);
}

/* ------------------------------------------------------------------ gate */

void kt_gate_open(kt_gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

void kt_gate_wait(kt_gate *g, int timeout_s)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_s;
    pthread_mutex_lock(&g->mu);
    while (!g->open && pthread_cond_timedwait(&g->cv, &g->mu, &until) == 0)
        ;
    pthread_mutex_unlock(&g->mu);
}
