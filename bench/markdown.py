#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Writes the benchmark's tables into README.md and docs/benchmark.md.

    bench/markdown.py --results FILE --machine FILE --command CMD --seconds S README.md docs/benchmark.md

FILE of results: anylock-bench --json output (one object per store and line,
plus bench/run's "etcd-commands" line).  FILE of the machine: "key: value"
lines written by bench/run before the run.  In each document the text
between "<!-- bench:begin" and "<!-- bench:end -->" is replaced: README.md
gets the headline table, docs/benchmark.md the fuller one.  Every sentence
about the goals is made from the figures; nothing here is typed by hand.
"""
import argparse
import json
import math
import re
import sys

ORDER = ["memory", "sqlite", "file", "redis", "memcached", "postgres", "etcd"]


def num(v, digits=None):
    """A figure for a table: '-' when not measured."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    a = abs(v)
    if digits is None:
        digits = 0 if a >= 100 else 1 if a >= 10 else 2
    if a >= 1e6:
        return "%.2fM" % (v / 1e6)
    if digits == 0:
        return "{:,}".format(int(round(v)))
    return "%.*f" % (digits, v)


def pct(v, bound=None):
    """v as a percentage; with a decimal where it would print the goal's
    bound itself (0.897 against 0.9 is 89.7%, not 90%)."""
    if v is None:
        return "-"
    digits = 1 if bound is not None and round(100 * v) == round(100 * bound) and v != bound else 0
    return "%.*f%%" % (digits, 100 * v)


def get(d, *path):
    for p in path:
        if not isinstance(d, dict) or d.get(p) is None:
            return None
        d = d[p]
    return d


def contended(r, n):
    for c in r.get("contended", []):
        if c["processes"] == n:
            return c
    return None


def near(v, digits, bound):
    """v with digits decimals, or more where that would print the goal's
    bound itself (0.7997 against 0.8 is 0.800, not 0.80)."""
    while v is not None and digits < 4 and num(v, digits) == num(bound, digits) and v != bound:
        digits += 1
    return num(v, digits)


def word(ok):
    return "" if ok is None else " met" if ok else " **MISSED**"


def goal(r, key):
    return get(r, "goals", key)


# The goals of issue 18, in the order the paragraph gives them: (key in
# "goals", what it asks, the figure that decides it).
GOALS = [
    ("pairs_at_least_90pct_of_floor", "uncontended pairs at least 90% of the floor",
     lambda r: pct(get(r, "uncontended", "ratio_pairs_per_s_ours_over_floor"), 0.9)),
    ("handoff_p50_within_3_floor_round_trips", "hand-off p50 (from release start) within 3 floor round trips",
     lambda r: near(get(r, "goal_figures", "handoff_from_release_start_floor_round_trips_p50"), 1, 3) + " round trips"),
    ("handoff_p50_under_2ms", "hand-off p50 (from release start) under 2 ms",
     lambda r: num(get(r, "handoff", "from_release_start_us_p50")) + " µs"),
    ("waiter_cpu_under_5pct_of_a_core", "a waiter under 5% of a core",
     lambda r: num(get(r, "waiter_cpu", "core_percent"), 2) + "%"),
    ("fewest_at_least_half_the_mean_every_n", "fairness (fewest / mean) at least 0.5 at every N from 2 to 16",
     lambda r: "worst " + near(get(r, "goal_figures", "worst_fewest_over_mean"), 2, 0.5)),
    ("throughput_16_over_2_at_least_0.8", "contended total at 16 workers at least 0.8 of that at 2",
     lambda r: near(get(r, "goal_figures", "throughput_n_over_2"), 2, 0.8)),
]


def scale_cell(r):
    ratio = get(r, "scale", "pair_p50_full_over_empty")
    n = get(r, "scale", "others_held")
    return "-" if ratio is None else "%s (%s held)" % (num(ratio, 2), num(n, 0))


def held_cell(r):
    kib = get(r, "memory", "held_lock_kib")
    n = get(r, "memory", "held")
    return "-" if kib is None else "%s KiB (%s held)" % (num(kib, 2), num(n, 0))


def handoff_cell(r, p="from_release_start_us_p50"):
    us = get(r, "handoff", p)
    if us is None:
        return "-"
    s = num(us) + " µs"
    if r["store"].startswith("redis"):
        rts = get(r, "goal_figures", "handoff_from_release_start_floor_round_trips_p50")
        s += " = %s floor RTs" % near(rts, 1, 3)
        bare = get(r, "handoff", "floor_protocol_from_release_start_us_p50")
        if bare is not None and p == "from_release_start_us_p50":
            s += " (python-redis-lock's protocol: %s µs)" % num(bare)
    return s


def uncontended_cell(r):
    ours = get(r, "uncontended", "pairs_per_s")
    floor = get(r, "uncontended", "floor_pairs_per_s")
    ratio = get(r, "uncontended", "ratio_pairs_per_s_ours_over_floor")
    return "%s / %s (%s)" % (num(ours), num(floor), pct(ratio, 0.9 if r["store"].startswith("redis") else None))


def contended_cell(r):
    cells = []
    for n in (2, 4, 8, 16):
        c = contended(r, n)
        cells.append(num(c["acquisitions_per_s"]) if c else "-")
    return " / ".join(cells)


def headline_rows(rs):
    rows = [
        ("uncontended pairs/s, ours / floor (ratio)", uncontended_cell),
        ("pair latency p50 / p99", lambda r: "%s / %s µs" % (num(get(r, "uncontended", "pair_us_p50")),
                                                          num(get(r, "uncontended", "pair_us_p99")))),
        ("hand-off p50, release start -> waiter's acquire returns", handoff_cell),
        ("CPU of one waiter during a long hold", lambda r: num(get(r, "waiter_cpu", "core_percent"), 2) + "% of a core"),
        ("contended acquisitions/s, 2 / 4 / 8 / 16 workers", contended_cell),
        ("contended 16 / 2", lambda r: near(get(r, "goal_figures", "throughput_n_over_2"), 2, 0.8)
         + word(goal(r, "throughput_16_over_2_at_least_0.8"))),
        ("fairness: fewest / mean, worst N", lambda r: near(get(r, "goal_figures", "worst_fewest_over_mean"), 2, 0.5)
         + word(goal(r, "fewest_at_least_half_the_mean_every_n"))),
        ("resident memory per held lock", held_cell),
        ("pair p50 with N names held / empty", scale_cell),
    ]
    return rows


def mode_cell(r, key):
    m = r.get(key)
    if not m:
        return "- (no such mode)"
    return "%s (%d; %d)%s" % (num(m["acquisitions_per_s"]), m["processes"], m["most_inside"],
                              " OVERLAP" if m["overlaps"] else "")


def fuller_rows(rs):
    rows = headline_rows(rs)
    extra = [
        ("floor (one round trip)", lambda r: r.get("floor_command") or "-"),
        ("floor round trip p50", lambda r: num(get(r, "uncontended", "floor_round_trip_us_p50")) + " µs"),
        ("ours / floor per round trip", lambda r: pct(get(r, "uncontended", "ratio_per_round_trip"))
         if get(r, "uncontended", "ratio_per_round_trip") is not None else "-"),
        ("hand-off p50 / p99, release returns -> acquire returns",
         lambda r: "%s / %s µs" % (num(get(r, "handoff", "us_p50")), num(get(r, "handoff", "us_p99")))),
        ("hand-off p99 from release start", lambda r: num(get(r, "handoff", "from_release_start_us_p99")) + " µs"),
        ("floor round trip after an idle hold as long as the hand-off's",
         lambda r: num(get(r, "handoff", "floor_round_trip_after_hold_us_p50")) + " µs"),
        ("the same hand-off with the store's own simplest protocol, from release start",
         lambda r: num(get(r, "handoff", "floor_protocol_from_release_start_us_p50")) + " µs"
         if get(r, "handoff", "floor_protocol_from_release_start_us_p50") is not None else "-"),
        ("waiter's wake after a long hold", lambda r: num(get(r, "waiter_cpu", "wake_after_release_us")) + " µs"),
        ("fewest-most per worker at 16", lambda r: "%s-%s" % (num(contended(r, 16)["fewest"], 0), num(contended(r, 16)["most"], 0))
         if contended(r, 16) else "-"),
        ("N readers of one shared lock: acquisitions/s (N; most inside at once)", lambda r: mode_cell(r, "shared")),
        ("N holders of a semaphore of 3: acquisitions/s (N; most inside at once)", lambda r: mode_cell(r, "semaphore")),
        ("resident memory: store library's connection / anylock client",
         lambda r: "%s / %s KiB" % (num(get(r, "memory", "store_library_connection_kib"), 1),
                                    num(get(r, "memory", "client_kib"), 1))),
        ("pair p50 empty / with N names held",
         lambda r: "%s / %s µs" % (num(get(r, "scale", "empty_pair_us_p50")), num(get(r, "scale", "full_pair_us_p50")))),
        ("acquisitions/s while filling those names", lambda r: num(get(r, "scale", "fill_acquisitions_per_s"))),
        ("flock(2) on the same filesystem: pairs/s, hand-off p50",
         lambda r: "%s/s, %s µs" % (num(get(r, "flock_same_fs", "pairs_per_s")), num(get(r, "flock_same_fs", "handoff_us_p50")))
         if r.get("flock_same_fs") else "-"),
        ("file size after N distinct names", names_cell),
    ]
    return rows[:2] + extra[:3] + rows[2:3] + extra[3:8] + rows[3:7] + extra[8:11] + rows[7:] + extra[11:]


def names_cell(r):
    d = r.get("distinct_names")
    if not d:
        return "-"
    return "%s -> %s KiB (%s names)" % (num(d["file_bytes_before"] / 1024, 0), num(d["file_bytes_after"] / 1024, 0),
                                       num(d["names"], 0))


def table(rs, rows):
    out = ["| | " + " | ".join(r["store"] for r in rs) + " |", "|---" * (len(rs) + 1) + "|"]
    for label, f in rows:
        cells = []
        for r in rs:
            try:
                cells.append(f(r))
            except (KeyError, TypeError):
                cells.append("-")
        out.append("| %s | %s |" % (label, " | ".join(cells)))
    return out


def goals_paragraph(rs):
    """One line per goal of issue 18: the stores it applies to, met or
    missed, each with its figure.  Nothing but the figures decides."""
    out = ["Against the goals of issue 18, as anylock-bench judged this run's figures:", ""]
    nmet = nmissed = 0
    for key, what, fig in GOALS:
        met, missed = [], []
        for r in rs:
            ok = goal(r, key)
            if ok is None:
                continue
            (met if ok else missed).append("%s %s" % (r["store"], fig(r)))
        if not met and not missed:
            continue
        nmet += len(met)
        nmissed += len(missed)
        parts = []
        if missed:
            parts.append("**missed** on " + ", ".join(missed))
        if met:
            parts.append("met on " + ", ".join(met))
        out.append("- %s: %s." % (what[0].upper() + what[1:], "; ".join(parts)))
    out.append("")
    out.append("In all, %d met and %d missed." % (nmet, nmissed))
    errors = ["%s: %s" % (r["store"], r["error"]) for r in rs if r.get("error")]
    if errors:
        out.append("Phases that did not run: " + "; ".join(errors) + ".")
    return out


def wrap(text, width=80):
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = line + " " + w if line else w
    if line:
        lines.append(line)
    return lines


def block(rs, rows, machine, command, seconds, commands):
    m = machine
    out = ["A run of `bench/run --markdown` on %s, %s cores (%s), Linux %s, Debian %s; %s; load %s at the start; %s."
           % (m.get("cpu", "?"), m.get("cores", "?"), m.get("virt", "?"), m.get("kernel", "?"), m.get("debian", "?"),
              m.get("servers", "?"), m.get("load", "?"), m.get("date", "?"))]
    out = wrap(out[0]) + [""]
    out += table(rs, rows)
    out.append("")
    notes = []
    for r in rs:
        n_held, n_others = get(r, "memory", "held"), get(r, "scale", "others_held")
        notes.append("%s %s/%s" % (r["store"], num(n_held, 0), num(n_others, 0)))
    out += wrap("Names held for the memory / scale figures, by store: " + ", ".join(notes)
                + " (postgres pins a server session per held lock, hence its cap; file:// keeps two descriptors "
                "open per held lock, hence its cap at half the open-files limit; a store that could not take "
                "them within --fill-max-seconds shows how many it held).")
    if commands:
        out += [""] + wrap("etcd, whole commands, %d runs each (ms p50 / p90): `etcdctl lock NAME -- true` %s / %s, "
                           "`anylock run NAME true` %s / %s." % (commands["runs"], commands["etcdctl_lock_true_ms_p50"],
                                                                 commands["etcdctl_lock_true_ms_p90"],
                                                                 commands["anylock_run_true_ms_p50"],
                                                                 commands["anylock_run_true_ms_p90"]))
    out.append("")
    for para in goals_paragraph(rs):
        if para.startswith("- "):
            w = wrap(para[2:], 78)
            out += ["- " + w[0]] + ["  " + x for x in w[1:]]
        else:
            out += wrap(para) if para else [""]
    out.append("")
    out += wrap("Command: `%s` (%d min %02d s)." % (command, int(seconds) // 60, int(seconds) % 60))
    return out


def replace(path, lines):
    text = open(path, encoding="utf-8").read()
    pat = re.compile(r"(<!-- bench:begin[^\n]*-->\n)(.*?)(<!-- bench:end -->)", re.S)
    if not pat.search(text):
        sys.exit("bench/markdown.py: %s has no <!-- bench:begin ... --> ... <!-- bench:end --> markers" % path)
    text = pat.sub(lambda mt: mt.group(1) + "\n".join(lines) + "\n" + mt.group(3), text, count=1)
    open(path, "w", encoding="utf-8").write(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--machine", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("readme")
    ap.add_argument("doc")
    a = ap.parse_args()
    rs, commands = [], None
    for line in open(a.results, encoding="utf-8"):
        line = line.strip()
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        if d.get("store") == "etcd-commands":
            commands = d
        else:
            rs.append(d)
    rs.sort(key=lambda r: ORDER.index(r["store"]) if r["store"] in ORDER else len(ORDER))
    machine = {}
    for line in open(a.machine, encoding="utf-8"):
        k, _, v = line.partition(":")
        if v:
            machine[k.strip()] = v.strip()
    head = block(rs, headline_rows(rs), machine, a.command, a.seconds, commands)
    full = block(rs, fuller_rows(rs), machine, a.command, a.seconds, commands)
    replace(a.readme, head)
    replace(a.doc, full)
    print("\n".join(head))


if __name__ == "__main__":
    main()
