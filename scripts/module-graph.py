#!/usr/bin/env python3
"""The library's module graph, and a check that it has no import cycles (issue 12).

Nodes are the top-level modules of src/ (`config`, `session`, ...) and, since `http` is the edge
that reaches into everything, each of http's own modules (`http::hls`, ...). An edge A -> B is a
`crate::B` path (or, inside http, `super::B`) in A's non-test code. Test code is left out: files
named tests.rs or *_tests.rs, folders named tests, and anything after a file's first
`#[cfg(test)]` (the house style puts tests last). A cycle is a strongly connected component of
more than one node (Tarjan).

  scripts/module-graph.py          prints each cycle with its edges; exits 1 if there is one
  scripts/module-graph.py --dot    prints the graph in Graphviz's DOT (dot -Tsvg to draw it)
"""

import os
import re
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
# Not part of the module graph: the binary's entry, the crate root, and the fuzzing API (which
# reaches into every module on purpose, and only for tests and fuzzers).
SKIPPED = {"main", "lib", "fuzz_api"}


def node_of(path):
    rel = os.path.relpath(path, ROOT)[: -len(".rs")]
    parts = rel.split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    if not parts or parts[0] in SKIPPED:
        return None
    if parts[-1] == "tests" or parts[-1].endswith("_tests") or "tests" in parts[:-1]:
        return None
    if parts[0] == "http" and len(parts) > 1:
        return "http::" + parts[1]
    return parts[0]


def edges():
    graph = defaultdict(set)
    for folder, _, files in os.walk(ROOT):
        for name in sorted(files):
            if not name.endswith(".rs"):
                continue
            path = os.path.join(folder, name)
            node = node_of(path)
            if node is None:
                continue
            graph[node]
            with open(path, encoding="utf-8") as f:
                text = f.read().split("#[cfg(test)]", 1)[0]
            in_http = node.startswith("http::")
            for m in re.finditer(r"crate::([a-z_0-9]+)(?:::([a-z_0-9]+))?", text):
                target = m.group(1)
                if target == "http" and m.group(2):
                    # `crate::http::hls` is http's module `hls` (or an item of http's own).
                    target = "http::" + m.group(2)
                if target in SKIPPED or target == node or node.startswith(target + "::"):
                    continue
                graph[node].add(target)
            if in_http:
                for m in re.finditer(r"super::([a-z_0-9]+)", text):
                    target = "http::" + m.group(1)
                    if target != node:
                        graph[node].add(target)
    # Only edges to modules that exist; `crate::http::Item` is an edge to http itself.
    def known(b):
        return b if b in graph else ("http" if b.startswith("http::") else None)

    return {a: {known(b) for b in bs if known(b) and known(b) != a} for a, bs in graph.items()}


def cycles(graph):
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main():
    graph = edges()
    if "--dot" in sys.argv[1:]:
        print("digraph xg2g {")
        for a in sorted(graph):
            for b in sorted(graph[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
        return 0
    found = cycles(graph)
    for component in found:
        print("import cycle:", ", ".join(component))
        for a in component:
            for b in sorted(graph[a] & set(component)):
                print(f"  {a} -> {b}")
    modules = len(graph)
    links = sum(len(b) for b in graph.values())
    if found:
        return 1
    print(f"module graph: {modules} modules, {links} edges, no import cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
