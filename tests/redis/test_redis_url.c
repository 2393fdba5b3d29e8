/*
 * test_redis_url.c — `redis.url` parsing (plugins/redis/url.c): what is
 * accepted and what it means, and every refusal is a sentence that names
 * what is supported and never shows the password.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "url.h"

static char err[512];

static rd_url parse_ok(const char *text)
{
    rd_url u;
    cr_assert_eq(rd_url_parse(text, &u, err, sizeof err), 0, "%s: %s", text, err);
    return u;
}

static void parse_fails(const char *text, const char *want)
{
    rd_url u;
    err[0] = '\0';
    cr_assert_eq(rd_url_parse(text, &u, err, sizeof err), -1, "%s was accepted", text);
    cr_expect(strstr(err, want), "%s: the error '%s' does not say '%s'", text, err, want);
    cr_expect(strstr(err, "supported") || strstr(err, "longer") || strstr(err, "too long"),
              "%s: the error '%s' does not say what is supported", text, err);
    cr_expect(!strstr(err, "s3cret"), "%s: the error shows the password: %s", text, err);
}

Test(redis_url, host_port_and_database)
{
    rd_url u = parse_ok("redis://10.0.0.7:6380/3");
    cr_expect_str_eq(u.host, "10.0.0.7");
    cr_expect_eq(u.port, 6380);
    cr_expect_eq(u.db, 3);
    cr_expect(!u.has_password);
    cr_expect_str_eq(u.unix_path, "");
    cr_expect_str_eq(u.display, "redis://10.0.0.7:6380/3");
}

Test(redis_url, defaults_port_6379_and_database_0)
{
    rd_url u = parse_ok("redis://cache.example");
    cr_expect_str_eq(u.host, "cache.example");
    cr_expect_eq(u.port, 6379);
    cr_expect_eq(u.db, 0);
    u = parse_ok("redis://cache.example/");
    cr_expect_eq(u.db, 0);
}

Test(redis_url, acl_user_and_password_hidden_in_display)
{
    rd_url u = parse_ok("redis://app:s3cret@127.0.0.1:7000/1");
    cr_expect_str_eq(u.user, "app");
    cr_expect_str_eq(u.password, "s3cret");
    cr_expect(u.has_password);
    cr_expect_str_eq(u.display, "redis://app:***@127.0.0.1:7000/1");
    cr_expect(!strstr(u.display, "s3cret"));
}

Test(redis_url, password_only_is_the_default_user)
{
    rd_url u = parse_ok("redis://:s3cret@localhost");
    cr_expect_str_eq(u.user, "");
    cr_expect_str_eq(u.password, "s3cret");
    cr_expect(u.has_password);
}

Test(redis_url, percent_encoded_password)
{
    rd_url u = parse_ok("redis://app:p%40ss%3Aw%2Fd@h:1");
    cr_expect_str_eq(u.password, "p@ss:w/d");
}

Test(redis_url, unix_socket_with_database)
{
    rd_url u = parse_ok("unix:///run/redis/redis.sock?db=2");
    cr_expect_str_eq(u.unix_path, "/run/redis/redis.sock");
    cr_expect_eq(u.db, 2);
    cr_expect_str_eq(u.host, "");
}

Test(redis_url, refusals_say_what_is_supported)
{
    parse_fails("rediss://h:6380", "TLS");
    parse_fails("http://app:s3cret@h", "scheme 'http'");
    parse_fails("h:6379", "no scheme");
    parse_fails("app:s3cret@h:6379", "no scheme");
    parse_fails("", "empty");
    parse_fails("redis://", "no host");
    parse_fails("redis://h:0", "port");
    parse_fails("redis://h:65536", "port");
    parse_fails("redis://h:63x9", "port");
    parse_fails("redis://app:s3cret@h/db1", "database");
    parse_fails("redis://app@h", "without a password");
    parse_fails("redis://app:s3cr%zzet@h", "password");
    parse_fails("redis://[::1]:6379", "IPv6");
    parse_fails("unix://relative.sock", "absolute path");
    parse_fails("unix:///tmp/r.sock?timeout=3", "?db=N");
}

Test(redis_url, too_long_is_refused_not_truncated)
{
    char long_url[RD_URL_MAX + 16];
    memset(long_url, 'a', sizeof long_url - 1);
    memcpy(long_url, "redis://", 8);
    long_url[sizeof long_url - 1] = '\0';
    rd_url u;
    cr_expect_eq(rd_url_parse(long_url, &u, err, sizeof err), -1);
    cr_expect(strstr(err, "longer than"), "%s", err);
}

Test(redis_url, null_is_refused)
{
    rd_url u;
    cr_expect_eq(rd_url_parse(NULL, &u, err, sizeof err), -1);
}
