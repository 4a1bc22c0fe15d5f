/*
 * The anylock command: what its parts share.  main.c parses the command line
 * and runs the short subcommands, run.c runs a command under a lock, output.c
 * formats what is printed (human and JSON).
 */
#ifndef ANYLOCK_CLI_H
#define ANYLOCK_CLI_H

#include <stdio.h>

#include "anylock.h"

/* Exit statuses, as sysexits.h numbers them (and flock(1) for contention). */
#define CLI_EXIT_OK 0
#define CLI_EXIT_CONFLICT 1 /* the lock could not be had in time; -E changes it */
#define CLI_EXIT_USAGE 64   /* EX_USAGE: bad command line or malformed URL */
#define CLI_EXIT_UNAVAILABLE 69 /* EX_UNAVAILABLE: the store cannot be reached */
#define CLI_EXIT_SOFTWARE 70    /* EX_SOFTWARE: any other failure */
#define CLI_EXIT_CANNOT_EXEC 126
#define CLI_EXIT_NOT_FOUND 127

/* The parsed command line.  Durations are NAN when not given, so that the
 * client's defaults (from the URL query or the library) apply. */
typedef struct cli_options {
    const char *url;        /* -u, else $ANYLOCK_URL, else the per-user SQLite file */
    double timeout;         /* -w */
    double expires;         /* -x */
    double kill_after;      /* -k: grace between SIGTERM and SIGKILL on loss */
    const char *id;         /* --id */
    int verbose;            /* -v */
    int json;               /* --json */
    int conflict_exit;      /* -E */
    int keep_going_on_loss; /* --keep-going-on-loss */
} cli_options;

/* The exit status for a failed library call. */
int cli_exit_for(anylock_status st);

/* Prints "anylock: " and the formatted message to stderr. */
void cli_error(const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Like cli_error, only with -v. */
void cli_verbose(const cli_options *o, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Writes s to f as a JSON string literal (quotes included). */
void cli_json_string(FILE *f, const char *s);

/* Writes one lock's state: a human line (prefixed with the name if
 * with_name) or a JSON object (no newline for
 * JSON, so that list can put the objects in an array). */
void cli_print_info_human(FILE *f, const anylock_info *info, int with_name);
void cli_print_info_json(FILE *f, const anylock_info *info);

/* "8.2 s", or "never" for ANYLOCK_FOREVER, into buf. */
const char *cli_format_seconds(char *buf, size_t size, double seconds);

/* Notes which file descriptors are open (before the store is opened), so
 * that cli_fds_cloexec() can later keep the library's own descriptors
 * (sockets, database files) from leaking into the command while the
 * descriptors anylock was given still reach it, as flock(1) passes them. */
void cli_fds_snapshot(void);
void cli_fds_cloexec(void);
void cli_fds_forget(void);

/* anylock run: takes the lock on client, runs argv as a child, returns the
 * exit status for anylock. */
int cli_run(anylock_client *client, const cli_options *o, const char *name, char **argv);

#endif
