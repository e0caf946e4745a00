"""docs/plugins.md documents every hook of crossbench/plugin/hookspecs.py with its typed signature,
arguments, return, when it is called, and an example. A hook added to hookspecs.py fails this
test until it is documented there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from crossbench.plugin import hookspecs
from crossbench.plugin.manager import hook_names

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
SPECS = Path(hookspecs.__file__).read_text(encoding="utf-8")


def signatures() -> dict[str, str]:
    """hook name -> ``def name(args) -> returns`` as written in hookspecs.py."""
    out = {}
    for node in ast.parse(SPECS).body:
        if isinstance(node, ast.FunctionDef) and any(ast.unparse(d) == "hookspec" or ast.unparse(d).startswith("hookspec(")
                                                      for d in node.decorator_list):
            out[node.name] = f"def {node.name}({ast.unparse(node.args)}) -> {ast.unparse(node.returns)}"
    return out


def section(name: str) -> str:
    match = re.search(rf"^### {re.escape(name)}\n(.*?)(?=^##)", DOC + "\n##", flags=re.S | re.M)
    assert match, f"docs/plugins.md has no section '### {name}'; document the hook there"
    return match.group(1)


def test_the_hooks_are_read_from_hookspecs():
    assert set(signatures()) == set(hook_names())
    assert {"crossbench_datasets", "crossbench_fusions", "crossbench_metrics", "crossbench_commands"} <= set(signatures())


@pytest.mark.parametrize("name", sorted(signatures()))
def test_hook_is_documented(name):
    text = section(name)
    assert f"```python\n{signatures()[name]}\n```" in text, f"{name}: the signature in docs/plugins.md differs from hookspecs.py"
    for part in ("**Arguments:**", "**Returns:**", "**Called:**", "**Example"):
        assert part in text, f"{name}: docs/plugins.md lacks {part}"
    example = text[text.index("**Example"):]
    assert "@hookimpl" in example and f"def {name}(" in example, f"{name}: the example implements no hook"


@pytest.mark.parametrize("name", sorted(signatures()))
def test_hook_docstring_says_what_returns_and_when(name):
    doc = getattr(hookspecs, name).__doc__ or ""
    assert len(doc.split()) >= 25, f"{name}: its docstring in hookspecs.py is too short to say arguments, return and when"
    assert re.search(r"\bReturns?\b", doc) and re.search(r"\b[Cc]alled\b", doc), f"{name}: say what it returns and when it is called"


def test_documented_examples_compile():
    for block in re.findall(r"```python\n(.*?)```", DOC, flags=re.S):
        if block.startswith("def ") and block.count("\n") == 1:
            continue  # a bare signature line
        ast.parse(block)
