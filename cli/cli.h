/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The anylock command: what its parts share.  main.c parses the command line
 * and runs the short subcommands, run.c runs a command under a lock, output.c
 * formats what is printed (human and JSON) and keeps track of whether it
 * could be written.
 */
#ifndef ANYLOCK_CLI_H
#define ANYLOCK_CLI_H

#include <stdio.h>

#include "anylock.h"

/* Exit statuses, as sysexits.h numbers them (and flock(1) for contention). */
#define CLI_EXIT_OK 0
#define CLI_EXIT_CONFLICT 1 /* the lock could not be had in time (-E changes it); status: free */
#define CLI_EXIT_USAGE 64   /* EX_USAGE: bad command line or malformed URL */
#define CLI_EXIT_UNAVAILABLE 69 /* EX_UNAVAILABLE: the store cannot be reached */
#define CLI_EXIT_SOFTWARE 70    /* EX_SOFTWARE: any other failure */
#define CLI_EXIT_IOERR 74       /* EX_IOERR: anylock's own output could not be written */
#define CLI_EXIT_CANNOT_EXEC 126
#define CLI_EXIT_NOT_FOUND 127

/* The shortest lease run accepts: renewal must reach the store within a
 * third of the lease, and the library rounds any positive lease up to 1 ms,
 * which no store can renew. */
#define CLI_LEASE_MIN 0.1

/* The parsed command line.  Durations are NAN when not given, so that the
 * client's defaults (from the URL query or the library) apply. */
typedef struct cli_options {
    const char *url;        /* --url, else anylock_default_url() */
    double timeout;         /* -w/--wait/--timeout; -n is 0 */
    double expires;         /* -l/--lease/--expires */
    const char *expires_text; /* as given, for messages */
    double kill_after;      /* -k: grace between SIGTERM and SIGKILL on loss */
    const char *id;         /* --id, else $ANYLOCK_ID */
    const char *command;    /* -c: a shell command line for run */
    anylock_mode mode;      /* -s / -x / --permits */
    unsigned permits;       /* --permits */
    int verbose;            /* -v */
    int quiet;              /* -q */
    int json;               /* --json */
    int names;              /* list --names */
    int conflict_exit;      /* -E */
    int keep_going_on_loss; /* --keep-going-on-loss */
} cli_options;

/* The exit status for a failed library call. */
int cli_exit_for(anylock_status st);

/* Prints "anylock: " and the formatted message to stderr as one line.  The
 * arguments should already be escaped (cli_esc) where they come from the
 * store or the user. */
void cli_error(const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Like cli_error, only with -v (and not with --json, whose events say it). */
void cli_verbose(const cli_options *o, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* s[0..len) made safe for a terminal into buf (always terminated): control
 * characters, bytes that are not UTF-8, C1 controls, and the Unicode line
 * separators and bidirectional overrides become \n, \xNN, \uNNNN escapes, a
 * backslash becomes \\.  Cut with "..." when buf is too small. */
const char *cli_esc(char *buf, size_t size, const char *s, size_t len);
/* The same for a NUL-terminated string (NULL gives ""). */
const char *cli_esc_str(char *buf, size_t size, const char *s);

/* A growing buffer for JSON text, written out in one go. */
typedef struct cli_buf {
    char *p;
    size_t len, cap;
    int nomem;
} cli_buf;
void cli_buf_add(cli_buf *b, const char *s, size_t n);
void cli_buf_printf(cli_buf *b, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void cli_buf_free(cli_buf *b);

/* Appends s[0..len) as a JSON string literal: always valid UTF-8, each byte
 * that is not UTF-8 becoming U+FFFD.  Returns 1 if that happened (the value
 * was not text), else 0. */
int cli_json_string(cli_buf *b, const char *s, size_t len);
/* Appends "key":"value" for a string from the store, and when the value is
 * not valid UTF-8 also "key_hex":"..." with its exact bytes. */
void cli_json_field(cli_buf *b, const char *key, const char *s, size_t len);

/* Describes the holder in info (id, pid, host, since, command) into buf:
 * "3sPk5VxkY0v8 (pid 1234 on web1 since 2026-11-23 14:02:11: nightly.sh)". */
const char *cli_holder_phrase(char *buf, size_t size, const anylock_info *info);

/* One lock's state: a human line ("held by ...", prefixed with the name if
 * with_name), or the members of a JSON object without its braces. */
void cli_print_info_human(FILE *f, const anylock_info *info, int with_name);
void cli_info_json(cli_buf *b, const anylock_info *info);
/* One of a lock's holders (anylock_holders) as an anylock_info of its own,
 * for the functions above; and that holder as a JSON object or an indented
 * line. */
void cli_holder_info(anylock_info *out, const anylock_info *lock, const anylock_holder *h);
void cli_holder_json(cli_buf *b, const anylock_info *holder);
void cli_print_holder_human(FILE *f, const anylock_info *holder);

/* "8.2 s", or "never" for ANYLOCK_FOREVER, into buf. */
const char *cli_format_seconds(char *buf, size_t size, double seconds);

/* Unix time now, in seconds. */
double cli_wall_now(void);

/* Writes a JSON event line to stderr ({"time":...,"event":"...","name":...
 * then the members in extra}), in one write; thread-safe.  A failed write is
 * remembered for cli_output_failed(). */
void cli_event(const char *event, const char *name, const cli_buf *extra);

/* Notes that anylock's own output could not be written (stdout, or its
 * messages and events on stderr for run and wait). */
void cli_output_failure(void);
/* 1 if some output could not be written, checking (and flushing) stdout;
 * the errno of the first failure in *err. */
int cli_output_failed(int *err);

/* Standard descriptors closed when anylock started are reopened (so that
 * the library's sockets never become stdout), and closed again in run's
 * child; cli_std_was_closed(fd) says which. */
void cli_std_fix(void);
int cli_std_was_closed(int fd);

/* Notes which file descriptors are open (before the store is opened), so
 * that cli_fds_cloexec() can later keep the library's own descriptors
 * (sockets, database files) from leaking into the command while the
 * descriptors anylock was given still reach it, as flock(1) passes them. */
void cli_fds_snapshot(void);
void cli_fds_cloexec(void);
void cli_fds_forget(void);

/* anylock run: takes the lock on client, runs argv (or o->command through
 * the shell) as a child, returns the exit status for anylock; *from_command
 * is 1 when that status is the command's own. */
int cli_run(anylock_client *client, const cli_options *o, const char *name, char **argv, int *from_command);

#endif
