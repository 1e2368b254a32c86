"""No module of armin imports itself through others: the import graph, read from the source with `ast`, has no
cycle. Late imports (inside a function) count too: they hide a cycle from Python, not from the reader.

Edges are what a module names (`import a.b`, `from a.b import c`, relative imports resolved); a package's
own `__init__` being run before its submodules is not an edge, so `armin.storage.db` importing
`armin.errors` does not reach back into `armin.storage`.
"""

from __future__ import annotations

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "armin"


def modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package)."""
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (f, is_package)
    return out


def _targets(name: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        return {a.name for a in node.names} & known
    base = node.module or ""
    if node.level:  # relative: from the package this module is in (or is)
        package = name.split(".") if is_package else name.split(".")[:-1]
        base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names} & known


def import_graph(*, late: bool) -> dict[str, set[str]]:
    """Each module's imports of other armin modules: module level only, or (`late`) in functions too.

    Imports under `if TYPE_CHECKING:` never run and are left out."""
    mods = modules()
    known = set(mods)
    graph = {}
    for name, (path, is_package) in mods.items():
        deps: set[str] = set()

        def visit(nodes: list[ast.stmt]) -> None:
            for n in nodes:
                if isinstance(n, (ast.Import, ast.ImportFrom)):
                    deps.update(_targets(name, is_package, n, known) - {name})
                elif isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
                    visit(n.orelse)
                elif late or not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    for field in ("body", "orelse", "finalbody", "handlers"):
                        visit([c for c in getattr(n, field, []) if isinstance(c, ast.AST)])
                if isinstance(n, ast.ClassDef) and not late:
                    visit(n.body)  # a class body runs at import time

        visit(ast.parse(path.read_text()).body)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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
            connect(v)
    return found


def test_the_cycle_finder_finds_a_cycle_and_reads_relative_and_late_imports(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    known = {"armin.storage", "armin.storage.db", "armin.errors"}
    rel = ast.parse("from .db import Database\nfrom ..errors import StorageError").body
    assert _targets("armin.storage", True, rel[0], known) == {"armin.storage.db"}
    assert _targets("armin.storage.models", False, rel[0], known) == {"armin.storage.db"}
    assert _targets("armin.storage.models", False, rel[1], known) == {"armin.errors"}
    graph = import_graph(late=True)
    assert "armin.errors" in graph["armin.storage.db"]  # a module-level import
    assert "armin.reporting.query" in graph["armin.cli.query"]  # only a late one (inside run)
    assert "armin.reporting.query" not in import_graph(late=False)["armin.cli.query"]


def test_no_import_cycle_at_import_time():
    assert cycles(import_graph(late=False)) == []


def test_no_import_cycle_counting_late_imports_outside_the_model():
    found = [c for c in cycles(import_graph(late=True)) if not all(m.startswith("armin.model.") for m in c)]
    assert found == []


def test_no_import_cycle_in_the_model():  # the kernels' shared types live in the leaf armin.model.kernel_types
    assert [c for c in cycles(import_graph(late=True)) if all(m.startswith("armin.model.") for m in c)] == []


def test_errors_is_a_leaf_and_every_armin_error_is_defined_there():
    import armin.errors

    graph = import_graph(late=True)
    assert graph["armin.errors"] == set()
    ours = {n for n, v in vars(armin.errors).items() if isinstance(v, type) and issubclass(v, armin.errors.ArminError)}
    assert {"ArminError", "ConfigError", "StorageError", "QueryError", "ClusterError", "DataError"} <= ours
    defined_elsewhere = []
    for name, (path, _) in modules().items():
        if name == "armin.errors":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b).split(".")[-1] in ours for b in node.bases):
                defined_elsewhere.append(f"{name}.{node.name}")
    assert defined_elsewhere == []
