"""The validation metric that composed models early-stop on: binary NDCG@K, owned by the core.

Model selection inside the trainer does not depend on any plugin: it ranks the validation
users' items with the same full-ranking evaluator as every benchmark metric
(:func:`crossbench.evaluate.ranking.evaluate`, pessimistic ties, training items excluded)
and scores each user's ranking with :func:`ndcg_at_k`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossbench.plugin.specs import MetricSpec

if TYPE_CHECKING:
    import torch

    from crossbench.plugin.registry import Registry

#: The name the trainer reports its validation metric under (``ndcg@K`` in fit reports and records).
VALIDATION_METRIC = "ndcg"


def ndcg_at_k(ranks: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Binary NDCG@K per user from the 0-based ranks of the relevant items.

    ``ranks`` ``[users, R]`` (``inf`` for padding and for items not ranked within the top
    ``k``), ``n_relevant`` ``[users]``. The DCG of the hits (gain 1, discount
    ``1 / log2(rank + 2)``) is divided by the DCG of an ideal list of ``min(n_relevant, k)``
    hits at the top; a user without relevant items scores 0. Returns float64 ``[users]``.
    """
    import torch

    ranks = ranks.to(torch.float64)
    dcg = torch.where(ranks < k, 1.0 / torch.log2(ranks + 2.0), torch.zeros_like(ranks)).sum(1)
    discounts = 1.0 / torch.log2(torch.arange(k, dtype=torch.float64, device=ranks.device) + 2.0)
    ideal = torch.cumsum(discounts, 0)[(n_relevant.clamp(min=1, max=k) - 1).long()]
    return torch.where(n_relevant > 0, dcg / ideal, torch.zeros_like(dcg))


#: :func:`ndcg_at_k` as a metric the evaluator computes.
VALIDATION_SPEC = MetricSpec(VALIDATION_METRIC, ndcg_at_k, "binary NDCG@K (log2 discount), the trainer's validation metric")


def objective_metrics(registry: Registry, name: str) -> dict[str, MetricSpec]:
    """The metric ``name`` to tune on: the registered one, or the core's NDCG when ``name`` is ``ndcg``
    and no plugin registers a metric of that name (so the default objective ``ndcg@10`` needs no plugin)."""
    if name == VALIDATION_METRIC and name not in registry.names("metrics"):
        return {name: VALIDATION_SPEC}
    return dict(registry.metrics([name]))
