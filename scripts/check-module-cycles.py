#!/usr/bin/env python3
"""Fails when sibling modules of the `app` crate import each other in a circle.

Why: the rule is no import circle between sibling modules or folders of app/src; a child using
its parent's items does not count (nor does a parent using its children). A circle such as
`server::db` using `server::sqlite` while `sqlite` uses `db`, or `messages` using `ui` while `ui`
uses `messages`, means neither side can be read, tested or moved on its own.

How (stdlib only, no compiling): the module tree comes from the file layout (`lib.rs` is the
crate root, `foo.rs` or `foo/mod.rs` is `foo`). Every path in code that starts with `crate::`,
`super::`, `self::` or a child module's name (in `use` trees and in expressions; comments,
strings and `mod tests` blocks are skipped) is resolved to the deepest module it names,
following the module-level `use` bindings that re-export a name (`pub use db::Database` makes
`crate::server::Database` mean module `server::db`; private imports are followed too, they are
visible to descendants). An edge P -> T between modules with lowest common ancestor L becomes
an edge between the children of L on the way to P and T; each strongly connected component of
more than one node in such a sibling graph is reported with the lines that create its edges.

    python3 scripts/check-module-cycles.py [--root DIR]     # exit 1 when a cycle is found
"""
import argparse
import bisect
import re
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LEXEME = re.compile(r"""//|/\*|b?r\#*"|b?"|'(?:\\(?:u\{[0-9a-fA-F]*\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'|[A-Za-z_]\w*""")
TEST_MOD = re.compile(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{|\bmod\s+tests\s*\{")
STRING_REST = re.compile(r'(?:\\.|[^"\\])*"?', re.S)
USE_STMT = re.compile(r"(?<![\w$])use\s+([^;]*);")
INLINE_PATH = re.compile(r"(?<![\w:.])\$?[A-Za-z_]\w*(?:\s*::\s*[A-Za-z_]\w*)+")
USE_TOKEN = re.compile(r"::|[{},*]|[A-Za-z_$]\w*")


def blank(text):
    return re.sub(r"[^\n]", " ", text)


def strip_code(src):
    """Blank out comments, string and char literals (keeping newlines, so offsets still match)."""
    out, i = [], 0
    while m := LEXEME.search(src, i):
        tok, start, end = m.group(), m.start(), m.end()
        if tok == "//":
            end = src.find("\n", start) % (len(src) + 1)
        elif tok == "/*":
            depth, end = 1, start + 2
            while depth and end < len(src):
                two = src[end:end + 2]
                depth += {"/*": 1, "*/": -1}.get(two, 0)
                end += 2 if two in ("/*", "*/") else 1
        elif tok.endswith('"') and "r" in tok:  # raw string r#"..."#
            close = '"' + "#" * tok.count("#")
            end = src.find(close, end) % (len(src) + 1) + len(close)
        elif tok.endswith('"'):
            end = STRING_REST.match(src, end).end()
        elif not tok.startswith("'"):  # an identifier: keep it
            out.append(src[i:end]); i = end; continue
        out.append(src[i:start] + blank(src[start:end])); i = end
    out.append(src[i:])
    code = "".join(out)
    while m := TEST_MOD.search(code):  # drop test modules up to their matching brace
        depth, end = 1, m.end()
        while depth and end < len(code):
            depth += {"{": 1, "}": -1}.get(code[end], 0); end += 1
        code = code[:m.start()] + blank(code[m.start():end]) + code[end:]
    return code


def scopes(code):
    """A function from offset to (enclosing inline module names, brace depth)."""
    stack, offsets, states = [], [0], [((), 0)]
    for m in re.finditer(r"\bmod\s+(\w+)\s*\{|\{|\}", code):
        if m.group() == "}":
            stack and stack.pop()
        else:
            stack.append(m.group(1))
        offsets.append(m.end()); states.append((tuple(s for s in stack if s), len(stack)))
    return lambda offset: states[bisect.bisect_right(offsets, offset) - 1]


def use_paths(body):
    """Expand a `use` tree into (segments, bound name) pairs; globs and `::extern` are skipped."""
    toks, pos, found = USE_TOKEN.findall(body), 0, []

    def tree(prefix):
        nonlocal pos
        segs = list(prefix)
        while pos < len(toks):
            t = toks[pos]; pos += 1
            if t == "::":
                if not segs: return  # leading `::`: an external crate
                continue
            if t == "*": return
            if t == "{":
                while pos < len(toks) and toks[pos] != "}":
                    tree(segs)
                    if pos < len(toks) and toks[pos] == ",": pos += 1
                pos += 1
                return
            segs.append(t)
            if pos < len(toks) and toks[pos] == "::": continue
            if segs[-1] == "self": segs.pop()
            name = segs[-1] if segs else None
            if pos + 1 < len(toks) and toks[pos] == "as":
                name = toks[pos + 1]; pos += 2
            if segs: found.append((segs, name))
            return
    tree([])
    return found


def shortest_cycle(graph, comp):
    """A shortest cycle through the first node of a strongly connected component."""
    start, paths = comp[0], {comp[0]: [comp[0]]}
    queue = [start]
    for v in queue:
        for w in sorted(graph.get(v, {})):
            if w == start:
                return paths[v] + [start]
            if w in comp and w not in paths:
                paths[w] = paths[v] + [w]; queue.append(w)
    return comp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="app/src", help="crate source folder (default: app/src)")
    ap.add_argument("--max-lines", type=int, default=0, metavar="N",
                    help="show at most N evidence lines per edge (default 0: all)")
    ap.add_argument("--known", metavar="FILE",
                    help="edges of cycles that exist today, one 'parent: a -> b' per line "
                         "('crate' for the root); a cycle made only of them passes, a new edge in "
                         "a cycle fails, and a listed edge that is no longer in a cycle fails "
                         "too, so the list only shrinks")
    args = ap.parse_args()
    root = Path(args.root)
    root = root if root.is_absolute() or root.exists() else REPO / root
    if not root.is_dir():
        sys.exit(f"check-module-cycles: no such folder {root}")

    files = {}  # module path (tuple) -> (file, stripped code, original lines)
    for f in sorted(root.rglob("*.rs")):
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "mod" or (len(parts) == 1 and parts[0] in ("lib", "main")):
            parts.pop()
        if tuple(parts) not in files:
            src = f.read_text(encoding="utf-8", errors="replace")
            files[tuple(parts)] = (f, strip_code(src), src.splitlines())
    modules = {mod[:i] for mod in files for i in range(len(mod) + 1)}  # folders count too

    def absolute(segs, cur):
        """Absolute segments of a path written in module `cur`, or None for external paths."""
        head = segs[0].lstrip("$")
        if head == "crate": return list(segs[1:])
        if head == "self": return list(cur) + list(segs[1:])
        if head == "super":
            n = next((i for i, s in enumerate(segs) if s != "super"), len(segs))
            return list(cur[:max(len(cur) - n, 0)]) + list(segs[n:])
        return list(cur) + list(segs) if cur + (head,) in modules else None

    # Module-level `use` bindings: bindings[module][name] = absolute path it stands for.
    bindings, uses = defaultdict(dict), []
    for mod, (f, code, _) in files.items():
        scope = scopes(code)
        for m in USE_STMT.finditer(code):
            inline, depth = scope(m.start())
            cur = mod + inline
            for segs, name in use_paths(m.group(1)):
                target = absolute(segs, cur)
                if target is None: continue
                uses.append((mod, f, code, m.start(), target, " ".join(m.group().split())))
                if depth == 0 and name and name != "_":
                    bindings[mod][name] = target

    def resolve(segs, seen=frozenset()):
        mod = ()
        for i, seg in enumerate(segs):
            if mod + (seg,) in modules:
                mod += (seg,); continue
            target = bindings.get(mod, {}).get(seg)
            if target and (mod, seg) not in seen:
                return resolve(target + list(segs[i + 1:]), seen | {(mod, seg)})
            break
        return mod

    refs = list(uses)  # inline paths in expressions, types, attributes, macros
    for mod, (f, code, _) in files.items():
        rest = USE_STMT.sub(lambda m: blank(m.group()), code)
        scope = scopes(rest)
        for m in INLINE_PATH.finditer(rest):
            inline = scope(m.start())[0]
            target = absolute(re.split(r"\s*::\s*", m.group()), mod + inline)
            if target is not None:
                refs.append((mod, f, code, m.start(), target, None))

    graphs = defaultdict(lambda: defaultdict(dict))  # L -> p1 -> t1 -> {(file, line, text)}
    for mod, f, code, offset, target, text in refs:
        t = resolve(target)
        common = 0
        while common < min(len(mod), len(t)) and mod[common] == t[common]: common += 1
        if common in (len(mod), len(t)): continue  # same module, ancestor or descendant
        line = code.count("\n", 0, offset) + 1
        text = text or files[mod][2][line - 1].strip()
        where = f.relative_to(REPO) if f.is_relative_to(REPO) else f
        graphs[mod[:common]][mod[common]].setdefault(t[common], set()).add((str(where), line, text))

    cycles = []
    for parent, graph in sorted(graphs.items()):
        index, low, stack, on, counter = {}, {}, [], set(), [0]

        def visit(v):  # Tarjan's strongly connected components
            index[v] = low[v] = counter[0]; counter[0] += 1
            stack.append(v); on.add(v)
            for w in sorted(graph.get(v, {})):
                if w not in index:
                    visit(w); low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while not comp or comp[-1] != v:
                    comp.append(stack.pop()); on.discard(comp[-1])
                if len(comp) > 1: cycles.append((parent, sorted(comp), graph))
        for v in sorted(set(graph) | {w for ts in graph.values() for w in ts}):
            if v not in index: visit(v)

    edges = sum(len(ts) for g in graphs.values() for ts in g.values())
    if args.known:
        known = set()
        for raw in Path(args.known).read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if line:
                parent, edge = line.split(":", 1)
                a, b = (x.strip() for x in edge.split("->"))
                known.add((parent.strip(), a, b))
        found = {("::".join(("crate",) + parent), a, b)
                 for parent, comp, graph in cycles
                 for a in comp for b in graph.get(a, {}) if b in comp}
        new, gone = sorted(found - known), sorted(known - found)
        for parent, a, b in gone:
            print(f"check-module-cycles: {parent}: {a} -> {b} is no longer part of a cycle: "
                  f"remove it from {args.known}")
        if not new:
            print(f"check-module-cycles: {'FAILED' if gone else 'OK'}, no new import cycle "
                  f"({len(found)} known edges still in cycles, listed in {args.known})")
            return 1 if gone else 0
        print(f"check-module-cycles: new edges in import cycles (not in {args.known}):")
        for parent, a, b in new:
            print(f"  {parent}: {a} -> {b}")
        print()
    if not cycles:
        print(f"check-module-cycles: OK, no import cycle between sibling modules "
              f"({len(files)} files, {edges} sibling edges under {root})")
        return 0
    print(f"check-module-cycles: {len(cycles)} import cycle(s) between sibling modules of {root}\n")
    for n, (parent, comp, graph) in enumerate(cycles, 1):
        name = "::".join(("crate",) + parent)
        print(f"[{n}] in {name}: {{{', '.join(comp)}}}, e.g. {' -> '.join(shortest_cycle(graph, comp))}")
        for a in comp:
            for b in sorted(t for t in graph.get(a, {}) if t in comp):
                lines = [f"{f}:{n}: {text}" for f, n, text in sorted(graph[a][b])]
                shown = lines[:args.max_lines] if args.max_lines > 0 else lines
                print(f"  {a} -> {b}")
                for evidence in shown:
                    print(f"      {evidence}")
                if len(shown) < len(lines):
                    print(f"      ... and {len(lines) - len(shown)} more")
        print()
    print(f"check-module-cycles: FAILED, {len(cycles)} cycle(s); a child using its parent's items "
          f"does not count, so move shared items down into a module both can use")
    return 1


if __name__ == "__main__":
    sys.exit(main())
