"""The example plugin: each hook returns a list of specs (never a bare spec)."""

from __future__ import annotations

from crossbench import hookimpl
from crossbench.plugin.specs import ComponentSpec, FloatParam, MetricSpec
from crossbench_example.dataset import example_shop
from crossbench_example.fusion import mean_gate
from crossbench_example.metric import dcg
from crossbench_example.recommender import recent_popular


@hookimpl
def crossbench_datasets() -> list[ComponentSpec]:
    return [ComponentSpec("example-shop", example_shop, "two small shops (books, music) sharing customers")]


@hookimpl
def crossbench_fusions() -> list[ComponentSpec]:
    return [ComponentSpec("mean-gate", mean_gate, "learned per-domain weights over the domains a user has history in")]


@hookimpl
def crossbench_metrics() -> list[MetricSpec]:
    return [MetricSpec("dcg", dcg, "binary DCG@K (log2 discount), not normalised")]


@hookimpl
def crossbench_recommenders() -> list[ComponentSpec]:
    return [ComponentSpec("recent-popular", recent_popular, "target-domain popularity, recent interactions weighted up",
                          (FloatParam("half_life", 0.05, 5.0, log=True),))]
