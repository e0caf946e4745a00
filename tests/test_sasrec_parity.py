"""The sasrec parity benchmark (``benchmarks/train_throughput.py``) at several training seeds:
every seed trains on the same data, and the summary is the mean and sample std of the seeds."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "train_throughput.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_throughput_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mean_and_sample_std_by_hand() -> None:
    bench = load_script()
    # mean 0.2; deviations -0.01, 0, +0.01: sample variance 0.0002 / 2 = 1e-4, std 0.01
    got = bench.mean_std([0.19, 0.2, 0.21])
    assert got["mean"] == pytest.approx(0.2) and got["std"] == pytest.approx(0.01)
    assert bench.mean_std([0.3]) == {"mean": pytest.approx(0.3), "std": 0.0}


def test_outside_load_is_the_largest_or_unknown() -> None:
    bench = load_script()
    assert bench.outside_load([{"outside_cores_during": 0.5}, {"outside_cores_during": 1.25}]) == "1.25"
    assert bench.outside_load([{"outside_cores_during": 0.5}, {"outside_cores_during": None}]) == "?"


@pytest.mark.slow
def test_two_training_seeds_on_the_same_data() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--threads", "1", "--models", "sasrec", "--seeds", "0", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["seeds"] == [0, 1] and report["data_seed"] == 0
    # RecBole's layout, and each sequence listed twice an epoch (chosen on the validation split)
    assert report["sasrec_params"] == {"norm": "post", "init_std": 0.02, "target_groups": 2}
    r = report["models"]["sasrec"]
    runs = r["crossbench"]
    assert len(runs) == 2 and runs[0]["train_interactions"] == runs[1]["train_interactions"] > 0  # the same rows
    assert runs[0]["ndcg@10"] != runs[1]["ndcg@10"]  # the training seed changes the model
    values = [x["ndcg@10"] for x in runs]
    mean = sum(values) / 2
    std = abs(values[0] - values[1]) / 2**0.5  # sample std of two values
    assert r["ndcg@10"]["crossbench"]["mean"] == pytest.approx(mean) and r["ndcg@10"]["crossbench"]["std"] == pytest.approx(std)
    assert r["ndcg@10"]["recbole"] is None and r["recbole"] is None
    line = re.search(r"^sasrec: NDCG@10 over seeds 0,1 \(mean \+- sample std\), crossbench: ([0-9.]+) \+- ([0-9.]+)$",
                     done.stdout, re.MULTILINE)
    assert line, done.stdout
    assert float(line.group(1)) == pytest.approx(mean, abs=1e-4) and float(line.group(2)) == pytest.approx(std, abs=1e-4)


def test_sequences_per_batch_by_items_and_by_targets() -> None:
    bench = load_script()
    import numpy as np

    users = np.repeat(np.arange(3), [10, 60, 1])  # 71 interactions; windows of 50: 1 + 2 + 1
    # by items: the mean user's 71 / 3 = 23.67 items (under the cap of 50): 100 / 23.67 = 4.2 -> 4
    assert bench.sequences_per_batch(users, 50, 100, by="items") == 4
    # by targets: 71 items - 4 window starts = 67 targets over 4 windows = 16.75: 100 / 16.75 = 5.97 -> 6
    assert bench.sequences_per_batch(users, 50, 100, by="targets") == 6
    # the cap: one user of 200 items counts 50 items per window; 4 windows hold 196 targets (49 each)
    long = np.zeros(200, dtype=np.int64)
    assert bench.sequences_per_batch(long, 50, 100, by="items") == 2
    assert bench.sequences_per_batch(long, 50, 98, by="targets") == 2
