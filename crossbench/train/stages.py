"""The training base for whole torch models whose training runs in declared stages.

Many published models do not train end to end: EMCDR learns each domain's factors and then
fits a mapping on the overlapping users with those factors held fixed; PTUPCDR pretrains
factors and then meta-learns a bridge. A :class:`StagedRecommender` declares such a
procedure as an ordered list of :class:`Stage` values; :func:`run_stages` runs them with the
parts the composed trainer (:mod:`crossbench.train`) uses too: the core validation metric
(:data:`crossbench.evaluate.validation.VALIDATION_SPEC`, full ranking on validation users,
training items excluded), the ``RunEnv.on_epoch`` pruning callback, checkpoints
(:mod:`crossbench.train.checkpoints`), the progress bar, the device and bf16 autocast on CUDA.

A stage names

- ``trains``: the model's parameters it trains, by name prefix (``"source."`` trains every
  parameter under the submodule ``source``); every other parameter is frozen for the stage
  (``requires_grad`` off, not given to the optimiser), so it leaves the stage bit-identical;
- ``loss(model, batch, generator)``: a scalar loss for one batch;
- ``data``: a :class:`StageData`, aligned row tensors (e.g. one domain's ``user``/``item``
  pairs, or the overlapping users only); each epoch shuffles the rows (seeded) and cuts
  batches of ``batch_size``;
- ``epochs``, the optimiser (``lr``, ``weight_decay``, ``optimizer``) and ``stop``: ``None``
  runs every epoch; :class:`EarlyStopping` validates after each epoch on the validation users
  only, stops after ``patience`` epochs without a better score and restores the best epoch's
  weights.

What "validates" means follows the split's task (``split.evaluation.kind``): under a ranking
protocol, NDCG@``valid_k`` of ``score`` (higher is better); under the rating task
(``cold-start-rating``), the RMSE of the model's ``predict_ratings`` over the validation
users' held-out ratings (lower is better), the same error the run reports on the test users
(:func:`crossbench.evaluate.rating.validation_rmse`).

The test split is never reachable: fitting receives a :class:`~crossbench.data.protocols.FitSplit`.
Stage data helpers live in :mod:`crossbench.train.stages_data`; docs/stages.md is the guide.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from crossbench.data.protocols import FitSplit
from crossbench.errors import CrossbenchError, unknown_name_message
from crossbench.evaluate.rating import RATING_VALIDATION_METRIC
from crossbench.evaluate.validation import VALIDATION_METRIC
from crossbench.plugin.interfaces import FitReport, Recommender, RunEnv
from crossbench.progress import EpochClock, progress_bar
from crossbench.train.checkpoints import read_checkpoint, save_checkpoint
from crossbench.train.distributed import ranks
from crossbench.train.stages_validation import PredictFn, Validator, validation_score, validator

__all__ = [
    "Batch", "EarlyStopping", "LossFn", "PredictFn", "Stage", "StageData", "StageReport", "StagedFitReport",
    "StagedRecommender", "Validator", "autocast", "replace_stage", "run_stage", "run_stages", "validation_score", "validator",
]

#: A batch: the stage data's columns, the rows of this batch.
Batch = Mapping[str, torch.Tensor]
#: ``loss(model, batch, generator)``: a scalar tensor; draw random numbers (negatives) from ``generator``.
#: ``model`` is the module the stage trains (typed ``Any`` so a loss may name its own module class).
LossFn = Callable[[Any, Batch, torch.Generator], torch.Tensor]

OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class StageData:
    """Aligned row tensors a stage trains on: ``columns`` maps a name to a tensor whose first
    dimension is the row (all the same length). Each epoch the rows are shuffled and cut into
    batches; a batch is the same mapping restricted to its rows."""

    columns: Mapping[str, torch.Tensor]

    def __post_init__(self) -> None:
        lengths = {name: len(t) for name, t in self.columns.items()}
        if not lengths:
            raise CrossbenchError("StageData needs at least one column")
        if len(set(lengths.values())) != 1:
            raise CrossbenchError(f"StageData columns differ in length: {lengths}; give every column one entry per row")

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def to(self, device: torch.device) -> StageData:
        return StageData({k: v.to(device) for k, v in self.columns.items()})


@dataclass(frozen=True)
class EarlyStopping:
    """Validate after every epoch on the validation users (core NDCG@``valid_k``, full ranking;
    under the rating task the RMSE of the predicted ratings instead, ``valid_k`` unused); stop
    after ``patience`` epochs without improvement; restore the best epoch's weights."""

    patience: int = 3
    valid_k: int = 10


@dataclass(frozen=True)
class Stage:
    """One training stage: which parameters train (by name prefix), on what data, with which loss and stopping rule."""

    name: str
    trains: tuple[str, ...]
    loss: LossFn
    data: StageData
    epochs: int
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    stop: EarlyStopping | None = None

    def check(self, model: torch.nn.Module) -> None:
        """Raise naming the problem: bad settings, or a prefix that matches no parameter of ``model``."""
        where = f"stage {self.name!r}"
        if self.optimizer not in OPTIMIZERS:
            raise CrossbenchError(f"{where}: " + unknown_name_message("optimizer", self.optimizer, OPTIMIZERS))
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0 or self.weight_decay < 0:
            raise CrossbenchError(
                f"{where}: epochs and batch_size must be >= 1, lr > 0 and weight_decay >= 0; "
                f"got {self.epochs}, {self.batch_size}, {self.lr}, {self.weight_decay}"
            )
        if self.stop is not None and (self.stop.patience < 1 or self.stop.valid_k < 1):
            raise CrossbenchError(f"{where}: early stopping needs patience and valid_k >= 1, got {self.stop}")
        names = [n for n, _ in model.named_parameters()]
        for prefix in self.trains:
            if not any(n.startswith(prefix) for n in names):
                raise CrossbenchError(f"{where}: trains {prefix!r}, which names no parameter of the model (it has {names[:8]}...)")
        if not self.trains:
            raise CrossbenchError(f"{where}: trains nothing; name the parameters it trains by prefix")

    def parameters(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        return [p for n, p in model.named_parameters() if n.startswith(self.trains)]


@dataclass(frozen=True)
class StageReport:
    """What one stage did (a plain record: numbers and names only)."""

    name: str
    epochs: int
    best_epoch: int
    valid_score: float | None
    history: tuple[float, ...]
    train_seconds: float
    train_samples: int
    trained_parameters: int
    frozen_parameters: int

    @property
    def samples_per_second(self) -> float | None:
        return self.train_samples / self.train_seconds if self.train_seconds else None


@dataclass(frozen=True)
class StagedFitReport(FitReport):
    """A :class:`FitReport` whose totals add up the stages, with each stage's own report in ``stages``.

    ``epochs`` counts every stage's epochs; ``history`` and ``valid_score`` are the validated
    epochs of all stages in order and the best score of the last early-stopped stage;
    ``best_epoch`` is that stage's best epoch.
    """

    stages: tuple[StageReport, ...] = ()


def autocast(env: RunEnv | None) -> Any:
    """bf16 autocast where ``env`` asks for it and the device is CUDA; otherwise nothing."""
    if env is not None and env.bf16 and env.device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Counter:
    """Validated epochs across stages, so ``on_epoch`` sees one increasing step number."""

    def __init__(self) -> None:
        self.step = 0


def run_stage(
    model: torch.nn.Module, stage: Stage, *, split: FitSplit, env: RunEnv, score: Callable[..., torch.Tensor],
    counter: _Counter | None = None, predict: PredictFn | None = None,
) -> StageReport:
    """Train ``stage``'s parameters of ``model`` (every other parameter frozen), as described in the module docstring.

    ``predict`` (the model's ``predict_ratings``) is needed only when the stage stops early under the rating task."""
    stage.check(model)
    counter = counter or _Counter()
    params = stage.parameters(model)
    ids = {id(p) for p in params}
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)
    opt_cls = torch.optim.Adam if stage.optimizer == "adam" else torch.optim.SGD
    opt = opt_cls(params, lr=stage.lr, weight_decay=stage.weight_decay)
    data = stage.data.to(env.device)
    dp = ranks()  # one process: every hook of dp below hands back what it is given
    gen, shuffle = dp.start(model, env.seed, env.device)  # one generator in one process
    n = len(data)
    judge = None
    if stage.stop is not None and split.valid.n_users > 0:
        judge = validator(split, k=stage.stop.valid_k, score=score, predict=predict, device=env.device)
    best: float | None = None
    best_state, best_epoch, bad, history, seconds, samples = None, 0, 0, [], 0.0, 0
    metric = f"validation {judge.metric}" if judge is not None else ""
    epoch, clock = 0, EpochClock(stage.epochs, metric=metric, label=f"{stage.name} epoch", enabled=env.progress,
                              lower_is_better=judge is not None and judge.lower_is_better)
    try:
        for epoch in range(1, stage.epochs + 1):
            model.train()
            perm = torch.randperm(n, generator=shuffle, device=env.device)
            starts = range(0, n, stage.batch_size)
            _sync(env.device)
            t0 = time.perf_counter()
            with progress_bar(starts, label=f"{stage.name} {epoch}/{stage.epochs}", enabled=env.progress) as bar:
                for s in bar:
                    idx = dp.local(perm[s : s + stage.batch_size])  # this rank's part of the global batch
                    batch = {k: v[idx] for k, v in data.columns.items()}
                    with autocast(env):
                        loss = stage.loss(model, batch, gen)
                    opt.zero_grad(set_to_none=True)
                    loss.float().backward()
                    dp.reduce_gradients(params, len(idx))
                    opt.step()
                    samples += len(idx)
            _sync(env.device)
            seconds += time.perf_counter() - t0
            if judge is None or stage.stop is None:
                clock.epoch(epoch)
                continue
            model.eval()
            value = dp.agree(judge.measure())  # rank 0's value, on every rank
            history.append(value)
            counter.step += 1
            clock.epoch(epoch, value)
            if (hook := dp.epoch_hook(env.on_epoch)) is not None:
                hook(counter.step, value)
            if judge.better(value, best):
                best, best_epoch, bad = value, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
                if bad >= stage.stop.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(before[name])
    model.eval()
    n_trained = sum(p.numel() for p in params)
    return StageReport(
        name=stage.name, epochs=epoch, best_epoch=best_epoch if history else epoch,
        valid_score=best if history else None, history=tuple(history), train_seconds=seconds, train_samples=dp.total(samples),
        trained_parameters=n_trained, frozen_parameters=sum(p.numel() for p in model.parameters()) - n_trained,
    )


def run_stages(
    model: torch.nn.Module, stages: Sequence[Stage], *, split: FitSplit, env: RunEnv, score: Callable[..., torch.Tensor],
    predict: PredictFn | None = None,
) -> StagedFitReport:
    """Run ``stages`` in order on ``model`` (already on ``env.device``); ``score(users)`` ranks the target
    catalogue for the validation users, and under the rating task ``predict(users, items)`` rates their
    held-out pairs. Returns the stages' reports and their totals."""
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise CrossbenchError(f"stage names repeat: {names}; give each stage its own name")
    counter, reports = _Counter(), []
    for stage in stages:
        reports.append(run_stage(model, stage, split=split, env=env, score=score, counter=counter, predict=predict))
    stopped = [r for r in reports if r.valid_score is not None]
    last = stopped[-1] if stopped else None
    warnings: tuple[str, ...] = ()
    rating = split.evaluation.kind == "rating"
    if last is not None and last.valid_score == 0.0 and not rating:
        warnings = (f"validation {VALIDATION_METRIC} of stage {last.name!r} is exactly 0: the model ranks no validation item in its top k",)
    return StagedFitReport(
        epochs=sum(r.epochs for r in reports), best_epoch=last.best_epoch if last else 0,
        valid_score=last.valid_score if last else None,
        valid_metric=(RATING_VALIDATION_METRIC if rating else f"{VALIDATION_METRIC}@{_valid_k(stages)}") if last else None,
        history=tuple(v for r in reports for v in r.history), threads=torch.get_num_threads(),
        train_seconds=sum(r.train_seconds for r in reports), train_samples=sum(r.train_samples for r in reports),
        warnings=warnings, stages=tuple(reports),
    )


def _valid_k(stages: Sequence[Stage]) -> int:
    ks = [s.stop.valid_k for s in stages if s.stop is not None]
    return ks[-1] if ks else 10


class StagedRecommender(Recommender):
    """A whole torch model trained in declared stages. Subclasses implement four methods:

    - :meth:`settings`: the hyperparameters (what ``describe`` records and checkpoints compare);
    - :meth:`build`: the ``torch.nn.Module`` for a split (built from ``split.train`` only);
    - :meth:`stages`: the stages, in order, for that module and split;
    - :meth:`score_users`: scores ``[len(users), n_target_items]`` of the fitted module.

    :meth:`fit` seeds torch, builds, moves to ``env.device``, runs the stages
    (:func:`run_stages`; under the rating task early stopping reads :meth:`predict_ratings`,
    so a model that stops early there declares ``predicts_ratings()``), and writes ``model.pt`` to ``env.checkpoint_dir`` when one is set.
    """

    model: torch.nn.Module | None = None
    env: RunEnv | None = None

    @abc.abstractmethod
    def settings(self) -> Mapping[str, Any]:
        """Every hyperparameter and its value (JSON-serialisable)."""

    @abc.abstractmethod
    def build(self, split: FitSplit, env: RunEnv) -> torch.nn.Module:
        """The untrained module for ``split`` (read ``split.train`` only)."""

    @abc.abstractmethod
    def stages(self, split: FitSplit, model: torch.nn.Module, env: RunEnv) -> Sequence[Stage]:
        """The training stages, in order."""

    @abc.abstractmethod
    def score_users(self, model: torch.nn.Module, users: torch.Tensor) -> torch.Tensor:
        """Scores of ``users`` (on the model's device) against every target item, float32."""

    # -- the Recommender contract ----------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {"model": type(self).__name__, "training": dict(self.settings())}

    def fit(self, split: FitSplit, *, env: RunEnv) -> FitReport:
        torch.manual_seed(env.seed)
        self.env = env
        self.model = self.build(split, env).to(env.device)
        predict = self.predict_ratings if self.predicts_ratings() else None
        report = run_stages(self.model, self.stages(split, self.model, env), split=split, env=env, score=self.score,
                            predict=predict)
        if env.checkpoint_dir is not None and ranks().writes:
            self.save_checkpoint(Path(env.checkpoint_dir) / "model.pt")
        return report

    def score(self, users: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        if self.model is None:
            raise CrossbenchError(f"{type(self).__name__}: score() called before fit()")
        device = next(iter(self.model.parameters())).device
        with torch.no_grad(), autocast(self.env):
            scores = self.score_users(self.model, users.to(device)).float()
        if out is not None:
            out.copy_(scores)
            return out
        return scores

    # -- checkpoints -----------------------------------------------------------------------

    def save_checkpoint(self, path: Path) -> Path:
        """Write the fitted weights and :meth:`describe` to ``path`` atomically."""
        if self.model is None:
            raise CrossbenchError(f"{type(self).__name__}: save_checkpoint() called before fit()")
        return save_checkpoint(Path(path), state=self.model.state_dict(), describe=self.describe())

    def load_checkpoint(self, path: Path, split: FitSplit, *, env: RunEnv) -> None:
        """Rebuild the module for ``split`` and load weights saved by a model of the same settings."""
        state = read_checkpoint(Path(path), describe=self.describe())
        self.env = env
        self.model = self.build(split, env).to(env.device)
        self.model.load_state_dict(state)
        self.model.eval()


def replace_stage(stage: Stage, **changes: Any) -> Stage:
    """A copy of ``stage`` with ``changes`` (e.g. fewer epochs in a test)."""
    return dataclasses.replace(stage, **changes)
