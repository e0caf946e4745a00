"""The training settings of composed models, defined once: fields, checks, search ranges.

Every composed recommender (an item encoder, a user encoder, a fusion and a scorer trained
by :mod:`crossbench.train.trainer`) takes the same training settings. They are the fields of
:class:`TrainConfig`; a model's factory declares only its own hyperparameters and is wrapped
by :func:`trains`, which adds each field of :class:`TrainConfig` to its signature as a keyword
argument (with the model's own defaults) and hands the factory one ``config`` value. The
search ranges of the settings are :data:`TRAINING_RANGES`; a model's search space picks the
ones it tunes with :func:`training_space`.

This module does not import torch, so plugins can declare models without loading it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from crossbench.errors import CrossbenchError, unknown_name_message
from crossbench.plugin.specs import CategoricalParam, FloatParam, IntParam, Param

LOSSES = ("bpr", "softmax", "full-softmax")
TRAINING_MODES = ("pairs", "sequences")
NEGATIVE_SAMPLING = ("uniform", "popularity")
LR_DECAYS = ("none", "cosine", "linear")


@dataclass(frozen=True)
class TrainConfig:
    """Trainer settings; every field is a hyperparameter of every composed model.

    Model selection is early stopping on the core validation metric
    (:func:`crossbench.evaluate.validation.ndcg_at_k`) at cut-off ``valid_k``.
    """

    dim: int = 64
    epochs: int = 30
    batch_size: int = 1024
    lr: float = 5e-3
    l2: float = 1e-6
    negatives: int = 4
    history_length: int = 50
    target_history_dropout: float = 0.5
    patience: int = 3
    valid_k: int = 10
    loss: str = "bpr"
    sampled_negatives: int = 256
    #: ``pairs``: one (user, item) interaction per training sample, the item masked out of the
    #: history; ``sequences``: all-position training, one pass per user sequence
    #: (:mod:`crossbench.train.sequences`), ``batch_size`` then counts sequences
    training: str = "pairs"
    #: how ``softmax`` draws its shared negatives in ``sequences`` training (with logQ correction)
    negative_sampling: str = "uniform"
    #: linear warm-up of the learning rate, in epochs (fractions allowed): it lasts
    #: ``ceil(warmup_epochs * steps per epoch)`` optimiser steps, step ``s`` (from 0) using
    #: ``lr * (s + 1) / warm-up steps``; 0 = none
    warmup_epochs: float = 0.0
    #: the learning rate after warm-up: ``none`` (constant ``lr``), ``cosine`` or ``linear``
    #: decay from ``lr`` towards ``lr * min_lr_ratio``, over the steps of all ``epochs``
    #: (the full budget: early stopping does not stretch it)
    lr_decay: str = "none"
    #: the fraction of ``lr`` that ``lr_decay`` decays towards
    min_lr_ratio: float = 0.0
    #: the largest global norm of the gradient of one optimiser step (rescaled above it); 0 = off
    clip_norm: float = 0.0
    #: decoupled weight decay (AdamW: each step shrinks every weight by ``lr * weight_decay``
    #: times itself, apart from the gradient); 0 = plain Adam
    weight_decay: float = 0.0
    #: horizon, in epochs of optimiser steps, of the exponential moving average of the weights
    #: that validation scores and early stopping keeps (:mod:`crossbench.train.averaging`); 0 = off
    ema_epochs: float = 0.0
    #: ``sequences`` training: each epoch lists every window this many times, and each listing
    #: trains a random ``1/target_groups`` of the window's targets (drawn afresh per listing: each
    #: target is trained once an epoch in expectation). A batch then holds ``batch_size *
    #: target_groups`` listings with about ``batch_size`` windows' targets, so the steps per epoch
    #: and the targets per step stay, the targets of one step come from that many times more
    #: users, and each window is encoded that many times per epoch (its compute). 1: every
    #: window's targets in one batch (one pass per window and epoch)
    target_groups: int = 1

    def check(self) -> None:
        """Raise a :class:`CrossbenchError` naming every out-of-range setting."""
        problems = []
        if self.loss not in LOSSES:
            problems.append(unknown_name_message("loss", self.loss, LOSSES))
        if self.training not in TRAINING_MODES:
            problems.append(unknown_name_message("training", self.training, TRAINING_MODES))
        if self.negative_sampling not in NEGATIVE_SAMPLING:
            problems.append(unknown_name_message("negative_sampling", self.negative_sampling, NEGATIVE_SAMPLING))
        if self.loss == "full-softmax" and self.training != "sequences":
            problems.append("loss 'full-softmax' needs training='sequences'")
        if self.target_groups > 1 and self.training != "sequences":
            problems.append(f"target_groups={self.target_groups} needs training='sequences' (pairs are single targets already)")
        for name in ("dim", "epochs", "batch_size", "history_length", "patience", "valid_k", "target_groups"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.negatives < 1 or self.sampled_negatives < 0:
            problems.append(f"negatives must be >= 1 and sampled_negatives >= 0, got {self.negatives}, {self.sampled_negatives}")
        if not 0 < self.lr < math.inf:
            problems.append(f"lr must be positive and finite, got {self.lr}")
        if not self.l2 >= 0:
            problems.append(f"l2 must not be negative, got {self.l2}")
        if self.lr_decay not in LR_DECAYS:
            problems.append(unknown_name_message("lr_decay", self.lr_decay, LR_DECAYS))
        problems += self._optimiser_problems()
        if not 0.0 <= self.target_history_dropout < 1.0:
            problems.append(f"target_history_dropout must be in [0, 1), got {self.target_history_dropout}")
        if problems:
            raise CrossbenchError("training settings: " + "; ".join(problems))

    def _optimiser_problems(self) -> list[str]:
        """What is wrong with the learning-rate schedule, clipping and weight decay."""
        out = []
        floats = {name: getattr(self, name) for name in ("warmup_epochs", "min_lr_ratio", "clip_norm", "weight_decay", "ema_epochs")}
        for name, value in floats.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                out.append(f"{name} must be a finite number, got {value!r}")
        if out:
            return out
        if not 0.0 <= self.warmup_epochs <= self.epochs:
            out.append(f"warmup_epochs must be in [0, epochs={self.epochs}], got {self.warmup_epochs}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            out.append(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        for name in ("clip_norm", "weight_decay", "ema_epochs"):
            if getattr(self, name) < 0:
                out.append(f"{name} must not be negative (0 turns it off), got {getattr(self, name)}")
        if math.isfinite(self.lr) and self.weight_decay * self.lr >= 1.0:
            out.append(f"weight_decay * lr must be below 1 (each step shrinks the weights by that fraction), got {self.weight_decay * self.lr}")
        return out


#: The names of the training settings (the fields of :class:`TrainConfig`).
TRAINING_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainConfig))

#: One line of meaning per training setting (what ``crossbench show MODEL`` prints beside it).
TRAINING_MEANINGS: Mapping[str, str] = {
    "dim": "size of every item and user vector",
    "epochs": "most passes over the training data (early stopping may end sooner)",
    "batch_size": "training samples per optimiser step (sequences in 'sequences' training)",
    "lr": "learning rate of Adam (AdamW when weight_decay > 0); the peak of the schedule",
    "l2": "L2 penalty on the vectors a batch uses",
    "negatives": "sampled negative items per positive (bpr loss)",
    "history_length": "most recent items per domain a user encoder reads",
    "target_history_dropout": "probability that a training sample's history in its domain is hidden (teaches the cold-start case)",
    "patience": "validated epochs without improvement before early stopping",
    "valid_k": "cut-off of the validation NDCG used for early stopping",
    "loss": "bpr (against `negatives` per positive), softmax (in-batch + sampled negatives) or full-softmax (whole catalogue)",
    "sampled_negatives": "shared negatives per batch of the softmax loss",
    "training": "pairs (one interaction per sample) or sequences (every position of a user's sequence at once)",
    "negative_sampling": "how softmax draws its negatives in sequences training: uniform or popularity",
    "warmup_epochs": "linear warm-up of the learning rate, in epochs (fractions allowed; 0 = none)",
    "lr_decay": "learning rate after warm-up: none (constant), cosine or linear decay to lr * min_lr_ratio at the last epoch",
    "min_lr_ratio": "fraction of lr that lr_decay ends at",
    "clip_norm": "largest global gradient norm of an optimiser step (0 = no clipping)",
    "weight_decay": "decoupled weight decay of AdamW (0 = plain Adam)",
    "ema_epochs": "horizon in epochs of the moving average of the weights that validation scores and the fit keeps (0 = off)",
    "target_groups": "sequences training: each window listed this many times an epoch, each listing training a random 1/n of its targets (compute x n)",
}

#: The search range of each tunable training setting, shared by every composed model's search space.
TRAINING_RANGES: Mapping[str, Param] = {
    p.name: p
    for p in (
        CategoricalParam("dim", (16, 32, 64, 128)),  # powers of two: every attention head count divides them
        FloatParam("lr", 1e-4, 3e-2, log=True),
        FloatParam("l2", 1e-8, 1e-3, log=True),
        IntParam("negatives", 1, 16, log=True),
        CategoricalParam("batch_size", (256, 512, 1024, 2048)),
        FloatParam("target_history_dropout", 0.0, 0.9),
        CategoricalParam("history_length", (20, 50, 100)),
        FloatParam("warmup_epochs", 0.0, 3.0),
        CategoricalParam("lr_decay", LR_DECAYS),
        CategoricalParam("clip_norm", (0.0, 0.5, 1.0, 5.0)),
        CategoricalParam("weight_decay", (0.0, 1e-4, 1e-3, 1e-2)),
        CategoricalParam("ema_epochs", (0.0, 0.5, 1.0, 2.0)),
        CategoricalParam("target_groups", (1, 2, 4)),
    )
}


def training_space(*names: str, **narrower: Param) -> tuple[Param, ...]:
    """The search space of the training settings ``names`` (then those of ``narrower``), from :data:`TRAINING_RANGES`.

    ``narrower`` replaces a setting's shared range for one model (e.g. the smaller batches of a
    sequence model): ``training_space("dim", batch_size=CategoricalParam("batch_size", (64, 128)))``.
    """
    out: list[Param] = []
    for name in (*names, *narrower):
        if name not in TRAINING_RANGES and name not in narrower:
            raise CrossbenchError(unknown_name_message("tunable training setting", name, TRAINING_RANGES))
        param = narrower.get(name, TRAINING_RANGES.get(name))
        if param is None or param.name != name:
            raise CrossbenchError(f"training_space: the range given for {name!r} is named {getattr(param, 'name', None)!r}")
        out.append(param)
    return tuple(out)


F = TypeVar("F", bound=Callable[..., Any])


def trains(defaults: TrainConfig | None = None) -> Callable[[F], F]:
    """Decorate the factory of a composed model: it takes every training setting as a keyword argument.

    The decorated factory declares its own hyperparameters and a keyword ``config:
    TrainConfig``. The factory it returns has the decorated one's hyperparameters followed by
    each field of :class:`TrainConfig` (typed, with the defaults of ``defaults``, the field
    defaults if ``None``), collects the training settings it is called with into one
    :class:`TrainConfig` and passes it as ``config``. The signature (what ``crossbench list``,
    ``--model-param`` and tuning read) is therefore the model's own keywords plus the one shared
    set of training settings.
    """
    base = defaults if defaults is not None else TrainConfig()
    hints = typing.get_type_hints(TrainConfig)

    def wrap(fn: F) -> F:
        sig = inspect.signature(fn)
        if "config" not in sig.parameters:
            raise TypeError(f"{fn.__qualname__}: a factory decorated with @trains takes a keyword 'config'")
        own = [p for name, p in sig.parameters.items() if name != "config"]
        clash = sorted({p.name for p in own} & set(TRAINING_FIELDS))
        if clash:
            raise TypeError(f"{fn.__qualname__}: {clash} are training settings; drop them from the factory (they come from TrainConfig)")
        settings = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=getattr(base, name), annotation=hints[name])
            for name in TRAINING_FIELDS
        ]

        @functools.wraps(fn)
        def factory(**kwargs: Any) -> Any:
            settings_given = {k: kwargs.pop(k) for k in list(kwargs) if k in TRAINING_FIELDS}
            return fn(**kwargs, config=dataclasses.replace(base, **settings_given))

        factory.__signature__ = sig.replace(parameters=[*own, *settings])  # type: ignore[attr-defined]
        factory.__annotations__ = {
            **{k: v for k, v in fn.__annotations__.items() if k != "config"},
            **{name: hints[name] for name in TRAINING_FIELDS},
        }
        return factory  # type: ignore[return-value]

    return wrap
