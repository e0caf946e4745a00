"""A fusion in a few lines: a learned weight per domain, averaged over the domains a user has."""

from __future__ import annotations

import torch
from torch import nn

from crossbench.plugin.interfaces import BuildContext, Fusion


class MeanGate(Fusion):
    def __init__(self, domains: list[str], dim: int) -> None:
        super().__init__()
        self.weight = nn.ParameterDict({d: nn.Parameter(torch.ones(())) for d in domains})
        self.out = nn.Linear(dim, dim)

    def forward(self, vectors, present, target):  # type: ignore[no-untyped-def]
        total, count = 0.0, 0.0
        for d, v in vectors.items():
            m = present[d].unsqueeze(1).to(v.dtype)  # 0 where the user has no history in d
            total, count = total + self.weight[d] * v * m, count + m
        return self.out(total / torch.clamp(count, min=1.0))  # no history anywhere: the bias, finite


def mean_gate(*, context: BuildContext) -> MeanGate:
    return MeanGate(context.data.domain_names, context.dim)
