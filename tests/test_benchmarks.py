"""Every benchmark script runs as its docstring says, on a tiny configuration, and prints its figures.

Each script is run as a subprocess with the project's Python, from the repository root. The
peers that need another environment are skipped by the scripts themselves and the tests
check that they say so: RecBole (its own virtualenv; set ``CROSSBENCH_RECBOLE_PYTHON`` to
its python to run the RecBole halves too) and CUDA.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
RECBOLE_PYTHON = os.environ.get("CROSSBENCH_RECBOLE_PYTHON")
needs_recbole = pytest.mark.skipif(not RECBOLE_PYTHON, reason="set CROSSBENCH_RECBOLE_PYTHON to a python with recbole==1.2.1")

#: the scripts covered below; a new benchmark script must get a test here
COVERED = {
    "train_throughput.py", "eval_throughput.py", "recbole_eval.py", "tuning_storage.py", "zoo_synthetic.py",
    "gpu_check.py", "low_precision_product.py", "big_model_fit.py", "ablation_valid.py", "simulation_round.py",
    "fidelity.py", "fidelity_recbole_run.py",  # tested in tests/test_fidelity.py
    "distributed_speedup.py", "device_check.py",  # tested in tests/test_distributed_bench.py
}
NUMBER = r"[0-9]+(?:\.[0-9]+)?"

pytestmark = pytest.mark.slow  # each script runs in a subprocess


def run_benchmark(script: str, *args: str, timeout: float = 240) -> tuple[str, dict[str, Any]]:
    """Run ``python benchmarks/SCRIPT ARGS`` from the repository root; its output and its last (JSON) line."""
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{script} exited with {done.returncode}:\n{output[-4000:]}"
    last = done.stdout.strip().splitlines()[-1]
    return done.stdout, json.loads(last)


def test_every_script_is_covered() -> None:
    scripts = {p.name for p in BENCHMARKS.glob("*.py") if '__name__ == "__main__"' in p.read_text(encoding="utf-8")}
    assert scripts == COVERED, f"benchmark scripts without a test here: {sorted(scripts - COVERED)}"


def test_train_throughput_runs_crossbench_and_says_recbole_was_skipped() -> None:
    out, report = run_benchmark("train_throughput.py", "--tiny", "--threads", "1")
    for name in ("mf", "sasrec"):
        line = re.search(rf"^{name}: crossbench ({NUMBER}) training interactions/s \(threads 1, outside load ({NUMBER}|unknown)",
                         out, re.MULTILINE)
        assert line, out
        assert float(line.group(1)) > 0
        r = report["models"][name]
        assert r["recbole"] is None and r["ratio"] is None
        ours = r["crossbench"]
        assert ours["threads"] == 1 and ours["epochs"] == 1 and ours["train_interactions"] > 0
        assert ours["interactions_per_s"] == pytest.approx(ours["train_interactions"] * ours["epochs"] / ours["train_s"])
        assert 0.0 <= ours["ndcg@10"] <= 1.0
    assert out.count("RecBole      skipped: no --recbole-python given") == 2
    assert "SASRec (crossbench sasrec, RecBole SASRec): 300 users" in out
    assert report["recbole_skipped"].startswith("no --recbole-python given")


@needs_recbole
def test_train_throughput_against_recbole() -> None:
    out, report = run_benchmark("train_throughput.py", "--tiny", "--threads", "1", "--recbole-python", str(RECBOLE_PYTHON))
    for name in ("mf", "sasrec"):
        line = re.search(rf"^{name}: throughput ratio crossbench / RecBole = ({NUMBER}) \(threads 1 / 1, outside load ", out, re.MULTILINE)
        assert line, out
        r = report["models"][name]
        assert r["ratio"] == pytest.approx(r["crossbench"]["interactions_per_s"] / r["recbole"]["interactions_per_s"])
        assert r["recbole"]["train_interactions"] == r["crossbench"]["train_interactions"]  # the same rows
        assert 0.0 <= r["recbole"]["ndcg@10"] <= 1.0


def test_eval_throughput_prints_the_ratio_to_the_bound() -> None:
    out, report = run_benchmark("eval_throughput.py", "--shapes", "400x1500", "--repeat", "1", "--threads", "1")
    line = re.search(rf"^400 users x 1500 items, d=64, threads 1: ours ({NUMBER}) users/s, bound ({NUMBER}) users/s, "
                     rf"ratio ({NUMBER})", out, re.MULTILINE)
    assert line, out
    (shape,) = report["shapes"]
    assert report["threads"] == 1 and shape["users"] == 400 and shape["items"] == 1500
    assert float(line.group(3)) == pytest.approx(shape["ratio_to_bound"], abs=1e-3) and shape["ratio_to_bound"] > 0
    assert set(shape["means@10"]) == {"recall@10", "ndcg@10", "hr@10", "mrr@10", "map@10", "precision@10"}


@needs_recbole
def test_eval_throughput_beside_recbole() -> None:
    out, report = run_benchmark("eval_throughput.py", "--shapes", "400x1500", "--repeat", "1", "--threads", "1",
                                "--recbole-python", str(RECBOLE_PYTHON))
    assert re.search(rf"RecBole 1.2.1 at batch 4096: {NUMBER} users/s; crossbench is {NUMBER}x faster", out), out
    assert set(report["shapes"][0]["speedup_over_recbole"]) == {"default", "4096"}


def test_recbole_eval_without_recbole_writes_its_files_and_says_it_skipped() -> None:
    out, report = run_benchmark("recbole_eval.py", "--users", "200", "--items", "1000", "--threads", "1")
    assert "skipped the RecBole timing" in out and "No module named 'recbole'" in out
    assert report["recbole"] is None and report["skipped"].startswith("RecBole is not importable")
    rows = report["atomic_rows"]
    assert rows["train"] > 0 and rows["test"] >= 200 and rows["valid"] >= 200  # every user has test and training items


@needs_recbole
def test_recbole_eval_with_recbole() -> None:
    done = subprocess.run([str(RECBOLE_PYTHON), str(BENCHMARKS / "recbole_eval.py"), "--users", "200", "--items", "1000",
                           "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["threads"] == 1 and [r["batch_users"] for r in report["runs"]] == ["default", "4096"]


def test_low_precision_product_prints_each_time_over_float32() -> None:
    out, report = run_benchmark("low_precision_product.py", "--users", "64", "--items", "2000", "--repeat", "2", "--threads", "1")
    assert re.search(rf"float32: +{NUMBER} ms, 1\.00 x float32", out), out
    assert re.search(rf"bfloat16: +{NUMBER} ms, {NUMBER} x float32", out), out
    assert report["threads"] == 1 and report["over_float32"]["float32"] == 1.0


def test_tuning_storage_overhead_and_worker_scaling() -> None:
    out, report = run_benchmark("tuning_storage.py", "--trials", "5", "--repeats", "1", "--worker-trials", "2",
                                "--n-users", "100", "--n-items", "30")
    for storage in ("memory", "sqlite", "journal"):
        assert re.search(rf"^{storage} +{NUMBER} +{NUMBER} +{NUMBER} +-?{NUMBER}$", out, re.MULTILINE), out
    assert "2 trials, --threads 1 per worker, sqlite storage" in out
    assert re.search(rf"^2 workers / 1 worker: {NUMBER}x over the trials' span", out, re.MULTILINE), out
    assert report["overhead"]["storages"]["memory"]["ratio_to_memory"] == 1.0
    assert report["workers"]["threads_per_worker"] == 1 and report["workers"]["ratio_2_to_1_span"] > 0
    assert [r["trials"] for n in ("1", "2") for r in report["workers"]["runs"][n]] == [2, 2]


def test_zoo_synthetic_tables_and_checks() -> None:
    out, report = run_benchmark("zoo_synthetic.py", "--seeds", "0", "--n-users", "300", "--transfers", "0.8", "0.0",
                                "--models", "popularity", "mf", "ease", "--threads", "1", "--set", "mf.epochs=2")
    for transfer in ("0.8", "0.0"):
        assert f"transfer = {transfer}, cold users, 1 seeds, 300 users, threads = 1" in out
    assert re.search(rf"^ease +{NUMBER} ± {NUMBER} +{NUMBER} +{NUMBER}$", out, re.MULTILINE), out
    strong, none = report["results"]
    assert strong["transfer"] == 0.8 and "cross_domain_beat_baselines" in strong
    assert none["transfer"] == 0.0 and "none_beat_popularity" in none
    assert report["threads"] == 1 and set(strong["ndcg@10"]) == {"popularity", "mf", "ease"}


def text_cache(pytestconfig: pytest.Config) -> Path:
    """A text-embedding cache kept between test runs (the language model then encodes nothing twice)."""
    cache = getattr(pytestconfig, "cache", None)  # absent under -p no:cacheprovider
    return cache.mkdir("benchmark-text-cache") if cache is not None else ROOT / "build" / "gpu-cache"


def test_big_model_fit_tiny(pytestconfig: pytest.Config) -> None:
    out, report = run_benchmark("big_model_fit.py", "--tiny", "--threads", "1", "--cache-dir", str(text_cache(pytestconfig)))
    assert re.search(r"^dataset: 600 users, [0-9]+ interactions, 3 domains x 200 items; threads 1; load average", out, re.MULTILINE), out
    (run,) = report["runs"]
    assert report["threads"] == 1 and run["lm-attention"]["epochs"] <= 2 and run["ease"]["fit_s"] > 0
    ratio = run["lm-attention"]["fit_s"] / max(run["ease"]["fit_s"], 1e-9)
    assert re.search(rf"^ +0 +{NUMBER} +{NUMBER} +[12] +{NUMBER} +{NUMBER} +{ratio:.1f} ", out, re.MULTILINE), out


def test_gpu_check_runs_the_cpu_half_and_reports_the_cuda_half(pytestconfig: pytest.Config) -> None:
    cache = text_cache(pytestconfig)
    out, report = run_benchmark("gpu_check.py", "--n-users", "200", "--n-items", "100", "--epochs", "1", "--threads", "1",
                                "--cache-dir", str(cache))
    assert re.search(rf"^cpu : \{{'ndcg@10': {NUMBER}, 'recall@10': {NUMBER}\}} train {NUMBER}s \(1 threads\)", out, re.MULTILINE), out
    assert report["cpu_threads"] == 1 and report["n_items"] == 100 and report["cpu"]["epochs"] == 1
    if torch.cuda.is_available():
        assert "max |cpu - cuda|" in out and isinstance(report["within_tolerance"], bool)
    else:
        assert "cuda: skipped, no CUDA device" in out and "only the CPU half ran" in out
        assert report["cuda_skipped"].startswith("no CUDA device") and "cuda" not in report


def test_ablation_valid_reports_validation_users_only() -> None:
    out, report = run_benchmark("ablation_valid.py", "--tiny", "--model", "cd-attention", "--set", "dim=16")
    assert re.search(rf"^seed 0: validation ndcg@10 ({NUMBER}) \(\d+ users\), fit {NUMBER} s, epochs 2, threads 1$", out, re.MULTILINE), out
    assert report["model"] == "cd-attention" and report["params"] == {"epochs": "2", "dim": "16"}
    assert 0.0 < report["mean"] <= 1.0 and report["valid_ndcg@10"] == [report["mean"]]


def test_simulation_round_reports_the_cost_of_a_round_against_fit_plus_evaluation() -> None:
    out, report = run_benchmark("simulation_round.py", "--tiny", "--threads", "1", "--models", "popularity", "mf")
    assert report["threads"] == 1 and report["rounds"] == 2 and report["n_users"] == 400
    for name in ("popularity", "mf"):
        r = report["models"][name]
        assert r["round_s"] == pytest.approx(sum(r["round_parts_s"].values()))
        assert r["ratio"] == pytest.approx(r["round_s"] / (r["fit_s"] + r["eval_s"]))
        assert len(r["taken_per_round"]) == 2 and sum(r["taken_per_round"]) > 0
        line = re.search(rf"^{name}: one round ({NUMBER}) s .* = ({NUMBER})x \(([0-9]+) simulated users, threads 1, ", out, re.MULTILINE)
        assert line, out
        assert int(line.group(3)) == r["users"] > 0
