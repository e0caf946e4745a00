"""Synthetic evaluation data shared by the evaluation benchmarks (numpy only).

Random user and item vectors of size ``dim`` and, per user, about 5 held-out items and
about 25 training items (disjoint, each user's items ascending), as CSR arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EvalData:
    user_vectors: np.ndarray  # [n_users, dim] float32
    item_vectors: np.ndarray  # [n_items, dim] float32
    test_indptr: np.ndarray
    test_items: np.ndarray
    train_indptr: np.ndarray
    train_items: np.ndarray


def make_eval_data(n_users: int, n_items: int, dim: int, seed: int = 0) -> EvalData:
    rng = np.random.default_rng(seed)
    users = rng.standard_normal((n_users, dim), dtype=np.float32)
    items = rng.standard_normal((n_items, dim), dtype=np.float32)
    test, train, t_len, r_len = [], [], [], []
    block = 100_000
    for s in range(0, n_users, block):
        b = min(block, n_users - s)
        draw = np.sort(rng.integers(0, n_items, size=(b, 30)), axis=1)
        keep = np.ones_like(draw, dtype=bool)
        keep[:, 1:] = draw[:, 1:] != draw[:, :-1]
        is_test = rng.random(draw.shape) < 1 / 6
        is_test[:, 0] = True
        t_mask, r_mask = keep & is_test, keep & ~is_test
        test.append(draw[t_mask])
        train.append(draw[r_mask])
        t_len.append(t_mask.sum(1))
        r_len.append(r_mask.sum(1))

    def indptr(lens: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(np.concatenate(lens))]).astype(np.int64)

    return EvalData(users, items, indptr(t_len), np.concatenate(test).astype(np.int64),
                    indptr(r_len), np.concatenate(train).astype(np.int64))
