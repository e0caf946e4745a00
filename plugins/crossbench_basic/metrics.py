"""Recall, NDCG, HR and MRR at K from the 0-based ranks of relevant items (``inf`` = not in top K)."""

from __future__ import annotations

import torch

from crossbench.interfaces import MetricSpec


def _hits(ranks: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(ranks)


def recall(ranks: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Relevant items in the top K over all relevant items."""
    return _hits(ranks).sum(1).double() / n_relevant.clamp(min=1)


def hit_rate(ranks: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """1 if any relevant item is in the top K."""
    return _hits(ranks).any(1).double()


def ndcg(ranks: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Binary NDCG: DCG of the hits over the DCG of an ideal list of min(|rel|, K) hits."""
    gains = torch.where(_hits(ranks), 1.0 / torch.log2(ranks.clamp(max=1e12) + 2.0), torch.zeros_like(ranks))
    dcg = gains.sum(1)
    positions = torch.arange(k, dtype=torch.float64, device=ranks.device)
    discounts = 1.0 / torch.log2(positions + 2.0)
    ideal_cum = torch.cumsum(discounts, 0)
    n_ideal = n_relevant.clamp(min=1, max=k).long() - 1
    return dcg / ideal_cum[n_ideal]


def mrr(ranks: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Reciprocal rank of the first relevant item in the top K (0 if none)."""
    first = ranks.min(1).values
    return torch.where(torch.isfinite(first), 1.0 / (first + 1.0), torch.zeros_like(first))


METRICS = (
    MetricSpec("recall", recall, "relevant items retrieved in the top K / relevant items"),
    MetricSpec("ndcg", ndcg, "binary NDCG@K (log2 discount, ideal list of min(|rel|, K) hits)"),
    MetricSpec("hr", hit_rate, "hit rate: 1 if any relevant item is in the top K"),
    MetricSpec("mrr", mrr, "reciprocal rank of the first relevant item within the top K"),
)
