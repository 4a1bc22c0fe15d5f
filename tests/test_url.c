/* SPDX-License-Identifier: BSD-2-Clause */
/* Table-driven tests of the URL parser: each good URL with what it parses
 * to, each bad one with its own status. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"

typedef struct good_case {
    const char *url;
    const char *scheme, *user, *password;
    size_t nhosts;
    const char *host0;
    int port0;
    const char *host1;
    int port1;
    const char *path;
    const char *prefix, *timeout, *expires;
    const char *param, *value; /* first backend parameter */
    const char *redacted;
} good_case;

static const good_case good[] = {
    {"redis://localhost", "redis", NULL, NULL, 1, "localhost", 0, NULL, 0, "", NULL, NULL, NULL, NULL, NULL,
     "redis://localhost"},
    {"REDIS://h:6380/2", "redis", NULL, NULL, 1, "h", 6380, NULL, 0, "/2", NULL, NULL, NULL, NULL, NULL,
     "REDIS://h:6380/2"},
    {"redis://:s3cret@h/0", "redis", "", "s3cret", 1, "h", 0, NULL, 0, "/0", NULL, NULL, NULL, NULL, NULL,
     "redis://:***@h/0"},
    {"redis://al%40ice:p%3Aw%2Fd@127.0.0.1:7000", "redis", "al@ice", "p:w/d", 1, "127.0.0.1", 7000, NULL, 0, "",
     NULL, NULL, NULL, NULL, NULL, "redis://al%40ice:***@127.0.0.1:7000"},
    {"redis://user@h", "redis", "user", NULL, 1, "h", 0, NULL, 0, "", NULL, NULL, NULL, NULL, NULL,
     "redis://user@h"},
    {"redis://[::1]:6379", "redis", NULL, NULL, 1, "::1", 6379, NULL, 0, "", NULL, NULL, NULL, NULL, NULL,
     "redis://[::1]:6379"},
    {"memcached://a:11211,b:11212", "memcached", NULL, NULL, 2, "a", 11211, "b", 11212, "", NULL, NULL, NULL, NULL,
     NULL, "memcached://a:11211,b:11212"},
    {"sqlite:///rel/path.db", "sqlite", NULL, NULL, 0, NULL, 0, NULL, 0, "/rel/path.db", NULL, NULL, NULL, NULL,
     NULL, "sqlite:///rel/path.db"},
    {"sqlite:////abs/path%20x.db", "sqlite", NULL, NULL, 0, NULL, 0, NULL, 0, "//abs/path x.db", NULL, NULL, NULL,
     NULL, NULL, "sqlite:////abs/path%20x.db"},
    {"redis://h?prefix=app:&timeout=5&expires=30", "redis", NULL, NULL, 1, "h", 0, NULL, 0, "", "app:", "5", "30",
     NULL, NULL, "redis://h?prefix=app:&timeout=5&expires=30"},
    {"redis://h?db=3&prefix=a%26b", "redis", NULL, NULL, 1, "h", 0, NULL, 0, "", "a&b", NULL, NULL, "db", "3",
     "redis://h?db=3&prefix=a%26b"},
    {"redis://h?flag", "redis", NULL, NULL, 1, "h", 0, NULL, 0, "", NULL, NULL, NULL, "flag", "",
     "redis://h?flag"},
    {"open://", "open", NULL, NULL, 0, NULL, 0, NULL, 0, "", NULL, NULL, NULL, NULL, NULL, "open://"},
    /* libpq's password parameters are passwords too. */
    {"postgres://h/db?password=s%3Dcr3t&sslpassword=k3y&SSLPassword=&x=1", "postgres", NULL, NULL, 1, "h", 0, NULL,
     0, "/db", NULL, NULL, NULL, "password", "s=cr3t", "postgres://h/db?password=***&sslpassword=***&SSLPassword=&x=1"},
    {"x+y.z-w://h", "x+y.z-w", NULL, NULL, 1, "h", 0, NULL, 0, "", NULL, NULL, NULL, NULL, NULL, "x+y.z-w://h"},
};

static int streq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

START_TEST(t_good)
{
    const good_case *g = &good[_i];
    anylock__url u;
    char err[ANYLOCK_ERRMSG_MAX] = "";
    anylock_status st = anylock__url_parse(g->url, &u, err);
    ck_assert_msg(st == ANYLOCK_OK, "%s: %s (%s)", g->url, anylock_status_name(st), err);
    ck_assert_str_eq(u.pub.scheme, g->scheme);
    ck_assert_msg(streq(u.pub.user, g->user), "%s: user %s", g->url, u.pub.user);
    ck_assert_msg(streq(u.pub.password, g->password), "%s: password", g->url);
    ck_assert_uint_eq(u.pub.nhosts, g->nhosts);
    if (g->nhosts) {
        ck_assert_str_eq(u.pub.hosts[0].host, g->host0);
        ck_assert_int_eq(u.pub.hosts[0].port, g->port0);
    }
    if (g->nhosts > 1) {
        ck_assert_str_eq(u.pub.hosts[1].host, g->host1);
        ck_assert_int_eq(u.pub.hosts[1].port, g->port1);
    }
    ck_assert_str_eq(u.pub.path, g->path);
    ck_assert_msg(streq(u.prefix, g->prefix), "%s: prefix %s", g->url, u.prefix);
    ck_assert_msg(streq(u.timeout, g->timeout), "%s: timeout", g->url);
    ck_assert_msg(streq(u.expires, g->expires), "%s: expires", g->url);
    if (g->param) {
        ck_assert_uint_ge(u.pub.nparams, 1);
        ck_assert_str_eq(u.pub.params[0].name, g->param);
        ck_assert_str_eq(u.pub.params[0].value, g->value);
    } else {
        ck_assert_uint_eq(u.pub.nparams, 0);
    }
    ck_assert_str_eq(u.redacted, g->redacted);
    anylock__url_free(&u);
}
END_TEST

typedef struct bad_case {
    const char *url;
    anylock_status want;
} bad_case;

static char overlong[ANYLOCK_URL_MAX + 64];

static const bad_case bad[] = {
    {"", ANYLOCK_URL_NO_SCHEME},
    {"localhost:6379", ANYLOCK_URL_NO_SCHEME},
    {"://host", ANYLOCK_URL_NO_SCHEME},
    {"/tmp/x.db", ANYLOCK_URL_NO_SCHEME},
    {"1redis://h", ANYLOCK_URL_MALFORMED},
    {"re_dis://h", ANYLOCK_URL_MALFORMED},
    {"redis://h#frag", ANYLOCK_URL_MALFORMED},
    {"redis://h o", ANYLOCK_URL_MALFORMED},
    {"redis://h\t", ANYLOCK_URL_MALFORMED},
    {"redis://h\x7f", ANYLOCK_URL_MALFORMED},
    {"redis://h\xc3\xa9", ANYLOCK_URL_MALFORMED},
    {"redis://us{er:pw@h", ANYLOCK_URL_BAD_USERINFO},
    {"redis://user:p%zzw@h", ANYLOCK_URL_BAD_ESCAPE},
    {"redis://us%4@h", ANYLOCK_URL_BAD_ESCAPE},
    {"redis://user:%00@h", ANYLOCK_URL_BAD_ESCAPE},
    {"redis://ho$t", ANYLOCK_URL_BAD_HOST},
    {"redis://:6379", ANYLOCK_URL_BAD_HOST},
    {"redis://a,,b", ANYLOCK_URL_BAD_HOST},
    {"redis://[::1", ANYLOCK_URL_BAD_HOST},
    {"redis://[::g]", ANYLOCK_URL_BAD_HOST},
    {"redis://[::1]x", ANYLOCK_URL_BAD_HOST},
    {"redis://h:", ANYLOCK_URL_BAD_PORT},
    {"redis://h:0", ANYLOCK_URL_BAD_PORT},
    {"redis://h:65536", ANYLOCK_URL_BAD_PORT},
    {"redis://h:99999999", ANYLOCK_URL_BAD_PORT},
    {"redis://h:12ab", ANYLOCK_URL_BAD_PORT},
    {"redis://h:-1", ANYLOCK_URL_BAD_PORT},
    {"redis://h/a[b", ANYLOCK_URL_BAD_PATH},
    {"redis://h/a%2", ANYLOCK_URL_BAD_ESCAPE},
    {"redis://h/a%00b", ANYLOCK_URL_BAD_ESCAPE},
    {"redis://h?a=1&&b=2", ANYLOCK_URL_BAD_QUERY},
    {"redis://h?=1", ANYLOCK_URL_BAD_QUERY},
    {"redis://h?a=[", ANYLOCK_URL_BAD_QUERY},
    {"redis://h?a=1&a=2", ANYLOCK_URL_BAD_QUERY},
    {"redis://h?prefix=a&prefix=b", ANYLOCK_URL_BAD_QUERY},
    {"redis://h?a=%zz", ANYLOCK_URL_BAD_ESCAPE},
    /* Each part once more: scheme, userinfo, host, port, path, query. */
    {"abcdefghijabcdefghijabcdefghijabc://h", ANYLOCK_URL_MALFORMED},
    {"redis:/h", ANYLOCK_URL_NO_SCHEME},
    {"redis://u:p w@h", ANYLOCK_URL_MALFORMED},
    {"redis://a@b@c", ANYLOCK_URL_BAD_USERINFO},
    {"redis://h%41", ANYLOCK_URL_BAD_HOST},
    {"redis://h,", ANYLOCK_URL_BAD_HOST},
    {"redis://[]", ANYLOCK_URL_BAD_HOST},
    {"redis://h:1:2", ANYLOCK_URL_BAD_PORT},
    {"redis://u:pw@h/%2", ANYLOCK_URL_BAD_ESCAPE},
    {"redis://h?a=1#", ANYLOCK_URL_MALFORMED},
    {"redis://h?a b", ANYLOCK_URL_MALFORMED},
    /* An escaped NUL anywhere (a raw one ends the C string). */
    {"redis://h?a=%00", ANYLOCK_URL_BAD_ESCAPE},
    {"redis://h?%00=1", ANYLOCK_URL_BAD_ESCAPE},
    {"redis://h?%zz=1", ANYLOCK_URL_BAD_ESCAPE},
    {overlong, ANYLOCK_URL_TOO_LONG},
    {NULL, ANYLOCK_INVALID},
};

START_TEST(t_bad)
{
    const bad_case *b = &bad[_i];
    anylock__url u;
    char err[ANYLOCK_ERRMSG_MAX] = "";
    anylock_status st = anylock__url_parse(b->url, &u, err);
    ck_assert_msg(st == b->want, "\"%s\": got %s, want %s (%s)", b->url ? b->url : "(null)",
                  anylock_status_name(st), anylock_status_name(b->want), err);
    ck_assert_msg(err[0], "\"%s\": no message", b->url ? b->url : "(null)");
}
END_TEST

START_TEST(t_password_never_in_messages)
{
    /* Every defect after the password: the message must not repeat it. */
    static const char *urls[] = {
        "redis://u:Zq9SecretPw@h:99999", "redis://u:Zq9SecretPw@h$", "redis://u:Zq9SecretPw@h/[",
        "redis://u:Zq9SecretPw@h?x=%zz", "redis://u:Zq9SecretPw%zz@h",  "redis://u:Zq9SecretPw{@h",
        "redis://u:Zq9SecretPw@h,",      "redis://u:Zq9SecretPw@[]",     "redis://u:Zq9SecretPw@h:1:2",
        "redis://u:Zq9SecretPw@h?a=%00", "redis://u:Zq9SecretPw@h#x",    "redis://u:Zq9SecretPw%00@h",
    };
    for (size_t i = 0; i < sizeof urls / sizeof *urls; i++) {
        anylock__url u;
        char err[ANYLOCK_ERRMSG_MAX] = "";
        ck_assert_int_ne(anylock__url_parse(urls[i], &u, err), ANYLOCK_OK);
        ck_assert_msg(!strstr(err, "Zq9SecretPw"), "message reveals the password: %s", err);
    }
}
END_TEST

START_TEST(t_query_password_scrubbed)
{
    /* A message that repeats a password given as a query parameter (as
     * libpq's URIs allow) loses it, raw and decoded. */
    char msg[ANYLOCK_ERRMSG_MAX];
    snprintf(msg, sizeof msg, "auth failed for Zq9Secret=Pw and Zq9Secret%%3DPw and k3yPass");
    anylock__scrub(msg, "postgres://h/db?password=Zq9Secret%3DPw&sslpassword=k3yPass&user=u");
    ck_assert_msg(!strstr(msg, "Zq9Secret") && !strstr(msg, "k3yPass"), "not scrubbed: %s", msg);
    ck_assert_str_eq(msg, "auth failed for *** and *** and ***");
}
END_TEST

/* Malformed URLs that each hold a password somewhere, through anylock_open
 * (so the client's message and its shown URL): neither ever shows it,
 * whatever the defect and wherever the password is (nested in a query
 * value, percent-encoded, cut from its '@' by a '/', '?' or '#'). */
static const char *const secret_corpus[] = {
    /* A nested URL with an empty authority: its "userinfo" follows the slashes. */
    "redis://:Zq9SecretPw@127.0.0.1:99999/?x=redis:///:Zq9SecretPw@h",
    "migrate://?old=redis://:Zq9SecretPw@127.0.0.1:99999&new=memory://",
    "migrate://?old=redis://:Zq9SecretPw@127.0.0.1:99999&new=memory://x",
    "migrate://?old=redis%3A%2F%2F%3AZq9SecretPw%40127.0.0.1%3A99999&new=memory://",
    "migrate://?old=redis://u:Zq9SecretPw@h/?x=%zz&new=memory://",
    "migrate://?new=memory://&old=redis://u:Zq9SecretPw@h:0",
    "redis://user:Zq9SecretPw/x@h",
    "redis://user:Zq9SecretPw?x@h",
    "redis://user:Zq9SecretPw#x@h",
    "redis://user:Zq9Secret/Pw@h:12",
    "redis://:Zq9SecretPw@h:1:2",
    "redis://:Zq9SecretPw@",
    "redis://:Zq9SecretPw@h/db/extra",
    "redis://u:Zq9SecretPw@h?bogus=1",
    "redis://u:Zq9SecretPw@h\x01",
    "nosuch://u:Zq9SecretPw@h",
    "memory://u:Zq9SecretPw@ns",
    "open://u:Zq9SecretPw@",
    "redis://u:Zq9Secret%50w@h:99999",
    "redis://h/?x=redis://u:Zq9SecretPw@h/?y=redis://u:Zq9SecretPw@h+++++++++++++++++++++++++++++++",
    "migrate://?old=migrate%3A%2F%2F%3Fold%3Dredis%3A%2F%2F%3AZq9SecretPw%40h&new=memory://",
    "redis://u:Zq9SecretPw@h?timeout=-1",
    "REDIS://u:Zq9SecretPw@h:65536",
    " redis://u:Zq9SecretPw@h",
    "redis:/u:Zq9SecretPw@h",
    "redis//u:Zq9SecretPw@h",
};

START_TEST(t_secret_corpus)
{
    const char *url = secret_corpus[_i];
    anylock_client *c = NULL;
    anylock_status st = anylock_open(url, &c);
    ck_assert_ptr_nonnull(c);
    ck_assert_msg(st != ANYLOCK_OK, "%s opened", url);
    const char *leaks[] = {"Zq9SecretPw", "Zq9Secret/Pw", "Zq9SecretPw/x", "Zq9SecretPw?x", "Zq9SecretPw#x"};
    for (size_t k = 0; k < sizeof leaks / sizeof *leaks; k++) {
        ck_assert_msg(!strstr(anylock_errmsg(c), leaks[k]), "%s: the message shows the password: %s", url,
                      anylock_errmsg(c));
        ck_assert_msg(!strstr(anylock_client_url(c), leaks[k]), "%s: the URL shows the password: %s", url,
                      anylock_client_url(c));
    }
    ck_assert_msg(!strstr(anylock_client_url(c), "Zq9Secret"), "%s shown as %s", url, anylock_client_url(c));
    ck_assert_str_ne(anylock_errmsg(c), "");
    anylock_close(c);
}
END_TEST

/* The redacted form of a URL that nests URLs in query values, each with a
 * password and with characters that are re-encoded: once a heap overflow. */
START_TEST(t_nested_redaction)
{
    char url[ANYLOCK_URL_MAX + 1];
    snprintf(url, sizeof url, "redis://h/?x=redis%%3A%%2F%%2Fu%%3Apw1%%40h%%2F%%3Fy%%3Dredis%%3A%%2F%%2Fu%%3Apw2%%40h");
    for (size_t n = strlen(url); n < 200; n++)
        url[n] = '+', url[n + 1] = '\0';
    char *r = anylock__redact(url);
    ck_assert_ptr_nonnull(r);
    ck_assert_msg(!strstr(r, "pw1") && !strstr(r, "pw2"), "%s", r);
    free(r);
    /* Deeper and longer, up to the URL limit. */
    memcpy(url, "migrate://?old=", 15);
    size_t o = 15;
    while (o + 64 < ANYLOCK_URL_MAX) {
        static const char part[] = "redis%3A%2F%2Fu%3Apw3%40h%3F%2B%26x%3D";
        memcpy(url + o, part, sizeof part - 1);
        o += sizeof part - 1;
    }
    url[o] = '\0';
    r = anylock__redact(url);
    ck_assert_ptr_nonnull(r);
    ck_assert_msg(!strstr(r, "pw3"), "a nested password shows");
    free(r);
}
END_TEST

int main(void)
{
    memset(overlong, 'a', sizeof overlong - 1);
    memcpy(overlong, "redis://", 8);
    Suite *s = suite_create("url");
    TCase *tc = tcase_create("parse");
    tcase_add_loop_test(tc, t_good, 0, sizeof good / sizeof *good);
    tcase_add_loop_test(tc, t_bad, 0, sizeof bad / sizeof *bad);
    tcase_add_test(tc, t_password_never_in_messages);
    tcase_add_test(tc, t_query_password_scrubbed);
    tcase_add_loop_test(tc, t_secret_corpus, 0, sizeof secret_corpus / sizeof *secret_corpus);
    tcase_add_test(tc, t_nested_redaction);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
