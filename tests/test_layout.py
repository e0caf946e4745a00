"""The core's layout follows the pipeline, and its imports go one way, down the pipeline.

Every import counts: at module level, inside functions and under ``TYPE_CHECKING``. A module
may import its own package and the packages listed before it in :data:`LAYERS`, never a
later one; no two modules import each other, directly or round a longer circle; no module
imports another module's private (``_``-prefixed) name; and the core never imports a plugin.
The map is drawn in docs/architecture.md.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "crossbench"

#: the base modules directly under crossbench/, importable by every stage
BASE = ("errors", "files", "progress", "version")
#: the stages in pipeline order: each may import those before it, never those after it
LAYERS = ("data", "plugin", "evaluate", "train", "records", "report", "experiment", "tune", "run", "loop", "cli", "testing")
#: the top stages: nothing in the core imports them
TOP = ("cli", "testing")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module
    names: tuple[str, ...]  # names taken from it (``from target import ...``)
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[Import]:
    """Every import of a crossbench module in ``path``; ``from a import b`` counts as an import of
    ``a.b`` where that is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = tuple(a.name for a in node.names)
            plain = tuple(n for n in names if f"{base}.{n}" not in known)
            if plain:  # ``from package import module`` imports the module, not what the package defines
                yield Import(name, base, plain, node.lineno)
            for n in names:
                if f"{base}.{n}" in known:
                    yield Import(name, f"{base}.{n}", (), node.lineno)


def stage_of(module: str) -> int | None:
    """The position of a core module's stage: the base modules first, then :data:`LAYERS`."""
    parts = module.split(".")
    if parts[0] != "crossbench" or len(parts) == 1:
        return None
    if len(parts) == 2 and parts[1] in BASE:
        return 0
    return LAYERS.index(parts[1]) + 1 if parts[1] in LAYERS else None


def graph() -> dict[str, list[Import]]:
    modules = core_modules()
    known = set(modules)
    return {m: [i for i in imports_of(m, p, known) if i.target.split(".")[0] == "crossbench"] for m, p in modules.items()}


def test_every_core_module_has_a_stage() -> None:
    lost = [m for m in core_modules() if m != "crossbench" and stage_of(m) is None]
    assert lost == [], f"place these in a stage package (see docs/architecture.md) or list them in BASE: {lost}"


def test_every_stage_says_what_it_owns() -> None:
    for layer in LAYERS:
        init = CORE / layer / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc.split()) >= 20, f"{init}: the docstring must say in a paragraph what the package owns and may import"


def test_imports_go_down_the_pipeline() -> None:
    upward = []
    for module, imports in graph().items():
        here = stage_of(module)
        if here is None:  # the facade crossbench/__init__.py
            continue
        for imp in imports:
            there = stage_of(imp.target)
            if imp.target == "crossbench" or there is None or there > here:
                upward.append(f"{module}:{imp.line} imports {imp.target}")
    assert upward == []


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_circle_through_three_modules() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle() -> None:
    edges = {m: {i.target for i in imports if i.target != m} for m, imports in graph().items()}
    assert cycles(edges) == []


def private_uses(path: Path, name: str, known: set[str], *, shown: str) -> Iterator[str]:
    """``from x import _name`` and ``module._name`` where x / module is another crossbench module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    aliases: dict[str, str] = {}
    for imp in imports_of(name, path, known):
        if imp.target.split(".")[0] != "crossbench" or imp.target == name:
            continue
        for n in imp.names:
            if n.startswith("_") and not n.startswith("__"):
                yield f"{shown}:{imp.line} imports {imp.target}.{n}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("crossbench") and alias.asname:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("crossbench"):
            for alias in node.names:
                if f"{node.module}.{alias.name}" in known:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__") and aliases[node.value.id] != name):
            yield f"{shown}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}"


@pytest.mark.parametrize("where", ["crossbench", "plugins"])
def test_no_private_name_crosses_a_module(where: str) -> None:
    known = set(core_modules())
    found = []
    for path in sorted((ROOT / where).rglob("*.py")):
        found += private_uses(path, module_name(path) if where == "crossbench" else path.stem, known, shown=str(path.relative_to(ROOT)))
    assert found == []


def test_the_core_never_imports_a_plugin() -> None:
    plugins = {p.name for p in (ROOT / "plugins").iterdir() if p.is_dir()}
    known = set(core_modules())
    found = [f"{m}:{i.line} imports {i.target}" for m, p in core_modules().items()
             for i in imports_of(m, p, known) if i.target.split(".")[0] in plugins]
    assert found == []


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """An upward import, a private name and a circle are found in modules written for the purpose."""
    known = set(core_modules())
    fake = tmp_path / "model.py"
    fake.write_text("from crossbench.cli.common import current_state\nimport crossbench.evaluate.ranking as r\nr._mask\n")
    imports = list(imports_of("crossbench.data.model", fake, known))
    assert [(i.target, stage_of(i.target)) for i in imports] == [("crossbench.cli.common", 11), ("crossbench.evaluate.ranking", 3)]
    assert stage_of("crossbench.data.model") == 1
    assert list(private_uses(fake, "crossbench.data.model", known, shown="model.py")) == ["model.py:3 uses crossbench.evaluate.ranking._mask"]
    fake.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from crossbench.evaluate.ranking import _mask\n")
    assert list(private_uses(fake, "crossbench.data.model", known, shown="model.py")) == ["model.py:3 imports crossbench.evaluate.ranking._mask"]


#: the most lines of one file, and of one function, that a reader is asked to hold in their head
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


@pytest.mark.parametrize("where", ["crossbench", "plugins"])
def test_files_and_functions_stay_small(where: str) -> None:
    too_long = []
    for path in sorted((ROOT / where).rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert too_long == []
