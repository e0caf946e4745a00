"""The optimiser of composed models: learning-rate warm-up and decay per step, gradient clipping,
decoupled weight decay, their checks, and plain Adam (bit for bit) at the defaults."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from crossbench.cli import CliState, cli
from crossbench.data.protocols import Split
from crossbench.errors import CrossbenchError
from crossbench.plugin.interfaces import RunEnv
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench.plugin.specs import ComponentRef
from crossbench.train import ComposedRecommender
from crossbench.train import composed as composed_module
from crossbench.train import trainer as trainer_module
from crossbench.train.composed import StepSchedule, make_optimizer, optimiser_step
from crossbench.train.sequences import sequence_windows
from crossbench.train.settings import TrainConfig
from crossbench_protocols import ColdStart
from crossbench_synthetic import SyntheticDataset

REGISTRY = Registry(get_plugin_manager())
TARGET = "movies"

# By hand: 3 epochs of 2 steps, warm-up 1 epoch (2 steps), lr 0.01, decay to 0.1 * lr.
# Warm-up: (s + 1) / 2. After it p = (s - 2) / 4 for s = 2..5, i.e. 0, 1/4, 1/2, 3/4.
# cosine: 0.1 + 0.9 * (1 + cos(pi p)) / 2 = 1, 0.1 + 0.9 * 0.8535534, 0.55, 0.1 + 0.9 * 0.1464466
# linear: 0.1 + 0.9 * (1 - p)            = 1, 0.775, 0.55, 0.325
COSINE_LRS = [0.005, 0.01, 0.01, 0.0086819805, 0.0055, 0.0023180195]
LINEAR_LRS = [0.005, 0.01, 0.01, 0.00775, 0.0055, 0.00325]


@pytest.fixture(scope="module")
def split() -> Split:
    data = SyntheticDataset(n_users=200, n_items=40, seed=2).load()
    return ColdStart(target=TARGET, test_fraction=0.3, valid_fraction=0.1, seed=2).split(data)


def run_env(tmp_path: Path) -> RunEnv:
    return RunEnv(registry=REGISTRY, seed=5, progress=False, cache_dir=tmp_path)


def sequence_model(**settings: Any) -> ComposedRecommender:
    """A small SASRec-like model trained on all positions (the trainer of ``sasrec`` and ``lm-attention``)."""
    config = TrainConfig(
        dim=8, l2=0.0, loss="full-softmax", training="sequences", history_length=6, target_history_dropout=0.0,
        **settings,
    )
    return ComposedRecommender(
        item_encoder="id", user_encoder=ComponentRef("transformer", {"layers": 1, "heads": 2, "dropout": 0.0}),
        fusion="target-only", scorer="dot", config=config,
    )


def params_of(rec: ComposedRecommender) -> dict[str, torch.Tensor]:
    assert rec.model is not None
    return {k: v.detach().clone() for k, v in rec.model.state_dict().items()}


def test_schedule_factor_by_hand() -> None:
    cosine = StepSchedule(warmup_steps=2, total_steps=6, decay="cosine", min_ratio=0.1)
    linear = StepSchedule(warmup_steps=2, total_steps=6, decay="linear", min_ratio=0.1)
    assert [0.01 * cosine.factor(s) for s in range(6)] == pytest.approx(COSINE_LRS, abs=1e-10)
    assert [0.01 * linear.factor(s) for s in range(6)] == pytest.approx(LINEAR_LRS, abs=1e-12)
    warm_only = StepSchedule(warmup_steps=4, total_steps=10)
    assert [warm_only.factor(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    # warm-up in epochs: 0.5 epoch of 3 steps is ceil(1.5) = 2 steps; 0.1 epoch of 10 steps is 1 step
    assert StepSchedule.of(TrainConfig(epochs=4, warmup_epochs=0.5), 3) == StepSchedule(2, 12, "none", 0.0)
    assert StepSchedule.of(TrainConfig(epochs=2, warmup_epochs=0.1), 10).warmup_steps == 1
    assert StepSchedule.of(TrainConfig(), 7).constant


@pytest.mark.parametrize(("decay", "expected"), [("cosine", COSINE_LRS), ("linear", LINEAR_LRS)])
def test_trainer_sets_the_learning_rate_of_every_step(
    decay: str, expected: list[float], split: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n_windows = len(sequence_windows(split.train.domain(TARGET).interactions, 6)[0])
    batch_size = math.ceil(n_windows / 2)  # two steps per epoch
    assert math.ceil(n_windows / batch_size) == 2
    seen: list[float] = []

    def record(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], *, lr: float | None, clip_norm: float) -> None:
        optimiser_step(opt, params, lr=lr, clip_norm=clip_norm)
        seen.append(opt.param_groups[0]["lr"])

    monkeypatch.setattr(composed_module, "optimiser_step", record)
    rec = sequence_model(
        epochs=3, patience=3, batch_size=batch_size, lr=0.01, warmup_epochs=1.0, lr_decay=decay, min_lr_ratio=0.1
    )
    report = rec.fit(split, env=run_env(tmp_path))
    assert report.epochs == 3
    assert seen == pytest.approx(expected, abs=1e-10)


def test_clipping_bounds_a_hand_made_gradient() -> None:
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([30.0, 40.0, 0.0])  # norm 50
    opt = torch.optim.SGD([p], lr=1.0)
    optimiser_step(opt, [p], lr=None, clip_norm=1.0)
    assert float(p.grad.norm()) == pytest.approx(1.0, rel=1e-6)
    assert p.detach().tolist() == pytest.approx([-0.6, -0.8, 0.0], rel=1e-6)
    q = torch.nn.Parameter(torch.zeros(2))
    q.grad = torch.tensor([0.3, 0.4])  # norm 0.5: below the bound, left as it is
    optimiser_step(torch.optim.SGD([q], lr=1.0), [q], lr=None, clip_norm=1.0)
    assert q.detach().tolist() == pytest.approx([-0.3, -0.4], rel=1e-7)


def test_trainer_clips_every_step(split: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    norms: list[float] = []

    def record(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], *, lr: float | None, clip_norm: float) -> None:
        before = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None])))
        optimiser_step(opt, params, lr=lr, clip_norm=clip_norm)
        after = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None])))
        norms.append(after)
        assert before > 0.01  # the bound acts: every raw gradient is larger
        assert after == pytest.approx(0.01, rel=1e-4)

    monkeypatch.setattr(composed_module, "optimiser_step", record)
    sequence_model(epochs=1, batch_size=32, clip_norm=0.01).fit(split, env=run_env(tmp_path))
    assert len(norms) > 1


def test_weight_decay_is_decoupled() -> None:
    lr, wd = 0.1, 0.01
    p = torch.nn.Parameter(torch.full((4,), 2.0))
    opt = make_optimizer([p], TrainConfig(lr=lr, weight_decay=wd))
    assert isinstance(opt, torch.optim.AdamW)
    p.grad = torch.zeros(4)
    opt.step()
    # the Adam part moves nothing (zero gradient); the decay shrinks by exactly lr * wd
    assert torch.equal(p.detach(), torch.full((4,), 2.0) * (1 - lr * wd))
    assert p.detach().tolist() == pytest.approx([1.998] * 4, rel=1e-7)
    # coupled (L2 in the gradient), Adam would normalise the decay into a step of about lr
    coupled = torch.nn.Parameter(torch.full((4,), 2.0))
    adam = torch.optim.Adam([coupled], lr=lr, weight_decay=wd)
    coupled.grad = torch.zeros(4)
    adam.step()
    assert coupled.detach().tolist() == pytest.approx([1.9] * 4, rel=1e-6)
    assert type(make_optimizer([p], TrainConfig())) is torch.optim.Adam  # the default: plain Adam, as before


def test_defaults_train_exactly_as_plain_adam(split: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the defaults the fitted weights equal, bit for bit, those of the loop before these settings:
    ``torch.optim.Adam(params, lr)``, then ``zero_grad``, ``backward``, ``step``."""
    settings = {"epochs": 2, "batch_size": 32}
    fitted = sequence_model(**settings)
    fitted.fit(split, env=run_env(tmp_path))

    def plain_step(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], *, lr: float | None, clip_norm: float) -> None:
        opt.step()

    with monkeypatch.context() as m:
        m.setattr(trainer_module, "make_optimizer", lambda params, cfg: torch.optim.Adam(params, lr=cfg.lr))
        m.setattr(composed_module, "optimiser_step", plain_step)
        plain = sequence_model(**settings)
        plain.fit(split, env=run_env(tmp_path))
    mine, theirs = params_of(fitted), params_of(plain)
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    # and the settings do act: clipping alone changes the weights
    clipped = sequence_model(**settings, clip_norm=0.01)
    clipped.fit(split, env=run_env(tmp_path))
    assert any(not torch.equal(mine[k], v) for k, v in params_of(clipped).items())


@pytest.mark.parametrize(
    ("setting", "value", "fragment"),
    [
        ("warmup_epochs", -1.0, "warmup_epochs must be in [0, epochs=30], got -1.0"),
        ("warmup_epochs", 31.0, "warmup_epochs must be in [0, epochs=30], got 31.0"),
        ("warmup_epochs", float("nan"), "warmup_epochs must be a finite number, got nan"),
        ("lr_decay", "step", "lr_decay"),
        ("min_lr_ratio", 1.5, "min_lr_ratio must be in [0, 1], got 1.5"),
        ("clip_norm", -1.0, "clip_norm must not be negative (0 turns it off), got -1.0"),
        ("clip_norm", float("inf"), "clip_norm must be a finite number, got inf"),
        ("weight_decay", -0.1, "weight_decay must not be negative"),
        ("weight_decay", float("nan"), "weight_decay must be a finite number, got nan"),
        ("weight_decay", 1000.0, "weight_decay * lr must be below 1"),
        ("lr", float("inf"), "lr must be positive and finite, got inf"),
    ],
)
def test_invalid_settings_refused_in_one_line(setting: str, value: Any, fragment: str) -> None:
    with pytest.raises(CrossbenchError) as err:
        TrainConfig(**{setting: value}).check()
    message = str(err.value)
    assert "\n" not in message and fragment in message


def test_cli_refuses_a_bad_setting_before_any_work(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        cli, ["run", "--model", "sasrec", "--model-param", "clip_norm=-1", "--seeds", "0", "-q", "--output", str(tmp_path / "r")],
        obj=CliState(),
    )
    lines = [ln for ln in out.output.splitlines() if ln.strip()]
    assert out.exit_code == 2 and len(lines) == 1, out.output
    assert "clip_norm must not be negative" in lines[0]
    assert not (tmp_path / "r").exists()


def test_a_checkpoint_saved_before_the_schedule_settings_loads_as_trained_with_their_defaults(tmp_path) -> None:
    import dataclasses

    from crossbench.train.checkpoints import ADDED_SETTINGS, read_checkpoint, save_checkpoint
    from crossbench.train.settings import TrainConfig

    assert {k: getattr(TrainConfig(), k) for k in ADDED_SETTINGS} == ADDED_SETTINGS  # defaults = old behaviour
    training = dataclasses.asdict(TrainConfig())
    old = {k: v for k, v in training.items() if k not in ADDED_SETTINGS}  # as written before they existed
    state = {"w": torch.arange(3.0)}
    path = save_checkpoint(tmp_path / "old.pt", state=state, describe={"components": {"x": 1}, "training": old})
    loaded = read_checkpoint(path, describe={"components": {"x": 1}, "training": training})
    assert torch.equal(loaded["w"], state["w"])
    with pytest.raises(CrossbenchError, match=r"training settings differ: \['clip_norm'\]"):
        read_checkpoint(path, describe={"components": {"x": 1}, "training": {**training, "clip_norm": 1.0}})
