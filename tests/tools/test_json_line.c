/*
 * test_json_line.c — the JSON line codec of pub and sub (tools/json_line.c)
 * and its base64 (tools/base64.c), without a bus: RFC 4648's vectors, the
 * strict decoding, text versus _b64 per field, null versus empty key,
 * headers in order with duplicates, NULs, and every refused line with
 * the phrase that says why.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "base64.h"
#include "json_line.h"

Test(base64, encodes_and_decodes_the_rfc_4648_vectors)
{
    static const char *const vectors[][2] = {
        {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
    };
    for (size_t i = 0; i < sizeof vectors / sizeof *vectors; i++) {
        char enc[32];
        size_t n = base64_encode(vectors[i][0], strlen(vectors[i][0]), enc);
        cr_expect_eq(n, base64_encoded_len(strlen(vectors[i][0])));
        cr_expect_str_eq(enc, vectors[i][1]);
        unsigned char dec[32];
        size_t dec_len;
        char why[128];
        cr_assert(base64_decode(vectors[i][1], strlen(vectors[i][1]), dec, &dec_len, why,
                                sizeof why), "%s: %s", vectors[i][1], why);
        cr_expect_eq(dec_len, strlen(vectors[i][0]));
        cr_expect_eq(memcmp(dec, vectors[i][0], dec_len), 0);
    }
}

Test(base64, every_byte_value_round_trips)
{
    unsigned char all[256], dec[256 + 3];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)(255 - i);
    for (size_t len = 0; len <= 256; len += 1) {
        char enc[400];
        size_t n = base64_encode(all, len, enc);
        size_t dec_len;
        char why[128];
        cr_assert(base64_decode(enc, n, dec, &dec_len, why, sizeof why), "%zu: %s", len, why);
        cr_assert_eq(dec_len, len);
        cr_assert_eq(memcmp(dec, all, len), 0, "length %zu", len);
    }
}

Test(base64, refuses_what_is_not_the_one_canonical_encoding)
{
    static const char *const bad[][2] = {
        {"Zm9", "not a multiple of 4"},
        {"Zm9v\n", "not a multiple of 4"},
        {"Zm 9", "character 3 (byte 0x20) is not in the base64 alphabet"},
        {"Zm9-", "character 4 (byte 0x2d) is not in the base64 alphabet"},
        {"Z===", "character 2 ('=') is padding before the end"},
        {"Zg==Zg==", "character 3 ('=') is padding before the end"},
        {"Zh==", "character 2 ('h') has bits set beyond the data"},
        {"Zm9=", "character 3 ('9') has bits set beyond the data"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        unsigned char dec[16];
        size_t dec_len;
        char why[128] = "";
        cr_expect(!base64_decode(bad[i][0], strlen(bad[i][0]), dec, &dec_len, why, sizeof why),
                  "'%s' was accepted", bad[i][0]);
        cr_expect(strstr(why, bad[i][1]), "'%s': %s", bad[i][0], why);
    }
}

static char *encode(const json_message *m)
{
    size_t len;
    char *line = json_line_encode(m, &len);
    cr_assert_not_null(line);
    cr_assert_eq(len, strlen(line));
    return line;
}

Test(json_line, text_fields_stay_text_and_other_bytes_go_to_b64)
{
    eb_header headers[] = {{"dup", "a", 1}, {"dup", "\xff\x00", 2}, {"empty", NULL, 0}};
    json_message m = {.topic = "orders", .key = "\xc3\x28", .key_len = 2,
                      .payload = "caf\xc3\xa9 \"q\"\n\x00z", .payload_len = 12,
                      .headers = headers, .header_count = 3, .id = "0@5-1", .attempt = 2};
    char *line = encode(&m);
    cr_expect_str_eq(line, "{\"topic\":\"orders\",\"key_b64\":\"wyg=\",\"headers\":["
                           "{\"name\":\"dup\",\"value\":\"a\"},"
                           "{\"name\":\"dup\",\"value_b64\":\"/wA=\"},"
                           "{\"name\":\"empty\",\"value\":\"\"}],"
                           "\"payload\":\"caf\xc3\xa9 \\\"q\\\"\\n\\u0000z\","
                           "\"id\":\"0@5-1\",\"attempt\":2}");
    free(line);
}

Test(json_line, a_null_key_differs_from_an_empty_one)
{
    json_message m = {.topic = "t"};
    char *line = encode(&m);
    cr_expect(strstr(line, "\"key\":null"), "%s", line);
    cr_expect(strstr(line, "\"payload\":\"\""), "%s", line);
    free(line);
    m.key = "";
    line = encode(&m);
    cr_expect(strstr(line, "\"key\":\"\""), "%s", line);
    free(line);
}

Test(json_line, what_is_written_reads_back_byte_for_byte)
{
    unsigned char binary[300];
    for (size_t i = 0; i < sizeof binary; i++)
        binary[i] = (unsigned char)(i * 7 + 128);
    eb_header headers[] = {{"h\xe2\x82\xac", binary, 5}, {"h\xe2\x82\xac", "", 0},
                           {"\xfe", "text\x00nul", 8}};
    json_message m = {.topic = "t.x", .key = binary + 10, .key_len = 17,
                      .payload = binary, .payload_len = sizeof binary,
                      .headers = headers, .header_count = 3, .id = "2@77", .attempt = 1};
    char *line = encode(&m);
    json_line back;
    char err[256];
    cr_assert_eq(json_line_decode(line, strlen(line), &back, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(back.msg.topic, "t.x");
    cr_assert_eq(back.msg.key_len, 17);
    cr_expect_eq(memcmp(back.msg.key, binary + 10, 17), 0);
    cr_assert_eq(back.msg.payload_len, sizeof binary);
    cr_expect_eq(memcmp(back.msg.payload, binary, sizeof binary), 0);
    cr_assert_eq(back.msg.header_count, 3);
    for (size_t i = 0; i < 3; i++) {
        cr_expect_str_eq(back.msg.headers[i].name, headers[i].name);
        cr_assert_eq(back.msg.headers[i].value_len, headers[i].value_len, "header %zu", i);
        cr_expect_eq(memcmp(back.msg.headers[i].value, headers[i].value,
                            headers[i].value_len), 0, "header %zu", i);
    }
    json_line_free(&back);
    free(line);
}

Test(json_line, missing_fields_mean_no_key_no_headers_and_an_empty_payload)
{
    static const char line[] = "{\"payload\":\"p\"}";
    json_line back;
    char err[256];
    cr_assert_eq(json_line_decode(line, strlen(line), &back, err, sizeof err), 0, "%s", err);
    cr_expect_null(back.msg.topic);
    cr_expect_null(back.msg.key);
    cr_expect_eq(back.msg.header_count, 0);
    cr_expect_eq(back.msg.payload_len, 1);
    json_line_free(&back);

    static const char empty[] = "{\"key\":null,\"id\":\"x\",\"attempt\":3}";
    cr_assert_eq(json_line_decode(empty, strlen(empty), &back, err, sizeof err), 0, "%s", err);
    cr_expect_null(back.msg.key);
    cr_expect_eq(back.msg.payload_len, 0);
    json_line_free(&back);
}

Test(json_line, refuses_each_bad_line_saying_why)
{
    static const char *const bad[][2] = {
        {"", "not JSON"},
        {"{\"payload\":\"a\"", "not JSON"},
        {"{\"payload\":\"a\"} x", "not JSON"},
        {"[1,2]", "not a JSON object"},
        {"{\"payload\":\"a\",\"payload\":\"b\"}", "not JSON"},
        {"{\"paylod\":\"a\"}", "unknown field 'paylod'"},
        {"{\"payload\":\"a\",\"payload_b64\":\"YQ==\"}", "both 'payload' and its _b64 form"},
        {"{\"payload_b64\":\"YQ=\"}", "'payload_b64' is not base64: its length 3"},
        {"{\"key_b64\":\"Y!==\"}", "'key_b64' is not base64: character 2"},
        {"{\"key\":5}", "'key' is neither a string nor null"},
        {"{\"payload\":null}", "'payload' is not a string"},
        {"{\"topic\":\"\"}", "'topic' is empty"},
        {"{\"topic\":\"a\\u0000b\"}", "'topic' holds a NUL character"},
        {"{\"headers\":{}}", "'headers' is not a list"},
        {"{\"headers\":[\"x\"]}", "header 1: not an object"},
        {"{\"headers\":[{\"name\":\"a\",\"value\":\"\"},{\"value\":\"v\"}]}",
         "header 2: no 'name'"},
        {"{\"headers\":[{\"name\":\"a\"}]}", "header 1: no 'value'"},
        {"{\"headers\":[{\"name\":\"\",\"value\":\"v\"}]}", "header 1: 'name' is empty"},
        {"{\"headers\":[{\"name\":\"a\",\"value_b64\":\"%%%%\"}]}",
         "header 1: 'value_b64' is not base64"},
        {"{\"headers\":[{\"name\":\"a\",\"value\":\"v\",\"x\":1}]}", "header 1: unknown field 'x'"},
        {"{\"id\":7}", "'id' is not a string"},
        {"{\"attempt\":\"1\"}", "'attempt' is not a whole number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_line back;
        char err[256] = "";
        cr_expect_eq(json_line_decode(bad[i][0], strlen(bad[i][0]), &back, err, sizeof err), -1,
                     "accepted: %s", bad[i][0]);
        cr_expect(strstr(err, bad[i][1]), "%s: said '%s', not '%s'", bad[i][0], err, bad[i][1]);
    }
}

Test(json_line, invalid_utf8_in_a_text_field_is_not_json)
{
    static const char line[] = "{\"payload\":\"\xff\"}";
    json_line back;
    char err[256] = "";
    cr_expect_eq(json_line_decode(line, strlen(line), &back, err, sizeof err), -1);
    cr_expect(strstr(err, "not JSON"), "%s", err);
}
