/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * anylock-bench: runs the benchmark on each URL given and prints one table
 * (or, with --json, one JSON object per store, one per line).
 *
 *   anylock-bench [options] URL...
 *
 * The performance goals are SHOWN next to the figures (met / missed); they are
 * never asserted, and the exit status only says whether every phase ran.
 */
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anylock.h"
#include "bench.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: anylock-bench [options] URL...\n"
            "  --json                    one JSON object per store instead of the table\n"
            "  --uncontended-seconds S   time for uncontended pairs and their floor (default 2)\n"
            "  --handoffs N              hand-offs to measure (default 200)\n"
            "  --handoff-hold-ms MS      hold before each hand-off (default 10)\n"
            "  --handoff-max-seconds S   stop the hand-offs after this long (default 10)\n"
            "  --contended-seconds S     window per process count (default 2)\n"
            "  --processes LIST          process counts, comma-separated (default 1,2,4,8,16)\n"
            "  --cpu-hold-seconds S      hold during which a waiter's CPU is measured (default 3)\n"
            "  --threads                 workers are threads even for stores shared between processes\n"
            "  --names N                 sqlite://: distinct names taken and released for the file-size\n"
            "                            figure (default 1000000; 0 skips it)\n"
            "  --clients N               clients opened at once for the memory per client (default 16)\n"
            "  --held N                  lock handles held at once for the memory per held lock\n"
            "                            (default 10000; 0 with --others 0 skips the phase)\n"
            "  --others N                names held in the store while pairs are timed again\n"
            "                            (default 100000)\n"
            "  --fill-threads N          clients taking those names at once (default 4, etcd 16)\n"
            "  --pg-max-held N           postgres:// pins a session per held lock: hold at most N\n"
            "                            (default 100)\n"
            "  --fill-max-seconds S      taking the held names stops after S, and taking the others\n"
            "                            after S more; the figures say how many were held (default 30)\n"
            "  --quick                   short durations for a smoke run\n"
            "  --skip-unavailable        leave out URLs whose backend is not built, with a note\n"
            "  --quiet                   no progress lines on stderr\n");
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_nprocs(const char *s, bench_options *o)
{
    o->nnprocs = 0;
    while (*s) {
        char *end;
        long n = strtol(s, &end, 10);
        if (end == s || n < 1 || n > 256 || o->nnprocs == BENCH_MAX_NPROCS || (*end && *end != ','))
            return -1;
        o->nprocs[o->nnprocs++] = (int)n;
        s = *end ? end + 1 : end;
    }
    return o->nnprocs ? 0 : -1;
}

/* ---- output ------------------------------------------------------------------ */

static void json_num(const char *key, double v, int comma)
{
    if (isfinite(v))
        printf("\"%s\":%.6g%s", key, v, comma ? "," : "");
    else
        printf("\"%s\":null%s", key, comma ? "," : "");
}

static void json_str(const char *key, const char *s, int comma)
{
    printf("\"%s\":\"", key);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    printf("\"%s", comma ? "," : "");
}

/* The goals of issue 18, evaluated for one store: -1 not applicable or not
 * measured, 0 missed, 1 met.  Every hand-off goal is judged on the time from
 * the START of the holder's release (the stricter of the two hand-off
 * figures). */
typedef struct goals {
    int pairs_90pct_of_floor;    /* redis: uncontended pairs/s >= 0.90 of the 2-PING floor's */
    int handoff_within_3_floor_round_trips; /* redis: p50 <= 3 floor round trips */
    int handoff_p50_under_2ms;   /* sqlite, memcached */
    int waiter_cpu_under_5pct;   /* memcached */
    int fewest_at_least_half_mean; /* every store: fewest/mean >= 0.5 at every N from 2 to 16 */
    int no_collapse;             /* every store: total/s at 16 over total/s at 2 >= 0.8 */
    double worst_fewest_over_mean;
    double throughput_16_over_2;
    int collapse_n;              /* the N of throughput_16_over_2 (16, or the largest measured) */
} goals;

#define GOAL_COLLAPSE 0.8
#define GOAL_FAIRNESS 0.5

static int met(double v, int ok)
{
    return isfinite(v) ? ok : -1;
}

static goals evaluate(const bench_result *r)
{
    goals g = {-1, -1, -1, -1, -1, -1, NAN, NAN, 0};
    int redis = !strncmp(r->scheme, "redis", 5);
    int memcached = !strcmp(r->scheme, "memcached") || !strcmp(r->scheme, "memcache");
    int sqlite = !strcmp(r->scheme, "sqlite");
    if (redis) {
        g.pairs_90pct_of_floor = met(r->ratio_pairs_per_s, r->ratio_pairs_per_s >= 0.9);
        double rts = r->handoff_start_us_p50 / r->floor_round_trip_us_p50;
        g.handoff_within_3_floor_round_trips = met(rts, rts <= 3.0);
    }
    if (memcached || sqlite)
        g.handoff_p50_under_2ms = met(r->handoff_start_us_p50, r->handoff_start_us_p50 < 2000.0);
    if (memcached)
        g.waiter_cpu_under_5pct = met(r->cpu_core_percent, r->cpu_core_percent < 5.0);
    double n2 = NAN, top = NAN;
    for (int i = 0; i < r->ncontended; i++) {
        const bench_contended *c = &r->contended[i];
        if (c->processes == 2)
            n2 = c->acquisitions_per_s;
        if (c->processes > 2 && c->processes <= 16 && c->processes >= g.collapse_n) {
            g.collapse_n = c->processes;
            top = c->acquisitions_per_s;
        }
        if (c->processes >= 2 && c->processes <= 16) {
            double f = c->mean > 0 ? (double)c->fewest / c->mean : 0;
            if (!(g.worst_fewest_over_mean <= f))
                g.worst_fewest_over_mean = f;
        }
    }
    if (n2 > 0)
        g.throughput_16_over_2 = top / n2;
    g.fewest_at_least_half_mean = met(g.worst_fewest_over_mean, g.worst_fewest_over_mean >= GOAL_FAIRNESS);
    g.no_collapse = met(g.throughput_16_over_2, g.throughput_16_over_2 >= GOAL_COLLAPSE);
    return g;
}

static void print_json(const bench_result *r)
{
    goals g = evaluate(r);
    printf("{");
    json_str("store", r->scheme, 1);
    json_str("url", r->url, 1);
    json_str("floor_command", r->floor_command, 1);
    printf("\"workers_are_threads\":%s,", r->threads ? "true" : "false");
    printf("\"uncontended\":{\"pairs\":%llu,", (unsigned long long)r->pairs);
    json_num("pairs_per_s", r->pairs_per_s, 1);
    json_num("pair_us_p50", r->pair_us_p50, 1);
    json_num("pair_us_p99", r->pair_us_p99, 1);
    printf("\"floor_pairs\":%llu,", (unsigned long long)r->floor_pairs);
    json_num("floor_pairs_per_s", r->floor_pairs_per_s, 1);
    json_num("floor_pair_us_p50", r->floor_pair_us_p50, 1);
    json_num("floor_pair_us_p99", r->floor_pair_us_p99, 1);
    json_num("floor_round_trip_us_p50", r->floor_round_trip_us_p50, 1);
    json_num("floor_round_trip_us_p99", r->floor_round_trip_us_p99, 1);
    json_num("ratio_pairs_per_s_ours_over_floor", r->ratio_pairs_per_s, 1);
    json_num("ratio_pair_p50_floor_over_ours", r->ratio_pair_p50, 1);
    json_num("pair_round_trips", r->pair_round_trips, 1);
    json_num("ratio_per_round_trip", r->ratio_per_round_trip, 0);
    printf("},\"handoff\":{\"handoffs\":%d,", r->handoffs);
    json_num("hold_ms", r->handoff_hold_ms, 1);
    json_num("us_p50", r->handoff_us_p50, 1);
    json_num("us_p99", r->handoff_us_p99, 1);
    json_num("us_max", r->handoff_us_max, 1);
    json_num("floor_round_trip_after_hold_us_p50", r->floor_idle_round_trip_us_p50, 1);
    json_num("from_release_start_us_p50", r->handoff_start_us_p50, 1);
    json_num("from_release_start_us_p99", r->handoff_start_us_p99, 1);
    json_num("from_release_start_floor_round_trips_p50", r->handoff_start_us_p50 / r->floor_round_trip_us_p50, 1);
    json_num("floor_protocol_from_release_start_us_p50", r->floor_handoff_start_us_p50, 1);
    json_num("floor_round_trips_p50", r->handoff_us_p50 / r->floor_round_trip_us_p50, 1);
    json_num("floor_round_trips_p99", r->handoff_us_p99 / r->floor_round_trip_us_p50, 0);
    printf("},\"waiter_cpu\":{");
    json_num("wait_s", r->cpu_hold_s, 1);
    json_num("user_s", r->cpu_user_s, 1);
    json_num("sys_s", r->cpu_sys_s, 1);
    json_num("core_percent", r->cpu_core_percent, 1);
    json_num("wake_after_release_us", r->cpu_wake_us, 0);
    printf("},");
    if (r->has_flock) {
        printf("\"flock_same_fs\":{");
        json_num("pairs_per_s", r->flock_pairs_per_s, 1);
        json_num("pair_us_p50", r->flock_pair_us_p50, 1);
        json_num("handoff_us_p50", r->flock_handoff_us_p50, 0);
        printf("},");
    }
    if (r->names) {
        printf("\"distinct_names\":{\"names\":%d,", r->names);
        json_num("seconds", r->names_seconds, 1);
        printf("\"file_bytes_before\":%lld,\"file_bytes_after\":%lld},", r->file_bytes_before, r->file_bytes_after);
    }
    printf("\"memory\":{\"clients\":%d,", r->mem_clients);
    json_num("store_library_connection_kib", r->floor_conn_kib, 1);
    json_num("client_kib", r->client_kib, 1);
    printf("\"held\":%d,", r->held);
    json_num("held_lock_kib", r->held_lock_kib, 1);
    json_num("held_seconds", r->held_seconds, 0);
    printf("},\"scale\":{\"others_held\":%d,", r->others);
    json_num("fill_acquisitions_per_s", r->others_fill_per_s, 1);
    json_num("empty_pair_us_p50", r->empty_pair_us_p50, 1);
    json_num("empty_pairs_per_s", r->empty_pairs_per_s, 1);
    json_num("full_pair_us_p50", r->full_pair_us_p50, 1);
    json_num("full_pairs_per_s", r->full_pairs_per_s, 1);
    json_num("pair_p50_full_over_empty", r->scale_ratio, 0);
    printf("},");
    printf("\"contended\":[");
    for (int i = 0; i < r->ncontended; i++) {
        const bench_contended *c = &r->contended[i];
        printf("%s{\"processes\":%d,", i ? "," : "", c->processes);
        json_num("seconds", c->seconds, 1);
        printf("\"acquisitions\":%llu,", (unsigned long long)c->acquisitions);
        json_num("acquisitions_per_s", c->acquisitions_per_s, 1);
        printf("\"fewest\":%llu,\"most\":%llu,", (unsigned long long)c->fewest, (unsigned long long)c->most);
        json_num("mean", c->mean, 1);
        printf("\"overlaps\":%llu}", (unsigned long long)c->overlaps);
    }
    printf("],");
    const struct {
        const char *key;
        const bench_contended *c;
    } modes[] = {{"shared", &r->shared}, {"semaphore", &r->semaphore}};
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
        const bench_contended *c = modes[i].c;
        if (!c->processes)
            continue;
        printf("\"%s\":{\"processes\":%d,\"permits\":%u,", modes[i].key, c->processes, c->permits);
        json_num("acquisitions_per_s", c->acquisitions_per_s, 1);
        printf("\"fewest\":%llu,\"most\":%llu,\"most_inside\":%d,\"overlaps\":%llu},",
               (unsigned long long)c->fewest, (unsigned long long)c->most, c->most_inside,
               (unsigned long long)c->overlaps);
    }
    printf("\"goal_figures\":{");
    json_num("handoff_from_release_start_floor_round_trips_p50", r->handoff_start_us_p50 / r->floor_round_trip_us_p50, 1);
    json_num("worst_fewest_over_mean", g.worst_fewest_over_mean, 1);
    printf("\"collapse_n\":%d,", g.collapse_n);
    json_num("throughput_n_over_2", g.throughput_16_over_2, 0);
    printf("},\"goals\":{");
    const char *names[] = {"pairs_at_least_90pct_of_floor", "handoff_p50_within_3_floor_round_trips",
                           "handoff_p50_under_2ms", "waiter_cpu_under_5pct_of_a_core",
                           "fewest_at_least_half_the_mean_every_n", "throughput_16_over_2_at_least_0.8"};
    int vals[] = {g.pairs_90pct_of_floor, g.handoff_within_3_floor_round_trips, g.handoff_p50_under_2ms,
                  g.waiter_cpu_under_5pct, g.fewest_at_least_half_mean, g.no_collapse};
    int first = 1;
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        if (vals[i] < 0)
            continue;
        printf("%s\"%s\":%s", first ? "" : ",", names[i], vals[i] ? "true" : "false");
        first = 0;
    }
    printf("},");
    json_str("error", r->error, 0);
    printf("}\n");
}

#define COL 21

static void cell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void cell(const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("%*s", COL, buf);
}

/* A number formatted compactly, or "-" when not measured. */
static const char *fmt_num(char *buf, size_t size, double v, int decimals)
{
    if (!isfinite(v))
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%.*f", decimals, v);
    return buf;
}

static void row_pair(const char *label, const bench_result *rs, int n, size_t off1, size_t off2, int decimals)
{
    printf("%-34s", label);
    for (int i = 0; i < n; i++) {
        double a = *(const double *)((const char *)&rs[i] + off1);
        double b = off2 ? *(const double *)((const char *)&rs[i] + off2) : NAN;
        char x[40], y[40];
        if (off2)
            cell("%s / %s", fmt_num(x, sizeof x, a, decimals), fmt_num(y, sizeof y, b, decimals));
        else
            cell("%s", fmt_num(x, sizeof x, a, decimals));
    }
    printf("\n");
}

static const char *goal_word(int v)
{
    return v < 0 ? "" : v ? " met" : " MISSED";
}

static void print_table(const bench_result *rs, int n, const bench_options *o)
{
    printf("%-34s", "");
    for (int i = 0; i < n; i++)
        cell("%s", rs[i].scheme);
    printf("\n");
    printf("uncontended (one client, one lock)\n");
    row_pair("  acquire+release pairs/s", rs, n, offsetof(bench_result, pairs_per_s), 0, 0);
    row_pair("  pair latency p50 / p99 (us)", rs, n, offsetof(bench_result, pair_us_p50),
             offsetof(bench_result, pair_us_p99), 2);
    row_pair("  floor pairs/s (2 round trips; etcd 3)", rs, n, offsetof(bench_result, floor_pairs_per_s), 0, 0);
    row_pair("  floor pair p50 / p99 (us)", rs, n, offsetof(bench_result, floor_pair_us_p50),
             offsetof(bench_result, floor_pair_us_p99), 2);
    row_pair("  floor round trip p50 (us)", rs, n, offsetof(bench_result, floor_round_trip_us_p50), 0, 2);
    printf("%-34s", "  ours / floor (pairs/s)");
    for (int i = 0; i < n; i++) {
        char x[40];
        if (isfinite(rs[i].ratio_pairs_per_s))
            cell("%.1f%%%s", 100 * rs[i].ratio_pairs_per_s, goal_word(evaluate(&rs[i]).pairs_90pct_of_floor));
        else
            cell("%s", fmt_num(x, sizeof x, NAN, 0));
    }
    printf("\n%-34s", "  ours / floor per round trip");
    for (int i = 0; i < n; i++) {
        char x[40];
        if (isfinite(rs[i].ratio_per_round_trip))
            cell("%.1f%% (%.0f RTs)", 100 * rs[i].ratio_per_round_trip, rs[i].pair_round_trips);
        else
            cell("%s", fmt_num(x, sizeof x, NAN, 0));
    }
    printf("\n%-34s", "  floor p50 / ours p50");
    for (int i = 0; i < n; i++) {
        char x[40];
        if (isfinite(rs[i].ratio_pair_p50))
            cell("%.1f%%", 100 * rs[i].ratio_pair_p50);
        else
            cell("%s", fmt_num(x, sizeof x, NAN, 0));
    }
    printf("\n");

    char label[64];
    snprintf(label, sizeof label, "hand-off (holds of %.0f ms)", o->handoff_hold_ms);
    printf("%s\n", label);
    printf("%-34s", "  hand-offs measured");
    for (int i = 0; i < n; i++)
        cell("%d", rs[i].handoffs);
    printf("\n");
    row_pair("  release end -> acquire p50/p99 us", rs, n, offsetof(bench_result, handoff_us_p50),
             offsetof(bench_result, handoff_us_p99), 1);
    row_pair("  release start -> acq p50/p99 us", rs, n, offsetof(bench_result, handoff_start_us_p50),
             offsetof(bench_result, handoff_start_us_p99), 1);
    row_pair("  floor round trip after the hold us", rs, n, offsetof(bench_result, floor_idle_round_trip_us_p50), 0,
             1);
    row_pair("  bare protocol, from start us", rs, n, offsetof(bench_result, floor_handoff_start_us_p50), 0, 1);
    printf("%-34s", "  from start, floor round trips");
    for (int i = 0; i < n; i++) {
        char x[40], y[40];
        double rt = rs[i].floor_round_trip_us_p50;
        cell("%s / %s", fmt_num(x, sizeof x, rs[i].handoff_start_us_p50 / rt, 1),
             fmt_num(y, sizeof y, rs[i].handoff_start_us_p99 / rt, 1));
    }
    printf("\n");
    printf("%-34s", "  goal");
    for (int i = 0; i < n; i++) {
        goals g = evaluate(&rs[i]);
        if (g.handoff_within_3_floor_round_trips >= 0)
            cell("<= 3 RTs:%s", goal_word(g.handoff_within_3_floor_round_trips));
        else if (g.handoff_p50_under_2ms >= 0)
            cell("< 2 ms:%s", goal_word(g.handoff_p50_under_2ms));
        else
            cell("%s", "");
    }
    printf("\n");

    snprintf(label, sizeof label, "one waiter during a %.1f s hold", o->cpu_hold_seconds);
    printf("%s\n", label);
    printf("%-34s", "  CPU, % of a core (user+sys)");
    for (int i = 0; i < n; i++) {
        char x[40];
        goals g = evaluate(&rs[i]);
        cell("%s%%%s", fmt_num(x, sizeof x, rs[i].cpu_core_percent, 2), goal_word(g.waiter_cpu_under_5pct));
    }
    printf("\n");
    row_pair("  wake after release (us)", rs, n, offsetof(bench_result, cpu_wake_us), 0, 1);

    snprintf(label, sizeof label, "contended, %.1f s each: acquisitions/s", o->contended_seconds);
    printf("%s\n", label);
    for (int k = 0; k < o->nnprocs; k++) {
        snprintf(label, sizeof label, "  %d worker%s: total/s", o->nprocs[k], o->nprocs[k] > 1 ? "s" : "");
        printf("%-34s", label);
        for (int i = 0; i < n; i++) {
            if (k < rs[i].ncontended)
                cell("%.0f", rs[i].contended[k].acquisitions_per_s);
            else
                cell("-");
        }
        printf("\n%-34s", "    fewest-most per worker");
        for (int i = 0; i < n; i++) {
            if (k < rs[i].ncontended) {
                const bench_contended *c = &rs[i].contended[k];
                cell("%llu-%llu%s", (unsigned long long)c->fewest, (unsigned long long)c->most,
                     c->overlaps ? " OVERLAP" : "");
            } else {
                cell("-");
            }
        }
        printf("\n");
    }
    for (int m = 0; m < 2; m++) {
        if (m)
            snprintf(label, sizeof label, "  semaphore of %d: total/s", BENCH_PERMITS);
        else
            snprintf(label, sizeof label, "  shared, readers: total/s");
        printf("%-34s", label);
        for (int i = 0; i < n; i++) {
            const bench_contended *c = m ? &rs[i].semaphore : &rs[i].shared;
            if (c->processes)
                cell("%.0f (%d in)%s", c->acquisitions_per_s, c->most_inside, c->overlaps ? " OVERLAP" : "");
            else
                cell("-");
        }
        printf("\n");
    }
    printf("%-34s", "  fewest/mean, worst N >= 2");
    for (int i = 0; i < n; i++) {
        goals g = evaluate(&rs[i]);
        char x[40];
        cell("%s%s", fmt_num(x, sizeof x, g.worst_fewest_over_mean, 2), goal_word(g.fewest_at_least_half_mean));
    }
    printf("\n%-34s", "  total/s at 16 / at 2 workers");
    for (int i = 0; i < n; i++) {
        goals g = evaluate(&rs[i]);
        char x[40];
        cell("%s%s", fmt_num(x, sizeof x, g.throughput_16_over_2, 2), goal_word(g.no_collapse));
    }
    printf("\n");
    int any_mem = 0;
    for (int i = 0; i < n; i++)
        any_mem |= rs[i].mem_clients > 0;
    if (any_mem) {
        printf("memory (resident, KiB) and scale\n");
        row_pair("  store library's connection", rs, n, offsetof(bench_result, floor_conn_kib), 0, 1);
        row_pair("  anylock client (used once)", rs, n, offsetof(bench_result, client_kib), 0, 1);
        printf("%-34s", "  per held lock (locks held)");
        for (int i = 0; i < n; i++) {
            char x[40];
            cell("%s (%d)", fmt_num(x, sizeof x, rs[i].held_lock_kib, 2), rs[i].held);
        }
        printf("\n%-34s", "  pair p50 us: empty / N held");
        for (int i = 0; i < n; i++) {
            char x[40], y[40];
            cell("%s / %s", fmt_num(x, sizeof x, rs[i].empty_pair_us_p50, 1), fmt_num(y, sizeof y, rs[i].full_pair_us_p50, 1));
        }
        printf("\n%-34s", "  ratio (N held)");
        for (int i = 0; i < n; i++) {
            char x[40];
            cell("%s (%d)", fmt_num(x, sizeof x, rs[i].scale_ratio, 2), rs[i].others);
        }
        printf("\n");
        row_pair("  acquisitions/s while filling", rs, n, offsetof(bench_result, others_fill_per_s), 0, 0);
    }
    int any_flock = 0, any_names = 0;
    for (int i = 0; i < n; i++) {
        any_flock |= rs[i].has_flock;
        any_names |= rs[i].names > 0;
    }
    if (any_flock) {
        printf("flock(2) on the same filesystem (the one-host floor)\n");
        row_pair("  pairs/s", rs, n, offsetof(bench_result, flock_pairs_per_s), 0, 0);
        row_pair("  pair p50 (us)", rs, n, offsetof(bench_result, flock_pair_us_p50), 0, 2);
        row_pair("  hand-off p50 (us)", rs, n, offsetof(bench_result, flock_handoff_us_p50), 0, 1);
    }
    if (any_names) {
        printf("distinct names taken and released\n");
        printf("%-34s", "  names");
        for (int i = 0; i < n; i++) {
            if (rs[i].names)
                cell("%d", rs[i].names);
            else
                cell("-");
        }
        printf("\n%-34s", "  file before / after (KiB)");
        for (int i = 0; i < n; i++) {
            if (rs[i].names)
                cell("%lld / %lld", rs[i].file_bytes_before / 1024, rs[i].file_bytes_after / 1024);
            else
                cell("-");
        }
        printf("\n");
    }
    printf("\n");
    for (int i = 0; i < n; i++) {
        printf("%s: %s; floor round trip: %s; workers: %s\n", rs[i].scheme, rs[i].url,
               rs[i].floor_command[0] ? rs[i].floor_command : "none", rs[i].threads ? "threads" : "processes");
        if (rs[i].error[0])
            printf("  ERROR: %s\n", rs[i].error);
    }
}

int main(int argc, char **argv)
{
    bench_options o = {
        .uncontended_seconds = 2,
        .handoffs = 200,
        .handoff_hold_ms = 10,
        .handoff_max_seconds = 10,
        .contended_seconds = 2,
        .nprocs = {1, 2, 4, 8, 16},
        .nnprocs = 5,
        .cpu_hold_seconds = 3,
        .names = 1000000,
        .clients = 16,
        .held = 10000,
        .others = 100000,
        .pg_max_held = 100,
        .fill_max_seconds = 30,
    };
    enum { O_UNC = 256, O_HO, O_HOLD, O_HOMAX, O_CONT, O_PROCS, O_CPU, O_QUICK, O_SKIP, O_NAMES, O_CLIENTS, O_HELD, O_OTHERS, O_FILL, O_PGMAX, O_FILLMAX };
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {"uncontended-seconds", required_argument, NULL, O_UNC},
        {"handoffs", required_argument, NULL, O_HO},
        {"handoff-hold-ms", required_argument, NULL, O_HOLD},
        {"handoff-max-seconds", required_argument, NULL, O_HOMAX},
        {"contended-seconds", required_argument, NULL, O_CONT},
        {"processes", required_argument, NULL, O_PROCS},
        {"cpu-hold-seconds", required_argument, NULL, O_CPU},
        {"threads", no_argument, NULL, 't'},
        {"names", required_argument, NULL, O_NAMES},
        {"clients", required_argument, NULL, O_CLIENTS},
        {"held", required_argument, NULL, O_HELD},
        {"others", required_argument, NULL, O_OTHERS},
        {"fill-threads", required_argument, NULL, O_FILL},
        {"pg-max-held", required_argument, NULL, O_PGMAX},
        {"fill-max-seconds", required_argument, NULL, O_FILLMAX},
        {"quick", no_argument, NULL, O_QUICK},
        {"skip-unavailable", no_argument, NULL, O_SKIP},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c, skip_unavailable = 0;
    while ((c = getopt_long(argc, argv, "jtqh", longopts, NULL)) != -1) {
        double v;
        int bad = 0;
        switch (c) {
        case 'j':
            o.json = 1;
            break;
        case 't':
            o.force_threads = 1;
            break;
        case 'q':
            o.quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case O_UNC:
            bad = parse_double(optarg, 0.01, 3600, &o.uncontended_seconds);
            break;
        case O_HO:
            bad = parse_double(optarg, 1, 1e6, &v);
            o.handoffs = (int)v;
            break;
        case O_HOLD:
            bad = parse_double(optarg, 0, 60000, &o.handoff_hold_ms);
            break;
        case O_HOMAX:
            bad = parse_double(optarg, 0.01, 3600, &o.handoff_max_seconds);
            break;
        case O_CONT:
            bad = parse_double(optarg, 0.01, 3600, &o.contended_seconds);
            break;
        case O_PROCS:
            bad = parse_nprocs(optarg, &o);
            break;
        case O_CPU:
            bad = parse_double(optarg, 0.01, 3600, &o.cpu_hold_seconds);
            break;
        case O_NAMES:
            bad = parse_double(optarg, 0, 1e8, &v);
            o.names = (int)v;
            break;
        case O_CLIENTS:
            bad = parse_double(optarg, 1, 1000, &v);
            o.clients = (int)v;
            break;
        case O_HELD:
            bad = parse_double(optarg, 0, 1e7, &v);
            o.held = (int)v;
            break;
        case O_OTHERS:
            bad = parse_double(optarg, 0, 1e7, &v);
            o.others = (int)v;
            break;
        case O_FILL:
            bad = parse_double(optarg, 1, 256, &v);
            o.fill_threads = (int)v;
            break;
        case O_PGMAX:
            bad = parse_double(optarg, 1, 10000, &v);
            o.pg_max_held = (int)v;
            break;
        case O_FILLMAX:
            bad = parse_double(optarg, 0.1, 86400, &v);
            o.fill_max_seconds = v;
            break;
        case O_SKIP:
            skip_unavailable = 1;
            break;
        case O_QUICK:
            o.uncontended_seconds = 0.3;
            o.handoffs = 40;
            o.handoff_max_seconds = 3;
            o.contended_seconds = 0.3;
            o.cpu_hold_seconds = 0.5;
            o.names = 10000;
            o.clients = 4;
            o.held = 500;
            o.others = 2000;
            o.fill_max_seconds = 5;
            break;
        default:
            usage(stderr);
            return 64;
        }
        if (bad) {
            fprintf(stderr, "anylock-bench: bad option value: %s\n", optarg);
            return 64;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 64;
    }
    const char **urls = calloc((size_t)(argc - optind), sizeof *urls);
    bench_result *rs = calloc((size_t)(argc - optind), sizeof *rs);
    if (!rs || !urls) {
        fprintf(stderr, "anylock-bench: out of memory\n");
        return 70;
    }
    int n = 0;
    for (int i = optind; i < argc; i++) {
        char scheme[32];
        const char *sep = strstr(argv[i], "://");
        snprintf(scheme, sizeof scheme, "%.*s", sep ? (int)(sep - argv[i]) : 0, argv[i]);
        if (skip_unavailable && !anylock_backend_available(scheme))
            fprintf(stderr, "anylock-bench: %s:// is not built in; left out\n", scheme);
        else
            urls[n++] = argv[i];
    }
    int failed = 0;
    for (int i = 0; i < n; i++) {
        bench_run_store(urls[i], &o, &rs[i]);
        failed |= rs[i].error[0] != '\0';
        if (rs[i].error[0] && !o.quiet)
            fprintf(stderr, "%s: %s\n", rs[i].url, rs[i].error);
        if (o.json) {
            print_json(&rs[i]);
            fflush(stdout);
        }
    }
    if (!o.json)
        print_table(rs, n, &o);
    free(rs);
    free(urls);
    return failed ? 1 : 0;
}
