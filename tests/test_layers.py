"""Imports only look down the layers (shared/STYLE.md; import-linter's `layers` contract, as a small test):

    leaf helpers (with the run directory's torch-free layout and lock) -> data -> models -> pretrained ->
    training (with its settings: config, recipes, choices; and rundir, which imports nothing of training) ->
    analysis / attribution / features / transfer / experiments / tuning -> reporting / webapp / cli

Every import of every module is read with `ast`, module-level and function-level alike (an import
moved into a function to dodge a cycle still counts), and so are the imports written as strings: calls of
`importlib.import_module` / `__import__` with a literal name, and the lazy "module:attribute" targets of a
Registry (registry.py), which load on first use. A module may import its own layer and those below.
"""
from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module belongs to the longest prefix listed; `cifarlab` alone is the package's
# __init__ (lazy names only, `from cifarlab import __version__` reads a string).
LAYERS: list[list[str]] = [
    # rundir/layout.py and rundir/lock.py import only _io and errors (no torch): data/cleaning.py and
    # pretrained/weights.py read run files through them.
    ["cifarlab", "cifarlab.errors", "cifarlab._io", "cifarlab._threads", "cifarlab._parallel", "cifarlab._signals",
     "cifarlab._stages", "cifarlab.registry", "cifarlab.rundir.layout", "cifarlab.rundir.lock"],
    ["cifarlab.data"],
    ["cifarlab.models", "cifarlab.augment"],
    # A model made ready to train: starting weights and their preprocessing, freezing, learning-rate groups.
    ["cifarlab.pretrained"],
    # choices.py's registries name training's optimizers and schedules, so it sits here, and with it config.py,
    # which checks a TrainConfig against those names, and recipes.py (named TrainConfig settings). rundir (the
    # run directory: writer, Run, inference) holds a TrainConfig and looks up choices.TTA, so it shares the row;
    # it is below training all the same: test_rundir_imports_nothing_of_training keeps it so.
    ["cifarlab.training", "cifarlab.choices", "cifarlab.config", "cifarlab.recipes", "cifarlab.rundir"],
    # analysis_choices.py: the --label-check-model registry, whose targets are in analysis/label_issues.py.
    ["cifarlab.analysis", "cifarlab.analysis_choices", "cifarlab.attribution", "cifarlab.features",
     "cifarlab.transfer", "cifarlab.experiments", "cifarlab.tuning"],
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


def _imports(path: Path, module: str, is_package: bool, targets: bool = True) -> set[str]:
    """The cifarlab modules `module` imports: its import statements, its `import_module` / `__import__` calls
    with a literal name, and (`targets`) the lazy "module:attribute" targets of its registries."""
    package = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
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
    found |= _import_calls(tree, module, package)
    if targets:
        found |= set(_registry_targets(tree, module, package))
    return {t for t in found if t == "cifarlab" or t.startswith("cifarlab.")}


# A registry's lazy target (registry.py): "module:attribute", the module absolute (cifarlab.x.y) or relative
# to the registry's `package` (".optim" in Registry(..., package="cifarlab.training")).
_TARGET = re.compile(r"^(\.+|cifarlab\.)[\w.]*:\w+$")


def _package_value(node: ast.expr | None, module: str, package: str) -> str | None:
    """A `package` argument written as a string, `__package__` or `__name__`; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in ("__package__", "__name__"):
        return package if node.id == "__package__" else module
    return None


def _called(call: ast.Call) -> str | None:
    return call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)


def _argument(call: ast.Call, position: int | None, name: str) -> ast.expr | None:
    """The argument `name` of a call, given by keyword or (position not None) at that position."""
    if position is not None and len(call.args) > position:
        return call.args[position]
    return next((k.value for k in call.keywords if k.arg == name), None)


def _resolve(name: str, package: str | None, module: str) -> str:
    assert not name.startswith(".") or package, f"{module}: the relative {name!r} has no package to resolve against"
    return importlib.util.resolve_name(name, package)


def _import_calls(tree: ast.AST, module: str, package: str) -> set[str]:
    """`importlib.import_module("x")`, `import_module(".x", __package__)`, `__import__("x")`: those with a
    literal name (a name computed at run time, as in the lazy `__getattr__`s, is not read)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called(node) in ("import_module", "__import__"):
            name = _argument(node, 0, "name")
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                anchor = _argument(node, 1, "package") if _called(node) == "import_module" else None
                found.add(_resolve(name.value, _package_value(anchor, module, package), module))
    return found


def _registry_targets(tree: ast.AST, module: str, package: str) -> dict[str, str]:
    """Target module -> a "module:attribute" string of the module that names it. A relative target resolves
    against the `package=` of the Registry whose `register` / `register_prefix` call holds it, else of the
    one Registry or Entry the module makes (a helper such as augment's register_augment passes it on)."""
    registries: dict[str, str | None] = {}  # variable -> the package of the Registry assigned to it
    made: set[str | None] = set()  # the packages of every Registry(...) and Entry(...) of the module
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called(node) in ("Registry", "Entry"):  # Entry's package: 5th
            made.add(_package_value(_argument(node, 4 if _called(node) == "Entry" else None, "package"), module,
                                    package))
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and _called(node.value) == "Registry":
            anchor = _package_value(_argument(node.value, None, "package"), module, package)
            registries.update({t.id: anchor for t in node.targets if isinstance(t, ast.Name)})
    held: dict[int, str | None] = {}  # id of an argument of a registry's register call -> that registry's package
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and _called(node) in ("register", "register_prefix")
                and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                and node.func.value.id in registries):
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                held[id(arg)] = registries[node.func.value.id]
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _TARGET.match(node.value):
            anchor = held[id(node)] if id(node) in held else next(iter(made)) if len(made) == 1 else None
            found[_resolve(node.value.partition(":")[0], anchor, module)] = node.value
    return found


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


def test_rundir_imports_nothing_of_training():
    """rundir shares training's row (it reads a TrainConfig) but sits below it: training writes and opens runs
    through rundir, never the other way round (registry targets and function-level imports included)."""
    upward = sorted((module, target) for path, module, is_package in _modules()
                    if module == "cifarlab.rundir" or module.startswith("cifarlab.rundir.")
                    for target in _imports(path, module, is_package)
                    if target == "cifarlab.training" or target.startswith("cifarlab.training."))
    assert not upward, "rundir imports training:\n" + "\n".join(f"  {a} -> {b}" for a, b in upward)


def import_cycles() -> list[set[str]]:
    """The strongly connected components (more than one module) of the import graph (Tarjan).

    A registry's lazy targets are arrows for the layers but not for this graph: the code that names an
    implementation looks it up in the registry that points back at it (training/optim.py builds the optimizer
    choices.OPTIMIZERS names, whose target is training/optim.py): a loop by design, and never one at import
    time, since a target is imported on first use, once both modules have loaded."""
    graph = {module: {t for t in _imports(path, module, is_package, targets=False) if t != module}
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
    assert (_layer("cifarlab.models.external") < _layer("cifarlab.pretrained.setup")
            < _layer("cifarlab.training.engine") < _layer("cifarlab.transfer.probe"))


def test_the_check_sees_registry_targets_and_import_module_calls(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import importlib\nfrom importlib import import_module\nfrom .registry import Registry\n"
                      "OPT = Registry('optimizer', package='cifarlab.training')\n"
                      "OPT.register('sgd', '.optim:build_sgd')\n"
                      "OTHER = Registry('x', package='cifarlab.analysis')\n"
                      "OTHER.register('a', target='.label_issues:run_probabilities')\n"
                      "KINDS = (('run', 'cifarlab.reporting.sections:run_sections'),)\n"
                      "def f(name):\n    importlib.import_module('cifarlab.webapp')\n"
                      "    import_module('.deploy', __package__)\n    importlib.import_module(name)\n")
    found = _imports(source, "cifarlab.m", is_package=False)
    assert {"cifarlab.training.optim", "cifarlab.analysis.label_issues", "cifarlab.reporting.sections",
            "cifarlab.webapp", "cifarlab.deploy", "cifarlab.registry"} == found
    assert _imports(source, "cifarlab.m", is_package=False, targets=False) == {
        "cifarlab.webapp", "cifarlab.deploy", "cifarlab.registry"}


def test_every_registry_target_and_literal_import_names_a_module():
    """A target that no longer exists (a module moved) fails here, not when someone first picks the name."""
    missing = [(module, target) for path, module, is_package in _modules()
               for target in _imports(path, module, is_package) if not _is_module(target)]
    assert not missing, "imports of modules that do not exist:\n" + "\n".join(f"  {m} -> {t}" for m, t in missing)
    held = {module: sorted(_registry_targets(ast.parse(path.read_text(encoding="utf-8")), module,
                                             module if is_package else module.rpartition(".")[0]))
            for path, module, is_package in _modules()}
    assert "cifarlab.training.optim" in held["cifarlab.choices"]  # the check reads them at all
    assert "cifarlab.augment.geometric" in held["cifarlab.augment._registry"]  # through register_augment
