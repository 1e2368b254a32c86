"""The model package's import graph: kernel_types is a leaf and armin.model has no import cycles (issue 12)."""

import ast
from pathlib import Path

import armin.model

PACKAGE = Path(armin.model.__file__).parent


def imports(path: Path) -> set[str]:
    """The armin.model modules `path` imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out |= {n.split(".")[2] for n in names if n.startswith("armin.model.") and
                (PACKAGE / f"{n.split('.')[2]}.py").exists()}
    return out - {path.stem}


def test_kernel_types_is_a_leaf_and_the_model_package_has_no_cycles():
    graph = {p.stem: imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert graph["kernel_types"] == set()
    assert "armin" not in graph["fused"] and "fused" not in graph["extension"]

    def cycle_from(node, path):
        for nxt in graph.get(node, ()):
            if nxt in path:
                return path[path.index(nxt):] + [nxt]
            found = cycle_from(nxt, path + [nxt])
            if found:
                return found
        return None

    cycles = [c for m in graph if (c := cycle_from(m, [m]))]
    assert cycles == [], f"import cycles in armin.model: {cycles}"
