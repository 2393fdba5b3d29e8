/*
 * conn.h — one blocking hiredis connection with deadlines: connect with a
 * timeout, TCP keepalive, a command timeout on every read and write, AUTH
 * (an ACL user or the default one), SELECT, and a PING that proves the
 * server answers (a SIGSTOPped server still accepts TCP connections).
 *
 * hiredis 0.14.1 traps (DESIGN.md): after any error or timeout a context is
 * dead and must be freed and made again; the async API has no timeouts, so
 * every connection is blocking, used by one thread at a time. Errors are
 * sentences naming the URL without its password.
 */
#ifndef EB_REDIS_CONN_H
#define EB_REDIS_CONN_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#include "url.h"

typedef struct rd_timeouts {
    int connect_ms;  /* TCP connect (and the login that follows) */
    int command_ms;  /* each reply, once connected */
} rd_timeouts;

typedef struct rd_conn {
    redisContext *ctx;       /* NULL: not connected */
    const rd_url *url;
    rd_timeouts timeouts;
    bool logged_in;          /* the command timeout is in force */
} rd_conn;

/**
 * Connects, logs in, selects the database and PINGs, each within its
 * timeout. @returns 0; or -1 with a sentence in err and c->ctx NULL.
 */
int rd_conn_open(rd_conn *c, const rd_url *url, rd_timeouts timeouts, char *err,
                 size_t err_size);

/** Frees the context (NULL-safe, idempotent). */
void rd_conn_close(rd_conn *c);

/**
 * Runs one command (argv form) and returns its reply; on a connection
 * error or timeout the context is freed (the caller reconnects) and NULL
 * is returned with a sentence in err. An error reply (REDIS_REPLY_ERROR)
 * is returned as a reply: the connection stays usable.
 */
redisReply *rd_conn_command(rd_conn *c, int argc, const char **argv, const size_t *lens,
                            char *err, size_t err_size);

/**
 * Sends n commands as one pipeline (argcs[i], argvs[i]: C strings) and
 * reads their n replies into replies[]. @returns 0 (free each reply); or
 * -1 with a sentence, every reply freed and the connection closed.
 */
int rd_conn_pipeline(rd_conn *c, size_t n, const int *argcs, const char *const *const *argvs,
                     redisReply **replies, char *err, size_t err_size);

/** CLIENT ID of this connection (for another connection to unblock it).
 *  @returns the id, or -1 with a sentence. */
long long rd_conn_client_id(rd_conn *c, char *err, size_t err_size);

/**
 * From connection `c`, ends the blocking command (XREADGROUP ... BLOCK) of
 * the connection whose CLIENT ID is `id` at once, as if its BLOCK had
 * timed out: a blocked read cannot be interrupted locally, and pause,
 * revoke and close must not wait a whole BLOCK. @returns 1 when it was
 * blocked, 0 when not, -1 with a sentence.
 */
int rd_conn_unblock(rd_conn *c, long long id, char *err, size_t err_size);

#endif
