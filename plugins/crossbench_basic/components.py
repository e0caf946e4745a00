"""The first components' modules: ID embeddings, mean pooling, target-only and shared fusion, dot.

Their factories and specs are in :mod:`crossbench_basic.specs`, which loads this module (and
torch) only when a component is built.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from crossbench.plugin.modules import Fusion, ItemEncoder, Scorer, UserEncoder


class IdItemEncoder(ItemEncoder):
    """One learned vector per item."""

    def __init__(self, *, n_items: int, dim: int, init_std: float = 0.1) -> None:
        super().__init__()
        self.n_items, self.dim = n_items, dim
        self.embedding = nn.Embedding(n_items, dim)
        nn.init.normal_(self.embedding.weight, std=init_std)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.embedding(items)

    def all_items(self) -> torch.Tensor:
        return self.embedding.weight


class MeanUserEncoder(UserEncoder):
    """Masked mean of the history's item vectors (zeros for an empty history)."""

    def forward(self, users: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = mask.to(history.dtype).unsqueeze(-1)
        return (history * w).sum(1) / w.sum(1).clamp(min=1.0)

    def forward_all(self, users: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = mask.to(history.dtype).unsqueeze(-1)
        return (history * w).cumsum(1) / w.cumsum(1).clamp(min=1.0)


class IdUserEncoder(UserEncoder):
    """One learned vector per user (and domain); ignores the history (matrix factorisation)."""

    #: the trainer skips gathering histories for encoders that never read them
    uses_history = False

    def __init__(self, *, n_users: int, dim: int, init_std: float = 0.1) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_users, dim)
        nn.init.normal_(self.embedding.weight, std=init_std)

    def forward(self, users: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.embedding(users)


class TargetOnlyFusion(Fusion):
    """Uses the target domain's user vector alone: no transfer."""

    cross_domain = False
    positions = True

    def forward(self, vectors: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor], target: str) -> torch.Tensor:
        return vectors[target]


class SharedFusion(Fusion):
    """The mean of the user's vectors over every domain where the user has history.

    With per-domain encoders trained jointly on all domains, this is one shared user
    representation (as in collective matrix factorisation): a user cold in the target
    domain is represented by the other domains alone.
    """

    def forward(self, vectors: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor], target: str) -> torch.Tensor:
        total = torch.zeros_like(vectors[target])
        count = torch.zeros_like(vectors[target][:, :1])
        for d, v in vectors.items():
            w = present[d].to(v.dtype).unsqueeze(-1)
            total = total + v * w
            count = count + w
        return total / count.clamp(min=1.0)


class DotScorer(Scorer):
    """Inner product."""

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (users.unsqueeze(-2) * items).sum(-1)

    def score_all(self, users: torch.Tensor, items: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        if out is not None and users.dtype == items.dtype == out.dtype:
            return torch.matmul(users, items.T, out=out)
        return users @ items.T
