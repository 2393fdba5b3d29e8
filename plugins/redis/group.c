/*
 * group.c — a consumer group's reads and acks on one stream (see group.h).
 */
#include "group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rd_group_init(rd_group *g, rd_conn *conn, const char *stream, const char *group,
                   const char *consumer, const char *start_id)
{
    *g = (rd_group){.conn = conn, .stream = stream, .group = group, .consumer = consumer,
                    .start_id = start_id};
    rd_group_rewind(g);
}

void rd_group_rewind(rd_group *g) { snprintf(g->cursor, sizeof g->cursor, "0"); }

static bool is_error(const redisReply *r, const char *prefix)
{
    return r->type == REDIS_REPLY_ERROR && strncmp(r->str, prefix, strlen(prefix)) == 0;
}

int rd_group_ensure(rd_group *g, char *err, size_t err_size)
{
    const char *argv[] = {"XGROUP", "CREATE", g->stream, g->group, g->start_id, "MKSTREAM"};
    redisReply *r = rd_conn_command(g->conn, 6, argv, NULL, err, err_size);
    if (!r)
        return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR && !is_error(r, "BUSYGROUP")) {
        snprintf(err, err_size, "redis %s: XGROUP CREATE %s %s: %s", g->conn->url->display,
                 g->stream, g->group, r->str);
        rc = -1;
    } else {
        if (g->made && r->type != REDIS_REPLY_ERROR)
            g->recreated++;
        g->made = true;
    }
    freeReplyObject(r);
    return rc;
}

/** The entries of an XREADGROUP reply for one stream ([[stream,
 *  entries]], or nil when BLOCK timed out). NULL if shaped otherwise. */
static const redisReply *entries_of(const redisReply *r)
{
    static const redisReply none = {.type = REDIS_REPLY_ARRAY, .elements = 0};
    if (r->type == REDIS_REPLY_NIL)
        return &none;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
        r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements != 2 ||
        r->element[0]->element[1]->type != REDIS_REPLY_ARRAY)
        return NULL;
    return r->element[0]->element[1];
}

int rd_group_read(rd_group *g, size_t count, int block_ms, redisReply **reply,
                  const redisReply **entries, char *err, size_t err_size)
{
    *reply = NULL;
    *entries = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        bool pending = strcmp(g->cursor, ">") != 0;
        char count_s[24], block_s[24];
        snprintf(count_s, sizeof count_s, "%zu", count);
        snprintf(block_s, sizeof block_s, "%d", block_ms);
        const char *argv[12];
        int argc = 0;
        argv[argc++] = "XREADGROUP";
        argv[argc++] = "GROUP";
        argv[argc++] = g->group;
        argv[argc++] = g->consumer;
        argv[argc++] = "COUNT";
        argv[argc++] = count_s;
        if (!pending && block_ms > 0) {
            argv[argc++] = "BLOCK";
            argv[argc++] = block_s;
        }
        argv[argc++] = "STREAMS";
        argv[argc++] = g->stream;
        argv[argc++] = g->cursor;
        redisReply *r = rd_conn_command(g->conn, argc, argv, NULL, err, err_size);
        if (!r)
            return -1;
        if (is_error(r, "NOGROUP") && attempt == 0) {
            /* The stream or the group was deleted: make it again and read
             * from the start of what there is now (what was pending here
             * is gone with the group). */
            freeReplyObject(r);
            rd_group_rewind(g);
            if (rd_group_ensure(g, err, err_size) != 0)
                return -1;
            continue;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            snprintf(err, err_size, "redis %s: XREADGROUP %s %s: %s", g->conn->url->display,
                     g->stream, g->group, r->str);
            freeReplyObject(r);
            return -1;
        }
        const redisReply *list = entries_of(r);
        if (!list) {
            snprintf(err, err_size, "redis %s: XREADGROUP %s: a reply in an unexpected shape",
                     g->conn->url->display, g->stream);
            freeReplyObject(r);
            return -1;
        }
        if (pending) {
            if (list->elements == 0) /* no more own pending: new ones next */
                snprintf(g->cursor, sizeof g->cursor, ">");
            else
                snprintf(g->cursor, sizeof g->cursor, "%s",
                         list->element[list->elements - 1]->element[0]->str);
        }
        *reply = r;
        *entries = list;
        return 0;
    }
    snprintf(err, err_size, "redis %s: XREADGROUP %s %s: NOGROUP again after making the group",
             g->conn->url->display, g->stream, g->group);
    return -1;
}

long long rd_group_ack(rd_group *g, const char *const *ids, size_t n, char *err,
                       size_t err_size)
{
    const char **argv = malloc((n + 3) * sizeof *argv);
    if (!argv) {
        snprintf(err, err_size, "redis: XACK: out of memory");
        return -1;
    }
    argv[0] = "XACK";
    argv[1] = g->stream;
    argv[2] = g->group;
    memcpy(argv + 3, ids, n * sizeof *ids);
    redisReply *r = rd_conn_command(g->conn, (int)(n + 3), argv, NULL, err, err_size);
    free(argv);
    if (!r)
        return -1;
    long long acked = -1;
    if (r->type == REDIS_REPLY_INTEGER)
        acked = r->integer;
    else
        snprintf(err, err_size, "redis %s: XACK %s %s: %s", g->conn->url->display, g->stream,
                 g->group, r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
    freeReplyObject(r);
    return acked;
}
