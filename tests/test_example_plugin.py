"""The example third-party package in examples/: installed by its dist-info (no pip, no network),
run through `crossbench run` and `crossbench tune`, and checked by the conformance kit; a broken
copy of it fails the kit with one message per defect."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import write_dist

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "crossbench-example-plugin"
CROSSBENCH = str(Path(sys.executable).with_name("crossbench"))

pytestmark = pytest.mark.slow  # crossbench and pytest run in subprocesses


def install(src: Path, site: Path) -> dict[str, str]:
    """``src`` importable, with the entry points its pyproject.toml declares, as `pip install` would leave them."""
    project = tomllib.loads((src / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    write_dist(site, project["name"], entry_points=project["entry-points"], files={})
    env = {k: v for k, v in os.environ.items() if k != "CROSSBENCH_DISABLE_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(site)])
    env["COLUMNS"] = "1000"  # pytest's short summary holds each whole failure message
    return env


def crossbench(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CROSSBENCH, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def kit(env: dict[str, str], cwd: Path, tests: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", str(tests)],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_example_runs_and_tunes(tmp_path):
    env = install(EXAMPLE, tmp_path / "site")
    listed = crossbench(env, tmp_path, "plugins")
    assert listed.returncode == 0 and "example\tcrossbench-example-plugin\t0.1" in listed.stdout, listed.stderr
    assert listed.stderr == ""
    run = crossbench(env, tmp_path, "run", "--dataset", "example-shop", "--model", "recent-popular", "--model", "composed",
                     "--model-param", "composed.fusion=mean-gate", "--model-param", "composed.epochs=1",
                     "--metrics", "dcg,ndcg", "--ks", "10", "--seeds", "0", "--threads", "1", "-q", "--output", "run")
    assert run.returncode == 0, run.stderr
    header = next(line for line in run.stdout.splitlines() if line.startswith("| model"))
    assert "dcg@10" in header and "ndcg@10" in header
    rows = {line.split("|")[1].strip() for line in run.stdout.splitlines() if line.startswith("| ")}
    assert {"recent-popular", "composed"} <= rows
    assert len(list((tmp_path / "run").rglob("*.json"))) >= 2
    tune = crossbench(env, tmp_path, "tune", "--dataset", "example-shop", "--model", "recent-popular", "--trials", "2",
                      "--seeds", "0", "--threads", "1", "-q", "--output", "tune")
    assert tune.returncode == 0, tune.stderr
    assert "recent-popular" in tune.stdout and "2 trials" in tune.stdout


def test_example_passes_the_kit(tmp_path):
    env = install(EXAMPLE, tmp_path / "site")
    result = kit(env, tmp_path, EXAMPLE / "tests")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "5 passed" in result.stdout  # the plugin loads; its dataset, fusion, metric and recommender pass


#: defect -> (file, text replaced, replacement, what the kit must say)
DEFECTS = {
    "dataset not deterministic": ("dataset.py", "np.random.default_rng(self.seed)", "np.random.default_rng()",
                                  "dataset 'example-shop': two loads with the same parameters give different data"),
    "fusion reads absent domains": ("fusion.py", "self.weight[d] * v * m,", "self.weight[d] * v,",
                                    "fusion 'mean-gate': an absent domain or padding changes the output"),
    "metric off by one": ("metric.py", "torch.log2(ranks + 2.0)", "torch.log2(ranks + 3.0)",
                          "but the brute-force definition gives"),
    "recommender scores float64": ("recommender.py", "dtype=torch.float32", "dtype=torch.float64",
                                   "model 'recent-popular': score() gave torch.float64, expected float32"),
}


def test_broken_copy_fails_the_kit_naming_each_defect(tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(EXAMPLE, broken, ignore=shutil.ignore_patterns("__pycache__"))
    for file, old, new, _ in DEFECTS.values():
        path = broken / "crossbench_example" / file
        text = path.read_text(encoding="utf-8")
        assert old in text, f"the example's {file} changed: update the defect"
        path.write_text(text.replace(old, new), encoding="utf-8")
    env = install(broken, tmp_path / "site")
    result = kit(env, tmp_path, broken / "tests")
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == len(DEFECTS), result.stdout[-3000:]
    for defect, (_, _, _, message) in DEFECTS.items():
        assert sum(message in line for line in failed) == 1, f"{defect}: {message!r} not in {failed}"
