/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target for everything anylock parses from untrusted text: the
 * URL parser, the core's query parameters (through anylock_open on
 * memory:// and open://), duration parsing and the name, prefix and id
 * checks.  Built and run by scripts/fuzz.sh.
 *
 * Besides "no crash, no leak, no undefined behaviour" (the sanitizers'
 * job), it checks the promises a caller relies on and aborts when one is
 * broken: a message is always NUL-terminated within ANYLOCK_ERRMSG_MAX, a
 * parsed URL's redacted form never contains its password, a duration that
 * parses is within its bounds.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backends/builtin.h"
#include "../core/internal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* This build has no built-in backends (core/builtins_none.c): the ones the
 * target uses are registered through the public call. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (anylock_backend_register("memory", &anylock__memory_backend) != ANYLOCK_OK ||
        anylock_backend_register("open", &anylock__open_backend) != ANYLOCK_OK ||
        anylock_backend_register("migrate", &anylock__migrate_backend) != ANYLOCK_OK)
        abort();
    return 0;
}

static void check_msg(const char *buf)
{
    if (!memchr(buf, '\0', ANYLOCK_ERRMSG_MAX))
        abort();
}

/* The redacted form keeps the user and replaces the whole password, and
 * no password of a nested URL shows either. */
static void check_redacted(const anylock__url *u)
{
    if (!u->redacted)
        abort();
    if (!u->pub.password)
        return;
    if (!strstr(u->redacted, ":***@"))
        abort();
    /* The password never stands where it was, between ':' and '@'. */
    size_t n = strlen(u->pub.password);
    char *shown = malloc(n + 3);
    if (!shown)
        return;
    shown[0] = ':';
    memcpy(shown + 1, u->pub.password, n);
    shown[n + 1] = '@';
    shown[n + 2] = '\0';
    /* (A password of stars, or one written with escapes, cannot be told
     * from the mask in the text.) */
    int leaked = strspn(u->pub.password, "*") != n && !memchr(u->pub.password, '%', n) && strstr(u->redacted, shown);
    free(shown);
    if (leaked)
        abort();
}

/* Whatever the text, the structural redaction keeps no password it finds
 * and a scrubbed message keeps none either. */
static void check_redaction(const char *text)
{
    char *r = anylock__redact(text);
    if (!r)
        return;
    char *again = anylock__redact(r);
    /* Redacting twice changes nothing more. */
    if (again && strcmp(again, r))
        abort();
    free(again);
    char msg[ANYLOCK_ERRMSG_MAX];
    snprintf(msg, sizeof msg, "%.200s", text);
    anylock__scrub(msg, text);
    check_msg(msg);
    free(r);
}

static void check_duration(const char *text, double seconds)
{
    char errbuf[ANYLOCK_ERRMSG_MAX];
    int64_t ms = -2;
    errbuf[0] = '\0';
    if (anylock__duration_parse(text, ANYLOCK__MS_FOREVER, &ms, errbuf, "fuzz") == ANYLOCK_OK) {
        if (ms < 0 || (ms != ANYLOCK__MS_FOREVER && ms > (int64_t)(ANYLOCK_DURATION_MAX * 1000) + 1))
            abort();
    }
    check_msg(errbuf);
    errbuf[0] = '\0';
    anylock_status st = anylock__duration_ms(seconds, ANYLOCK__MS_FOREVER, &ms, errbuf, "fuzz");
    if (st == ANYLOCK_OK && (isnan(seconds) || seconds < 0))
        abort();
    if (st == ANYLOCK_OK && ms != ANYLOCK__MS_FOREVER && (double)ms < seconds * 1000.0 - 1e-3)
        abort(); /* a duration is never shortened */
    check_msg(errbuf);
    errbuf[0] = '\0';
    st = anylock__expiry_ms(seconds, &ms, errbuf);
    if (st == ANYLOCK_OK && seconds == 0)
        abort();
    check_msg(errbuf);
}

static void check_texts(const char *text)
{
    char errbuf[ANYLOCK_ERRMSG_MAX];
    errbuf[0] = '\0';
    anylock__check_name(text, errbuf);
    check_msg(errbuf);
    errbuf[0] = '\0';
    anylock__check_prefix(text, errbuf);
    check_msg(errbuf);
    errbuf[0] = '\0';
    anylock__check_id(text, errbuf);
    check_msg(errbuf);
}

/* Opens url and, when that works, takes and releases a lock on it, so that
 * the parameters the core took from the query are used. */
static void open_and_use(const char *url, const char *name)
{
    anylock_client *c = NULL;
    anylock_status st = anylock_open(url, &c);
    if (!c)
        return;
    check_msg(anylock_errmsg(c));
    if (st == ANYLOCK_OK) {
        anylock_lock *l = NULL;
        if (anylock_lock_new(c, name, &l) == ANYLOCK_OK) {
            /* Never wait: the fuzzer must not block.  An expiry from the
             * query may be as short as 1 ms, so the lock may be gone by the
             * release: NOT_HELD is then the right answer. */
            if (anylock_try_acquire(l) == ANYLOCK_OK) {
                anylock_status st = anylock_release(l);
                if (st != ANYLOCK_OK && st != ANYLOCK_NOT_HELD)
                    abort();
            }
            check_msg(anylock_lock_errmsg(l));
            anylock_lock_free(l);
        } else if (strlen(name) > 0 && strlen(name) <= ANYLOCK_NAME_MAX &&
                   anylock__check_name(name, NULL) == ANYLOCK_OK) {
            abort(); /* a valid name must make a lock */
        }
    }
    if (anylock_close(c) != ANYLOCK_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The C API sees NUL-terminated text: an embedded NUL ends it. */
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    anylock__url u;
    char errbuf[ANYLOCK_ERRMSG_MAX];
    errbuf[0] = '\0';
    anylock_status st = anylock__url_parse(text, &u, errbuf);
    check_msg(errbuf);
    check_redaction(text);
    if (st == ANYLOCK_OK) {
        check_redacted(&u);
        anylock__url_free(&u);
        if (!strncmp(text, "memory://", 9) || !strncmp(text, "open://", 7))
            open_and_use(text, "fuzz");
    }

    /* The same query on the in-process backends, whatever the scheme was. */
    const char *q = strchr(text, '?');
    if (q && strlen(q) < ANYLOCK_URL_MAX - 32) {
        char *url = malloc(strlen(q) + 32);
        if (url) {
            sprintf(url, "memory://fuzz%s", q);
            open_and_use(url, q + 1);
            sprintf(url, "open://%s", q);
            open_and_use(url, "fuzz");
            free(url);
        }
    }

    double seconds = 0;
    if (size >= sizeof seconds)
        memcpy(&seconds, data, sizeof seconds);
    check_duration(text, seconds);
    check_texts(text);
    free(text);
    return 0;
}
