"""The package's floors: every module imports only from its own floor or below, and no import loop exists.

The floors, lowest first, are the layout the README's "How it is built" draws; this test walks every import of
every module (at the top and inside functions) and fails on an upward arrow or a circle.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ftpdet"

# module (or package prefix) -> floor; the first matching prefix wins, longest first
FLOORS = {
    "ftpdet.errors": 0, "ftpdet.files": 0, "ftpdet.provenance": 0, "ftpdet.distributed": 0, "ftpdet.plots": 0,
    "ftpdet.progress": 0, "ftpdet.hardware": 0,
    "ftpdet.sections": 1, "ftpdet.predictor": 1,
    "ftpdet.losses": 2, "ftpdet.data": 2,
    "ftpdet.models": 3,
    "ftpdet.methods": 4,
    "ftpdet.config": 5,
    "ftpdet.checkpoint": 6,
    "ftpdet.engine": 7, "ftpdet.runtime": 7, "ftpdet.onnx_export": 7,
    "ftpdet.viz": 8, "ftpdet.demo": 8, "ftpdet.bench": 8, "ftpdet.api": 8, "ftpdet.import_mmdet": 8,
    "ftpdet.cli": 9, "ftpdet.__main__": 9, "ftpdet": 10,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def floor(module: str) -> int:
    for prefix in sorted(FLOORS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return FLOORS[prefix]
    raise AssertionError(f"{module} is on no floor: add it to FLOORS (and to the README's layout)")


def imports(module: str) -> set[str]:
    """ftpdet modules that `module` imports anywhere in its file; `from pkg import mod` counts as pkg.mod."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ftpdet")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ftpdet"):
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                      for a in node.names}
    return {m for m in found if m != module}


GRAPH = {m: imports(m) for m in MODULES}


def test_the_walk_sees_the_package():
    assert {"ftpdet.engine.train", "ftpdet.methods.ftpd", "ftpdet.models.detector", "ftpdet.bench.report"} <= set(MODULES)
    assert "ftpdet.engine.step" in GRAPH["ftpdet.engine.train"] and "ftpdet.methods" in GRAPH["ftpdet.config"]
    assert GRAPH["ftpdet.api"] >= {"ftpdet.config", "ftpdet.engine.train"}  # imports inside functions count


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_import(module):
    up = sorted(m for m in GRAPH[module] if floor(m) > floor(module))
    assert not up, f"{module} (floor {floor(module)}) imports {[(m, floor(m)) for m in up]}"


def test_no_import_loop():
    """Depth-first search for a cycle among modules, then among the top-level parts (ftpdet.<part>)."""

    def cycle(graph: dict[str, set[str]]) -> list[str] | None:
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        path: list[str] = []

        def visit(node: str) -> list[str] | None:
            state[node] = 1
            path.append(node)
            for nxt in sorted(graph.get(node, ())):
                if state.get(nxt) == 1:
                    return path[path.index(nxt):] + [nxt]
                if nxt not in state and (found := visit(nxt)):
                    return found
            path.pop()
            state[node] = 2
            return None

        for node in sorted(graph):
            if node not in state and (found := visit(node)):
                return found
        return None

    assert cycle(GRAPH) is None, " -> ".join(cycle(GRAPH))

    def part(m: str) -> str:
        return ".".join(m.split(".")[:2])

    parts: dict[str, set[str]] = {}
    for m, deps in GRAPH.items():
        parts.setdefault(part(m), set()).update(part(d) for d in deps if part(d) != part(m) and d != "ftpdet")
    parts.pop("ftpdet", None)  # the package root imports the API it offers
    assert cycle(parts) is None, " -> ".join(cycle(parts))
