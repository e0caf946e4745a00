"""Contract checks of a metric on random rankings with many ties.

The evaluator ranks a random score matrix (scores drawn from four values, so ties are the
rule) in chunks. For ``ranks``/``graded`` metrics its per-user values must equal ``compute``
called on one user at a time with ranks worked out by sorting (score descending; among equal
scores non-relevant items first, then relevant ones by grade and index: the pessimistic rule),
and must not change when the ranks are permuted or padded. An oracle, where given, is a
brute-force definition the values must match. ``top_items`` and ``item_counts`` metrics must
give finite values of the documented shapes, user by user alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from crossbench.data.protocols import GroundTruth
from crossbench.plugin.specs import MetricSpec

N_USERS, N_ITEMS, KS = 13, 15, (1, 3, 5, 20)


def tie_ranking(scores: np.ndarray, grades: dict[int, float]) -> list[int]:
    """Every item, best first, ties broken pessimistically (non-relevant first, then grade and index ascending)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i in grades, grades.get(i, 0.0), i))


def check_metric(spec: MetricSpec, *, oracle: Callable[..., float] | None = None, seed: int = 0) -> None:
    from crossbench.evaluate.ranking import evaluate

    where = f"metric {spec.name!r}"
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(N_USERS, N_ITEMS)).astype(np.float32)
    relevant = [sorted(rng.choice(N_ITEMS, size=int(rng.integers(1, 6)), replace=False).tolist()) for _ in range(N_USERS)]
    grade_of = [{i: float(rng.integers(1, 4)) if spec.inputs == "graded" else 1.0 for i in rel} for rel in relevant]
    truth = GroundTruth.from_pairs(np.repeat(np.arange(N_USERS), [len(r) for r in relevant]), np.concatenate(relevant))
    grades = np.array([grade_of[u][i] for u in range(N_USERS) for i in relevant[u]])
    popularity = rng.integers(0, 50, size=N_ITEMS).astype(np.float64)
    table = torch.as_tensor(scores)

    def score_fn(users: torch.Tensor) -> torch.Tensor:
        return table[users].clone()

    result = evaluate(score_fn, truth, n_items=N_ITEMS, metrics={spec.name: spec}, ks=KS, chunk_size=4,
                      grades=grades if spec.inputs == "graded" else None, item_popularity=popularity)
    if spec.inputs == "item_counts":
        for k in KS:
            value = result.catalog[f"{spec.name}@{k}"]
            assert math.isfinite(value), f"{where}@{k}: non-finite catalogue value {value}"
        return
    for k in KS:
        values = result.per_user[f"{spec.name}@{k}"]
        assert values.shape == (N_USERS,), f"{where}@{k}: {values.shape} values for {N_USERS} users"
        assert np.isfinite(values).all(), f"{where}@{k}: non-finite values {values}"
        if spec.inputs == "top_items":
            continue
        for u in range(N_USERS):
            ranking = tie_ranking(scores[u], grade_of[u])
            ranks = [ranking.index(i) for i in relevant[u]]  # item-index order, not sorted by rank
            ranks_k = [float(r) if r < k else math.inf for r in ranks]
            second = [grade_of[u][i] for i in relevant[u]]
            alone = _one(spec, ranks_k, second, k)
            assert math.isclose(alone, values[u], rel_tol=1e-9, abs_tol=1e-12), \
                f"{where}@{k}, user {u}: the evaluator gives {values[u]}, compute() on this user alone {alone} (ranks {ranks_k})"
            order = rng.permutation(len(ranks_k))
            shuffled = _one(spec, [ranks_k[j] for j in order], [second[j] for j in order], k)
            assert math.isclose(shuffled, alone, rel_tol=1e-9, abs_tol=1e-12), \
                f"{where}@{k}, user {u}: the value depends on the order of the ranks ({alone} vs {shuffled}); ranks are not sorted"
            padded = _one(spec, [*ranks_k, math.inf, math.inf], [*second, 0.0, 0.0], k, pad=2)
            assert math.isclose(padded, alone, rel_tol=1e-9, abs_tol=1e-12), \
                f"{where}@{k}, user {u}: padding (rank inf) changes the value ({alone} vs {padded})"
            if oracle is not None:
                want = float(oracle(ranking, dict(grade_of[u]), k))
                assert math.isclose(want, values[u], rel_tol=1e-9, abs_tol=1e-12), \
                    f"{where}@{k}, user {u}: {values[u]}, but the brute-force definition gives {want} (ranking {ranking}, relevant {grade_of[u]})"


def _one(spec: MetricSpec, ranks: list[float], second: list[float], k: int, *, pad: int = 0) -> float:
    r = torch.tensor([ranks], dtype=torch.float64)
    if spec.inputs == "graded":
        other: Any = torch.tensor([second], dtype=torch.float64)
    else:
        other = torch.tensor([len(ranks) - pad], dtype=torch.float64)
    return float(spec.compute(r, other, k)[0])
