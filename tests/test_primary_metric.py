"""The primary metric is the experiment's, stated by the default experiment, written in each record
and read by tables; simulation defaults come from the default experiment and the registry."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from crossbench.errors import CrossbenchError
from crossbench.experiment import DatasetRef, Experiment, ModelRef, ProtocolRef, SimulationSettings
from crossbench.experiment.checks import check_primary, default_experiment, resolve_simulation
from crossbench.experiment.tomlfile import experiment_from_dict, experiment_from_text, experiment_to_toml
from crossbench.plugin.experiment import experiment_fingerprint
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench.records.schema import check_record
from crossbench.report.leaderboard import primary_column

EXP = Experiment(dataset=DatasetRef("synthetic"), protocol=ProtocolRef("cold-start"), models=(ModelRef("popularity"),),
                 metrics=("recall", "ndcg"), ks=(5, 10))


def test_without_a_primary_metric_it_is_the_first_metric_at_the_first_cut_off() -> None:
    assert EXP.primary_metric == "recall@5"
    assert replace(EXP, primary="ndcg@10").primary_metric == "ndcg@10"


def test_the_default_experiment_states_its_primary_metric_and_files_inherit_it_with_its_metrics() -> None:
    default = default_experiment(get_plugin_manager())
    assert default is not None and default.primary == "ndcg@10"
    inherited = experiment_from_dict({"models": [{"name": "mf"}]}, where="t", defaults=default)
    assert inherited.metrics == default.metrics and inherited.primary == "ndcg@10"
    # a file naming its own metrics does not take the default's primary metric
    own = experiment_from_dict({"models": [{"name": "mf"}], "metrics": ["hr", "ndcg"]}, where="t", defaults=default)
    assert own.primary is None and own.primary_metric == "hr@10"


def test_the_primary_metric_round_trips_through_toml_and_leaves_the_fingerprint_alone() -> None:
    exp = replace(EXP, primary="ndcg@10")
    assert experiment_from_text(experiment_to_toml(exp), where="t") == exp
    assert "primary" not in experiment_to_toml(EXP)
    assert experiment_fingerprint(exp) == experiment_fingerprint(EXP)


@pytest.mark.parametrize("primary", ["ndcg", "ndcg@20", "mrr@10", "ndcg@ten"])
def test_a_primary_metric_outside_the_experiment_is_refused(primary: str) -> None:
    with pytest.raises(CrossbenchError, match="primary metric"):
        check_primary(replace(EXP, primary=primary))


def _record(primary: str | None, columns: list[str], means: dict[str, float]) -> dict[str, Any]:
    ev: dict[str, Any] = {"columns": columns, "metrics": means}
    if primary is not None:
        ev["primary"] = primary
    return {"evaluation": ev}


def test_tables_rank_on_the_recorded_primary_metric() -> None:
    columns = ["recall@10", "ndcg@10", "hr@10"]
    named = [_record("hr@10", columns, {}), _record("hr@10", columns, {})]
    assert primary_column(named, columns) == "hr@10"
    # records from before the field: the rule tables used then (first ndcg@ column, else the first column)
    assert primary_column([_record(None, columns, {})], columns) == "ndcg@10"
    assert primary_column([_record(None, ["recall@10"], {})], ["recall@10"]) == "recall@10"
    # records that disagree fall back to that rule too
    assert primary_column([_record("hr@10", columns, {}), _record("recall@10", columns, {})], columns) == "ndcg@10"


def test_a_record_whose_primary_metric_is_not_a_column_is_refused() -> None:
    from crossbench.records.schema import FIELDS

    record: dict[str, Any] = {"schema": 1}
    for field in FIELDS:  # the smallest record of the schema: every field with a value of its type
        node = record
        *parents, last = field.path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node.setdefault(last, field.types[0]())
    record["evaluation"].update(columns=["ndcg@10"], metrics={"ndcg@10": 0.5}, primary="ndcg@10")
    check_record(record, where="r", schema=1)
    record["evaluation"]["primary"] = "ndcg@20"
    with pytest.raises(CrossbenchError, match="primary metric 'ndcg@20' is not one of its columns"):
        check_record(record, where="r", schema=1)


def test_simulation_defaults_come_from_the_default_experiment_and_the_experiment() -> None:
    registry = Registry(get_plugin_manager())
    exp = replace(EXP, metrics=("recall", "ndcg", "mrr"), primary="ndcg@10")
    resolved = resolve_simulation(SimulationSettings(), exp, registry)
    # the default experiment states replay and (ndcg, recall); this experiment has both metrics
    assert (resolved.feedback, resolved.metrics, resolved.primary) == ("replay", ("ndcg", "recall"), "ndcg@10")
    # an experiment without them: its primary metric first, then its other accuracy metrics
    other = resolve_simulation(SimulationSettings(), replace(exp, metrics=("mrr", "hr"), primary="hr@10"), registry)
    assert other.metrics == ("hr", "mrr")
    # what the settings name is kept
    assert resolve_simulation(SimulationSettings(feedback="planted", metrics=("mrr",)), exp, registry).feedback == "planted"
