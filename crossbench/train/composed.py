"""The composed model: item encoders and user encoders per domain, one fusion, one scorer.

Also the per-user inputs it reads: each domain's most recent items (:func:`build_histories`)
and each user's training items of a domain (:func:`train_items`, excluded when ranking).
The trainer is :mod:`crossbench.train.trainer`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from crossbench.data.model import CrossDomainData
from crossbench.plugin.modules import Fusion, ItemEncoder, Scorer, UserEncoder


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
