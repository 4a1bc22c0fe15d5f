#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# The defaults the documentation states are the ones the code uses.
#
# docs/defaults.md has one table of every documented default.  This test
#  1. asks the code for its defaults (tests/print_defaults: the core's, and
#     every duration each built-in store's backend takes when a URL sets
#     none) and checks each against that table, both ways;
#  2. checks the table's rows that name a macro against its #define;
#  3. checks every parameter table in README.md and docs/*.md (a table whose
#     first column is "parameter" and that has a "default" column), and
#     every "`name` (default VALUE" in their prose, against the table.
set -u
top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/anylock-docs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The built-in schemes and the store each belongs to, from the table the
# core registers them from: {"redis+unix", &anylock__redis_backend}.
sed -n 's/^[[:space:]]*{"\([a-z0-9+.-]*\)", *\(&anylock__\([a-z0-9_]*\)_backend\|NULL\)}.*/\1 \3/p' \
    "$top_srcdir/backends/builtin.c" >"$tmp/schemes"
[ -s "$tmp/schemes" ] || { echo "FAIL: no schemes found in backends/builtin.c"; exit 1; }

# shellcheck disable=SC2046
"$top_builddir/tests/print_defaults" "$tmp" $(cut -d' ' -f1 "$tmp/schemes") >"$tmp/code" ||
    { echo "FAIL: tests/print_defaults failed"; cat "$tmp/code"; exit 1; }

exec python3 - "$top_srcdir" "$tmp/schemes" "$tmp/code" <<'EOF'
import glob, os, re, sys

top, schemes_file, code_file = sys.argv[1:4]
CORE = ("prefix", "timeout", "expires")
failures = []
def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)

# scheme -> store ("redis+unix" -> "redis"); a scheme whose backend is left
# out of every build is its own store.
store_of = {}
for line in open(schemes_file):
    scheme, _, store = line.strip().partition(" ")
    if store or scheme not in store_of:   # the #else branch's NULL entry
        store_of[scheme] = store or scheme

# What the code uses: (store, param) -> value (ms for durations).
code, built = {}, set()
for line in open(code_file):
    line = line.rstrip("\n")
    if line.startswith("#"):
        continue
    scheme, name, value = line.split(" ", 2)
    store = "core" if scheme == "core" else store_of.get(scheme, scheme)
    built.add(store)
    if (store, name) in code and code[(store, name)] != value:
        fail("%s (as %s://) has the default %s=%s, its other scheme %s"
             % (store, scheme, name, value, code[(store, name)]))
    code[(store, name)] = value
for line in open(code_file):
    m = re.match(r"# (\S+) takes no default durations", line)
    if m:
        built.add(store_of.get(m.group(1), m.group(1)))

def cells(row):
    return [c.strip() for c in row.strip().strip("|").split("|")]

def plain(text):
    return text.replace("`", "").strip()

def number(text):
    """seconds as the docs write them ("5", "0.002", "60 s") -> ms, or None"""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(?:\s*s)?", plain(text))
    return None if not m else round(float(m.group(1)) * 1000)

def agree(a, b):
    """two documented values: the same number of seconds, or the same text"""
    na, nb = number(a), number(b)
    if na is not None or nb is not None:
        return na == nb
    return plain(a) == plain(b)

def same(doc_value, code_value):
    n = number(doc_value)
    if n is not None and re.fullmatch(r"-?[0-9]+", code_value):
        return n == int(code_value)
    return plain(doc_value) == code_value

# ---- docs/defaults.md: the table -------------------------------------------
table_path = os.path.join(top, "docs", "defaults.md")
table = {}
for row in open(table_path):
    if not row.startswith("|"):
        continue
    c = cells(row)
    if len(c) < 4 or c[0] in ("store", "") or set(c[0]) <= set("-"):
        continue
    store = "core" if c[0] == "every store" else c[0]
    table[(store, plain(c[1]))] = (c[2], c[3])
if not table:
    fail("docs/defaults.md has no table")

# 1. the code's defaults are in the table, with the same values.
for (store, name), value in sorted(code.items()):
    if (store, name) not in table:
        shown = value if store == "core" and name == "prefix" else "%g" % (int(value) / 1000)
        fail("the code's default %s=%s (%s) is not in docs/defaults.md; add the row: "
             "| %s | `%s` | %s | `backends/%s.c` |"
             % (name, shown, store, "every store" if store == "core" else store, name, shown, store))
    elif not same(table[(store, name)][0], value):
        fail("docs/defaults.md says %s's %s defaults to %s; the code uses %s%s"
             % (store, name, plain(table[(store, name)][0]), value,
                "" if (store == "core" and name == "prefix") else " ms"))

# 2. the table's other rows: a macro, or a store not in this build.
for (store, name), (value, where) in sorted(table.items()):
    if (store, name) in code:
        continue
    m = re.search(r"`([^`]+)`\s*`([A-Za-z_][A-Za-z0-9_]*)`", where)
    if m:
        path, macro = m.groups()
        try:
            src = open(os.path.join(top, path)).read()
        except OSError:
            fail("docs/defaults.md: %s's %s names %s, which does not exist" % (store, name, path))
            continue
        d = re.search(r"^#define\s+%s\s+(.+?)\s*(?:/\*.*)?$" % macro, src, re.M)
        if not d:
            fail("docs/defaults.md: %s has no #define %s" % (path, macro))
        elif not same(value, d.group(1).strip('"')) and number(value) != (
                int(d.group(1)) * 1000 if d.group(1).isdigit() else None):
            fail("docs/defaults.md says %s's %s defaults to %s; %s has %s %s"
                 % (store, name, plain(value), path, macro, d.group(1)))
    elif store not in built:
        print("# %s %s: the %s store is not in this build" % (store, name, store))
    else:
        fail("docs/defaults.md: %s's %s is neither a default the code reports nor a row naming "
             "its macro (`file` `MACRO` in the last column)" % (store, name))

# 3. every other document agrees with the table.
docs = [os.path.join(top, "README.md")] + sorted(
    p for p in glob.glob(os.path.join(top, "docs", "*.md")) if not p.endswith("defaults.md"))
all_values = {}
for (store, name), (value, _) in table.items():
    all_values.setdefault(name, set()).add(value)
checked = 0
for path in docs:
    rel = os.path.relpath(path, top)
    # docs/<store>.md is a store's page; the others speak of every store.
    page_store = os.path.basename(path)[:-3]
    if not rel.startswith("docs") or page_store not in set(store_of.values()) | {k[0] for k in table}:
        page_store = None
    lines = open(path).read().splitlines()
    header = None
    for lineno, row in enumerate(lines, 1):
        if not row.startswith("|"):
            header = None
            continue
        c = cells(row)
        if header is None:
            header = [plain(x).lower() for x in c]
            continue
        if set("".join(c)) <= set("-: "):
            continue
        if not header or header[0] != "parameter" or "default" not in header:
            continue
        names = [re.sub(r"=.*", "", n) for n in re.findall(r"`([^`]+)`", c[0])]
        dcell = c[header.index("default")]
        values = [v.strip() for v in dcell.split(",")] if len(names) > 1 else [dcell]
        if len(values) != len(names):
            continue
        for name, value in zip(names, values):
            store = "core" if name in CORE else page_store
            key = (store, name)
            if key in table:
                checked += 1
                if not agree(value, table[key][0]):
                    fail("%s:%d says %s defaults to %s; docs/defaults.md says %s"
                         % (rel, lineno, name, plain(value), plain(table[key][0])))
            elif store and (store, name) in code:
                fail("%s:%d states %s's %s default, which docs/defaults.md lacks" % (rel, lineno, store, name))
    # Prose: "`poll_max` (default 0.1 s)".
    for lineno, line in enumerate(lines, 1):
        for name, value in re.findall(r"`([a-z_]+)`\s*\(default\s+`?([0-9.]+(?:\s*s)?|[^`),;]+)`?", line):
            store = "core" if name in CORE else page_store
            if (store, name) in table:
                checked += 1
                ok = agree(value, table[(store, name)][0])
                said = [table[(store, name)][0]]
            elif store is None and name in all_values:
                checked += 1
                ok = any(agree(value, v) for v in all_values[name])
                said = all_values[name]
            else:
                continue
            if not ok:
                fail("%s:%d says `%s` defaults to %s; docs/defaults.md says %s"
                     % (rel, lineno, name, value.strip(), " or ".join(sorted(plain(v) for v in said))))

print("%d defaults in the code, %d rows in docs/defaults.md, %d statements in the other documents checked"
      % (len(code), len(table), checked))
sys.exit(1 if failures else 0)
EOF
