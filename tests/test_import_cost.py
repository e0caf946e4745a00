"""Commands that neither train nor evaluate load no heavy library: torch, transformers, optuna, matplotlib.

Checked by what gets imported (``-X importtime`` and ``sys.modules`` in a fresh interpreter),
never by timing.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "optuna", "matplotlib", "scipy")

pytestmark = pytest.mark.slow  # each check starts a fresh interpreter


def _imported_by_importtime(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    assert "crossbench.cli" in names or "crossbench" in names, done.stderr[-2000:]
    return names


def test_importing_the_cli_imports_no_torch() -> None:
    names = _imported_by_importtime("from crossbench.cli import cli")  # the command group (crossbench.cli itself loads it lazily)
    assert "crossbench.cli.app" in names and "click" in names
    heavy = sorted(n for n in names if n.split(".")[0] in HEAVY)
    assert heavy == []


COMMAND = """
import contextlib, io, json, sys
from crossbench.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main({args!r})
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print(json.dumps({{"code": code, "heavy": heavy, "out": out.getvalue()}}))
"""


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["list", "models"], "lm-attention"),
        (["list", "protocols"], "cold-start"),
        (["plugins"], "protocols"),
        (["--version"], "0.1.0"),
        (["--help"], "Usage"),
        (["run", "--help"], "EXPERIMENT_FILE"),
    ],
)
def test_listing_commands_import_no_torch(args: list[str], expect: str) -> None:
    done = subprocess.run([sys.executable, "-c", COMMAND.format(args=args, heavy=set(HEAVY))],
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] in (0, None) and expect in result["out"]
    assert result["heavy"] == []


def test_building_a_component_does_load_torch() -> None:
    # the factories import their modules when called: registration is cheap, use is not broken
    code = (
        "import sys\nfrom crossbench.plugin.manager import get_plugin_manager\nfrom crossbench.plugin.registry import Registry\n"
        "r = Registry(get_plugin_manager())\nassert 'torch' not in sys.modules\n"
        "m = r.get('recommenders', 'mf').factory(epochs=1)\nprint(type(m).__name__, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["ComposedRecommender", "True"]
