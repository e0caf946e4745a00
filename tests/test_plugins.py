"""The plugin system: entry points, blocking, duplicate and unknown names."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from crossbench import hookimpl
from crossbench.cli import CliState, cli
from crossbench.errors import CrossbenchError
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench.plugin.specs import ComponentSpec


def test_builtins_come_from_entry_points(registry):
    pm = registry.pm
    names = {name for name, _, _ in pm.plugin_distributions()}
    assert {"basic", "synthetic"} <= names
    # every built-in is listed with the package that declares it
    dists = {name: dist for name, dist, _ in pm.plugin_distributions()}
    assert dists["basic"] == "crossbench"
    assert registry.plugin_of("recommenders", "popularity") == "basic"
    assert registry.plugin_of("datasets", "synthetic") == "synthetic"
    # nothing is registered without entry points
    bare = Registry(get_plugin_manager(load_entry_points=False))
    assert bare.names("datasets") == [] and bare.names("recommenders") == []


def test_disable_env_removes_plugin_from_cli(monkeypatch):
    runner = CliRunner()
    out = runner.invoke(cli, ["plugins"], obj=CliState())
    assert out.exit_code == 0 and "synthetic" in out.output
    out = runner.invoke(cli, ["list", "datasets"], obj=CliState())
    assert "synthetic" in out.output

    monkeypatch.setenv("CROSSBENCH_DISABLE_PLUGINS", "synthetic, other")
    out = runner.invoke(cli, ["plugins"], obj=CliState())
    assert out.exit_code == 0
    assert "synthetic" not in out.stdout and "basic" in out.stdout
    assert "CROSSBENCH_DISABLE_PLUGINS names 'other', which is not an installed plugin" in out.stderr
    out = runner.invoke(cli, ["list", "datasets"], obj=CliState())
    assert "synthetic" not in out.stdout
    out = runner.invoke(cli, ["run", "--seeds", "0"], obj=CliState())
    assert out.exit_code == 2
    assert "unknown dataset 'synthetic'" in out.output


class _Dup:
    @hookimpl
    def crossbench_fusions(self):
        return [ComponentSpec("shared", lambda *, context: None, "clashes with the built-in")]


def test_duplicate_name_names_both_plugins():
    registry = Registry(get_plugin_manager([_Dup()]))
    assert "shared" not in registry.names("fusions") and "target-only" in registry.names("fusions")
    with pytest.raises(CrossbenchError) as err:
        registry.get("fusions", "shared")
    msg = str(err.value)
    assert "'shared'" in msg and "'basic'" in msg and "_Dup" in msg and "neither is used" in msg


def test_unknown_name_suggests_closest(registry):
    with pytest.raises(CrossbenchError) as err:
        registry.get("recommenders", "popularty")
    assert "did you mean 'popularity'" in str(err.value)
    with pytest.raises(CrossbenchError) as err:
        registry.get("fusions", "sharde")
    assert "'shared'" in str(err.value)


def test_broken_plugin_is_named(monkeypatch):
    import importlib.metadata as md

    ep = md.EntryPoint(name="broken", value="crossbench_no_such_module_xyz", group="crossbench")
    real = md.entry_points

    def fake(**kw):
        found = list(real(**kw))
        return found + [ep] if kw.get("group") == "crossbench" else found

    monkeypatch.setattr(md, "entry_points", fake)
    pm = get_plugin_manager()  # the others load; the broken one is recorded
    [failure] = pm.failures
    assert failure.plugin == "broken" and "crossbench_no_such_module_xyz" in failure.cause
    assert "CROSSBENCH_DISABLE_PLUGINS=broken" in failure.line()
    assert pm.has_plugin("basic")
    monkeypatch.setenv("CROSSBENCH_DISABLE_PLUGINS", "broken")
    assert get_plugin_manager().failures == []  # disabled: not imported at all


def test_search_spaces_name_real_hyperparameters(registry):
    for kind in ("datasets", "item-encoders", "user-encoders", "fusions", "scorers", "recommenders"):
        for entry in registry.entries(kind):
            known = entry.spec.hyperparameters()
            for param in entry.spec.search_space:
                assert param.name in known, f"{kind} {entry.spec.name}: search space names {param.name!r}"
