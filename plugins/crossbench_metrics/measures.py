"""MAP, Precision, graded NDCG @K, and the beyond-accuracy metrics item coverage, average
popularity and Gini index of what is recommended.

Conventions (see docs/evaluation.md):

- MAP@K divides by the number of relevant items, as trec_eval's ``map_cut`` (and ir-measures'
  ``AP@k``): ``AP@K = sum over relevant items ranked within K of P@rank / |relevant|``.
- Precision@K divides by K, even where fewer than K items can be ranked (trec_eval ``P_k``).
- Graded NDCG@K uses linear gain (trec_eval ``ndcg_cut``) or ``2**grade - 1`` (``ndcg-exp``); its
  ideal DCG is built from all of the user's graded items, then cut at K.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossbench.plugin.specs import MetricSpec

if TYPE_CHECKING:
    import torch


def _discount(ranks: torch.Tensor) -> torch.Tensor:
    """``1 / log2(rank + 2)``; exactly 0 where the rank is ``inf`` (not retrieved)."""
    import torch

    return 1.0 / torch.log2(ranks + 2.0)


def average_precision(ranks: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """AP@K: mean over relevant items of the precision at each one retrieved within K (÷|relevant|)."""
    import torch

    ordered = torch.sort(ranks, dim=1).values  # hits first, ascending; inf after
    position = torch.arange(1, ranks.shape[1] + 1, dtype=torch.float64, device=ranks.device)
    # The j-th hit (1-based) at 0-based rank r contributes P@(r+1) = j / (r + 1); inf gives 0.
    return (position / (ordered + 1.0)).sum(1) / n_relevant.clamp(min=1)


def precision(ranks: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Relevant items in the top K over K."""
    import torch

    return (ranks < k).sum(1).to(torch.float64) / float(k)


def _graded_ndcg(ranks: torch.Tensor, gains: torch.Tensor, k: int) -> torch.Tensor:
    import torch

    dcg = (gains * _discount(ranks)).sum(1)
    ideal = torch.sort(gains, dim=1, descending=True).values[:, :k]
    positions = torch.arange(ideal.shape[1], dtype=torch.float64, device=gains.device)
    idcg = (ideal / torch.log2(positions + 2.0)).sum(1)
    return torch.where(idcg > 0, dcg / idcg.clamp(min=1e-300), torch.zeros_like(dcg))


def ndcg_graded(ranks: torch.Tensor, gains: torch.Tensor, k: int) -> torch.Tensor:
    """Graded NDCG@K with linear gain (the grade itself)."""
    return _graded_ndcg(ranks, gains, k)


def ndcg_exp(ranks: torch.Tensor, gains: torch.Tensor, k: int) -> torch.Tensor:
    """Graded NDCG@K with exponential gain ``2**grade - 1``."""
    import torch

    return _graded_ndcg(ranks, torch.where(gains > 0, torch.exp2(gains) - 1.0, torch.zeros_like(gains)), k)


def average_popularity(top_items: torch.Tensor, popularity: torch.Tensor, k: int) -> torch.Tensor:
    """Mean training popularity of the items in the user's top K (0 if nothing could be listed)."""
    import torch

    listed = top_items >= 0
    pop = torch.where(listed, popularity[top_items.clamp(min=0)], torch.zeros_like(top_items, dtype=torch.float64))
    n = listed.sum(1).to(torch.float64)
    return torch.where(n > 0, pop.sum(1) / n.clamp(min=1), torch.zeros_like(n))


def item_coverage(counts: torch.Tensor, n_users: int, k: int) -> torch.Tensor:
    """Share of the catalogue that appears in at least one user's top K."""
    import torch

    return (counts > 0).sum().to(torch.float64) / max(counts.numel(), 1)


def gini_index(counts: torch.Tensor, n_users: int, k: int) -> torch.Tensor:
    """Gini index of how often each catalogue item is recommended (0 = even, → 1 = concentrated)."""
    import torch

    c = torch.sort(counts.to(torch.float64)).values
    n = c.numel()
    total = c.sum()
    if n == 0 or float(total) == 0.0:
        return torch.tensor(0.0, dtype=torch.float64)
    idx = torch.arange(1, n + 1, dtype=torch.float64, device=c.device)
    return ((2.0 * idx - n - 1.0) * c).sum() / (n * total)


METRICS = (
    MetricSpec("map", average_precision, "MAP@K: AP over the top K, divided by |relevant| (trec_eval map_cut)"),
    MetricSpec("precision", precision, "relevant items in the top K / K"),
    MetricSpec("ndcg-graded", ndcg_graded, "graded NDCG@K, linear gain (trec_eval ndcg_cut)", inputs="graded"),
    MetricSpec("ndcg-exp", ndcg_exp, "graded NDCG@K, exponential gain 2^grade - 1", inputs="graded"),
    MetricSpec(
        "popularity", average_popularity, "mean training popularity of the top-K items",
        higher_is_better=False, inputs="top_items",
    ),
    MetricSpec("coverage", item_coverage, "share of the catalogue recommended to at least one user", inputs="item_counts"),
    MetricSpec(
        "gini", gini_index, "Gini index of recommendation counts over the catalogue",
        higher_is_better=False, inputs="item_counts",
    ),
)
