"""The data-parallel benchmark scripts: the device check's CPU path and the speed-up benchmark's tiny run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str) -> object:
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), BENCHMARKS / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path: this machine has CUDA")
def test_device_check_without_cuda_reports_every_check_skipped_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    check = _script("device_check.py")
    assert check.main([]) == 0  # type: ignore[attr-defined]
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["status"] == "skipped" and result["cuda_devices"] == 0 and result["reason"] == "no CUDA device"
    assert {c: result[c]["status"] for c in ("nccl", "bf16", "sharded_scoring", "train_step")} == dict.fromkeys(
        ("nccl", "bf16", "sharded_scoring", "train_step"), "skipped")


@pytest.mark.slow  # five processes, each loading torch
def test_speedup_benchmark_tiny_prints_every_configuration_and_the_ratios() -> None:
    out = subprocess.run([sys.executable, str(BENCHMARKS / "distributed_speedup.py"), "--tiny", "--batch-size", "16"],
                         capture_output=True, text=True,
                         timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    configs = {(c["world"], c["threads_per_rank"]): c for c in result["configurations"]}
    assert sorted(configs) == [(1, 1), (1, 2), (2, 1)]
    assert {c["samples"] for c in configs.values()} == {configs[(1, 1)]["samples"]} and configs[(1, 1)]["samples"] > 0
    for label in ("same total threads", "1 thread each"):
        for part in ("train", "eval"):
            assert result["speedups"][label][part] > 0
    one, two = configs[(1, 1)], configs[(2, 1)]
    assert result["speedups"]["1 thread each"]["train"] == pytest.approx(one["train_s"] / two["train_s"])
    assert "speed-up of 2 processes, 1 thread each" in out.stdout and "outside cores" in out.stdout
    assert result["batch_size"] == 16 and "global batch 16;" in out.stdout
