"""The model package's import graph: kernel_types is a leaf the model and its kernels share (issue 12)."""

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


def test_kernel_types_is_a_leaf_and_the_kernels_do_not_import_the_model():
    graph = {p.stem: imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert graph["kernel_types"] == set()
    assert "armin" not in graph["fused"] and "fused" not in graph["extension"]

    # and no cycles at all: tests/test_import_graph.py walks the whole package, this one included
