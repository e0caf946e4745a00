"""A whole model: target-domain popularity with recent interactions weighted up."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from crossbench.data.protocols import FitSplit
from crossbench.plugin.interfaces import FitReport, Recommender, RunEnv


class RecentPopular(Recommender):
    def __init__(self, *, half_life: float) -> None:
        self.half_life = half_life

    def fit(self, split: FitSplit, *, env: RunEnv) -> FitReport:
        # a FitSplit holds the training data and validation users only: there is no test set to read
        inter = split.train.domain(split.target).interactions
        t = inter["timestamp"].to_numpy(dtype=np.float64)
        span = max(t.max() - t.min(), 1.0)
        weight = 0.5 ** ((t.max() - t) / (self.half_life * span))
        counts = np.bincount(inter["item"].to_numpy(), weights=weight, minlength=split.train.domain(split.target).n_items)
        self.scores = torch.as_tensor(counts, dtype=torch.float32, device=env.device)
        return FitReport()

    def score(self, users: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        rows = self.scores.unsqueeze(0).expand(len(users), -1)
        return rows.clone() if out is None else out.copy_(rows)

    def describe(self) -> dict[str, Any]:
        return {"components": {"recommender": {"name": "recent-popular", "params": {"half_life": self.half_life}}}}

    def reads_source_domains(self) -> bool:
        return False

    def cold_users(self) -> str:
        return "popularity (same list for everyone)"


def recent_popular(*, half_life: float = 1.0) -> RecentPopular:
    return RecentPopular(half_life=half_life)
