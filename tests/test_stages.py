"""The training base for whole torch models with declared stages (crossbench.train.stages)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from crossbench.errors import CrossbenchError
from crossbench.plugin.interfaces import RunEnv
from crossbench.testing.data import TARGET, kit_data, kit_split
from crossbench.train.stages import EarlyStopping, Stage, StageData, StagedFitReport, StagedRecommender, run_stage, run_stages
from crossbench.train.stages_data import domain_pairs, overlapping_users, user_rows

SOURCE = "books"


@pytest.fixture(scope="module")
def split():
    return kit_split(kit_data()).fit_view()


def env(registry, **kw) -> RunEnv:
    return RunEnv(registry=registry, seed=0, progress=False, **kw)


class TwoTables(nn.Module):
    """User and item tables per domain (names ``source.*`` and ``target.*``)."""

    def __init__(self, n_users: int, n_source: int, n_target: int, dim: int = 4) -> None:
        super().__init__()
        self.source = nn.ModuleDict({"user": nn.Embedding(n_users, dim), "item": nn.Embedding(n_source, dim)})
        self.target = nn.ModuleDict({"user": nn.Embedding(n_users, dim), "item": nn.Embedding(n_target, dim)})


def mse_loss(part: str):
    def loss(model, batch, gen):
        tables = getattr(model, part)
        pred = (tables["user"](batch["user"]) * tables["item"](batch["item"])).sum(-1)
        return ((pred - batch["rating"]) ** 2).mean()

    return loss


def tables(split) -> TwoTables:
    torch.manual_seed(0)
    return TwoTables(split.train.n_users, split.train.domain(SOURCE).n_items, split.train.domain(TARGET).n_items)


def target_scores(model):
    return lambda users, out=None: model.target["user"](users) @ model.target["item"].weight.T


def test_a_frozen_part_stays_bit_identical_and_the_trained_part_moves(split, registry):
    model = tables(split)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stage = Stage("source", trains=("source.",), loss=mse_loss("source"), data=domain_pairs(split, SOURCE, ratings=True),
                  epochs=2, batch_size=16, lr=0.05)
    report = run_stage(model, stage, split=split, env=env(registry), score=target_scores(model))
    after = model.state_dict()
    for k in ("target.user.weight", "target.item.weight"):
        assert torch.equal(after[k], before[k]), k
    for k in ("source.user.weight", "source.item.weight"):
        assert not torch.equal(after[k], before[k]), k
    n_pairs = len(split.train.domain(SOURCE).interactions)
    assert report.train_samples == 2 * n_pairs and report.epochs == 2
    n_users, n_src, n_tgt = split.train.n_users, split.train.domain(SOURCE).n_items, split.train.domain(TARGET).n_items
    assert report.trained_parameters == 4 * (n_users + n_src)
    assert report.frozen_parameters == 4 * (n_users + n_tgt)
    assert report.valid_score is None and report.history == ()
    assert all(p.requires_grad for p in model.parameters()), "requires_grad is restored after the stage"


class Counter(nn.Module):
    """One weight that SGD (lr 1, loss -w) raises by exactly 1 per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))


def scripted_scores(model, split, good_at: float):
    """Validation users' items on top when w == ``good_at``, at the bottom otherwise."""
    n_items = split.train.domain(TARGET).n_items
    truth = split.valid
    relevant = torch.zeros(split.train.n_users, n_items)
    for j, u in enumerate(truth.users):
        relevant[u, truth.items_of(j)] = 1.0

    def score(users, out=None):
        sign = 1.0 if float(model.w.detach()) == good_at else -1.0
        return sign * relevant[users]

    return score


def test_early_stopping_restores_the_best_validation_epoch_and_reports_every_epoch(split, registry):
    model = Counter()
    seen = []
    rows = StageData({"x": torch.zeros(1)})
    stage = Stage("count", trains=("w",), loss=lambda m, b, g: -m.w, data=rows, epochs=10, lr=1.0, optimizer="sgd",
                  stop=EarlyStopping(patience=2, valid_k=3))
    report = run_stages(model, [stage], split=split, env=env(registry, on_epoch=lambda e, v: seen.append((e, v))),
                        score=scripted_scores(model, split, good_at=2.0))
    # epoch 1: w=1 (bottom, NDCG 0); epoch 2: w=2 (top, NDCG 1); epochs 3, 4 worse: stop after 4
    assert report.history == (0.0, 1.0, 0.0, 0.0)
    assert seen == [(1, 0.0), (2, 1.0), (3, 0.0), (4, 0.0)]
    assert (report.epochs, report.best_epoch, report.valid_score, report.valid_metric) == (4, 2, 1.0, "ndcg@3")
    assert float(model.w.detach()) == 2.0, "the best epoch's weights are restored"
    assert isinstance(report, StagedFitReport) and [s.name for s in report.stages] == ["count"]


def test_on_epoch_steps_increase_across_stages_and_can_prune(split, registry):
    model = Counter()
    rows = StageData({"x": torch.zeros(1)})
    first = Stage("a", trains=("w",), loss=lambda m, b, g: -m.w, data=rows, epochs=2, lr=1.0, optimizer="sgd",
                  stop=EarlyStopping(patience=5, valid_k=3))
    second = Stage("b", trains=("w",), loss=lambda m, b, g: -m.w, data=rows, epochs=3, lr=1.0, optimizer="sgd",
                   stop=EarlyStopping(patience=5, valid_k=3))
    seen = []
    report = run_stages(model, [first, second], split=split, env=env(registry, on_epoch=lambda e, v: seen.append(e)),
                        score=scripted_scores(model, split, good_at=4.0))
    assert seen == [1, 2, 3, 4, 5]
    # stage a ends restored to its best (first) epoch, w=1; stage b then reaches w=2, 3, 4
    assert [s.history for s in report.stages] == [(0.0, 0.0), (0.0, 0.0, 1.0)]
    assert [s.best_epoch for s in report.stages] == [1, 3] and float(model.w.detach()) == 4.0
    assert report.epochs == 5 and report.train_samples == 5

    class Pruned(Exception):
        pass

    def prune(epoch, value):
        if epoch == 2:
            raise Pruned

    model = Counter()
    with pytest.raises(Pruned):
        run_stages(model, [first, second], split=split, env=env(registry, on_epoch=prune), score=scripted_scores(model, split, 4.0))
    assert model.w.requires_grad


def test_a_stage_over_overlapping_users_sees_only_them(split, registry):
    overlap = overlapping_users(split, [SOURCE, TARGET])
    by_hand = sorted(set(split.train.domain(SOURCE).interactions["user"]) & set(split.train.domain(TARGET).interactions["user"]))
    assert overlap.tolist() == by_hand
    assert not set(overlap) & set(split.valid.users), "validation users have no target training rows"
    model, seen = tables(split), []

    def loss(m, batch, gen):
        seen.append(batch["user"].clone())
        return (m.target["user"](batch["user"]) ** 2).sum()

    stage = Stage("map", trains=("target.user",), loss=loss, data=user_rows(overlap), epochs=3, batch_size=5)
    report = run_stage(model, stage, split=split, env=env(registry), score=target_scores(model))
    users = torch.cat(seen)
    assert len(users) == 3 * len(overlap) == report.train_samples
    assert sorted(set(users.tolist())) == by_hand
    for epoch in range(3):  # every epoch visits each overlapping user once
        assert sorted(users[epoch * len(overlap) : (epoch + 1) * len(overlap)].tolist()) == by_hand


def test_domain_pairs_restricted_to_users_and_ratings(split):
    inter = split.train.domain(TARGET).interactions
    some = np.array(sorted(set(inter["user"]))[:3])
    data = domain_pairs(split, TARGET, users=some, ratings=True)
    rows = inter[inter["user"].isin(some)]
    assert data.columns["user"].tolist() == rows["user"].tolist()
    assert data.columns["item"].tolist() == rows["item"].tolist()
    assert data.columns["rating"].tolist() == rows["rating"].astype("float32").tolist()


class ToyMF(StagedRecommender):
    """Source MF, then target MF: enough to exercise fit, score, checkpoints."""

    def __init__(self, *, epochs: int = 2) -> None:
        self.epochs = epochs

    def settings(self):
        return {"epochs": self.epochs}

    def build(self, split, env):
        return tables(split)

    def stages(self, split, model, env):
        return [
            Stage("source", ("source.",), mse_loss("source"), domain_pairs(split, SOURCE, ratings=True), self.epochs, batch_size=16),
            Stage("target", ("target.",), mse_loss("target"), domain_pairs(split, TARGET, ratings=True), self.epochs,
                  batch_size=16, stop=EarlyStopping(patience=1)),
        ]

    def score_users(self, model, users):
        return model.target["user"](users) @ model.target["item"].weight.T


def test_a_staged_recommender_is_deterministic_and_its_checkpoint_restores_it(split, registry, tmp_path):
    first = ToyMF()
    report = first.fit(split, env=env(registry, checkpoint_dir=tmp_path))
    assert [s.name for s in report.stages] == ["source", "target"]
    users = torch.as_tensor(split.valid.users)
    again = ToyMF()
    again.fit(split, env=env(registry))
    assert torch.equal(first.score(users), again.score(users))
    loaded = ToyMF()
    loaded.load_checkpoint(tmp_path / "model.pt", split, env=env(registry))
    assert torch.equal(loaded.score(users), first.score(users))
    out = torch.full((len(users), split.train.domain(TARGET).n_items), float("nan"))
    assert loaded.score(users, out=out) is out and torch.equal(out, first.score(users))
    with pytest.raises(CrossbenchError, match=r"another configuration \(training settings differ: \['epochs'\]\)"):
        ToyMF(epochs=3).load_checkpoint(tmp_path / "model.pt", split, env=env(registry))


def test_mistakes_are_named(split, registry):
    model = tables(split)
    rows = domain_pairs(split, SOURCE, ratings=True)
    with pytest.raises(CrossbenchError, match=r"stage 'x': trains 'sorce\.', which names no parameter"):
        run_stage(model, Stage("x", ("sorce.",), mse_loss("source"), rows, 1), split=split, env=env(registry), score=target_scores(model))
    with pytest.raises(CrossbenchError, match="stage 'x': unknown optimizer"):
        run_stage(model, Stage("x", ("source.",), mse_loss("source"), rows, 1, optimizer="adamw"), split=split,
                  env=env(registry), score=target_scores(model))
    with pytest.raises(CrossbenchError, match="stage names repeat"):
        s = Stage("x", ("source.",), mse_loss("source"), rows, 1)
        run_stages(model, [s, s], split=split, env=env(registry), score=target_scores(model))
    with pytest.raises(CrossbenchError, match="columns differ in length"):
        StageData({"a": torch.zeros(2), "b": torch.zeros(3)})


def test_the_guide_example_runs(split, registry):
    """docs/stages.md's example model fits and scores as the guide says."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "stages.md").read_text(encoding="utf-8")
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(compile(code, "docs/stages.md", "exec"), scope)
    model = scope["MapModel"](epochs=2)
    report = model.fit(split, env=env(registry))
    assert [s.name for s in report.stages] == ["target", "source", "map"]
    assert report.stages[-1].valid_score is not None and report.stages[0].valid_score is None
    users = torch.as_tensor(split.valid.users)
    assert model.score(users).shape == (len(users), split.train.domain(TARGET).n_items)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_stages_run_on_cuda_under_bf16(split, registry):
    model = ToyMF()
    report = model.fit(split, env=RunEnv(registry=registry, seed=0, progress=False, device=torch.device("cuda"), bf16=True))
    users = torch.as_tensor(split.valid.users)
    scores = model.score(users)
    assert scores.device.type == "cuda" and scores.dtype == torch.float32 and torch.isfinite(scores).all()
    assert [s.name for s in report.stages] == ["source", "target"] and report.train_samples > 0
