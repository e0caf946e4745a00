"""The component interfaces of the pipeline and what the core hands a component.

    item text / ids  -> ItemEncoder -> item vectors (one domain)
    user history     -> UserEncoder -> one vector per user per domain
    per-domain users -> Fusion      -> one vector per user for the target domain
    users x items    -> Scorer      -> scores
    whole models     -> Recommender (fit on a split, score users x target items)

Components are built by the factory of a spec (:mod:`crossbench.plugin.specs`) that a
plugin returns from a hook.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from crossbench.data.model import CrossDomainData
    from crossbench.data.protocols import FitSplit
    from crossbench.plugin.registry import Registry
    from crossbench.plugin.specs import ComponentRef

#: The ``torch.nn.Module`` interfaces, defined in :mod:`crossbench.plugin.modules` and loaded on first use
#: so that importing this module (every plugin does) does not import torch.
_MODULES = ("Fusion", "ItemEncoder", "ItemLevelFusion", "Scorer", "UserEncoder")


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        from crossbench.plugin import modules

        return getattr(modules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# --------------------------------------------------------------------------- contexts


@dataclass(frozen=True)
class BuildContext:
    """What a component may know when it is built: the training data only, never the test set."""

    data: CrossDomainData
    target: str
    dim: int
    cache_dir: Path


@dataclass(frozen=True)
class RunEnv:
    """How a recommender is fitted: device, seed, threads, progress display, plugin registry."""

    registry: Registry
    device: torch.device = field(default_factory=lambda: _cpu())
    seed: int = 0
    progress: bool = True
    cache_dir: Path = Path(".crossbench-cache")
    #: run the forward passes of composed models under bf16 autocast (CUDA only; ignored on CPU)
    bf16: bool = False
    #: where composed models write their best checkpoint (``None``: no checkpoint file)
    checkpoint_dir: Path | None = None
    #: called by trainer-based models after each epoch's validation as ``on_epoch(epoch, value)``;
    #: it may raise to stop fitting (tuning raises ``optuna.TrialPruned`` to prune a trial)
    on_epoch: Callable[[int, float], None] | None = None


def _cpu() -> torch.device:
    import torch

    return torch.device("cpu")


@dataclass(frozen=True)
class FitReport:
    """What fitting did: epochs run, the best epoch on validation, and the validation score."""

    epochs: int = 0
    best_epoch: int = 0
    valid_score: float | None = None
    valid_metric: str | None = None
    history: tuple[float, ...] = ()
    #: mean training loss of each epoch's optimiser steps (trainers that record it; empty otherwise)
    train_loss: tuple[float, ...] = ()
    #: torch intra-op threads during fitting (``torch.get_num_threads()``), recorded beside the timings
    threads: int | None = None
    #: seconds spent in training steps (validation excluded) and the training samples they processed
    train_seconds: float | None = None
    train_samples: int = 0
    #: what went wrong without failing the fit (e.g. stopped early on a zero validation metric)
    warnings: tuple[str, ...] = ()

    @property
    def samples_per_second(self) -> float | None:
        """Training throughput: positive training pairs per second of training steps."""
        if not self.train_seconds:
            return None
        return self.train_samples / self.train_seconds


# --------------------------------------------------------------------------- components


class Dataset(abc.ABC):
    """A source of cross-domain data. ``load`` returns a validated :class:`CrossDomainData`."""

    @abc.abstractmethod
    def load(self) -> CrossDomainData:
        """Read (and where needed, generate) the data."""


class Recommender(abc.ABC):
    """A whole model: fitted on a split's training data, scores users against the target catalogue.

    Each model is built once when an experiment is checked, and that instance is fitted in its
    first run: a constructor stores its hyperparameters and draws nothing at random (weights
    are made in ``fit``, after the run has seeded torch).
    """

    @abc.abstractmethod
    def fit(self, split: FitSplit, *, env: RunEnv) -> FitReport:
        """Learn from ``split.train`` and select on ``split.valid``; a :class:`FitSplit` holds no test set."""

    @abc.abstractmethod
    def score(self, users: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``[len(users), n_target_items]`` (float32, higher is better) on the fit device.

        ``out``, when given, is a float32 tensor of that shape on the fit device that the
        evaluator reuses from chunk to chunk: write the scores into it and return it, and no
        large score matrix is allocated per chunk. Ignoring it (returning a new tensor) is
        allowed; a ``score`` without the keyword is called without it.
        """

    def check(self, env: RunEnv, *, where: str) -> None:
        """Refuse a bad setting before any work, with a :class:`~crossbench.errors.CrossbenchError`
        naming ``where`` (e.g. a component name the registry does not know).

        Called once per model when an experiment is checked, before any data is loaded; the
        default checks nothing (the factory's keywords are already checked by name and type).
        """
        return None

    def update(self, split: FitSplit, *, env: RunEnv) -> FitReport:
        """Learn again after the feedback loop appended interactions to ``split.train``.

        ``split`` is the split of the last fit with new target-domain interactions (later than
        every training timestamp) added to its training data. How to update is the model's own
        choice: trainer-based models fine-tune from their current weights; the default refits
        from scratch (``fit``), which closed-form models keep.
        """
        return self.fit(split, env=env)

    def describe(self) -> Mapping[str, Any]:
        """Components and hyperparameters for the run record."""
        return {}

    def reads_source_domains(self) -> bool | None:
        """Whether scoring a user reads their history in domains other than the target.

        Shown in leaderboards beside the model; ``None`` (the default) means not declared.
        """
        return None

    def cold_users(self) -> str | None:
        """How a user with no target-domain history is scored, in a few words.

        For example ``"from source-domain history"``, ``"popularity fallback"`` or
        ``"cannot serve (all scores tied)"``. Shown in leaderboards; ``None`` (the default)
        means not declared.
        """
        return None

    def cold_items(self) -> bool:
        """Whether an item with no training interaction (a new item, known by its text only) gets a score
        learned from something other than its interactions, e.g. its text.

        ``False`` (the default, every ID-only model) means a new item's score carries nothing about it;
        under a protocol that holds items out (``new-items``) such rows are run and marked in the table.
        Asked after ``fit``.
        """
        return False

    def predicts_ratings(self) -> bool:
        """Whether :meth:`predict_ratings` returns rating estimates (on the data's rating scale).

        Only such models run under a rating protocol (``cold-start-rating``: MAE, RMSE); the
        default ``False`` means the model only ranks.
        """
        return False

    def predict_ratings(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The predicted rating of each aligned (user, target item) pair, ``[len(users)]`` float,
        after ``fit``. Only called when :meth:`predicts_ratings` is true."""
        from crossbench.errors import CrossbenchError

        raise CrossbenchError(f"{type(self).__name__} does not predict ratings (predicts_ratings() is false)")

    def components(self) -> Mapping[str, ComponentRef]:
        """Role (a key of :data:`COMPONENT_ROLES`) -> the registered component this model builds.

        Whole models that are not built from components return ``{}`` (the default).
        """
        return {}

    def set_component_params(self, role: str, params: Mapping[str, Any]) -> None:
        """Merge ``params`` into the hyperparameters of the component in ``role`` (before fitting)."""
        from crossbench.errors import CrossbenchError

        raise CrossbenchError(f"{type(self).__name__} is not built from components; it has no {role!r} to set")
