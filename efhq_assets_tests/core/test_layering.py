"""The layering contract (docs/architecture.md "Layers"), checked over the source with `ast`: every `import`, at
module top or inside a function, counts.

1. `efhq_assets.core` imports no dagster (nor any `dagster_*` package).
2. `efhq_assets.core` imports nothing from the layers above it: `defs`, `definitions`, `runner`, `cli`,
   `cli_models`, `scaleout`, `demo` (so `core/models` and `core/tasks` know no defs).
3. `runner`, `cli`, `cli_models` and `benchmarks/` take nothing private (`_name`) from `efhq_assets.defs`.
4. No import cycles among `efhq_assets` modules.

`test_an_added_violation_fails` feeds the same checker a small tree that breaks each rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ABOVE_CORE = ("efhq_assets.defs", "efhq_assets.definitions", "efhq_assets.runner", "efhq_assets.cli",
              "efhq_assets.cli_models", "efhq_assets.scaleout", "efhq_assets.demo")
NO_PRIVATE_FROM_DEFS = ("efhq_assets.runner", "efhq_assets.cli", "efhq_assets.cli_models", "benchmarks")


def _modules(repo: Path) -> dict[str, Path]:
    """Dotted name -> file, for the package and the benchmark scripts."""
    out = {}
    for top in ("efhq_assets", "benchmarks"):
        for path in sorted((repo / top).rglob("*.py")):
            parts = list(path.relative_to(repo).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in ([prefixes] if isinstance(prefixes, str) else prefixes))


def _imports(module: str, path: Path, known: dict[str, Path]):
    """(imported dotted name, names taken from it, line) for every import statement of one file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = tuple(a.name for a in node.names)
            yield target, names, node.lineno
            for name in names:  # `from pkg import submodule` imports the submodule too
                if f"{target}.{name}" in known:
                    yield f"{target}.{name}", (), node.lineno


def _owner(name: str, known: dict[str, Path]) -> str | None:
    """The module of `known` that an imported dotted name lands in (the longest known prefix)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def layering_violations(repo: Path) -> list[str]:
    known = _modules(repo)
    problems = []
    edges: dict[str, set[str]] = {}
    for module, path in known.items():
        where = path.relative_to(repo)
        for target, names, line in _imports(module, path, known):
            if _within(module, "efhq_assets.core"):
                if _within(target, "dagster") or target.startswith("dagster_"):
                    problems.append(f"{where}:{line}: core imports {target}")
                if _within(target, ABOVE_CORE):
                    problems.append(f"{where}:{line}: core imports {target} (a layer above core)")
            if _within(module, NO_PRIVATE_FROM_DEFS) and _within(target, "efhq_assets.defs"):
                private = [n for n in names if n.startswith("_")]
                if private:
                    problems.append(f"{where}:{line}: takes private {', '.join(private)} from {target}")
            owner = _owner(target, known) if _within(target, "efhq_assets") else None
            if owner and owner != module and _within(module, "efhq_assets"):
                edges.setdefault(module, set()).add(owner)
    # `module._name` where `module` was imported from defs (import efhq_assets.defs.x as m; m._private)
    for module, path in known.items():
        if not _within(module, NO_PRIVATE_FROM_DEFS):
            continue
        tree = ast.parse(path.read_text())
        bound = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                bound |= {a.asname or a.name for a in node.names if _within(a.name, "efhq_assets.defs")}
            elif isinstance(node, ast.ImportFrom) and node.module and _within(node.module, "efhq_assets") \
                    and any(_within(f"{node.module}.{a.name}", "efhq_assets.defs") for a in node.names):
                bound |= {a.asname or a.name for a in node.names if _within(f"{node.module}.{a.name}", "efhq_assets.defs")}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                    and isinstance(node.value, ast.Name) and node.value.id in bound:
                problems.append(f"{path.relative_to(repo)}:{node.lineno}: takes private {node.value.id}.{node.attr} "
                                "from efhq_assets.defs")
    for component in _cycles(edges):
        problems.append("import cycle: " + " <-> ".join(component))
    return problems


def test_the_tree_keeps_the_layering_contract():
    assert layering_violations(REPO) == []


def test_an_added_violation_fails(tmp_path):
    def write(rel: str, text: str = "") -> None:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    for pkg in ("efhq_assets", "efhq_assets/core", "efhq_assets/core/models", "efhq_assets/core/tasks",
                "efhq_assets/defs"):
        write(f"{pkg}/__init__.py")
    write("benchmarks/__init__.py")
    write("efhq_assets/defs/tasks.py", "def _embedder():\n    return None\n")
    write("efhq_assets/core/clean.py", "import numpy as np\nfrom .models import base\n")
    write("efhq_assets/core/models/base.py", "import numpy\n")
    assert layering_violations(tmp_path) == []  # the checker is quiet on a clean tree

    write("efhq_assets/core/card.py", "def f():\n    import dagster as dg\n    return dg\n")
    write("efhq_assets/core/models/reg.py", "def f():\n    from efhq_assets.defs import tasks\n    return tasks\n")
    write("efhq_assets/core/tasks/x.py", "from ...defs.tasks import _embedder\n")
    write("efhq_assets/runner.py", "from efhq_assets.defs.tasks import _embedder\n")
    write("benchmarks/overhead.py", "from efhq_assets.defs import tasks\nvalue = tasks._embedder()\n")
    write("efhq_assets/core/a.py", "from . import b\n")
    write("efhq_assets/core/b.py", "def f():\n    from .a import g\n    return g\n")  # hidden in a function
    found = "\n".join(layering_violations(tmp_path))
    assert "efhq_assets/core/card.py:2: core imports dagster" in found
    assert "efhq_assets/core/models/reg.py:2: core imports efhq_assets.defs (a layer above core)" in found
    assert "efhq_assets/core/tasks/x.py:1: core imports efhq_assets.defs.tasks" in found
    assert "efhq_assets/runner.py:1: takes private _embedder from efhq_assets.defs.tasks" in found
    assert "benchmarks/overhead.py:2: takes private tasks._embedder from efhq_assets.defs" in found
    assert "import cycle: efhq_assets.core.a <-> efhq_assets.core.b" in found
    # reg.py's `from efhq_assets.defs import tasks` names two modules above core (the package and tasks)
    assert len(found.splitlines()) == 7, found
