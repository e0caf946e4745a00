"""The evaluator gives the same values on a CUDA device as on the CPU (skipped without one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossbench.data.protocols import GroundTruth
from crossbench.evaluate import evaluate
from crossbench_basic.metrics import METRICS as BASIC
from crossbench_metrics.measures import METRICS as MORE

SPECS = {m.name: m for m in (*BASIC, *MORE)}


@pytest.mark.gpu  # skipped without a CUDA device (conftest.py)
def test_cuda_matches_cpu_exactly_on_tied_scores():
    rng = np.random.default_rng(11)
    n_users, n_items = 3000, 500
    scores = torch.as_tensor(rng.integers(0, 9, size=(n_users, n_items)).astype(np.float32))  # exact on both devices
    truth = GroundTruth.from_pairs(rng.integers(0, n_users, 12000), rng.integers(0, n_items, 12000))
    train = GroundTruth.from_pairs(rng.integers(0, n_users, 40000), rng.integers(0, n_items, 40000))
    pop = rng.integers(0, 30, n_items).astype(np.float64)
    grades = rng.integers(1, 4, len(truth.items)).astype(np.float64)
    results = []
    for device, chunk in (("cpu", 3000), ("cuda", 7), ("cuda", 1024)):
        s = scores.to(device)
        results.append(evaluate(lambda u, s=s: s[u], truth, n_items=n_items, metrics=SPECS, ks=[1, 10, 50], exclude=train,
                                chunk_size=chunk, device=device, grades=grades, item_popularity=pop,
                                item_groups={"tail": pop < 10}))
    cpu, cuda_small, cuda_big = results
    assert cuda_small.catalog == cuda_big.catalog
    for key, values in cuda_big.per_user.items():  # same device: bit-identical across chunk sizes
        np.testing.assert_array_equal(cuda_small.per_user[key], values, err_msg=key)
    for key, values in cpu.per_user.items():  # across devices float64 sums may differ in the last bits only
        np.testing.assert_allclose(cuda_big.per_user[key], values, rtol=0, atol=1e-12, err_msg=key)
    assert cuda_big.catalog == pytest.approx(cpu.catalog, abs=1e-12)
