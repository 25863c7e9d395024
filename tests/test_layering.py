"""The layering of bench's packages holds: imports point down the table in site_src/architecture.md,
modules form no import cycle, and no module or function outgrows the size the design allows.

The rank table is read from the architecture page itself, so the page and this test cannot drift
apart; the checker is also tested against small synthetic packages, so it provably can fail.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "site_src" / "architecture.md"
MAX_MODULE_LINES = 520  # "no module over ~500 lines"
MAX_FUNCTION_LINES = 62  # "no function over ~60 lines"
PHONE_CONTENT_PX = 350  # the content column of a 390 px wide phone, less Material's margins


def rank_table(page: Path = PAGE) -> dict[str, int]:
    """module prefix -> rank, from the page's table rows '| N | `bench.x`, `bench.y` | ...'."""
    ranks: dict[str, int] = {}
    for line in page.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].isdigit():
            for name in re.findall(r"`(bench[\w.]*)`", cells[1]):
                ranks[name] = int(cells[0])
    return ranks


def module_name(path: Path, package_root: Path) -> str:
    parts = path.relative_to(package_root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str, is_package: bool) -> list[tuple[str, int]]:
    """Every bench module a file imports (top level, in functions, under TYPE_CHECKING), with lines."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                pkg = name.split(".") if is_package else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            out.append((base, node.lineno))
            out += [(f"{base}.{a.name}", node.lineno) for a in node.names]  # `from bench import x`
    return out


def rank_of(module: str, ranks: dict[str, int]) -> int | None:
    best = None
    for prefix, rank in ranks.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, rank)
    return best[1] if best else None


def check(package_root: Path, ranks: dict[str, int]) -> tuple[list[str], list[list[str]], dict[str, set[str]]]:
    """(upward imports, cycles, graph) of the package at ``package_root``."""
    files = {module_name(p, package_root): p for p in sorted(package_root.rglob("*.py"))}
    graph: dict[str, set[str]] = {m: set() for m in files}
    where: dict[tuple[str, str], str] = {}  # (importer, imported) -> "file:line" of the first such import
    upward = []
    for mod, path in files.items():
        my_rank = rank_of(mod, ranks)
        for target, line in imports_of(path, mod, path.name == "__init__.py"):
            if target not in files or target == mod:
                continue
            graph[mod].add(target)
            where.setdefault((mod, target), f"{path.relative_to(package_root.parent)}:{line}")
            theirs = rank_of(target, ranks)
            if my_rank is None or theirs is None:
                upward.append(f"{path.relative_to(package_root.parent)}:{line}: {mod} or {target} has no rank "
                              f"in the table")
            elif theirs > my_rank:
                upward.append(f"{path.relative_to(package_root.parent)}:{line}: {mod} (rank {my_rank}) imports "
                              f"{target} (rank {theirs})")
    return upward, [_cycle_path(c, graph, where) for c in _cycles(graph)], graph


def _cycle_path(component: list[str], graph: dict[str, set[str]], where: dict[tuple[str, str], str]) -> str:
    """One concrete cycle through a strongly connected component, each step with its file:line."""
    start, inside = component[0], set(component)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:  # breadth first, so the cycle shown is a shortest one back to start
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & inside):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    steps = [*reversed(path), start]
                    return " -> ".join(f"{a} ({where[a, b]})" for a, b in zip(steps, steps[1:])) + f" -> {start}"
                if w not in came_from:
                    came_from[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {component}")  # cannot happen for a component of two or more


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), and self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


# Package __init__ modules that re-export their own modules are part of their package: a module of
# package P importing its sibling through P (``from bench.runtimes import X`` inside runtimes) is
# not a cycle through the package face unless the face imports it back, which the graph shows.


def test_bench_imports_point_down_the_table_and_form_no_cycle():
    ranks = rank_table()
    assert ranks.get("bench.results") is not None and ranks.get("bench.cli") is not None, "rank table not found"
    upward, cycles, graph = check(ROOT / "bench", ranks)
    assert sum(len(v) for v in graph.values()) > 50  # the graph was really read
    problems = [*upward, *(f"import cycle: {c}" for c in cycles)]  # one failure lists every violation
    assert not problems, "\n".join(problems)


def test_no_module_or_function_outgrows_the_design():
    too_big = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        src = path.read_text()
        rel = path.relative_to(ROOT)
        if len(src.splitlines()) > MAX_MODULE_LINES:
            too_big.append(f"{rel}: {len(src.splitlines())} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    too_big.append(f"{rel}:{node.lineno}: {node.name}() is {n} lines")
    assert not too_big, "\n".join(too_big)


# ----------------------------------------------------------------------------- the checker itself


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "bench"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


RANKS = {"bench": 0, "bench.low": 1, "bench.high": 2}


def test_the_checker_passes_a_clean_tree(tmp_path):
    root = _tree(tmp_path, {"__init__.py": "", "low/__init__.py": "", "low/a.py": "import json\n",
                            "high/__init__.py": "", "high/b.py": "from bench.low import a\nfrom bench.low.a import x\n"})
    upward, cycles, graph = check(root, RANKS)
    assert upward == [] and cycles == [] and "bench.low.a" in graph["bench.high.b"]


def test_the_checker_catches_an_upward_import_even_inside_a_function(tmp_path):
    root = _tree(tmp_path, {"__init__.py": "", "low/__init__.py": "",
                            "low/a.py": "def f():\n    from bench.high import b\n",
                            "high/__init__.py": "", "high/b.py": ""})
    upward, _, _ = check(root, RANKS)
    assert any("bench.low.a (rank 1) imports bench.high.b (rank 2)" in u for u in upward)
    assert upward and all(u.startswith("bench/low/a.py:2: bench.low.a (rank 1) imports bench.high") for u in upward)


def test_the_checker_catches_a_cycle_and_an_unranked_module(tmp_path):
    root = _tree(tmp_path, {"__init__.py": "", "low/__init__.py": "", "low/a.py": "from bench.low import b\n",
                            "low/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bench.low.a import A\n",
                            "stray.py": "from bench.low import a\n"})
    upward, cycles, _ = check(root, {"bench.low": 1})
    assert cycles == ["bench.low.a (bench/low/a.py:1) -> bench.low.b (bench/low/b.py:3) -> bench.low.a"]
    assert any("no rank" in u for u in upward)


def test_the_checker_names_a_longer_cycle_through_relative_and_function_level_imports(tmp_path):
    root = _tree(tmp_path, {"__init__.py": "", "low/__init__.py": "", "low/a.py": "from . import b\n",
                            "low/b.py": "def f():\n    from .c import C\n", "low/c.py": "import bench.low.a\n"})
    upward, cycles, _ = check(root, RANKS)
    assert upward == []
    assert cycles == ["bench.low.a (bench/low/a.py:1) -> bench.low.b (bench/low/b.py:2) -> "
                      "bench.low.c (bench/low/c.py:1) -> bench.low.a"]


def test_the_table_on_the_page_is_what_the_checker_reads(tmp_path):
    page = tmp_path / "a.md"
    page.write_text("| rank | package |\n|---|---|\n| 0 | `bench.util`, `bench.errors` |\n| 3 | `bench.config` |\n")
    assert rank_table(page) == {"bench.util": 0, "bench.errors": 0, "bench.config": 3}


def _defines(path: Path, name: str) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
    return False


def _module_file(dotted: str) -> Path | None:
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _missing_in_row(refs: list[str]) -> list[str]:
    """The references of one table row that name nothing in the code. A bare name (`RUNTIMES`) must
    be defined in a module the same row names (`bench/runtimes/__init__.py`), not just anywhere."""
    modules = [ROOT / r for r in refs if r.endswith(".py") and (ROOT / r).is_file()]
    modules += [f for r in refs if r.startswith("bench.") and ":" not in r and (f := _module_file(r)) is not None]
    missing = []
    for ref in refs:
        if "(" in ref or " " in ref:
            continue  # code such as register(Metric(...)) or a command
        if "." in ref and (ROOT / ref).exists():
            continue  # a file at the top (mkdocs.yml)
        if ":" in ref:
            mod, name = ref.split(":")
            path = _module_file(mod)
            if path is None or not _defines(path, name):
                missing.append(ref)
        elif "/" in ref:
            if not (ROOT / ref).exists():
                missing.append(ref)
        elif ref.startswith("bench."):
            if _module_file(ref) is None:
                missing.append(ref)
        elif not any(_defines(m, ref) for m in modules):
            missing.append(ref)
    return missing


def test_the_to_add_x_touch_y_table_names_only_what_exists():
    text = PAGE.read_text()
    table = text[text.index("## To add X, touch Y"):].split("\n## ")[0]
    rows = [re.findall(r"`([^`]+)`", line) for line in table.splitlines() if line.startswith("| a ")]
    assert len(rows) == 5 and sum(map(len, rows)) >= 15, rows  # metric, runtime, scenario, page, format
    missing = [ref for row in rows for ref in _missing_in_row(row)]
    assert not missing, f"the architecture page names what the code lacks: {missing}"


def test_the_row_check_fails_for_a_name_defined_only_elsewhere():
    assert _missing_in_row(["bench/runtimes/__init__.py", "RUNTIMES"]) == []
    assert _missing_in_row(["bench/results/metrics.py", "RUNTIMES"]) == ["RUNTIMES"]
    assert _missing_in_row(["bench.results.metrics:NoSuchName", "bench/no/such.py", "bench.no.such"]) == [
        "bench.results.metrics:NoSuchName", "bench/no/such.py", "bench.no.such"]


def test_the_architecture_diagram_is_a_local_svg_that_needs_no_network():
    import xml.etree.ElementTree as ET

    assert "(assets/architecture.svg)" in PAGE.read_text()
    svg = PAGE.parent / "assets" / "architecture.svg"
    root = ET.parse(svg).getroot()  # well-formed XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.find("{http://www.w3.org/2000/svg}title") is not None
    text = svg.read_text()
    assert not re.findall(r"(?:href|src)\s*=\s*[\"']?(?:https?:)?//", text), "the diagram must not load anything"
    assert "<script" not in text and "@import" not in text
    for package in ("config", "runtimes", "measure", "results", "quality", "analysis", "report"):
        assert f">{package}<" in text

    # Readable on a 390 px phone: the picture has a fixed size (so a wide screen does not blow it up)
    # and Material scales it down to the ~350 px content column; its smallest text must stay >= 9 px.
    assert re.fullmatch(r"[\d.]+", root.get("width") or ""), "give the diagram a fixed width in pixels"
    width = float(root.get("width"))
    smallest = min(float(s) for s in re.findall(r'font-size="([\d.]+)"', text))
    assert smallest * min(1.0, PHONE_CONTENT_PX / width) >= 9, (smallest, width)
