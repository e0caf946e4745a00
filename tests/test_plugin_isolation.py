"""A broken third-party plugin is reported on one line and skipped; the rest of the CLI works.

Each variant is a real package (module plus dist-info with a ``crossbench`` entry point) put on
``sys.path``, found by ``importlib.metadata`` exactly as an installed one would be.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import write_dist

from crossbench.cli import main
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry

HEADER = """
from crossbench import hookimpl
from crossbench.plugin.specs import ComponentSpec, IntParam
from crossbench_synthetic import synthetic

def tiny(*, n_users: int = 50, seed: int = 0):
    return synthetic(n_users=n_users, n_items=20, seed=seed)
"""

#: variant -> (plugin body, a run that uses the plugin, what the one line must say)
VARIANTS = {
    "import-error": (
        "import crossbench_no_such_dependency\n",
        ["--dataset", "tiny-import-error"],
        "importing 'isolation_import_error' raised ModuleNotFoundError: No module named 'crossbench_no_such_dependency'",
    ),
    "misspelled-hook": (
        "@hookimpl\ndef crossbench_dataset():\n    return [ComponentSpec('tiny-misspelled-hook', tiny)]\n",
        ["--dataset", "tiny-misspelled-hook"],
        "it implements unknown hook 'crossbench_dataset' (did you mean 'crossbench_datasets'?)",
    ),
    "bare-spec": (
        "@hookimpl\ndef crossbench_datasets():\n    return ComponentSpec('tiny-bare-spec', tiny)\n",
        ["--dataset", "tiny-bare-spec"],
        "crossbench_datasets() returned a bare ComponentSpec ('tiny-bare-spec'); return a list: [spec]",
    ),
    "number": (
        "@hookimpl\ndef crossbench_datasets():\n    return 3\n",
        ["--dataset", "tiny-number"],
        "crossbench_datasets() returned 3 (int); return a list of ComponentSpec",
    ),
    "duplicate-name": (
        "@hookimpl\ndef crossbench_datasets():\n    return [ComponentSpec('synthetic', tiny)]\n",
        ["--dataset", "synthetic"],
        "dataset name 'synthetic' is registered by plugin 'isolation-duplicate-name' (pkg-duplicate-name) and "
        "plugin 'synthetic' (crossbench), so neither is used",
    ),
    "bad-signature": (
        "def fusion(*, hidden: int = 8):\n    return None\n\n"
        "@hookimpl\ndef crossbench_fusions():\n    return [ComponentSpec('tiny-bad-signature', fusion)]\n",
        ["--model", "composed", "--model-param", "fusion=tiny-bad-signature"],
        "fusion 'tiny-bad-signature': factory isolation_bad_signature.fusion does not accept keyword(s) 'context'; "
        "fusion factories are called as factory(context=..., **hyperparameters)",
    ),
    "bad-search-space": (
        "@hookimpl\ndef crossbench_datasets():\n    return [ComponentSpec('tiny-bad-search-space', tiny, '', (IntParam('n_user', 10, 100),))]\n",
        ["--dataset", "tiny-bad-search-space"],
        "dataset 'tiny-bad-search-space': search space parameter 'n_user' is not a keyword of factory "
        "isolation_bad_search_space.tiny; did you mean 'n_users'?",
    ),
}


def install(root, variant: str) -> str:
    module = "isolation_" + variant.replace("-", "_")
    write_dist(root, f"pkg-{variant}", entry_points={"crossbench": {f"isolation-{variant}": module}},
               files={f"{module}.py": HEADER + VARIANTS[variant][0]})
    return f"isolation-{variant}"


def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out = capsys.readouterr()
    code = exit_.value.code
    return (0 if code is None else int(code)), out.out, out.err


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_broken_plugin_is_isolated(variant, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin = install(tmp_path, variant)
    _, use, cause = VARIANTS[variant]

    # the rest of the CLI works, and says once, on one line, what is broken
    for args in (["--help"], ["--version"], ["list", "datasets"], ["list", "models"], ["plugins"]):
        code, out, err = cli(capsys, *args)
        assert code == 0, (args, err)
        warnings = [line for line in err.splitlines() if line.startswith("crossbench: warning:")]
        assert len(warnings) == 1 and cause in warnings[0], (args, err)
        assert f"'{plugin}' (pkg-{variant})" in warnings[0] or variant == "duplicate-name"
    code, out, _ = cli(capsys, "list", "datasets")
    assert "movielens-100k" in out
    code, out, _ = cli(capsys, "plugins")
    assert "basic\tcrossbench" in out
    if variant != "duplicate-name":  # a duplicate is not either plugin's fault: both stay loaded
        assert f"{plugin}\tpkg-{variant}\tbroken: " in out and cause in out

    # a run that uses it stops before any work with exit 2 and that line
    code, out, err = cli(capsys, "run", *use, "--seeds", "0", "-q", "--threads", "1", "--output", str(tmp_path / "out"))
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("crossbench: error:")]
    assert len(errors) == 1 and cause in errors[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_good_component_of_other_plugins_still_runs(tmp_path, monkeypatch, capsys):
    """With a broken plugin installed, a run that does not use it is not affected (validation passes)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    install(tmp_path, "number")
    registry = Registry(get_plugin_manager())
    assert "synthetic" in registry.names("datasets") and "shared" in registry.names("fusions")
    assert [f.plugin for f in registry.failures()] == ["isolation-number"]


def test_disable_env_skips_a_broken_plugin_without_importing_it(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))
    install(tmp_path, "import-error")
    monkeypatch.setenv("CROSSBENCH_DISABLE_PLUGINS", "isolation-import-error")
    code, out, err = cli(capsys, "plugins")
    assert code == 0 and err == "" and "isolation-import-error" not in out


def test_unknown_disabled_name_warns_once(monkeypatch, capsys):
    monkeypatch.setenv("CROSSBENCH_DISABLE_PLUGINS", "synthetc")
    code, out, err = cli(capsys, "plugins")
    assert code == 0 and "synthetic\tcrossbench" in out
    [line] = err.strip().splitlines()
    assert line.startswith("crossbench: warning: CROSSBENCH_DISABLE_PLUGINS names 'synthetc', which is not an installed plugin; "
                           "did you mean 'synthetic'? (installed: basic, ")


@pytest.mark.slow  # fresh interpreters
def test_broken_plugin_in_a_fresh_process(tmp_path):
    """The console script end to end: `--version` answers, a run naming the plugin exits 2 with one line."""
    install(tmp_path, "bare-spec")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    script = textwrap.dedent("""
        import sys
        from crossbench.cli import main
        main(sys.argv[1:])
    """)
    ok = subprocess.run([sys.executable, "-c", script, "--version"], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0 and "crossbench, version" in ok.stdout
    assert ok.stderr.count("crossbench: warning: plugin 'isolation-bare-spec' (pkg-bare-spec) is broken") == 1
    bad = subprocess.run([sys.executable, "-c", script, "run", "--dataset", "tiny-bare-spec", "-q", "--output", str(tmp_path / "o")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("crossbench: error: dataset 'tiny-bare-spec' is not available: plugin")
