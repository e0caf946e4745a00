"""Recall, NDCG, HR and MRR at K from the 0-based ranks of relevant items (``inf`` = not in top K).

NDCG is the core's own (:func:`crossbench.evaluate.validation.ndcg_at_k`, the metric composed
models early-stop on), registered here under its name so that there is one NDCG.

Each is a handful of whole-tensor operations per chunk of users: a rank of ``inf`` turns
into a zero contribution through the arithmetic itself (``1 / log2(inf + 2) == 0``,
``1 / (inf + 1) == 0``), with no masks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossbench.evaluate.validation import ndcg_at_k
from crossbench.plugin.specs import MetricSpec

if TYPE_CHECKING:
    import torch


def recall(ranks: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Relevant items in the top K over all relevant items."""
    return (ranks < k).sum(1).double() / n_relevant.clamp(min=1)


def hit_rate(ranks: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """1 if any relevant item is in the top K."""
    return (ranks < k).any(1).double()


def mrr(ranks: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Reciprocal rank of the first relevant item in the top K (0 if none)."""
    return 1.0 / (ranks.amin(1) + 1.0)


METRICS = (
    MetricSpec("recall", recall, "relevant items retrieved in the top K / relevant items"),
    MetricSpec("ndcg", ndcg_at_k, "binary NDCG@K (log2 discount, ideal list of min(|rel|, K) hits)"),
    MetricSpec("hr", hit_rate, "hit rate: 1 if any relevant item is in the top K"),
    MetricSpec("mrr", mrr, "reciprocal rank of the first relevant item within the top K"),
)
