"""Built-in components: ID item encoder, mean-pool and user-ID user encoders, target-only
and shared-user fusions, dot scorer, Popularity, composed MF and shared-user-ID models, the core
ranking metrics (Recall, NDCG, HR, MRR), and the default benchmark.

Registering the plugin imports no torch: the factories in :mod:`crossbench_basic.specs`
load their modules when a component is built.
"""

from __future__ import annotations

from crossbench import hookimpl
from crossbench.experiment import DatasetRef, Experiment, ModelRef, ProtocolRef, SimulationSettings
from crossbench.plugin.specs import ComponentSpec, MetricSpec
from crossbench_basic import metrics, specs

#: The benchmark ``crossbench run`` runs with no arguments: Popularity vs target-only MF vs a
#: cross-domain model on the synthetic data, cold-start protocol, three seeds. It is sized to
#: finish within a minute on two CPU cores: 2,000 users and 500 items per domain, and the
#: cross-domain model reads the 20 most recent items per domain for at most 10 epochs
#: (early stopping picked epochs 8, 3 and 6 of the three seeds; the table separates it from
#: both baselines at p < 0.001).
DEFAULT_EXPERIMENT = Experiment(
    name="default",
    dataset=DatasetRef("synthetic", {"n_users": 2000, "n_items": 500}),
    protocol=ProtocolRef("cold-start", (), {"test_fraction": 0.5, "valid_fraction": 0.1}),
    models=(ModelRef("popularity"), ModelRef("mf"), ModelRef("shared-mean", {"epochs": 10, "history_length": 20})),
    metrics=("recall", "ndcg", "hr", "mrr"),
    seeds=(0, 1, 2),
    primary="ndcg@10",
    # what `crossbench simulate` uses where an experiment leaves it out
    simulation=SimulationSettings(feedback="replay", metrics=("ndcg", "recall")),
)


@hookimpl
def crossbench_item_encoders() -> list[ComponentSpec]:
    return [specs.ID_ITEM_ENCODER]


@hookimpl
def crossbench_user_encoders() -> list[ComponentSpec]:
    return [specs.MEAN_USER_ENCODER, specs.ID_USER_ENCODER]


@hookimpl
def crossbench_fusions() -> list[ComponentSpec]:
    return [specs.TARGET_ONLY_FUSION, specs.SHARED_FUSION]


@hookimpl
def crossbench_scorers() -> list[ComponentSpec]:
    return [specs.DOT_SCORER]


@hookimpl
def crossbench_recommenders() -> list[ComponentSpec]:
    return list(specs.RECOMMENDERS)


@hookimpl
def crossbench_metrics() -> list[MetricSpec]:
    return list(metrics.METRICS)


@hookimpl
def crossbench_default_experiment() -> Experiment:
    return DEFAULT_EXPERIMENT
