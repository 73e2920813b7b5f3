"""The import structure: no cycles between offrec modules, no import from a higher layer.

Every ``import`` / ``from ... import`` naming an ``offrec`` module counts, wherever it
is written (top level, inside a function, under ``TYPE_CHECKING``): a lazy import that
runs upward is still an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "offrec"

# lowest first; a module may import its own layer's package and anything below it
LAYERS: list[set[str]] = [
    {"core"},
    {"sim", "reward"},
    {"logs"},
    {"policies"},
    {"engines"},
    {"ope"},
    {"rl"},
    {"report", "testing", "models", "recommend", "training"},
    {"pipeline_config"},
    {"pipeline", "slate_pipeline"},
    {"serve"},
    {"cli"},
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, me: str | None = None) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    me = me or _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("offrec"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if mod.startswith("offrec"):
                found.add(mod)
                # `from offrec.x import y` may import the submodule offrec.x.y
                found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        graph[name] = {m for m in _imports(path) if m in files and m != name}
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:  # offrec/__init__.py: the package face
        return len(LAYERS)
    top = parts[1]
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise AssertionError(f"module {module} is in no layer; add {top!r} to LAYERS")


def test_every_module_has_a_layer() -> None:
    for name in _graph():
        _layer(name)


def test_no_upward_imports() -> None:
    graph = _graph()
    upward = [
        f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
        for a, deps in graph.items()
        for b in deps
        if b.split(".")[1:2] != a.split(".")[1:2] and _layer(b) > _layer(a)
    ]
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def test_no_import_cycles() -> None:
    graph = _graph()
    # package faces re-export their modules; a module importing its own package's face
    # is the usual `from offrec.x import y` and not a cycle between files
    edges = {
        a: {
            b
            for b in deps
            if not (
                a.startswith(b + ".")
                and (ROOT.parent / (b.replace(".", "/") + "/__init__.py")).exists()
            )
        }
        for a, deps in graph.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
                cycles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from offrec.sim import World\n", {"offrec.sim", "offrec.sim.World"}),
        ("def f():\n    import offrec.ope.terms\n", {"offrec.ope.terms"}),
    ],
)
def test_import_finder_sees_lazy_imports(tmp_path: Path, source: str, expected: set[str]) -> None:
    # the checker must see imports inside functions, or lazy upward imports slip through
    f = tmp_path / "m.py"
    f.write_text(source)
    assert _imports(f, me="offrec.sim.m") == expected
