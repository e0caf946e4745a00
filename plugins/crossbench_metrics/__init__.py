"""Further ranking and beyond-accuracy metrics: MAP, Precision, graded NDCG, average
popularity, item coverage and Gini index."""

from __future__ import annotations

from crossbench import hookimpl
from crossbench.plugin.specs import MetricSpec
from crossbench_metrics import measures


@hookimpl
def crossbench_metrics() -> list[MetricSpec]:
    return list(measures.METRICS)
