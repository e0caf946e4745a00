"""The core owns its defaults: validation metric, default experiment and protocols come from no named plugin."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from crossbench import hookimpl
from crossbench.cli import CliState, cli
from crossbench.errors import CrossbenchError
from crossbench.evaluate.validation import ndcg_at_k
from crossbench.experiment import DatasetRef, Experiment, ModelRef, ProtocolRef, default_experiment
from crossbench.experiment.tomlfile import experiment_from_dict
from crossbench.plugin.build import make_protocol
from crossbench.plugin.interfaces import RunEnv
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.modules import Fusion, ItemEncoder, Scorer, UserEncoder
from crossbench.plugin.registry import Registry
from crossbench.plugin.specs import ComponentSpec
from crossbench.train.settings import TrainConfig, trains
from crossbench_basic.metrics import METRICS as BASIC

# ---------------------------------------------------------------------------------------- NDCG


def _oracle_ndcg(ranks: list[float], n_relevant: int, k: int) -> float:
    """Binary NDCG@K written out: sum of 1/log2(r + 2) over hits within K, over the ideal DCG."""
    dcg = sum(1.0 / math.log2(r + 2) for r in ranks if r < k)
    ideal = sum(1.0 / math.log2(j + 2) for j in range(min(n_relevant, k)))
    return dcg / ideal if ideal else 0.0


def test_validation_ndcg_hand_checked() -> None:
    # hits at ranks 0 and 2 of 2 relevant items, K = 3: (1 + 1/2) / (1 + 1/log2(3))
    ranks = torch.tensor([[0.0, 2.0], [math.inf, math.inf], [4.0, math.inf]], dtype=torch.float64)
    out = ndcg_at_k(ranks, torch.tensor([2, 1, 1]), 3)
    assert out.tolist() == pytest.approx([1.5 / (1 + 1 / math.log2(3)), 0.0, 0.0])


def test_validation_ndcg_matches_oracle_and_plugin_metric() -> None:
    gen = torch.Generator().manual_seed(3)
    for k in (1, 5, 10, 20):
        users, width = 200, 12
        ranks = torch.randint(0, 30, (users, width), generator=gen).double()
        n_relevant = torch.randint(1, width + 1, (users,), generator=gen)
        pad = torch.arange(width)[None, :] >= n_relevant[:, None]
        ranks[pad] = math.inf
        ranks[ranks >= k] = math.inf  # the evaluator's contract: inf beyond the top K
        ours = ndcg_at_k(ranks, n_relevant, k)
        oracle = [_oracle_ndcg(ranks[u].tolist(), int(n_relevant[u]), k) for u in range(users)]
        assert ours.tolist() == pytest.approx(oracle, abs=1e-12)
    assert ndcg_at_k(torch.full((1, 2), math.inf, dtype=torch.float64), torch.tensor([0]), 5).tolist() == [0.0]


# --------------------------------------------------------------- a composition without 'basic'


class _Ids(ItemEncoder):
    def __init__(self, n_items: int, dim: int) -> None:
        super().__init__()
        self.n_items, self.dim = n_items, dim
        self.table = torch.nn.Embedding(n_items, dim)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.table(items)


class _Mean(UserEncoder):
    def forward(self, users: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = mask.to(history.dtype).unsqueeze(-1)
        return (history * w).sum(1) / w.sum(1).clamp(min=1.0)


class _Average(Fusion):
    def forward(self, vectors, present, target):  # type: ignore[no-untyped-def]
        stacked = torch.stack([v * present[d].unsqueeze(-1) for d, v in vectors.items()])
        count = torch.stack([present[d] for d in vectors]).sum(0).clamp(min=1).unsqueeze(-1)
        return stacked.sum(0) / count


class _Dot(Scorer):
    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (users.unsqueeze(-2) * items).sum(-1)

    def score_all(self, users: torch.Tensor, items: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        return users @ items.T


@trains(TrainConfig(dim=8, epochs=3, batch_size=256))
def tiny_model(*, config: TrainConfig):  # type: ignore[no-untyped-def]
    """A composition made only of this test's components."""
    from crossbench.train import ComposedRecommender

    return ComposedRecommender(item_encoder="t-ids", user_encoder="t-mean", fusion="t-average", scorer="t-dot", config=config)


class TinyComponents:
    """Everything a composed model needs, from one third-party-like plugin."""

    @hookimpl
    def crossbench_item_encoders(self):
        return [ComponentSpec("t-ids", lambda *, context, domain: _Ids(context.data.domain(domain).n_items, context.dim))]

    @hookimpl
    def crossbench_user_encoders(self):
        return [ComponentSpec("t-mean", lambda *, context, domain: _Mean())]

    @hookimpl
    def crossbench_fusions(self):
        return [ComponentSpec("t-average", lambda *, context: _Average())]

    @hookimpl
    def crossbench_scorers(self):
        return [ComponentSpec("t-dot", lambda *, context: _Dot())]

    @hookimpl
    def crossbench_recommenders(self):
        return [ComponentSpec("tiny", tiny_model, "a composition of test components")]


ONLY_USED = "basic,zoo,datasets"  # kept: synthetic (dataset), protocols (cold-start), metrics (precision, map)


def test_trainer_early_stops_on_the_core_metric_with_basic_disabled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CROSSBENCH_DISABLE_PLUGINS", ONLY_USED)
    registry = Registry(get_plugin_manager([TinyComponents()]))
    assert "basic" not in {name for name, _, _ in registry.pm.plugin_distributions()}
    assert registry.names("metrics") and "ndcg" not in registry.names("metrics")
    data = registry.get("datasets", "synthetic").factory(n_users=300, n_items=60).load()
    split = make_protocol(registry, "cold-start", target="movies", seed=0).split(data)
    model = registry.get("recommenders", "tiny").factory(epochs=4, patience=1)
    report = model.fit(split.fit_view(), env=RunEnv(registry=registry, progress=False, cache_dir=tmp_path))
    assert report.valid_metric == "ndcg@10"
    assert 1 <= len(report.history) <= 4 and all(0.0 <= v <= 1.0 for v in report.history)
    assert report.valid_score == max(report.history)


def test_run_uses_only_the_plugins_the_experiment_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CROSSBENCH_DISABLE_PLUGINS", ONLY_USED)
    exp = tmp_path / "exp.toml"
    exp.write_text(
        'name = "only-used"\nmetrics = ["precision", "map"]\nks = [5]\nseeds = [0]\n'
        '[dataset]\nname = "synthetic"\nn_users = 300\nn_items = 60\n'
        '[protocol]\nname = "cold-start"\n[[models]]\nname = "tiny"\nepochs = 2\n',
        encoding="utf-8",
    )
    out = CliRunner().invoke(cli, ["run", str(exp), "--output", str(tmp_path / "out"), "-q", "--threads", "1"],
                             obj=CliState(extra_plugins=[TinyComponents()]))
    assert out.exit_code == 0, out.output
    record = json.loads(next((tmp_path / "out" / "runs").glob("*.json")).read_text())
    metrics = record["evaluation"]["metrics"]
    assert set(metrics) >= {"precision@5", "map@5"} and 0.0 <= metrics["precision@5"] <= 1.0
    assert "basic" not in json.dumps(record.get("plugins", {}))


def test_run_without_default_experiment_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CROSSBENCH_DISABLE_PLUGINS", "basic")
    out = CliRunner().invoke(cli, ["run"], obj=CliState())
    assert out.exit_code == 2
    line = out.stderr.strip()
    assert line.startswith("crossbench: error: no default experiment") and "\n" not in line
    assert "CROSSBENCH_DISABLE_PLUGINS (basic)" in line and "EXPERIMENT.toml" in line
    assert "missing: --dataset, --protocol, --model, --metrics" in line
    # naming everything works without a default experiment
    out = CliRunner().invoke(cli, ["run", "--dataset", "synthetic", "--dataset-param", "n_users=300", "--dataset-param", "n_items=60",
                                   "--protocol", "cold-start", "--model", "itemknn", "--metrics", "precision", "--ks", "5",
                                   "--seeds", "0", "--output", str(tmp_path / "out"), "-q", "--threads", "1"], obj=CliState())
    assert out.exit_code == 0, out.output
    record = json.loads(next((tmp_path / "out" / "runs").glob("*.json")).read_text())
    assert 0.0 <= record["evaluation"]["metrics"]["precision@5"] <= 1.0


def test_experiment_file_without_dataset_needs_a_default() -> None:
    with pytest.raises(CrossbenchError, match=r"x\.toml: no dataset, protocol given and no loaded plugin provides a default"):
        experiment_from_dict({"models": [{"name": "m"}], "metrics": ["ndcg"]}, where="x.toml")
    base = Experiment(dataset=DatasetRef("d", {"a": 1}), protocol=ProtocolRef("p", (), {"f": 0.5}), metrics=("m1",))
    exp = experiment_from_dict({"models": [{"name": "m"}]}, where="x.toml", defaults=base)
    assert (exp.dataset, exp.protocol, exp.metrics, exp.seeds) == (base.dataset, ProtocolRef("p"), ("m1",), (0,))


class _SecondDefault:
    @hookimpl
    def crossbench_default_experiment(self):
        return Experiment(dataset=DatasetRef("synthetic"), protocol=ProtocolRef("warm"), models=(ModelRef("mf"),), metrics=("ndcg",))


def test_default_experiment_comes_from_one_plugin() -> None:
    exp = default_experiment(get_plugin_manager())
    assert exp is not None and exp.dataset.name == "synthetic" and [m.name for m in exp.models] == ["popularity", "mf", "shared-mean"]
    with pytest.raises(CrossbenchError, match=r"plugins .*'basic'.* both provide a default experiment"):
        default_experiment(get_plugin_manager([_SecondDefault()]))
    assert default_experiment(get_plugin_manager(load_entry_points=False)) is None


def test_protocols_are_listed_with_their_plugin() -> None:
    out = CliRunner().invoke(cli, ["list", "protocols"], obj=CliState())
    assert out.exit_code == 0
    rows = {line.split()[0]: line.split()[1] for line in out.output.splitlines()}
    assert rows == {name: "protocols" for name in ("cold-start", "warm", "cold-start-rating", "loo", "loo-999", "loo-100", "new-items")}


class _LastOne:
    @hookimpl
    def crossbench_protocols(self):
        from crossbench.plugin.specs import ProtocolSpec

        return [ProtocolSpec("not-a-protocol", lambda *, target, seed: object(), "returns the wrong thing")]


def test_a_factory_that_returns_no_protocol_is_named() -> None:
    registry = Registry(get_plugin_manager([_LastOne()]))
    with pytest.raises(CrossbenchError, match=r"protocol 'not-a-protocol': its factory returned object, not a crossbench Protocol"):
        make_protocol(registry, "not-a-protocol", target="movies", seed=0)


def test_default_tuning_objective_needs_no_metric_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    from crossbench.evaluate.validation import VALIDATION_SPEC, objective_metrics

    assert objective_metrics(Registry(get_plugin_manager()), "ndcg")["ndcg"].compute is ndcg_at_k
    assert [m.compute for m in BASIC if m.name == "ndcg"] == [ndcg_at_k]  # one NDCG: the core's, registered as ndcg
    monkeypatch.setenv("CROSSBENCH_DISABLE_PLUGINS", ONLY_USED)
    bare = Registry(get_plugin_manager())
    assert objective_metrics(bare, "ndcg") == {"ndcg": VALIDATION_SPEC}
    assert objective_metrics(bare, "map")["map"].name == "map"
    with pytest.raises(CrossbenchError, match="unknown metric 'recall'"):
        objective_metrics(bare, "recall")
