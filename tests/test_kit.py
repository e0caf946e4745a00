"""The conformance kit itself: it covers every built-in plugin, stays inert unless asked, and
names the plugin when a named plugin is missing."""

from __future__ import annotations

import textwrap
from importlib.metadata import entry_points

import conftest
import pytest

from crossbench.testing.registry import components


def test_every_builtin_plugin_is_under_the_kit(request):
    """tests/conftest.py names every built-in plugin, so their components all run the kit's contracts."""
    builtins = {ep.name for ep in entry_points(group="crossbench") if ep.value.startswith("crossbench_")}
    assert set(conftest.crossbench_plugins) == builtins, "name every built-in plugin in tests/conftest.py crossbench_plugins"
    found = {kind: {name for _, name in components(request.config, conftest.crossbench_plugins, kind)}
             for kind in ("item-encoders", "user-encoders", "fusions", "scorers", "recommenders", "metrics")}
    assert {"id", "text", "text-id"} <= found["item-encoders"]
    assert {"mean", "user-id", "gru", "transformer"} <= found["user-encoders"]
    assert {"target-only", "shared", "concat", "gating", "attention", "emcdr-joint", "ptupcdr-joint"} <= found["fusions"]
    assert {"dot", "cosine", "mlp"} <= found["scorers"]
    assert {"popularity", "mf", "composed", "itemknn"} <= found["recommenders"]
    assert {"ndcg", "recall", "hr", "mrr"} <= found["metrics"]


@pytest.mark.slow  # pytest in a subprocess
def test_the_pytest_plugin_is_inert_and_imports_no_torch(pytester):
    """Loaded into every pytest run through `pytest11`, it adds no tests and imports neither torch nor a plugin."""
    pytester.makepyfile(test_plain=textwrap.dedent("""
        import sys

        def test_nothing_heavy(pytestconfig):
            assert pytestconfig.pluginmanager.has_plugin("crossbench.testing")
            assert "torch" not in sys.modules and "crossbench_basic" not in sys.modules
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


@pytest.mark.slow  # pytest in a subprocess
def test_a_missing_plugin_is_named(pytester):
    pytester.makeconftest('crossbench_plugins = ["no-such-plugin"]\n')
    result = pytester.runpytest_subprocess("-q", "-k", "plugin_loads", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*plugin 'no-such-plugin' is not installed (installed: basic, *synthetic*"])
