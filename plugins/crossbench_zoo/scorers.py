"""Scorers: cosine similarity with a temperature, and an MLP over user-item pairs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from crossbench.plugin.modules import Scorer


class CosineScorer(Scorer):
    """``cos(u, i) / temperature``."""

    def __init__(self, *, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (F.normalize(users, dim=-1).unsqueeze(-2) * F.normalize(items, dim=-1)).sum(-1) / self.temperature

    def score_all(self, users: torch.Tensor, items: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        u, i = F.normalize(users, dim=-1), F.normalize(items, dim=-1)
        if out is not None and u.dtype == i.dtype == out.dtype:
            return torch.matmul(u, i.T, out=out).div_(self.temperature)
        return u @ i.T / self.temperature


class MlpScorer(Scorer):
    """An MLP over ``[u, i, u * i]`` plus the dot product (so it starts as a dot scorer).

    Full ranking is computed over blocks of items so that the ``[users, items, 3 dim]``
    features never exceed ``max_elements`` numbers at once.
    """

    def __init__(self, *, dim: int, hidden: int, max_elements: int = 1 << 24) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3 * dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.max_elements = max_elements

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        u = users.unsqueeze(-2).expand_as(items)
        feats = torch.cat([u, items, u * items], dim=-1)
        return self.net(feats).squeeze(-1) + (u * items).sum(-1)

    def score_all(self, users: torch.Tensor, items: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = users.shape[0], items.shape[0], users.shape[1]
        block = max(1, self.max_elements // max(1, b * 3 * d))
        for start in range(0, n, block):
            chunk = items[start : start + block]
            part = self.forward(users, chunk.unsqueeze(0).expand(b, -1, -1))
            if out is None:
                out = part.new_empty(b, n)
            out[:, start : start + block] = part
        return out if out is not None else users.new_zeros(b, 0)
