"""The shape of the code (DESIGN.md §2 and §7), checked so that it stays the shape a newcomer
reads in ARCHITECTURE.md: layers that import only downwards, small modules and functions, and
a map of the package that names every module there is."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "wdaudit"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
MAX_POSITIONAL = 6
# the stated reasons for the exceptions
LONG_MODULES: dict[str, str] = {}
MANY_POSITIONAL = {"main": "a click command: one parameter per command-line option"}


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _imports(path: Path) -> set[str]:
    """The wdaudit modules a module imports, as dotted names (``from . import a`` names the
    module ``a``, so a submodule imported that way counts)."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("wdaudit"):
                module = node.module
            else:
                continue
            submodules = {f"{module}.{a.name}" for a in node.names
                          if (ROOT / (f"{module}.{a.name}".replace(".", "/") + ".py")).is_file()
                          or (ROOT / f"{module}.{a.name}".replace(".", "/") / "__init__.py")
                          .is_file()}
            found.update(submodules)
            if len(submodules) < len(node.names):  # something defined in the module itself
                found.add(module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("wdaudit"))
    return found


def test_at_least_three_layers():
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert {"engine", "ops", "frontend"} <= subpackages


ABOVE_THE_DRIVER = ("wdaudit.frontend", "wdaudit.advice", "wdaudit.api", "wdaudit.integrations")
DRIVEN = ("wdaudit.audit", "wdaudit.parts") + ABOVE_THE_DRIVER


@pytest.mark.parametrize("layer, forbidden", [
    # the engine's layers: tracing knows nothing of the analysis, the analysis nothing of
    # confirmation, and none of them the driver or what sits above it
    ("engine/tracing", ("wdaudit.engine.analysis", "wdaudit.engine.confirmation") + DRIVEN),
    ("engine/analysis", ("wdaudit.engine.confirmation",) + DRIVEN),
    ("engine/confirmation", DRIVEN),
    ("engine", DRIVEN),
    ("ops", ("wdaudit.engine",) + DRIVEN),
    ("advice", ("wdaudit.frontend", "wdaudit.api", "wdaudit.audit", "wdaudit.integrations")),
    ("integrations", ("wdaudit.frontend", "wdaudit.audit")),
    ("audit.py", ABOVE_THE_DRIVER),
    ("parts.py", ABOVE_THE_DRIVER),
])
def test_layers_import_only_downwards(layer, forbidden):
    target = PACKAGE / layer
    paths = [target] if target.suffix == ".py" else list(target.rglob("*.py"))
    assert paths, layer
    for path in paths:
        bad = {m for m in _imports(path) if m.startswith(forbidden)}
        assert not bad, f"{_relative(path)} imports {sorted(bad)}"


def test_no_import_cycle_between_modules():
    """Module-level imports form no cycle (a lazy import inside a function hid one before)."""
    import networkx as nx

    graph = nx.DiGraph()
    names = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in MODULES}
    for name, path in names.items():
        for target in _imports(path):
            if target in names and target != name:
                graph.add_edge(name, target)
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, cycles[:3]


def test_the_import_check_sees_relative_imports():
    """The layering test cannot pass vacuously: it resolves the package's relative imports."""
    assert "wdaudit.ops.record" in _imports(PACKAGE / "engine" / "analysis" / "graph.py")
    assert "wdaudit.report" in _imports(PACKAGE / "engine" / "analysis" / "degrees.py")
    assert "wdaudit.engine.tracing.program" in _imports(
        PACKAGE / "engine" / "confirmation" / "confirm.py")


@pytest.mark.parametrize("path", MODULES, ids=_relative)
def test_modules_and_functions_stay_small(path):
    source = path.read_text()
    lines = len(source.splitlines())
    if _relative(path) not in LONG_MODULES:
        assert lines <= MAX_MODULE_LINES, f"{_relative(path)} has {lines} lines"
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        length = node.end_lineno - node.lineno + 1
        assert length <= MAX_FUNCTION_LINES, f"{node.name} in {_relative(path)}: {length} lines"
        positional = [a.arg for a in node.args.posonlyargs + node.args.args
                      if a.arg not in ("self", "cls")]
        if node.name not in MANY_POSITIONAL:
            assert len(positional) <= MAX_POSITIONAL, \
                f"{node.name} in {_relative(path)} takes {len(positional)} positional arguments"


def _tree(text: str) -> set[str]:
    """The module paths of the package tree drawn under "## The package" (two spaces of
    indentation a level; a name ending in / opens a folder)."""
    block = text.split("## The package", 1)[1].split("```")[1]
    paths, folders = set(), []
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        name = line.split()[0]
        folders = folders[:depth]
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        elif name.endswith(".py"):
            paths.add("/".join(folders + [name]))
    return paths


def test_architecture_map_names_every_module():
    named = _tree((ROOT / "ARCHITECTURE.md").read_text())
    actual = {_relative(p) for p in MODULES}
    assert named == actual, (f"missing from ARCHITECTURE.md: {sorted(actual - named)}; "
                             f"named but absent: {sorted(named - actual)}")


def test_the_driver_the_engine_and_the_readme_tell_one_pipeline():
    """engine.PIPELINE, the order audit() calls the stages in, and docs/how-it-works.md."""
    from wdaudit.engine import PIPELINE

    for stage in PIPELINE:  # "layer.module"
        assert (PACKAGE / "engine" / (stage.replace(".", "/") + ".py")).is_file(), stage
    stages = [stage.rpartition(".")[2] for stage in PIPELINE]
    driver = (PACKAGE / "audit.py").read_text()
    called = re.findall(r"= (?:(\w+)_stage\.[a-z_]+|(trace))\(", driver)
    assert [a or b for a, b in called] == stages
    section = (ROOT / "docs" / "how-it-works.md").read_text()
    assert re.findall(r"→ (\w+)", section) == stages + ["report"]
