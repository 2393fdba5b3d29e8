/*
 * url.h — `redis.url` parsed: where the server is, who to log in as, which
 * database. Supported: redis://[[user]:password@]host[:port][/db] and
 * unix:///absolute/path[?db=N]. Refused with a sentence naming what is
 * supported: rediss:// (hiredis 0.14 has no TLS), other schemes, anything
 * malformed. The password never leaves this struct except to AUTH: error
 * messages and logs use rd_url.display, where it is replaced by "***".
 */
#ifndef EB_REDIS_URL_H
#define EB_REDIS_URL_H

#include <stdbool.h>
#include <stddef.h>

enum { RD_URL_MAX = 1024 };

typedef struct rd_url {
    char host[256];          /* empty for a unix socket */
    int port;                /* 6379 unless given */
    char unix_path[256];     /* empty for TCP */
    char user[128];          /* empty: the default user */
    char password[256];      /* empty: no AUTH */
    bool has_password;
    int db;                  /* 0 unless given */
    char display[RD_URL_MAX]; /* the URL with the password as "***" */
} rd_url;

/** Parses `text`. @returns 0, or -1 with a sentence in err. */
int rd_url_parse(const char *text, rd_url *out, char *err, size_t err_size);

#endif
