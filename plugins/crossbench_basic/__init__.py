"""Built-in components: ID item encoder, mean-pool and user-ID user encoders, target-only
and shared-user fusions, dot scorer, Popularity, composed MF / CMF models, and the core
ranking metrics (Recall, NDCG, HR, MRR)."""

from __future__ import annotations

from crossbench import hookimpl
from crossbench.interfaces import ComponentSpec, MetricSpec
from crossbench_basic import components, metrics, models


@hookimpl
def crossbench_item_encoders() -> list[ComponentSpec]:
    return [components.ID_ITEM_ENCODER]


@hookimpl
def crossbench_user_encoders() -> list[ComponentSpec]:
    return [components.MEAN_USER_ENCODER, components.ID_USER_ENCODER]


@hookimpl
def crossbench_fusions() -> list[ComponentSpec]:
    return [components.TARGET_ONLY_FUSION, components.SHARED_FUSION]


@hookimpl
def crossbench_scorers() -> list[ComponentSpec]:
    return [components.DOT_SCORER]


@hookimpl
def crossbench_recommenders() -> list[ComponentSpec]:
    return list(models.RECOMMENDERS)


@hookimpl
def crossbench_metrics() -> list[MetricSpec]:
    return list(metrics.METRICS)
