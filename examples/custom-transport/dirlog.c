/*
 * dirlog.c — the dirlog transport's descriptor and its bus: config keys,
 * open and close, publish (one frame appended under the topic's locks),
 * the thread that runs delivery callbacks, flush, health and stats.
 * Subscriptions live in member.c, the record format in record.c; the
 * format and the locking are described in dirlog.h.
 */
#include "dirlog.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { POLL_MS_DEFAULT = 5, POLL_MS_MAX = 10000 };

/** A topic this bus appends to: its log, opened once. */
struct dl_topic {
    dl_topic *next;
    char *name;
    int log_fd;                 /* O_WRONLY | O_APPEND */
    pthread_mutex_t append_mu;  /* flock does not exclude this process's threads */
};

/** A delivery callback owed: the publish that carried `token` is stored. */
struct dl_report {
    dl_report *next;
    void *token;
    uint64_t offset;
};

/* ------------------------------------------------------------ config keys */

static const char *const known_keys[] = {"dirlog.dir", "dirlog.poll.ms", NULL};

static int parse_poll_ms(const char *value, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < 1 || v > POLL_MS_MAX)
        return -1;
    *out = (int)v;
    return 0;
}

static int dirlog_config_check(const eb_host *host, const char *key, const char *value,
                               char *errstr, size_t errstr_size)
{
    int poll_ms;
    if (strcmp(key, "dirlog.dir") == 0) {
        if (value[0])
            return 0;
        snprintf(errstr, errstr_size, "the directory must not be empty");
        return EB_ERR_CONFIG;
    }
    if (strcmp(key, "dirlog.poll.ms") == 0) {
        if (parse_poll_ms(value, &poll_ms) == 0)
            return 0;
        snprintf(errstr, errstr_size, "'%s' is not a number of milliseconds from 1 to %d",
                 value, POLL_MS_MAX);
        return EB_ERR_CONFIG;
    }
    char near[64];
    if (host->nearest_key(key, known_keys, near, sizeof near))
        snprintf(errstr, errstr_size, "unknown key; did you mean '%s'?", near);
    else
        snprintf(errstr, errstr_size, "unknown key of the dirlog transport (it has "
                 "dirlog.dir and dirlog.poll.ms)");
    return EB_ERR_CONFIG;
}

/* -------------------------------------------------------------- file errors */

void dl_note_io(dl_bus *b, const char *what, int err)
{
    if (!what && !atomic_load(&b->failing))
        return; /* the usual case: it worked, as before */
    char text[sizeof b->error] = "";
    if (what) {
        snprintf(text, sizeof text, "%s%s%s", what, err ? ": " : "", err ? strerror(err) : "");
        atomic_fetch_add(&b->io_errors, 1);
    }
    atomic_store(&b->failing, what != NULL);
    pthread_mutex_lock(&b->error_mu);
    bool changed = strcmp(b->error, text) != 0;
    if (changed)
        memcpy(b->error, text, sizeof text);
    pthread_mutex_unlock(&b->error_mu);
    if (changed && what)
        b->host->log(b->hb, EB_LOG_ERROR, "%s", text);
    else if (changed)
        b->host->log(b->hb, EB_LOG_INFO, "file operations work again");
}

int dl_topic_dir_open(dl_bus *b, const char *topic)
{
    char name[DL_FILE_NAME_SIZE];
    dl_file_name(topic, name);
    if (mkdirat(b->dir_fd, name, 0777) != 0 && errno != EEXIST)
        return -1;
    return openat(b->dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* -------------------------------------------------------- delivery callbacks */

static void *reports_main(void *arg)
{
    dl_bus *b = arg;
    pthread_mutex_lock(&b->reports_mu);
    for (;;) {
        if (!b->reports) {
            if (b->reports_stopping)
                break;
            pthread_cond_wait(&b->reports_cv, &b->reports_mu);
            continue;
        }
        dl_report *batch = b->reports; /* take them all: publishers start anew */
        b->reports = NULL;
        b->reports_tail = &b->reports;
        for (dl_report *r = batch; r; r = r->next)
            b->reports_running++;
        pthread_mutex_unlock(&b->reports_mu);
        for (dl_report *r = batch, *next; r; r = next) {
            char id[24];
            snprintf(id, sizeof id, "%" PRIu64, r->offset);
            b->host->delivered(b->hb, r->token, 0, id);
            next = r->next;
            free(r);
        }
        pthread_mutex_lock(&b->reports_mu);
        b->reports_running = 0;
        if (!b->reports)
            pthread_cond_broadcast(&b->idle_cv);
    }
    pthread_mutex_unlock(&b->reports_mu);
    return NULL;
}

static void report_stored(dl_bus *b, dl_report *r, void *token, uint64_t offset)
{
    *r = (dl_report){.token = token, .offset = offset};
    pthread_mutex_lock(&b->reports_mu);
    *b->reports_tail = r;
    b->reports_tail = &r->next;
    pthread_cond_signal(&b->reports_cv);
    pthread_mutex_unlock(&b->reports_mu);
}

static int dirlog_flush(void *state, int64_t deadline_ns)
{
    dl_bus *b = state;
    int rc = 0;
    pthread_mutex_lock(&b->reports_mu);
    while (b->reports || b->reports_running) {
        /* The deadline is on the host's clock: wait on ours for what is left. */
        int64_t left_ns = deadline_ns - b->host->now_ns();
        if (left_ns <= 0) {
            rc = EB_ERR_TIMEOUT;
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t at = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + left_ns;
        ts = (struct timespec){.tv_sec = at / 1000000000, .tv_nsec = at % 1000000000};
        pthread_cond_timedwait(&b->idle_cv, &b->reports_mu, &ts);
    }
    pthread_mutex_unlock(&b->reports_mu);
    return rc;
}

/* ----------------------------------------------------------------- publish */

static int64_t wall_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static dl_topic *topic_open(dl_bus *b, const char *name)
{
    dl_topic *t = calloc(1, sizeof *t);
    int dir_fd = dl_topic_dir_open(b, name);
    if (!t || dir_fd < 0 || !(t->name = strdup(name))) {
        int err = dir_fd < 0 ? errno : ENOMEM;
        if (dir_fd >= 0)
            close(dir_fd);
        if (t)
            free(t->name);
        free(t);
        errno = err;
        return NULL;
    }
    t->log_fd = openat(dir_fd, "log", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    int err = errno;
    close(dir_fd);
    if (t->log_fd < 0) {
        free(t->name);
        free(t);
        errno = err;
        return NULL;
    }
    pthread_mutex_init(&t->append_mu, NULL);
    return t;
}

/** The topic, opened on its first publish. */
static int topic_for_append(dl_bus *b, const char *name, dl_topic **out)
{
    pthread_mutex_lock(&b->topics_mu);
    dl_topic *t = b->topics;
    while (t && strcmp(t->name, name) != 0)
        t = t->next;
    if (!t && (t = topic_open(b, name))) {
        t->next = b->topics;
        b->topics = t;
    }
    int err = errno;
    pthread_mutex_unlock(&b->topics_mu);
    if (!t) {
        char what[300];
        snprintf(what, sizeof what, "cannot open the log of topic '%.200s'", name);
        dl_note_io(b, what, err);
        return err == ENOMEM ? EB_ERR_NOMEM : EB_ERR_IO;
    }
    *out = t;
    return 0;
}

/** Appends one frame under the topic's locks. @returns 0 and its offset,
 *  or EB_ERR_IO with nothing left behind (a part written is cut off). */
static int append_frame(dl_bus *b, dl_topic *t, const uint8_t *frame, size_t len,
                        uint64_t *offset)
{
    pthread_mutex_lock(&t->append_mu);
    int rc = 0;
    while (flock(t->log_fd, LOCK_EX) != 0)
        if (errno != EINTR) {
            rc = EB_ERR_IO;
            break;
        }
    off_t start = rc == 0 ? lseek(t->log_fd, 0, SEEK_END) : -1;
    size_t done = 0;
    while (start >= 0 && done < len) {
        ssize_t n = write(t->log_fd, frame + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    int err = errno;
    if (done < len && start >= 0 && done > 0 && ftruncate(t->log_fd, start) != 0)
        b->host->log(b->hb, EB_LOG_ERROR, "topic '%.200s': cannot cut off a record "
                     "written in part (readers will skip it): %s", t->name, strerror(errno));
    flock(t->log_fd, LOCK_UN);
    pthread_mutex_unlock(&t->append_mu);
    if (done < len) {
        char what[300];
        snprintf(what, sizeof what, "cannot append to the log of topic '%.200s'", t->name);
        dl_note_io(b, what, err);
        return EB_ERR_IO;
    }
    *offset = (uint64_t)start;
    return 0;
}

static int dirlog_publish(void *state, const eb_outgoing *msg, int64_t timeout_ms,
                          void *token)
{
    dl_bus *b = state;
    uint8_t *frame;
    size_t len;
    int rc = dl_frame_encode(msg, wall_clock_ms(), &frame, &len);
    if (rc != 0)
        return rc;
    /* Allocated first: once stored, a message must get its callback. */
    dl_report *report = token ? malloc(sizeof *report) : NULL;
    dl_topic *t;
    uint64_t offset;
    if (token && !report)
        rc = EB_ERR_NOMEM;
    if (rc == 0)
        rc = topic_for_append(b, msg->topic, &t);
    if (rc == 0)
        rc = append_frame(b, t, frame, len, &offset);
    free(frame);
    if (rc != 0) {
        free(report);
        return rc;
    }
    dl_note_io(b, NULL, 0);
    atomic_fetch_add(&b->published, 1);
    if (report)
        report_stored(b, report, token, offset);
    return 0;
}

/* ------------------------------------------------------------- subscribing */

static int dirlog_subscribe(void *state, eb_host_sub *hs, const eb_sub_params *p,
                            void **sub_state, char *errstr, size_t errstr_size)
{
    return dl_member_start(state, hs, p, (dl_member **)sub_state, errstr, errstr_size);
}

static void dirlog_unsubscribe(void *sub_state) { dl_member_stop(sub_state, 0); }

static int dirlog_unsubscribe_until(void *sub_state, int64_t deadline_ns)
{
    return dl_member_stop(sub_state, deadline_ns);
}

static void dirlog_sub_destroy(void *sub_state) { dl_member_free(sub_state); }

static void dirlog_ack(void *sub_state, eb_msg *const *msgs, size_t n)
{
    dl_member_ack(sub_state, msgs, n);
}

static void dirlog_release(void *sub_state, eb_msg *const *msgs, size_t n)
{
    dl_member_release(sub_state, msgs, n);
}

static void dirlog_resume(void *sub_state) { dl_member_resume(sub_state); }

/* --------------------------------------------------------- open and close */

/** Creates `dir` and its missing parents. @returns 0 or -1 with errno. */
static int make_dirs(const char *dir)
{
    char *path = strdup(dir);
    if (!path)
        return -1;
    int rc = 0;
    for (char *slash = path + 1; rc == 0 && (slash = strchr(slash, '/')); slash++) {
        *slash = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            rc = -1;
        *slash = '/';
    }
    if (rc == 0 && mkdir(path, 0777) != 0 && errno != EEXIST)
        rc = -1;
    int err = errno;
    free(path);
    errno = err;
    return rc;
}

static void bus_free(dl_bus *b)
{
    for (dl_topic *t = b->topics, *next; t; t = next) {
        next = t->next;
        close(t->log_fd);
        pthread_mutex_destroy(&t->append_mu);
        free(t->name);
        free(t);
    }
    if (b->dir_fd >= 0)
        close(b->dir_fd);
    pthread_mutex_destroy(&b->topics_mu);
    pthread_mutex_destroy(&b->reports_mu);
    pthread_cond_destroy(&b->reports_cv);
    pthread_cond_destroy(&b->idle_cv);
    pthread_mutex_destroy(&b->members_mu);
    pthread_mutex_destroy(&b->error_mu);
    free(b->dir);
    free(b);
}

static dl_bus *bus_new(const eb_host *host, eb_host_bus *hb)
{
    dl_bus *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->host = host;
    b->hb = hb;
    b->dir_fd = -1;
    b->reports_tail = &b->reports;
    pthread_mutex_init(&b->topics_mu, NULL);
    pthread_mutex_init(&b->reports_mu, NULL);
    pthread_cond_init(&b->reports_cv, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&b->idle_cv, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&b->members_mu, NULL);
    pthread_mutex_init(&b->error_mu, NULL);
    return b;
}

/** Makes the directory usable. @returns 0 or EB_ERR_CONFIG with a sentence. */
static int open_dir(dl_bus *b, const char *dir, char *errstr, size_t errstr_size)
{
    const char *failed = NULL;
    if (make_dirs(dir) != 0)
        failed = "cannot create it";
    else if ((b->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        failed = "cannot open it";
    else if (faccessat(b->dir_fd, ".", W_OK | X_OK, AT_EACCESS) != 0)
        failed = "cannot write in it";
    if (!failed)
        return (b->dir = strdup(dir)) ? 0 : EB_ERR_NOMEM;
    snprintf(errstr, errstr_size, "dirlog.dir '%s': %s: %s", dir, failed, strerror(errno));
    return EB_ERR_CONFIG;
}

static int dirlog_open(const eb_host *host, eb_host_bus *hb, void **state, char *errstr,
                       size_t errstr_size)
{
    const char *dir = host->config_get(hb, "dirlog.dir");
    const char *poll = host->config_get(hb, "dirlog.poll.ms");
    if (!dir) {
        snprintf(errstr, errstr_size, "dirlog.dir is not set: name the directory "
                 "that holds the topics (created if missing)");
        return EB_ERR_CONFIG;
    }
    dl_bus *b = bus_new(host, hb);
    if (!b)
        return EB_ERR_NOMEM;
    b->poll_ms = POLL_MS_DEFAULT;
    if (poll)
        parse_poll_ms(poll, &b->poll_ms); /* config_check passed it */
    int rc = open_dir(b, dir, errstr, errstr_size);
    if (rc == 0 && pthread_create(&b->reports_thread, NULL, reports_main, b) != 0)
        rc = EB_ERR_NOMEM;
    if (rc != 0) {
        bus_free(b);
        return rc;
    }
    *state = b;
    return 0;
}

/* Every subscription left already; publishes are over. */
static void dirlog_close(void *state)
{
    dl_bus *b = state;
    pthread_mutex_lock(&b->reports_mu);
    b->reports_stopping = true; /* the thread runs what is queued, then ends */
    pthread_cond_signal(&b->reports_cv);
    pthread_mutex_unlock(&b->reports_mu);
    pthread_join(b->reports_thread, NULL);
    bus_free(b);
}

/* ---------------------------------------------------------- health, stats */

static int dirlog_health(void *state, eb_health *out)
{
    dl_bus *b = state;
    pthread_mutex_lock(&b->error_mu);
    out->state = b->error[0] ? EB_HEALTH_DEGRADED : EB_HEALTH_OK;
    if (b->error[0])
        snprintf(out->detail, sizeof out->detail, "%.250s", b->error);
    else
        snprintf(out->detail, sizeof out->detail, "directory %s", b->dir);
    pthread_mutex_unlock(&b->error_mu);
    return 0;
}

/** Writes `s` as a JSON string into buf like snprintf. */
static int json_string(char *buf, size_t size, const char *s)
{
    size_t n = 0;
#define PUT(c) (n + 1 < size ? (buf[n] = (c)) : 0, n++)
    PUT('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            PUT('\\');
            PUT((char)*p);
        } else if (*p < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            for (char *e = esc; *e; e++)
                PUT(*e);
        } else {
            PUT((char)*p);
        }
    }
    PUT('"');
#undef PUT
    if (size)
        buf[n < size ? n : size - 1] = '\0';
    return (int)n;
}

/* Lengths add up as snprintf's do: past `size`, nothing more is written. */
static size_t advance(size_t used, int n) { return n > 0 ? used + (size_t)n : used; }
static char *rest_of(char *buf, size_t size, size_t used)
{
    return buf && used < size ? buf + used : NULL;
}

static int dirlog_stats(void *state, char *buf, size_t size)
{
    dl_bus *b = state;
    size_t used = advance(0, snprintf(buf, size, "{\"dir\":"));
#define REST rest_of(buf, size, used), used < size ? size - used : 0
    used = advance(used, json_string(REST, b->dir));
    used = advance(used, snprintf(REST, ",\"poll_ms\":%d,\"published\":%llu,"
                                  "\"io_errors\":%llu,\"subscriptions\":[", b->poll_ms,
                                  atomic_load(&b->published), atomic_load(&b->io_errors)));
    pthread_mutex_lock(&b->members_mu);
    for (dl_member *m = b->members; m; m = *dl_member_next(m)) {
        dl_member_info mi;
        dl_member_info_get(m, &mi);
        used = advance(used, snprintf(REST, "%s{\"topic\":", m == b->members ? "" : ","));
        used = advance(used, json_string(REST, mi.topic));
        used = advance(used, snprintf(REST, ",\"group\":"));
        used = advance(used, mi.group ? json_string(REST, mi.group) : snprintf(REST, "null"));
        used = advance(used, snprintf(REST, ",\"state\":\"%s\",\"read\":%" PRIu64
                                      ",\"committed\":%" PRIu64 ",\"in_flight\":%" PRIu64
                                      ",\"log_bytes\":%" PRIu64 "}",
                                      mi.active ? "active" : "standby", mi.read, mi.committed,
                                      mi.in_flight, mi.log_bytes));
    }
    pthread_mutex_unlock(&b->members_mu);
    used = advance(used, snprintf(REST, "]}"));
#undef REST
    return (int)used;
}

/* -------------------------------------------------------------- descriptor */

static const eb_transport dirlog_transport = {
    .abi_major = EB_TRANSPORT_ABI_MAJOR,
    .abi_minor = EB_TRANSPORT_ABI_MINOR,
    .struct_size = sizeof(eb_transport),
    .name = "dirlog",
    .version = DL_VERSION,
    /* Fail-over groups with one lane, read in stored order by one member at
     * a time: per-key order holds across members. */
    .features = EB_FEATURE_DURABLE | EB_FEATURE_FAILOVER_GROUPS | EB_FEATURE_KEY_ORDER |
                EB_FEATURE_REDELIVERY | EB_FEATURE_HEADERS | EB_FEATURE_TIMESTAMPS,
    .plugin_flags = 0,
    .config_check = dirlog_config_check,
    .open = dirlog_open,
    .close = dirlog_close,
    .publish = dirlog_publish,
    .flush = dirlog_flush,
    .subscribe = dirlog_subscribe,
    .unsubscribe = dirlog_unsubscribe,
    .sub_destroy = dirlog_sub_destroy,
    .ack = dirlog_ack,
    .release = dirlog_release,
    .resume = dirlog_resume,
    .health = dirlog_health,
    .stats = dirlog_stats,
    .unsubscribe_until = dirlog_unsubscribe_until,
};

EB_TRANSPORT_EXPORT const eb_transport *eb_transport_entry(void)
{
    return &dirlog_transport;
}
