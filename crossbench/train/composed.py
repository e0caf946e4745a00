"""The composed model: item encoders and user encoders per domain, one fusion, one scorer.

Also the per-user inputs it reads: each domain's most recent items (:func:`build_histories`)
and each user's training items of a domain (:func:`train_items`, excluded when ranking),
and the optimiser that trains it (:func:`make_optimizer`, :class:`StepSchedule`,
:func:`backward_step`). The trainer is :mod:`crossbench.train.trainer`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from crossbench.data.model import CrossDomainData
from crossbench.plugin.modules import Fusion, ItemEncoder, Scorer, UserEncoder
from crossbench.train.settings import TrainConfig


def build_histories(data: CrossDomainData, length: int) -> dict[str, torch.Tensor]:
    """Per domain, ``[n_users, length]`` item indices (most recent last, ``-1`` padding on the left)."""
    out: dict[str, torch.Tensor] = {}
    for name, dom in data.domains.items():
        inter = dom.interactions.sort_values(["user", "timestamp"], kind="stable")
        users = inter["user"].to_numpy()
        items = inter["item"].to_numpy()
        hist = np.full((data.n_users, length), -1, dtype=np.int64)
        if len(users):
            ends = np.searchsorted(users, users, side="right")
            pos_from_end = ends - 1 - np.arange(len(users))  # 0 for the most recent
            keep = pos_from_end < length
            hist[users[keep], length - 1 - pos_from_end[keep]] = items[keep]
        out[name] = torch.from_numpy(hist)
    return out


def reads_history(encoder: nn.Module) -> bool:
    """False for user encoders that declare ``uses_history = False`` (e.g. user-ID embeddings)."""
    return bool(getattr(encoder, "uses_history", True))


class ComposedModel(nn.Module):
    """Item encoders and user encoders per domain, one fusion, one scorer."""

    def __init__(
        self,
        *,
        item_encoders: Mapping[str, ItemEncoder],
        user_encoders: Mapping[str, UserEncoder],
        fusion: Fusion,
        scorer: Scorer,
    ) -> None:
        super().__init__()
        self.item_encoders = nn.ModuleDict(dict(item_encoders))
        self.user_encoders = nn.ModuleDict(dict(user_encoders))
        self.fusion = fusion
        self.scorer = scorer

    def domains_for(self, target: str) -> list[str]:
        return list(self.item_encoders) if self.fusion.cross_domain else [target]

    def user_vectors(
        self,
        users: torch.Tensor,
        histories: Mapping[str, torch.Tensor],
        masks: Mapping[str, torch.Tensor],
        target: str,
        present: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Encode every domain's history and fuse. ``present[d]`` defaults to ``masks[d].any(1)``."""
        vectors, pres, items = {}, {}, {}
        skip_sources = self.fusion.item_level and not self.fusion.pooled_sources
        for d, hist in histories.items():
            items[d] = self.item_encoders[d](hist.clamp(min=0))
            if skip_sources and d != target:
                vectors[d] = items[d].new_zeros(items[d].shape[0], items[d].shape[-1])
            else:
                vectors[d] = self.user_encoders[d](users, items[d], masks[d])
            pres[d] = present[d] if present is not None else masks[d].any(1)
        if self.fusion.item_level:
            return self.fusion(vectors, pres, target, items=items, item_masks=dict(masks))
        return self.fusion(vectors, pres, target)


# -- the optimiser: Adam or AdamW, a learning-rate schedule per step, gradient clipping ---------


def make_optimizer(params: list[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """Adam at ``config.lr`` (no weight decay, as before these settings existed), or AdamW with the
    decoupled ``config.weight_decay`` when it is positive."""
    if config.weight_decay > 0:
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr)


@dataclass(frozen=True)
class StepSchedule:
    """The learning-rate factor of each optimiser step: linear warm-up, then constant or decaying.

    Step ``s`` (counted from 0 over the whole fit) uses ``lr * factor(s)``: ``(s + 1) / warmup_steps``
    during the warm-up, then ``1`` (``decay="none"``) or ``r + (1 - r) * shape(p)`` with
    ``p = (s - warmup_steps) / (total_steps - warmup_steps)``, ``r = min_ratio`` and ``shape``
    ``(1 + cos(pi p)) / 2`` (cosine) or ``1 - p`` (linear).
    """

    warmup_steps: int
    total_steps: int
    decay: str = "none"
    min_ratio: float = 0.0

    @classmethod
    def of(cls, config: TrainConfig, steps_per_epoch: int) -> StepSchedule:
        """The schedule of ``config`` for ``config.epochs`` epochs of ``steps_per_epoch`` steps."""
        warmup = math.ceil(config.warmup_epochs * steps_per_epoch - 1e-9) if config.warmup_epochs > 0 else 0
        return cls(warmup, config.epochs * steps_per_epoch, config.lr_decay, config.min_lr_ratio)

    @property
    def constant(self) -> bool:
        """True when every step uses ``lr`` itself (the learning rate is then never touched)."""
        return self.warmup_steps == 0 and self.decay == "none"

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = self.total_steps - self.warmup_steps
        if self.decay == "none" or span <= 0:
            return 1.0
        p = min(1.0, (step - self.warmup_steps) / span)
        shape = 0.5 * (1.0 + math.cos(math.pi * p)) if self.decay == "cosine" else 1.0 - p
        return self.min_ratio + (1.0 - self.min_ratio) * shape


def optimiser_step(
    opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], *, lr: float | None, clip_norm: float
) -> None:
    """One step of ``opt`` at learning rate ``lr`` (``None``: leave it as it is), the gradient of
    ``params`` first rescaled to a global norm of at most ``clip_norm`` (``0``: not clipped)."""
    if lr is not None:
        for group in opt.param_groups:
            group["lr"] = lr
    if clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
    opt.step()


def backward_step(
    opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], loss: torch.Tensor, *,
    config: TrainConfig, schedule: StepSchedule, step: int, reduce: Callable[[], None] | None = None,
) -> None:
    """Back-propagate ``loss`` and take optimiser step ``step`` of ``schedule`` (the learning rate
    is left untouched when the schedule is constant), clipped to ``config.clip_norm``; ``reduce()``,
    when given, runs between the two (the gradients' all-reduce of data-parallel training)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if reduce is not None:
        reduce()
    lr = None if schedule.constant else config.lr * schedule.factor(step)
    optimiser_step(opt, params, lr=lr, clip_norm=config.clip_norm)
