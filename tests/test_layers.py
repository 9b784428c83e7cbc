"""The house's rules, checked from the code's own imports (every import, lazy ones and those
only for type checking included): dependencies point down the floors below, and no two
modules of the package import each other, directly or round a longer loop."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "ijepa"
# Floors, lowest first: a module may import its own package and any package of a lower floor.
FLOORS = (
    ("ijepa.atomic", "ijepa.typedconfig", "ijepa.devices", "ijepa.distributed", "ijepa.extras", "ijepa.families", "ijepa.masks", "ijepa.progress",
     "ijepa.rundir", "ijepa.schedule"),
    ("ijepa.data", "ijepa.models"),
    ("ijepa",),  # the public API (`ijepa.load_encoder`, `__version__`)
    ("ijepa.training", "ijepa.evals"),
    ("ijepa.results",),
    ("ijepa.bench", "ijepa.decoder", "ijepa.export"),
    ("ijepa.explore",),
    ("ijepa.cli",),
)


def module_of(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_of(p): p for p in ROOT.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """The package's modules `path` imports (a name imported from a package, if it is a module, counts as that module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "ijepa"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "ijepa":
            subs = {f"{node.module}.{a.name}" for a in node.names} & MODULES.keys()
            out |= subs or {node.module}
    return {m for m in out if m in MODULES}


GRAPH = {m: imports(p) - {m} for m, p in MODULES.items()}


def package(module: str) -> str:
    """The floor entry a module belongs to (its longest prefix among FLOORS)."""
    names = [n for floor in FLOORS for n in floor if module == n or module.startswith(n + ".")]
    return max(names, key=len)


def floor(module: str) -> int:
    return next(i for i, f in enumerate(FLOORS) if package(module) in f)


def test_every_module_has_a_floor():
    assert all(package(m) for m in MODULES)


def test_imports_point_down_the_floors():
    up = sorted(f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets
                if package(a) != package(b) and floor(b) >= floor(a))
    assert not up, "imports that run up (or across) the floors:\n" + "\n".join(up)


def test_no_import_circles():
    index, low, stack, on, circles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while (w := stack.pop()) != v:
                comp.add(w)
            on.discard(v)
            on.difference_update(comp)
            if comp:
                circles.append(sorted(comp | {v}))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not circles, f"modules that import each other: {circles}"
