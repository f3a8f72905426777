"""Imports only look down the layers (shared/STYLE.md; import-linter's `layers` contract, as a small test):

    leaf helpers -> data -> models -> training -> analysis / attribution / features / transfer /
    experiments / tuning -> reporting / webapp / cli

Every import of every module is read with `ast`, module-level and function-level alike (an import
moved into a function to dodge a cycle still counts). A module may import its own layer and those below.
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module belongs to the longest prefix listed; `cifarlab` alone is the package's
# __init__ (lazy names only, `from cifarlab import __version__` reads a string).
LAYERS: list[list[str]] = [
    ["cifarlab", "cifarlab.errors", "cifarlab._io", "cifarlab._threads", "cifarlab._parallel", "cifarlab._runlock",
     "cifarlab._signals", "cifarlab._stages", "cifarlab.registry", "cifarlab.choices", "cifarlab.runfiles",
     "cifarlab.config", "cifarlab.recipes"],
    ["cifarlab.data"],
    ["cifarlab.models", "cifarlab.augment"],
    # The transfer set-up (weights, their preprocessing, freezing) is part of training: train() and lr-find
    # apply it to every run. `cifarlab transfer`'s own command, the linear probe, sits above.
    ["cifarlab.training", "cifarlab.transfer.setup", "cifarlab.transfer.weights", "cifarlab.transfer.freeze",
     "cifarlab.transfer.options", "cifarlab.transfer.packaged"],
    ["cifarlab.analysis", "cifarlab.attribution", "cifarlab.features", "cifarlab.transfer", "cifarlab.experiments",
     "cifarlab.tuning"],
    ["cifarlab.reporting", "cifarlab.webapp", "cifarlab.cli", "cifarlab._cli_runs", "cifarlab._flags",
     "cifarlab.__main__", "cifarlab.api", "cifarlab.deploy", "cifarlab.pipeline"],
]

# Known upward imports, each with why it is still here; the test fails on any other (and on an entry
# here that no longer happens, so the list only shrinks).
ALLOWED: dict[tuple[str, str], str] = {}


# Known import cycles (module sets that reach each other), each with why it is still here; a cycle
# that is not inside one of these fails the test.
ALLOWED_CYCLES: dict[frozenset[str], str] = {}


def _layer(module: str) -> int:
    best, layer = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, layer = len(p), i
    assert layer is not None, f"{module} is in no layer: add it to LAYERS in {__file__}"
    return layer


def _owner(module: str) -> str:
    """The LAYERS prefix a module falls under (ALLOWED is keyed on these)."""
    return max((p for ps in LAYERS for p in ps if module == p or module.startswith(p + ".")), key=len)


def _imports(path: Path, module: str, is_package: bool) -> set[str]:
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from . import x` / `from .pkg import mod`: x may be a submodule; name it when it is one
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if _is_module(sub) else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {t for t in found if t == "cifarlab" or t.startswith("cifarlab.")}


def _is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _modules() -> list[tuple[Path, str, bool]]:
    out = []
    for path in sorted((SRC / "cifarlab").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        out.append((path, ".".join(parts[:-1] if is_package else parts), is_package))
    return out


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for path, module, is_package in _modules():
        for target in _imports(path, module, is_package):
            if _layer(target) > _layer(module):
                found.add((_owner(module), _owner(target)))
    return found


def test_imports_only_look_down_the_layers():
    found = upward_imports()
    new = sorted(found - set(ALLOWED))
    assert not new, "imports that run up the layers (fix them, or say why in ALLOWED):\n" + "\n".join(
        f"  {a} -> {b}" for a, b in new)
    gone = sorted(set(ALLOWED) - found)
    assert not gone, "ALLOWED lists imports that no longer happen; remove them:\n" + "\n".join(
        f"  {a} -> {b}" for a, b in gone)


def import_cycles() -> list[set[str]]:
    """The strongly connected components (more than one module) of the import graph (Tarjan)."""
    graph = {module: {t for t in _imports(path, module, is_package) if t != module}
             for path, module, is_package in _modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_but_the_known_ones():
    new = [sorted(c) for c in import_cycles() if not any(c <= known for known in ALLOWED_CYCLES)]
    assert not new, "modules that import each other (break the cycle, or say why in ALLOWED_CYCLES):\n" + "\n".join(
        f"  {' <-> '.join(c)}" for c in new)


def test_the_check_sees_function_level_and_relative_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from ..errors import CifarlabError\n"
                      "def f():\n    from ..reporting import html\n    import cifarlab.cli\n")
    found = _imports(source, "cifarlab.data.m", is_package=False)
    assert {"cifarlab.errors", "cifarlab.reporting.html", "cifarlab.cli"} <= found
    assert _layer("cifarlab.reporting.html") > _layer("cifarlab.data.m")
    assert _layer("cifarlab.transfer.setup") == _layer("cifarlab.training.engine") < _layer("cifarlab.transfer.probe")
