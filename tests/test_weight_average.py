"""The moving average of the weights (``ema_epochs``): hand-computed values, the swap around
validation, and the trainer validating and keeping the averaged weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crossbench.errors import CrossbenchError
from crossbench.plugin.interfaces import RunEnv
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench.plugin.specs import ComponentRef
from crossbench.train import ComposedRecommender, stages_validation
from crossbench.train.averaging import WeightAverage
from crossbench.train.settings import TrainConfig
from crossbench_protocols import ColdStart
from crossbench_synthetic import SyntheticDataset

REGISTRY = Registry(get_plugin_manager())


def test_average_by_hand_and_the_swap() -> None:
    p = torch.nn.Parameter(torch.tensor([0.0, 10.0]))
    avg = WeightAverage([p], epochs=1.0)  # 2 steps per epoch: keep = 1 - 1/2 = 0.5
    model = torch.nn.Module()
    model.p = p
    for value in ([1.0, 0.0], [3.0, 4.0], [5.0, 8.0]):
        with torch.no_grad():
            p.copy_(torch.tensor(value))
        avg.update(steps_per_epoch=2)
    # first update copies (1, 0); then 0.5 * (1, 0) + 0.5 * (3, 4) = (2, 2); then 0.5 * (2, 2) + 0.5 * (5, 8) = (3.5, 5)
    avg.evaluating(model)
    assert not model.training and p.tolist() == [3.5, 5.0]
    avg.evaluating(model)  # twice in a row keeps the optimiser's weights saved, not the average
    avg.training(model)
    assert model.training and p.tolist() == [5.0, 8.0]


def test_averaging_is_off_by_default_and_set_per_model() -> None:
    # off for every model (the published rows were trained without it); lm-attention takes it as a parameter
    for name in ("lm-attention", "sasrec", "cd-gating", "mf"):
        assert REGISTRY.get("recommenders", name).factory().config.ema_epochs == 0.0
    assert REGISTRY.get("recommenders", "lm-attention").factory(ema_epochs=1.0).config.ema_epochs == 1.0


def test_off_changes_nothing() -> None:
    p = torch.nn.Parameter(torch.tensor([2.0]))
    avg = WeightAverage([p], epochs=0.0)
    avg.update(steps_per_epoch=3)
    model = torch.nn.Module()
    model.p = p
    avg.evaluating(model)
    assert avg.average is None and p.tolist() == [2.0] and not model.training


@pytest.mark.parametrize("value", [-1.0, float("inf")])
def test_bad_horizon_refused(value: float) -> None:
    with pytest.raises(CrossbenchError, match="ema_epochs"):
        TrainConfig(ema_epochs=value).check()


def test_trainer_validates_and_keeps_the_averaged_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = SyntheticDataset(n_users=200, n_items=40, seed=2).load()
    split = ColdStart(target="movies", test_fraction=0.3, valid_fraction=0.1, seed=2).split(data)
    config = TrainConfig(dim=8, l2=0.0, loss="full-softmax", training="sequences", history_length=6, target_history_dropout=0.0,
                         epochs=3, patience=3, batch_size=16, lr=0.01, ema_epochs=0.5)
    rec = ComposedRecommender(item_encoder="id", user_encoder=ComponentRef("transformer", {"layers": 1, "heads": 2, "dropout": 0.0}),
                              fusion="target-only", scorer="dot", config=config)
    raw: list[list[torch.Tensor]] = []  # the optimiser's weights after every step
    update = WeightAverage.update

    def spy(self: WeightAverage, *, steps_per_epoch: int) -> None:
        raw.append([p.detach().clone() for p in self.params])
        spy.steps = steps_per_epoch  # type: ignore[attr-defined]
        update(self, steps_per_epoch=steps_per_epoch)

    seen: list[list[torch.Tensor]] = []  # the weights in place at each validation
    evaluate = stages_validation.evaluate

    def capture(*args, **kw):  # type: ignore[no-untyped-def]
        seen.append([p.detach().clone() for p in rec.model.parameters() if p.requires_grad])
        return evaluate(*args, **kw)

    monkeypatch.setattr(WeightAverage, "update", spy)
    monkeypatch.setattr(stages_validation, "evaluate", capture)  # the trainer validates through it
    report = rec.fit(split.fit_view(), env=RunEnv(registry=REGISTRY, seed=5, progress=False, cache_dir=tmp_path))
    per_epoch = spy.steps  # type: ignore[attr-defined]
    keep = 1.0 - 1.0 / (0.5 * per_epoch)
    expected, averages = [w.clone() for w in raw[0]], []
    for step, weights in enumerate(raw[1:], start=2):
        expected = [keep * e + (1 - keep) * w for e, w in zip(expected, weights)]
        if step % per_epoch == 0:
            averages.append(expected)
    assert len(seen) == 3 and len(raw) == 3 * per_epoch
    for got, want, last_raw in zip(seen, averages, raw[per_epoch - 1 :: per_epoch]):
        assert all(torch.allclose(g, w, atol=1e-6) for g, w in zip(got, want))
        assert any(not torch.allclose(g, r) for g, r in zip(got, last_raw))  # not the optimiser's weights
    kept = [p.detach() for p in rec.model.parameters() if p.requires_grad]
    assert all(torch.equal(k, s) for k, s in zip(kept, seen[report.best_epoch - 1]))
