#!/usr/bin/env python3
"""Fails when a module of a workspace crate imports, directly or through others, a module that
imports it back: module imports must form a DAG, so that the code reads in one direction.

A module is a file (`src/a.rs` or `src/a/mod.rs` is `a`, `src/a/b.rs` is `a::b`). Its imports
are the `crate::`, `super::` and `self::` paths it names (in `use` trees and in code) and the
paths that start with one of its own child modules; each resolves to the longest module path
it starts with. Declaring a child (`mod x;`) is not importing it. Comments and string literals
are ignored.

    scripts/check_modules.py [CRATE_SRC_DIR...]    (default: every crate of the workspace)

Prints each cycle found as `a -> b -> a` and exits 1; prints the module count and exits 0 when
there is none.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(text):
    """Source without comments, string and char literals (kept as spaces, lines unchanged)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:]) and not re.match(r"[A-Za-z0-9_]", text[i - 1 : i] or " "):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            i = n if end < 0 else end + 1 + len(hashes)
            out.append(" ")
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append(" ")
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i : i + 4] if text[i + 1 : i + 2] != "\\" else text[i : i + 12]):
            m = re.match(r"'(\\[^']*|[^\\'])'", text[i:])
            i += len(m.group(0)) if m else 1
            out.append(" ")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def modules(src):
    """{module path (tuple): file} of the crate whose lib.rs is in `src`."""
    found = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            parts = rel[:-3].split(os.sep)
            if parts[0] in ("bin",) or rel == "main.rs":
                continue  # binaries are crates of their own
            if parts[-1] in ("mod", "lib"):
                parts = parts[:-1]
            found[tuple(parts)] = os.path.join(dirpath, f)
    return found


def use_trees(code):
    """Every path a `use` tree names, expanded (`a::{b, c::d}` -> a::b, a::c::d)."""
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", code):
        tree = re.sub(r"\s+", "", m.group(1))
        paths.extend(expand(tree))
    return paths


def expand(tree, prefix=""):
    out = []
    if "{" not in tree:
        return [prefix + tree.split(" as ")[0]]
    head, _, rest = tree.partition("{")
    body = rest[: rest.rfind("}")]
    depth, start = 0, 0
    items = []
    for i, c in enumerate(body):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            items.append(body[start:i])
            start = i + 1
    items.append(body[start:])
    for item in items:
        if item:
            out.extend(expand(item, prefix + head))
    return out


def inline_modules(code):
    """(name, body, start, end) of each top-level `mod name { ... }` in `code`."""
    found, pos = [], 0
    for m in re.finditer(rf"\bmod\s+({IDENT})\s*\{{", code):
        if m.start() < pos:
            continue
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        found.append((m.group(1), code[m.end() : i - 1], m.start(), i))
        pos = i
    return found


def imports(module, code, known, path=None):
    """Modules the file of `module` imports, resolved against `known`; `path` is where the
    code sits (an inline module inside the file: its paths are relative to it)."""
    path = module if path is None else path
    targets = set()
    for name, body, start, end in reversed(inline_modules(code)):
        targets |= imports(module, body, known, path + (name,))
        code = code[:start] + " " * (end - start) + code[end:]
    children = set(re.findall(rf"\bmod\s+({IDENT})\s*;", code))
    paths = use_trees(code)
    code_wo_use = re.sub(r"\buse\s+[^;]+;", " ", code)
    paths += re.findall(rf"(?<![A-Za-z0-9_:])((?:crate|super|self|{IDENT})(?:::{IDENT})+)", code_wo_use)
    for p in paths:
        parts = p.split("::")
        if parts[0] == "crate":
            base, rest = (), parts[1:]
        elif parts[0] in ("super", "self"):
            base = path
            while parts and parts[0] in ("super", "self"):
                if parts[0] == "super":
                    base = base[:-1]
                parts = parts[1:]
            rest = parts
        elif parts[0] in children:
            base, rest = path, parts
        else:
            continue
        target = base
        for i in range(len(rest), 0, -1):
            if base + tuple(rest[:i]) in known:
                target = base + tuple(rest[:i])
                break
        if target != module and target in known:
            targets.add(target)
    return targets


def cycles(graph):
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
            if len(comp) > 1:
                comps.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    found = []
    for comp in comps:
        members = set(comp)
        start = min(comp)
        # Shortest way back to `start` inside the component.
        prev, frontier, seen = {}, [start], {start}
        path = None
        while frontier and path is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & members):
                    if w == start:
                        path = [v]
                        while path[-1] != start:
                            path.append(prev[path[-1]])
                        path = [start] + path[::-1][1:] + [start] if len(path) > 1 else [start, v, start]
                        break
                    if w not in seen:
                        seen.add(w)
                        prev[w] = v
                        nxt.append(w)
                if path:
                    break
            frontier = nxt
        found.append(path or sorted(comp))
    return found


def crate_srcs():
    srcs = []
    for name in sorted(os.listdir(ROOT)):
        lib = os.path.join(ROOT, name, "src", "lib.rs")
        if os.path.isfile(lib):
            srcs.append(os.path.join(ROOT, name, "src"))
    return srcs


def main(argv):
    srcs = argv or crate_srcs()
    bad, total = 0, 0
    for src in srcs:
        known = modules(src)
        total += len(known)
        graph = {}
        for module, path in known.items():
            with open(path, encoding="utf-8") as f:
                graph[module] = imports(module, strip(f.read()), known)
        crate = os.path.basename(os.path.dirname(os.path.abspath(src)))
        for cycle in cycles(graph):
            bad += 1
            names = [("::".join(m) or "crate") for m in cycle]
            print(f"{crate}: import cycle: {' -> '.join(names)}")
    if bad:
        print(f"check_modules: {bad} import cycle(s); move what both sides need below both")
        return 1
    print(f"check_modules: {total} modules in {len(srcs)} crates, no import cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
