"""Popularity, the non-personalised baseline (its factory and spec are in :mod:`crossbench_basic.specs`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from crossbench.data.protocols import FitSplit
from crossbench.plugin.interfaces import FitReport, Recommender, RunEnv


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
