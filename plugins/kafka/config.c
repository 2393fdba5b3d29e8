/*
 * config.c — the kafka.* settings: which keys are eventbus's own, which
 * librdkafka properties eventbus must refuse, checking every other one with
 * librdkafka itself, and building the rd_kafka_conf_t of a producer or a
 * consumer (eventbus's defaults, then the user's keys, then what eventbus
 * forces), and the check that the core's message limit, with room for a
 * dead letter's headers, fits librdkafka's. Also owns the routing of
 * librdkafka's logs to the bus's logger: the log callback gets nothing but
 * the rd_kafka_t, whose opaque belongs to its owner (kf_producer,
 * kf_member), so an on_new interceptor records which bus each handle
 * belongs to and on_destroy forgets it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"

#define KF_PREFIX "kafka."
#define KF_PREFIX_LEN (sizeof KF_PREFIX - 1)

/* ------------------------------------------------------------- own keys */

typedef struct own_key {
    const char *key;
    long min, max;
} own_key;

static const own_key own_keys[] = {
    {"kafka.topic.partitions", 1, 100000},
    {"kafka.topic.replication", 1, 32767},
};

static const own_key *find_own_key(const char *key)
{
    for (size_t i = 0; i < sizeof own_keys / sizeof own_keys[0]; i++)
        if (strcmp(own_keys[i].key, key) == 0)
            return &own_keys[i];
    return NULL;
}

bool kf_config_is_own_key(const char *key)
{
    return key && find_own_key(key) != NULL;
}

static int check_own_key(const own_key *k, const char *value, char *errstr, size_t n)
{
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno == 0 && end != value && *end == '\0' && v >= k->min && v <= k->max)
        return 0;
    snprintf(errstr, n, "'%s' is not an integer from %ld to %ld", value, k->min, k->max);
    return EB_ERR_CONFIG;
}

/* ------------------------------------------------------ refused properties */

/* A property eventbus owns, with the sentence that says why. `refused`
 * decides on librdkafka's normalised value (NULL: any value is refused). */
typedef struct refused_property {
    const char *name;
    bool (*refused)(const char *value);
    const char *why;
} refused_property;

static bool names_cooperative_assignor(const char *value)
{
    return strstr(value, "cooperative") != NULL;
}

static bool is_true(const char *value)
{
    return strcmp(value, "true") == 0;
}

static const refused_property refused_properties[] = {
    {"enable.auto.offset.store", NULL,
     "eventbus stores offsets itself, each partition only up to its first "
     "unfinished message (contiguous acknowledgement)"},
    {"group.id", NULL, "the group is the one given to eb_subscribe()"},
    {"transactional.id", NULL,
     "exactly-once delivery and Kafka transactions are not supported yet"},
    {"partition.assignment.strategy", names_cooperative_assignor,
     "the cooperative-sticky assignor crashes librdkafka before 2.3.0 when a "
     "consumer closes before its first assignment; use range or roundrobin"},
    {"log.queue", is_true,
     "eventbus forwards librdkafka's logs as they happen; queued logs would "
     "never be served and would pile up"},
};

static const refused_property *find_refused(const char *prop)
{
    for (size_t i = 0; i < sizeof refused_properties / sizeof refused_properties[0]; i++)
        if (strcmp(refused_properties[i].name, prop) == 0)
            return &refused_properties[i];
    return NULL;
}

/* ------------------------------------------------- librdkafka's properties */

/* librdkafka's own table of properties, read once and kept for the process:
 * the names (NULL-terminated, for near-miss suggestions) and who reads each
 * ('C' consumer, 'P' producer, '*' both), so that a producer is not handed
 * consumer properties (librdkafka would warn on every open) and back. */
static struct {
    char **names;
    char *scopes;
    size_t count;
} known;
static pthread_once_t known_once = PTHREAD_ONCE_INIT;

/* A row of the table starts with the property name, then " | <scope> |";
 * headings, the header row and the separator do not start lowercase.
 * @returns the name's length, 0 for any other line. */
static size_t parse_row(const char *line, char *scope)
{
    if (*line < 'a' || *line > 'z')
        return 0;
    size_t len = strcspn(line, " |\n");
    const char *p = line + len + strspn(line + len, " ");
    if (*p != '|')
        return 0;
    p += 1 + strspn(p + 1, " ");
    *scope = *p;
    return len;
}

/* Appends one property; false when out of memory (the table stays valid). */
static bool append_known(const char *name, size_t len, char scope)
{
    char **names = realloc(known.names, (known.count + 2) * sizeof *names);
    if (names) {
        known.names = names;
        names[known.count] = NULL;
    }
    char *scopes = names ? realloc(known.scopes, known.count + 1) : NULL;
    if (scopes)
        known.scopes = scopes;
    if (!scopes || !(names[known.count] = strndup(name, len)))
        return false;
    scopes[known.count] = scope;
    names[++known.count] = NULL;
    return true;
}

static void read_known_properties(void)
{
    char *table = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&table, &size);
    if (!f)
        return;
    rd_kafka_conf_properties_show(f);
    fclose(f);
    for (const char *line = table; line && *line;) {
        char scope;
        size_t len = parse_row(line, &scope);
        if (len && !append_known(line, len, scope))
            break;
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    free(table);
}

/** 'C', 'P' or '*' (also for a name librdkafka did not list). */
static char scope_of(const char *prop)
{
    pthread_once(&known_once, read_known_properties);
    for (size_t i = 0; i < known.count; i++)
        if (strcmp(known.names[i], prop) == 0)
            return known.scopes[i];
    return '*';
}

/* Writes "; did you mean 'kafka.<name>'?" after the text already in errstr
 * when a librdkafka property is close to `prop`. */
static void suggest_property(const eb_host *host, const char *prop, char *errstr, size_t n)
{
    pthread_once(&known_once, read_known_properties);
    char near[128];
    if (!known.names ||
        !host->nearest_key(prop, (const char *const *)known.names, near, sizeof near))
        return;
    size_t used = strlen(errstr);
    if (used < n)
        snprintf(errstr + used, n - used, "; did you mean '" KF_PREFIX "%s'?", near);
}

/* ----------------------------------------------------------------- check */

static int set_on_scratch_conf(const eb_host *host, const char *prop, const char *value,
                               char *errstr, size_t n)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, prop, value, errstr, n);
    int rc = 0;
    if (res == RD_KAFKA_CONF_UNKNOWN)
        suggest_property(host, prop, errstr, n);
    if (res != RD_KAFKA_CONF_OK) {
        rc = EB_ERR_CONFIG;
    } else {
        const refused_property *r = find_refused(prop);
        char normalised[512];
        size_t size = sizeof normalised;
        if (r && rd_kafka_conf_get(conf, prop, normalised, &size) == RD_KAFKA_CONF_OK &&
            r->refused(normalised)) {
            snprintf(errstr, n, "refused: %s", r->why);
            rc = EB_ERR_CONFIG;
        }
    }
    rd_kafka_conf_destroy(conf);
    return rc;
}

int kf_config_check(const eb_host *host, const char *key, const char *value,
                    char *errstr, size_t errstr_size)
{
    char scratch[512];
    if (!errstr || !errstr_size)
        errstr = scratch, errstr_size = sizeof scratch;
    errstr[0] = '\0';
    const own_key *own = find_own_key(key);
    if (own)
        return check_own_key(own, value, errstr, errstr_size);
    if (strncmp(key, KF_PREFIX, KF_PREFIX_LEN) != 0 || !key[KF_PREFIX_LEN]) {
        snprintf(errstr, errstr_size, "not a kafka.<librdkafka property> key");
        return EB_ERR_CONFIG;
    }
    const char *prop = key + KF_PREFIX_LEN;
    const refused_property *r = find_refused(prop);
    if (r && !r->refused) {
        snprintf(errstr, errstr_size, "refused: %s", r->why);
        return EB_ERR_CONFIG;
    }
    return set_on_scratch_conf(host, prop, value, errstr, errstr_size);
}

/* ----------------------------------------------------------------- limits */

/* librdkafka's own default, read from it rather than copied. */
static long long kafka_message_max_bytes(kf_bus *kb)
{
    const char *set = kb->host->config_get(kb->hb, KF_PREFIX "message.max.bytes");
    if (set)
        return atoll(set); /* checked by librdkafka at open */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char value[32];
    size_t size = sizeof value;
    long long max = rd_kafka_conf_get(conf, "message.max.bytes", value, &size) ==
                            RD_KAFKA_CONF_OK
                        ? atoll(value)
                        : 1000000;
    rd_kafka_conf_destroy(conf);
    return max;
}

int kf_config_check_limits(kf_bus *kb, char *errstr, size_t errstr_size)
{
    /* The host answers a core key with its default when it is not set. */
    const char *core = kb->host->config_get(kb->hb, "message.max.bytes");
    long long core_max = core ? atoll(core) : 0;
    long long kafka_max = kafka_message_max_bytes(kb);
    if (core_max + EB_DLQ_HEADROOM <= kafka_max)
        return 0;
    snprintf(errstr, errstr_size,
             "message.max.bytes (%lld) plus %d bytes for the headers of a dead letter "
             "must fit kafka.message.max.bytes (%lld): set message.max.bytes to at most "
             "%lld, or raise kafka.message.max.bytes (and the broker's and the topics' "
             "limits with it)",
             core_max, EB_DLQ_HEADROOM, kafka_max, kafka_max - EB_DLQ_HEADROOM);
    return EB_ERR_CONFIG;
}

/* ---------------------------------------------------------------- logging */

/* Which bus each live rd_kafka_t logs to. A handful of entries per process. */
typedef struct log_route {
    const rd_kafka_t *rk;
    kf_bus *kb;
    struct log_route *next;
} log_route;

static pthread_mutex_t routes_mu = PTHREAD_MUTEX_INITIALIZER;
static log_route *routes;

static const char route_interceptor[] = "eventbus-log";

/* Called from rd_kafka_destroy(), or from rd_kafka_new() when it fails.
 * Logs of the destroy's last steps after this are not forwarded. */
static rd_kafka_resp_err_t route_forget(rd_kafka_t *rk, void *unused)
{
    pthread_mutex_lock(&routes_mu);
    for (log_route **at = &routes; *at; at = &(*at)->next) {
        if ((*at)->rk == rk) {
            log_route *gone = *at;
            *at = gone->next;
            free(gone);
            break;
        }
    }
    pthread_mutex_unlock(&routes_mu);
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* Called at the start of rd_kafka_new(), before its threads exist. Out of
 * memory, the handle's logs are dropped rather than failing the handle. */
static rd_kafka_resp_err_t route_remember(rd_kafka_t *rk, const rd_kafka_conf_t *conf,
                                          void *kb, char *errstr, size_t errstr_size)
{
    log_route *r = malloc(sizeof *r);
    if (!r) {
        snprintf(errstr, errstr_size, "out of memory: librdkafka's logs are dropped");
        return RD_KAFKA_RESP_ERR__FAIL;
    }
    pthread_mutex_lock(&routes_mu);
    *r = (log_route){rk, kb, routes};
    routes = r;
    pthread_mutex_unlock(&routes_mu);
    return rd_kafka_interceptor_add_on_destroy(rk, route_interceptor, route_forget, NULL);
}

/* The bus outlives its handles (they are destroyed before it is freed), so
 * the pointer stays good after the lock is dropped. */
static kf_bus *route_of(const rd_kafka_t *rk)
{
    kf_bus *kb = NULL;
    pthread_mutex_lock(&routes_mu);
    for (const log_route *r = routes; r && !kb; r = r->next)
        if (r->rk == rk)
            kb = r->kb;
    pthread_mutex_unlock(&routes_mu);
    return kb;
}

static eb_log_level level_of_syslog(int level)
{
    if (level <= 3)
        return EB_LOG_ERROR;
    if (level == 4)
        return EB_LOG_WARN;
    if (level <= 6)
        return EB_LOG_INFO;
    return EB_LOG_DEBUG;
}

/* Runs on librdkafka's own threads (and on threads calling into
 * librdkafka); host->log is thread-safe. */
static void forward_log(const rd_kafka_t *rk, int level, const char *facility,
                        const char *line)
{
    kf_bus *kb = route_of(rk);
    if (kb)
        kb->host->log(kb->hb, level_of_syslog(level), "librdkafka %s %s: %s",
                      rd_kafka_name(rk), facility, line);
}

/* librdkafka's error callback: runs on its threads; feeds the health. */
static void forward_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kf_bus *kb = route_of(rk);
    if (kb)
        kf_health_error(kb, (rd_kafka_resp_err_t)err, reason);
}

/* ------------------------------------------------------------------ build */

typedef struct property {
    const char *name, *value;
} property;

/*
 * Producer: idempotence gives acks=all, ordered retries and no duplicates
 * from retries; linger.ms=5 batches under load while adding at most 5 ms of
 * latency when idle (librdkafka's default too, stated so that it is ours);
 * murmur2_random puts keys on the partitions a Java producer picks and
 * spreads unkeyed messages.
 */
static const property producer_defaults[] = {
    {"client.id", "eventbus-producer"},
    {"enable.idempotence", "true"},
    {"acks", "all"},
    {"linger.ms", "5"},
    {"partitioner", "murmur2_random"},
    {NULL, NULL},
};

/*
 * Consumer: stored offsets are committed every second and on close (the
 * member also commits on revoke, waiting a bounded time); a new group
 * starts at the earliest retained message (DESIGN.md); eager assignors only
 * (see refused_properties); no partition-EOF events unless asked for.
 * queued.min.messages: librdkafka 2.0.2 stops fetching a partition whose
 * local queue holds more than this and looks again only a second later
 * (fetch.queue.backoff.ms arrived in 2.2.0), which stalled a consumer
 * catching up on a backlog for most of each second; the memory bound that
 * remains is queued.max.messages.kbytes (64 MiB by default).
 * session.timeout.ms 10 s, heartbeats every 3 s (librdkafka: 45 s and 3 s,
 * like the Java client since Kafka 3.0): a crashed member's partitions
 * wait for its session to expire, 47 s with librdkafka's default (issue 7,
 * defect 15). Heartbeats come from librdkafka's own thread, so slow
 * handlers never expire a session (max.poll.interval.ms bounds those); a
 * shorter session only risks evictions when the process or network stalls
 * for seconds. The broker must allow it (group.min.session.timeout.ms,
 * 6 s by default).
 * fetch.wait.max.ms 100 (librdkafka: 500): a pause (a full pool) drops
 * what librdkafka fetched of the partition, and a consumer caught up to
 * the end of the log has a fetch waiting at the broker for this long,
 * which must come back before the resumed partition is fetched again: an
 * elastic pool still growing paused once and then waited half a second
 * for the rest of a 21,000-message backlog. Costs an idle consumer ten
 * empty fetches a second per broker instead of two.
 */
static const property consumer_defaults[] = {
    {"client.id", "eventbus-consumer"},
    {"session.timeout.ms", "10000"},
    {"heartbeat.interval.ms", "3000"},
    {"enable.auto.commit", "true"},
    {"auto.commit.interval.ms", "1000"},
    {"partition.assignment.strategy", "range,roundrobin"},
    {"auto.offset.reset", "earliest"},
    {"enable.partition.eof", "false"},
    {"queued.min.messages", "10000000"},
    {"fetch.wait.max.ms", "100"},
    {NULL, NULL},
};

static const property consumer_forced[] = {
    {"enable.auto.offset.store", "false"},
    {NULL, NULL},
};

static const property nothing_forced[] = {{NULL, NULL}};

typedef struct build_ctx {
    rd_kafka_conf_t *conf;
    char other_role; /* scope of the properties this conf does not take */
    char *errstr;
    size_t errstr_size;
} build_ctx;

static int set_property(build_ctx *b, const char *name, const char *value)
{
    char why[512];
    if (rd_kafka_conf_set(b->conf, name, value, why, sizeof why) == RD_KAFKA_CONF_OK)
        return 0;
    snprintf(b->errstr, b->errstr_size, KF_PREFIX "%s: %s", name, why);
    return EB_ERR_CONFIG;
}

static int set_properties(build_ctx *b, const property *props)
{
    for (; props->name; props++) {
        int rc = set_property(b, props->name, props->value);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int set_user_key(const char *key, const char *value, void *arg)
{
    build_ctx *b = arg;
    const char *prop = key + KF_PREFIX_LEN;
    if (kf_config_is_own_key(key) || scope_of(prop) == b->other_role)
        return 0;
    return set_property(b, prop, value);
}

static int require_bootstrap(build_ctx *b)
{
    size_t size = 0;
    rd_kafka_conf_res_t res = rd_kafka_conf_get(b->conf, "bootstrap.servers", NULL, &size);
    if (res == RD_KAFKA_CONF_OK && size > 1) /* size counts the NUL */
        return 0;
    snprintf(b->errstr, b->errstr_size, "kafka.bootstrap.servers is required");
    return EB_ERR_CONFIG;
}

int kf_config_build(kf_bus *kb, const char *role, rd_kafka_conf_t **out,
                    char *errstr, size_t errstr_size)
{
    char scratch[512];
    if (!errstr || !errstr_size)
        errstr = scratch, errstr_size = sizeof scratch;
    bool producer = strcmp(role, "producer") == 0;
    build_ctx b = {rd_kafka_conf_new(), producer ? 'C' : 'P', errstr, errstr_size};
    int rc = set_properties(&b, producer ? producer_defaults : consumer_defaults);
    if (rc == 0)
        rc = kb->host->config_foreach(kb->hb, KF_PREFIX, set_user_key, &b);
    if (rc == 0)
        rc = set_properties(&b, producer ? nothing_forced : consumer_forced);
    if (rc == 0)
        rc = require_bootstrap(&b);
    if (rc != 0) {
        rd_kafka_conf_destroy(b.conf);
        return rc;
    }
    rd_kafka_conf_set_log_cb(b.conf, forward_log);
    rd_kafka_conf_set_error_cb(b.conf, forward_error);
    rd_kafka_conf_interceptor_add_on_new(b.conf, route_interceptor, route_remember, kb);
    *out = b.conf;
    return 0;
}
