"""Top-K lists of items, ranked exactly as the evaluator ranks them.

The steps are the evaluator's own (:func:`crossbench.evaluate.ranking.evaluate`): the score
function's chunk of ``[users, n_items]`` scores, the users' excluded items set to ``-inf`` with
one indexed write, :func:`crossbench.evaluate.ties.top_k` and the tie order of
:func:`crossbench.evaluate.ties.top_items`. With no held-out ground truth every item is
non-relevant, so tied items come in order of increasing item index; ``-inf`` items are never
listed (``-1`` instead).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from crossbench.data.protocols import GroundTruth
from crossbench.errors import CrossbenchError
from crossbench.evaluate import ties
from crossbench.evaluate.csr import DeviceRows, row_lookup
from crossbench.evaluate.inputs import check_exclude
from crossbench.evaluate.ranking import chunk_scores


@dataclass(frozen=True)
class TopLists:
    """``items`` ``[users, k]`` int64 (``-1``: nothing to list) and their ``scores`` (float32, ``-inf`` there)."""

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray


class SeenMask:
    """Sets each user's excluded items to ``-inf`` in a chunk of scores (the evaluator's masking)."""

    def __init__(self, exclude: GroundTruth | None, *, n_items: int, device: torch.device) -> None:
        check_exclude(exclude, n_items)
        self.exclude, self.n_items = exclude, n_items
        self.rows = DeviceRows(exclude.indptr, exclude.items, device) if exclude is not None else None

    def apply(self, scores: torch.Tensor, users: np.ndarray) -> torch.Tensor:
        if self.exclude is None or self.rows is None:
            return scores
        lookup = row_lookup(self.exclude, np.asarray(users, dtype=np.int64))
        rows, cols = self.rows.take(lookup)
        rows, cols = rows.to(scores.device), cols.to(scores.device)
        scores.view(-1).index_fill_(0, rows * self.n_items + cols, ties.NEG_INF)
        return scores


def lists_of(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` items of each row of masked ``scores`` in the evaluator's tie order, and their scores."""
    b, n = scores.shape
    top = ties.top_k(scores, k)
    none = torch.zeros((b, 0), dtype=torch.int64, device=scores.device)
    items = ties.top_items(scores, top, none, none.bool(), none.to(torch.float64))
    values = scores.gather(1, items.clamp(min=0)).masked_fill(items < 0, ties.NEG_INF)
    if items.shape[1] < k:  # a catalogue smaller than k
        pad = k - items.shape[1]
        items = torch.cat([items, items.new_full((b, pad), -1)], dim=1)
        values = torch.cat([values, values.new_full((b, pad), ties.NEG_INF)], dim=1)
    return items, values


def top_lists(
    score_fn: Callable[..., torch.Tensor],
    users: np.ndarray,
    *,
    n_items: int,
    k: int,
    exclude: GroundTruth | None = None,
    chunk_size: int = 1024,
    device: torch.device | str = "cpu",
) -> TopLists:
    """Each of ``users``' top ``k`` target items (excluding ``exclude``'s items), as the evaluator ranks them."""
    if k < 1:
        raise CrossbenchError(f"k must be at least 1, got {k}")
    if chunk_size < 1:
        raise CrossbenchError(f"chunk_size must be at least 1, got {chunk_size}")
    device = torch.device(device)
    users = np.asarray(users, dtype=np.int64)
    mask = SeenMask(exclude, n_items=n_items, device=device)
    items_out, scores_out = [], []
    for start in range(0, len(users), chunk_size):
        chunk = users[start : start + chunk_size]
        scores = mask.apply(chunk_scores(score_fn, chunk, n_items, device), chunk)
        items, values = lists_of(scores, k)
        items_out.append(items.cpu().numpy())
        scores_out.append(values.float().cpu().numpy())
    if not items_out:
        return TopLists(users, np.zeros((0, k), np.int64), np.zeros((0, k), np.float32))
    return TopLists(users, np.concatenate(items_out), np.concatenate(scores_out))
