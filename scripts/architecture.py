#!/usr/bin/env python3
"""The crate's shape in figures, from its own files (nothing is built or run).

    python3 scripts/architecture.py [--edges]

Prints:
  - lines in src/ (production and unit tests apart) and in the test infrastructure
    (tests/it/fakes/ and tests/it/support/, or, before they existed, the emulator files);
  - source files over 500 production lines, and the ten longest functions;
  - the import graph between the crate's top-level modules ("units": `src/x.rs` together
    with `src/x/`), read from `crate::` paths, and every cycle in it (strongly connected
    units); with --edges, every edge and the names that make it.

Function lengths count the lines from a `fn` to its closing brace, with strings, chars and
comments blanked first; `#[cfg(test)] mod tests { ... }` blocks and `tests.rs` files count as
unit tests.
"""

import os
import re
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
# The emulators and launchers the tests use, wherever they stand.
INFRA_DIRS = ["fakes/src", "tests/it/support"]
INFRA_FILES_BEFORE = [
    "tests/it/douyin_server.rs",
    "tests/it/cdn.rs",
    "tests/it/postgrest.rs",
    "tests/it/storage_api.rs",
    "tests/it/helpers.rs",
]


def rust_files(top):
    for dirpath, _, names in os.walk(top):
        for n in sorted(names):
            if n.endswith(".rs"):
                yield os.path.join(dirpath, n)


def blank(text):
    """Strings, chars and comments replaced by spaces (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = '"' + hashes
            j = text.find(end, i + 2 + len(hashes))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:i + 12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:i + 12])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def test_spans(lines):
    """Line indexes inside `#[cfg(test)] mod ... { }` blocks."""
    inside = set()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "#[cfg(test)]" and i + 1 < len(lines) and re.match(r"\s*(pub )?mod \w+\s*\{", lines[i + 1]):
            depth = 0
            j = i + 1
            while j < len(lines):
                depth += lines[j].count("{") - lines[j].count("}")
                inside.add(j)
                if depth <= 0 and "{" in "".join(lines[i + 1:j + 1]):
                    break
                j += 1
            inside.add(i)
            i = j + 1
        else:
            i += 1
    return inside


def functions(lines, skip):
    """(name, first line, length) of every fn outside `skip`."""
    found = []
    for i, line in enumerate(lines):
        if i in skip:
            continue
        m = re.match(r"\s*(pub(\([^)]*\))? )?(const )?(async )?(unsafe )?(extern \"C\" )?fn (\w+)", line)
        if not m:
            continue
        depth, opened = 0, False
        for j in range(i, len(lines)):
            depth += lines[j].count("{") - lines[j].count("}")
            if "{" in lines[j]:
                opened = True
            if opened and depth <= 0:
                found.append((m.group(7), i + 1, j - i + 1))
                break
            if not opened and lines[j].rstrip().endswith(";"):
                break
    return found


def unit_of(path):
    rel = os.path.relpath(path, SRC)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def main():
    show_edges = "--edges" in sys.argv
    prod_lines = test_lines = 0
    big = []
    fns = []
    edges = defaultdict(set)
    units = set()
    for path in rust_files(SRC):
        rel = os.path.relpath(path, ROOT)
        text = open(path, encoding="utf-8").read()
        raw_lines = text.split("\n")
        lines = blank(text).split("\n")
        is_test_file = os.path.basename(path) == "tests.rs"
        skip = set(range(len(lines))) if is_test_file else test_spans(lines)
        t = len(skip)
        p = len(raw_lines) - t
        prod_lines += p
        test_lines += t
        if p > 500:
            big.append((p, rel))
        fns.extend((length, name, f"{rel}:{start}") for name, start, length in functions(lines, skip))
        unit = unit_of(path)
        if unit in ("lib", "main"):
            continue
        units.add(unit)
        for i, line in enumerate(lines):
            if i in skip:
                continue
            for m in re.finditer(r"\bcrate::(\w+)((?:::\w+)*)(::\{[^}]*\})?", line):
                target = m.group(1)
                if target != unit and os.path.exists(os.path.join(SRC, target + ".rs")) or os.path.isdir(os.path.join(SRC, target)):
                    if target != unit:
                        names = (m.group(2) + (m.group(3) or "")).lstrip(":")
                        edges[(unit, target)].add(names or target)
            # `use crate::{a, b::c}` groups
            for m in re.finditer(r"\buse crate::\{([^;]*)\}", line):
                for part in re.split(r",\s*", m.group(1)):
                    target = part.strip().split("::")[0]
                    if target and target != unit and (os.path.exists(os.path.join(SRC, target + ".rs")) or os.path.isdir(os.path.join(SRC, target))):
                        edges[(unit, target)].add(part.strip())

    infra = []
    for d in INFRA_DIRS:
        full = os.path.join(ROOT, d)
        if os.path.isdir(full):
            infra.extend(rust_files(full))
    if not infra:
        infra = [os.path.join(ROOT, f) for f in INFRA_FILES_BEFORE if os.path.exists(os.path.join(ROOT, f))]
    infra_lines = sum(len(open(f, encoding="utf-8").read().split("\n")) for f in infra)

    print(f"src/: {prod_lines + test_lines} lines ({prod_lines} production, {test_lines} unit tests)")
    print(f"test infrastructure: {infra_lines} lines in {len(infra)} files")
    print(f"files over 500 production lines: {len(big)}")
    for p, rel in sorted(big, reverse=True):
        print(f"  {p:5}  {rel}")
    print("longest functions (lines):")
    for length, name, where in sorted(fns, reverse=True)[:10]:
        print(f"  {length:5}  {name}  {where}")

    graph = defaultdict(set)
    for (a, b) in edges:
        graph[a].add(b)
    sccs = strongly_connected(sorted(units), graph)
    cycles = [c for c in sccs if len(c) > 1]
    print(f"units: {len(units)}, imports between units: {len(edges)}, cycles: {len(cycles)}")
    for c in cycles:
        members = set(c)
        print("  cycle: " + ", ".join(sorted(c)))
        for (a, b), names in sorted(edges.items()):
            if a in members and b in members:
                print(f"    {a} -> {b}: {', '.join(sorted(names))}")
    if show_edges:
        for (a, b), names in sorted(edges.items()):
            print(f"{a} -> {b}: {', '.join(sorted(names))}")
    return 0


def strongly_connected(nodes, graph):
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in nodes:
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
