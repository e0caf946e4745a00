"""Full-ranking evaluation over the whole target catalogue.

Tie rule (pessimistic, deterministic): an item ties with another when their scores are
equal. Among tied items every non-relevant item is ranked above every relevant one, and
tied relevant items are ordered by item index. So a model that gives everything the same
score gets no credit, and no result depends on the chunk size or the thread count.

Only the ranks of relevant items that land in the top ``max(ks)`` are needed; they are
found from ``torch.topk`` values: every item scoring above the ``K``-th value is among the
top ``K``, and the items equal to it are counted over the full row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from crossbench.data.protocols import GroundTruth
from crossbench.interfaces import MetricSpec
from crossbench.progress import progress_bar


@dataclass(frozen=True)
class EvalResult:
    """Per-user values (``metric@k`` -> array aligned with ``users``) and their means."""

    users: np.ndarray
    per_user: Mapping[str, np.ndarray]

    @property
    def means(self) -> dict[str, float]:
        return {key: float(values.mean()) if len(values) else float("nan") for key, values in self.per_user.items()}


def relevant_ranks(scores: torch.Tensor, relevant: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """0-based ranks of ``relevant`` items under the pessimistic tie rule; ``inf`` past ``k``.

    ``scores`` ``[B, N]``; ``relevant`` ``[B, R]`` item indices (sorted ascending within a row,
    padding anywhere is masked by ``valid`` ``[B, R]``). Returns float64 ``[B, R]``.
    """
    n_items = scores.shape[1]
    k = min(k, n_items)
    top = torch.topk(scores, k, dim=1, sorted=True).values  # [B, k]
    kth = top[:, -1:]  # [B, 1]
    s = scores.gather(1, relevant.clamp(0, n_items - 1))  # [B, R]
    greater = (top.unsqueeze(1) > s.unsqueeze(2)).sum(2)
    eq_top = (top.unsqueeze(1) == s.unsqueeze(2)).sum(2)
    eq_kth = (scores == kth).sum(1, keepdim=True)
    eq_all = torch.where(s == kth, eq_kth, eq_top)
    same = (s.unsqueeze(2) == s.unsqueeze(1)) & valid.unsqueeze(1)  # [B, R, R]
    rel_eq = same.sum(2)
    order = torch.arange(relevant.shape[1], device=scores.device)
    rel_before = (same & (order.view(1, 1, -1) < order.view(1, -1, 1))).sum(2)
    rank = (greater + (eq_all - rel_eq) + rel_before).to(torch.float64)
    inside = valid & (s >= kth) & (rank < k)
    return torch.where(inside, rank, torch.full_like(rank, float("inf")))


def evaluate(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    truth: GroundTruth,
    *,
    n_items: int,
    metrics: Mapping[str, MetricSpec],
    ks: Sequence[int],
    exclude: GroundTruth | None = None,
    chunk_size: int = 1024,
    device: torch.device | str = "cpu",
    progress: bool = False,
    label: str = "evaluating",
) -> EvalResult:
    """Rank every item for every user of ``truth`` and compute ``metrics`` at each ``k``.

    ``score_fn(users)`` returns ``[len(users), n_items]`` scores. Items in ``exclude`` (the
    users' training items) are masked out before ranking. Memory is bounded by one chunk.
    """
    device = torch.device(device)
    kmax = max(ks)
    out: dict[str, list[np.ndarray]] = {f"{m}@{k}": [] for m in metrics for k in ks}
    ex_lookup = _lookup(exclude) if exclude is not None else None
    with progress_bar(range(0, truth.n_users, chunk_size), label=label, enabled=progress) as chunks:
        for start in chunks:
            stop = min(start + chunk_size, truth.n_users)
            users = torch.as_tensor(truth.users[start:stop], device=device)
            with torch.no_grad():
                scores = score_fn(users).to(device=device, dtype=torch.float32)
            if scores.shape != (stop - start, n_items):
                raise ValueError(f"score function returned shape {tuple(scores.shape)}, expected {(stop - start, n_items)}")
            if torch.isnan(scores).any():
                raise ValueError("score function returned NaN scores")
            if ex_lookup is not None:
                rows, cols = _rows(exclude, ex_lookup, truth.users[start:stop])  # type: ignore[arg-type]
                if len(rows):
                    scores[torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)] = float("-inf")
            rel, valid, n_rel = _padded(truth, start, stop, device)
            ranks = relevant_ranks(scores, rel, valid, kmax)
            for k in ks:
                ranks_k = torch.where(ranks < k, ranks, torch.full_like(ranks, float("inf")))
                for name, spec in metrics.items():
                    out[f"{name}@{k}"].append(spec.compute(ranks_k, n_rel, k).double().cpu().numpy())
    per_user = {key: np.concatenate(parts) if parts else np.zeros(0) for key, parts in out.items()}
    return EvalResult(users=truth.users.copy(), per_user=per_user)


def _padded(truth: GroundTruth, start: int, stop: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lengths = np.diff(truth.indptr[start : stop + 1])
    width = max(int(lengths.max()) if len(lengths) else 1, 1)
    rel = np.zeros((stop - start, width), dtype=np.int64)
    mask = np.arange(width)[None, :] < lengths[:, None]
    rel[mask] = truth.items[truth.indptr[start] : truth.indptr[stop]]
    return (
        torch.as_tensor(rel, device=device),
        torch.as_tensor(mask, device=device),
        torch.as_tensor(lengths, device=device, dtype=torch.float64),
    )


def _lookup(gt: GroundTruth) -> dict[int, int]:
    return {int(u): j for j, u in enumerate(gt.users)}


def _rows(gt: GroundTruth, lookup: dict[int, int], users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = [], []
    for r, u in enumerate(users):
        j = lookup.get(int(u))
        if j is not None:
            items = gt.items_of(j)
            rows.append(np.full(len(items), r))
            cols.append(items)
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(cols)
