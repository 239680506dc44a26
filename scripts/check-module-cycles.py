#!/usr/bin/env python3
# Lists, per module of soma-observability, the crate modules it uses (`crate::` and `super::`
# paths in code; comments, doc links and `#[cfg(test)] mod tests` left out) and prints every
# import cycle between modules. Exits 1 if there is one. `-v` also lists modules that use none.
# Usage: scripts/check-module-cycles.py [SRC_DIR] [-v]   (default: crates/soma-observability/src)
import os, re, sys

args = [a for a in sys.argv[1:] if a != "-v"]
src = args[0] if args else os.path.join(os.path.dirname(__file__), "..", "crates", "soma-observability", "src")
verbose = "-v" in sys.argv
mods = {}  # module path ("http::headers") -> file
for root, _, files in os.walk(src):
    for f in files:
        if not f.endswith(".rs"):
            continue
        rel = os.path.relpath(os.path.join(root, f), src)[:-3].split(os.sep)
        if rel[-1] in ("mod", "lib"):
            rel = rel[:-1]
        mods["::".join(rel) or "crate"] = os.path.join(root, f)

def strip(text):
    text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
    return "\n".join(l.split("//")[0] for l in text.splitlines())

# Re-exports at the crate root and in dir modules: `pub use a::{B, C}` maps B -> a.
reexports = {}
for m, f in mods.items():
    body = strip(open(f).read())
    for um in re.finditer(r"pub use\s+([\w:]+?)(?:::\{([^}]*)\}|::(\w+))\s*;", body):
        base = um.group(1)
        names = [n.strip().split(" as ")[-1] for n in (um.group(2) or um.group(3)).split(",")]
        target = (base if m == "crate" else m + "::" + base).replace("self::", "")
        for n in names:
            if n:
                reexports[(m, n)] = target

def resolve(parts):
    """Longest module prefix of a path from the crate root, following re-exports."""
    mod = "crate"
    for p in parts:
        cand = p if mod == "crate" else mod + "::" + p
        if cand in mods:
            mod = cand
        elif (mod, p) in reexports:
            return resolve(reexports[(mod, p)].split("::"))
        else:
            break
    return mod

def expand_use(body):
    """`use crate::a::{b, c::{d}}` -> paths; plus inline `crate::x::y` paths."""
    paths = []
    for um in re.finditer(r"\b(crate|super)::((?:\w+::)*)(\{[^;]*\}|\w+)", body):
        head, mid, tail = um.groups()
        prefix = [head] + [p for p in mid.split("::") if p]
        if tail.startswith("{"):
            for item in re.findall(r"\w+(?:::\w+)*", tail):
                paths.append(prefix + item.split("::"))
        else:
            paths.append(prefix + [tail])
    return paths

deps = {m: set() for m in mods}
for m, f in mods.items():
    body = strip(open(f).read())
    is_dir = f.endswith(("mod.rs", "lib.rs"))
    parent = m if is_dir else ("::".join(m.split("::")[:-1]) or "crate")
    for path in expand_use(body):
        if path[0] == "crate":
            parts = path[1:]
        else:  # super:: is the parent module
            base = [] if parent == "crate" else parent.split("::")
            parts = base + path[1:]
        target = resolve(parts)
        if target != m and target != "crate" and not m.startswith(target + "::") and not target.startswith(m + "::"):
            deps[m].add(target)

for m in sorted(deps):
    if verbose or deps[m]:
        print(f"{m}: {', '.join(sorted(deps[m]))}")

# Tarjan's SCC
index, low, stack, on, sccs, i = {}, {}, [], set(), [], [0]
def visit(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in deps[v]:
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
sys.setrecursionlimit(10000)
for v in sorted(deps):
    if v not in index: visit(v)

def cycle_in(comp, start):
    """The shortest cycle through `start` within `comp`."""
    import collections
    prev = {start: None}; q = collections.deque([start]); found = None
    while q and not found:
        v = q.popleft()
        for w in sorted(deps[v]):
            if w not in comp: continue
            if w == start: found = v; break
            if w not in prev: prev[w] = v; q.append(w)
    path = [found]
    while prev[path[-1]] is not None: path.append(prev[path[-1]])
    path = list(reversed(path)) + [start]
    return path

print()
if not sccs:
    print("no cycles")
for comp in sccs:
    print(f"cycle among {{{', '.join(comp)}}}:")
    seen = set()
    for start in comp:
        path = cycle_in(comp, start)
        k = path.index(min(path[:-1]))  # one rotation per cycle
        key = tuple(path[k:-1] + path[:k])
        if key not in seen:
            seen.add(key)
            print("  " + " -> ".join(key + (key[0],)))
sys.exit(1 if sccs else 0)
