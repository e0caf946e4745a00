"""Checks of an evaluation's inputs, shared by full-ranking, sampled and list evaluation: each
refuses bad input with one line naming what was wrong."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crossbench.data.protocols import GroundTruth
from crossbench.errors import CrossbenchError


def check_ks(ks: Sequence[int]) -> list[int]:
    """The cut-offs, sorted and unique; refused unless positive."""
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise CrossbenchError(f"cut-offs ks must be positive integers, got {list(ks)}")
    return sorted(set(ks))


def check_exclude(exclude: GroundTruth | None, n_items: int) -> None:
    """Refuse excluded items outside the catalogue."""
    if exclude is not None and len(exclude.items) and (exclude.items.min() < 0 or exclude.items.max() >= n_items):
        raise CrossbenchError(
            f"excluded (training) item indices must lie in [0, {n_items}); found {exclude.items.min()}..{exclude.items.max()}"
        )


def check_inputs(truth: GroundTruth, n_items: int, grades: np.ndarray | None) -> np.ndarray:
    """Refuse ground-truth items outside the catalogue; the grades (all 1 when not given), checked."""
    if len(truth.items) and (truth.items.min() < 0 or truth.items.max() >= n_items):
        raise CrossbenchError(
            f"ground-truth item indices must lie in [0, {n_items}); found {truth.items.min()}..{truth.items.max()}"
        )
    if grades is None:
        return np.ones(len(truth.items), dtype=np.float64)
    g = np.asarray(grades, dtype=np.float64)
    if g.shape != truth.items.shape:
        raise CrossbenchError(f"grades has shape {g.shape}; it must align with the ground truth's items {truth.items.shape}")
    if len(g) and not (g > 0).all():
        raise CrossbenchError("grades must all be > 0: drop held-out items judged non-relevant from the ground truth")
    return g


def check_group_mask(name: str, m: np.ndarray, n_items: int) -> np.ndarray:
    """An item group's boolean mask over the catalogue, checked."""
    m = np.asarray(m)
    if m.dtype != bool or m.shape != (n_items,):
        raise CrossbenchError(f"item group {name!r} must be a boolean mask of shape ({n_items},), got {m.dtype} {m.shape}")
    return m
