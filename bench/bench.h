/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * anylock-bench: how fast each backend is, as a ratio to the physical floor
 * of its store measured in the same run.
 *
 * The program is split in three: floors.c talks to each store directly with
 * its own client library (the cheapest round trip the store offers), phases.c
 * measures anylock through its public API only, and anylock-bench.c parses
 * the options and prints the table or the JSON.  This header is what they
 * share.
 */
#ifndef ANYLOCK_BENCH_H
#define ANYLOCK_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "anylock.h"

/* ---- options ------------------------------------------------------------ */

#define BENCH_MAX_NPROCS 8
/* The permits of the modes phase's semaphore. */
#define BENCH_PERMITS 3

typedef struct bench_options {
    double uncontended_seconds; /* time spent on the uncontended pairs plus their floor */
    int handoffs;               /* hand-offs measured per store */
    double handoff_hold_ms;     /* how long a holder keeps the lock before each hand-off */
    double handoff_max_seconds; /* stop measuring hand-offs after this long */
    double contended_seconds;   /* measured window for each process count */
    int nprocs[BENCH_MAX_NPROCS];
    int nnprocs;
    double cpu_hold_seconds; /* the long hold during which a waiter's CPU is measured */
    int force_threads;       /* workers are threads of this process even for shared stores */
    int names;               /* sqlite://: distinct names for the file-size figure (0: skip) */
    int clients;             /* clients opened at once for the memory per client */
    int held;                /* lock handles held at once for the memory per held lock (0: skip) */
    int others;              /* names held in the store while pairs are timed again (0: skip) */
    int pg_max_held;         /* postgres:// holds a connection per held lock: at most this many */
    int fill_threads;        /* threads (each its own client) that take the held names */
    double fill_max_seconds; /* taking the held names, and then the others, stops after this */
    int json;
    int quiet;               /* no progress lines on stderr */
} bench_options;

/* ---- statistics -------------------------------------------------------- */

typedef struct bench_samples {
    double *v; /* microseconds */
    size_t n, cap;
} bench_samples;

int bench_samples_add(bench_samples *s, double us);
/* The q-quantile (0..1) by nearest rank; sorts the samples. NAN if empty. */
double bench_samples_quantile(bench_samples *s, double q);
void bench_samples_free(bench_samples *s);

/* The monotonic clock (CLOCK_MONOTONIC, host-wide on Linux, so times taken
 * in two processes can be subtracted), in nanoseconds and in seconds. */
int64_t bench_now_ns(void);
void bench_sleep_ns(int64_t ns);

/* ---- floors -------------------------------------------------------------- */

/*
 * A floor is the cheapest round trip a store offers, made with the store's own
 * client library on a connection of its own to the same server (or file):
 * redis PING, a memcached get of a missing key, an empty write transaction
 * on the same SQLite file with the same settings, a range of a missing key
 * on the first etcd member of the URL, an uncontended mutex lock/unlock for
 * memory://.
 */
typedef struct bench_floor bench_floor;

/* Opens the floor for url; NULL with a message in err when the store has no
 * floor in this build or it cannot be reached. */
bench_floor *bench_floor_open(const char *url, char *err, size_t errsize);
/* What one floor round trip is ("PING"). */
const char *bench_floor_command(const bench_floor *f);
/* The fewest round trips the store's own lock protocol needs for one
 * acquire+release, when they are more than the floor pair's (memcached: 3,
 * or 5 over the binary protocol), else NAN. */
double bench_floor_pair_round_trips(const bench_floor *f);
/* How many floor round trips make the floor of one acquire+release pair:
 * as many as the backend's own pair takes (2; 3 for etcd: lease grant,
 * transaction, lease revoke). */
int bench_floor_trips_per_pair(const bench_floor *f);
/* One round trip; 0 on success, -1 with a message in err. */
int bench_floor_round_trip(bench_floor *f, char *err, size_t errsize);
void bench_floor_close(bench_floor *f);

/* n hand-offs of the store's own simplest lock protocol between two
 * processes, each timed (us) from the start of the holder's release to the
 * waiter's acquire returning, into out (redis: python-redis-lock's protocol
 * with hiredis).  0 on success, -1 with a message in err, 1 for a store
 * that has none. */
int bench_floor_handoffs(const char *url, int n, double hold_ms, bench_samples *out, char *err, size_t errsize);

/* flock(2) on a file beside a sqlite:// URL's database: the one-host floor
 * shown beside sqlite.  bench_flock_path fails (-1) for other URLs. */
int bench_flock_path(const char *url, char *out, size_t size);
/* n LOCK_EX + LOCK_UN pairs, each timed into pair (may be NULL). */
int bench_flock_pairs(const char *path, int n, bench_samples *pair, char *err, size_t errsize);
/* n hand-offs between two processes, timed into out (us). */
int bench_flock_handoffs(const char *path, int n, double hold_ms, bench_samples *out, char *err, size_t errsize);

/* ---- results ------------------------------------------------------------- */

typedef struct bench_contended {
    int processes;
    double seconds;
    uint64_t acquisitions;
    double acquisitions_per_s;
    uint64_t fewest, most;
    double mean;
    uint64_t overlaps; /* times more holders than the mode admits were seen at once: must be 0 */
    anylock_mode mode; /* exclusive, or (the modes phase) shared or a semaphore */
    unsigned permits;  /* a semaphore's */
    int most_inside;   /* the most holders seen inside at once */
} bench_contended;

typedef struct bench_result {
    const char *url;
    char scheme[32];
    char floor_command[64]; /* "" when the store has no floor */
    char error[512];        /* "" when every phase ran */
    int threads;            /* workers were threads, not processes */

    /* uncontended: acquire+release pairs on one lock handle and one client,
     * interleaved in blocks with pairs of floor round trips */
    uint64_t pairs;
    double pairs_per_s, pair_us_p50, pair_us_p99;
    uint64_t floor_pairs;
    double floor_pairs_per_s, floor_pair_us_p50, floor_pair_us_p99;
    double floor_round_trip_us_p50, floor_round_trip_us_p99;
    double ratio_pairs_per_s; /* ours / floor */
    double ratio_pair_p50;    /* floor pair p50 / our pair p50: the same ratio from
                                 medians, which the machine's noise moves less */
    double pair_round_trips;  /* round trips one pair needs (NAN: not stated) */
    double ratio_per_round_trip; /* ours / floor per round trip: ratio_pairs_per_s *
                                    pair_round_trips / the floor pair's round trips */

    /* hand-off: holder's release returning -> waiter's acquire returning */
    int handoffs;
    double handoff_hold_ms;
    double handoff_us_p50, handoff_us_p99, handoff_us_max; /* from release's return */
    double handoff_start_us_p50, handoff_start_us_p99;     /* from release's start */
    double floor_idle_round_trip_us_p50;                  /* one floor round trip after an idle hold */
    double floor_handoff_start_us_p50;                    /* the store's own protocol's (NAN: none) */

    /* contended throughput and fairness */
    bench_contended contended[BENCH_MAX_NPROCS];
    int ncontended;
    /* the same with the largest worker count, as readers of a shared lock
     * and as holders of a semaphore of BENCH_PERMITS (where the store has
     * them; processes 0 otherwise) */
    bench_contended shared, semaphore;

    /* sqlite:// only: flock(2) on the same filesystem, and the database's
     * size after many distinct names were taken and released */
    int has_flock;
    double flock_pairs_per_s, flock_pair_us_p50, flock_handoff_us_p50;
    int names;                 /* distinct names taken and released (0: not measured) */
    double names_seconds;
    long long file_bytes_before, file_bytes_after; /* database + WAL, before and after */

    /* memory (resident, /proc/self/statm) and scale, measured in a process
     * of their own: the store library's own connection, anylock's client,
     * a held lock; then acquire+release pairs with many other names held */
    int mem_clients;
    double floor_conn_kib;      /* one connection of the store's own library (the floor's) */
    double client_kib;          /* one anylock client, opened and used once */
    int held;                   /* lock handles held at once */
    double held_lock_kib;       /* per held lock handle (client side; memory:// holds the store too) */
    double held_seconds;        /* taking them */
    int others;                 /* other names held while the pairs were timed again */
    double others_fill_per_s;   /* acquisitions per second while filling */
    double empty_pair_us_p50, full_pair_us_p50; /* pair p50 with no / with `others` names held */
    double empty_pairs_per_s, full_pairs_per_s;
    double scale_ratio;         /* full_pair_us_p50 / empty_pair_us_p50: 1.0 = no growth */

    /* one waiter's CPU while the lock is held for a long time */
    double cpu_hold_s;     /* how long the waiter waited */
    double cpu_user_s, cpu_sys_s;
    double cpu_core_percent;
    double cpu_wake_us;    /* release -> that waiter's acquire returning */
} bench_result;

/* Runs every phase on url and fills r (r->error says what failed; the
 * figures measured before a failure stay). */
void bench_run_store(const char *url, const bench_options *o, bench_result *r);

#endif
