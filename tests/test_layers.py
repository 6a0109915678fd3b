"""The layers of docs/ARCHITECTURE.md, checked on the source: each package imports only the layers below it, and no
module imports itself back through others (every import counts, also those inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Bottom to top. A module may import its own layer and every layer below; packages listed together are side by side
# and do not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("pipeline",),  # the package root: its version only
    ("pipeline.core",),
    ("pipeline.text",),
    ("pipeline.web", "pipeline.annotators"),
    ("pipeline.corpus",),
    ("pipeline.stages",),
    ("pipeline.chain",),
    ("model",),
    ("pipeline.ops",),
    ("pipeline.cli", "dags"),
    ("pipeline.__main__",),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    files = [*(ROOT / "pipeline").rglob("*.py"), *(ROOT / "model").rglob("*.py"), *(ROOT / "dags").glob("*.py")]
    return {module_name(p): p for p in files}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Project modules `path` imports: `from pipeline.core import storage` is pipeline.core.storage."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            full = [f"{node.module}.{a.name}" for a in node.names]
            names = [name if name in known else node.module for name in full]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def layer_of(module: str) -> int:
    best = None
    for rank, packages in enumerate(LAYERS):
        for pkg in packages:
            if module == pkg or module.startswith(pkg + "."):
                if best is None or len(pkg) > len(best[1]):
                    best = (rank, pkg)
    assert best is not None, f"{module} is in no layer: add its package to LAYERS and docs/ARCHITECTURE.md"
    return best[0]


def package_of(module: str) -> str:
    return max((p for ps in LAYERS for p in ps if module == p or module.startswith(p + ".")), key=len)


def graph() -> dict[str, set[str]]:
    mods = project_modules()
    return {m: imports_of(p, set(mods)) - {m} for m, p in mods.items()}


def test_each_layer_imports_only_layers_below():
    wrong = []
    for mod, deps in graph().items():
        for dep in deps:
            if dep == "pipeline":
                continue  # the root package: __version__
            mine, theirs = layer_of(mod), layer_of(dep)
            if theirs > mine or (theirs == mine and package_of(dep) != package_of(mod)):
                wrong.append(f"{mod} imports {dep}")
    assert not wrong, "imports that go up or sideways:\n" + "\n".join(sorted(wrong))


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("pipeline.core.stage") < layer_of("pipeline.stages.filter") < layer_of("pipeline.cli")


def test_ray_is_imported_by_the_runner_only():
    # Ray's API changes touch one file; the trainer (model/) and the cluster tools (ops/) have their own reasons.
    users = {
        module_name(p)
        for p in (ROOT / "pipeline").rglob("*.py")
        if any(
            (isinstance(n, ast.Import) and any(a.name.split(".")[0] == "ray" for a in n.names))
            or (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "ray")
            for n in ast.walk(ast.parse(p.read_text()))
        )
    }
    assert users <= {"pipeline.core.runner", "pipeline.ops.cluster"}, users


def test_imports_are_absolute():
    # The layer check reads absolute imports; a relative one would pass it unseen.
    relative = [
        f"{module_name(p)}:{n.lineno}"
        for p in project_modules().values()
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, ast.ImportFrom) and n.level > 0
    ]
    assert relative == []
