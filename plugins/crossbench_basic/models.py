"""Whole-model recommenders: Popularity and the named compositions of basic components."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from crossbench.data.protocols import FitSplit
from crossbench.interfaces import CategoricalParam, ComponentSpec, FitReport, FloatParam, IntParam, Recommender, RunEnv
from crossbench.train import ComponentRef, ComposedRecommender


class Popularity(Recommender):
    """Scores each target item by its number of training interactions."""

    def fit(self, split: FitSplit, *, env: RunEnv) -> FitReport:
        dom = split.train.domain(split.target)
        counts = np.bincount(dom.interactions["item"].to_numpy(), minlength=dom.n_items)
        self.counts = torch.as_tensor(counts, dtype=torch.float32, device=env.device)
        return FitReport()

    def score(self, users: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        rows = self.counts.unsqueeze(0).expand(len(users), -1)
        return rows if out is None else out.copy_(rows)

    def describe(self) -> dict[str, Any]:
        return {"components": {"recommender": {"name": "popularity", "params": {}}}}

    def reads_source_domains(self) -> bool:
        return False

    def cold_users(self) -> str:
        return "popularity (same list for everyone)"


def popularity() -> Popularity:
    """Most popular target items first, the same list for everyone."""
    return Popularity()


TRAINING_SPACE = (
    CategoricalParam("dim", (16, 32, 64, 128)),  # powers of two: every attention head count divides them
    FloatParam("lr", 1e-4, 3e-2, log=True),
    FloatParam("l2", 1e-8, 1e-3, log=True),
    IntParam("negatives", 1, 16, log=True),
    CategoricalParam("batch_size", (256, 512, 1024, 2048)),
)


def mf(
    *, dim: int = 64, epochs: int = 30, batch_size: int = 1024, lr: float = 5e-3, l2: float = 1e-6,
    negatives: int = 4, patience: int = 3, init_std: float = 0.1,
) -> ComposedRecommender:
    """Target-only matrix factorisation (BPR): user-ID and item-ID embeddings, dot product."""
    return ComposedRecommender(
        item_encoder=ComponentRef("id", {"init_std": init_std}), user_encoder=ComponentRef("user-id", {"init_std": init_std}),
        fusion="target-only", scorer="dot", dim=dim, epochs=epochs,
        batch_size=batch_size, lr=lr, l2=l2, negatives=negatives, patience=patience,
    )


def shared_mean(
    *, dim: int = 64, epochs: int = 30, batch_size: int = 1024, lr: float = 5e-3, l2: float = 1e-6,
    negatives: int = 4, history_length: int = 50, target_history_dropout: float = 0.5, patience: int = 3,
) -> ComposedRecommender:
    """Cross-domain: item-ID embeddings per domain, mean-pooled histories, shared-user fusion."""
    return ComposedRecommender(
        item_encoder="id", user_encoder="mean", fusion="shared", scorer="dot", dim=dim, epochs=epochs,
        batch_size=batch_size, lr=lr, l2=l2, negatives=negatives, history_length=history_length,
        target_history_dropout=target_history_dropout, patience=patience,
    )


def cmf(
    *, dim: int = 64, epochs: int = 30, batch_size: int = 1024, lr: float = 5e-3, l2: float = 1e-6,
    negatives: int = 4, target_history_dropout: float = 0.5, patience: int = 3, init_std: float = 0.1,
) -> ComposedRecommender:
    """Collective MF: user-ID embeddings per domain averaged into one shared user vector."""
    return ComposedRecommender(
        item_encoder=ComponentRef("id", {"init_std": init_std}), user_encoder=ComponentRef("user-id", {"init_std": init_std}),
        fusion="shared", scorer="dot", dim=dim, epochs=epochs,
        batch_size=batch_size, lr=lr, l2=l2, negatives=negatives,
        target_history_dropout=target_history_dropout, patience=patience,
    )


_DROPOUT = (FloatParam("target_history_dropout", 0.0, 0.9),)

RECOMMENDERS = (
    ComponentSpec("popularity", popularity, "most popular target items (non-personalised baseline)"),
    ComponentSpec("composed", ComposedRecommender, "any composition of registered components (set each by name)", TRAINING_SPACE + _DROPOUT),
    ComponentSpec("mf", mf, "target-only BPR matrix factorisation", TRAINING_SPACE + (FloatParam("init_std", 0.005, 0.2, log=True),)),
    ComponentSpec("shared-mean", shared_mean, "cross-domain: mean-pooled per-domain histories, shared-user fusion", TRAINING_SPACE + _DROPOUT),
    ComponentSpec(
        "cmf", cmf, "collective matrix factorisation: per-domain user IDs fused into one user",
        TRAINING_SPACE + _DROPOUT + (FloatParam("init_std", 0.005, 0.2, log=True),),
    ),
)
