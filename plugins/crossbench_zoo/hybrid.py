"""The reference big model as a whole: pretrain-then-finetune, plus an optional item-item term.

:class:`LmAttention` is :class:`crossbench.train.pretrain.PretrainedRecommender` (the composed
model, its encoders optionally pretrained) with one hybrid part: with ``item_item_weight`` > 0
an EASE item-item model over every domain's training items (:class:`crossbench_zoo.neighbours.EASE`,
``domains="all"``, ridge ``item_item_l2``) is fitted first, and every score the model gives
(validation during fine-tuning included, so early stopping selects the neural part *in* the
combination) is

    z(neural scores) + item_item_weight * z(item-item scores)

where ``z`` standardises each user's scores over the target catalogue (mean 0, standard
deviation 1), so that the weight does not depend on the scale of either part. With
``item_item_weight == 0`` nothing of this runs and the model is the composed one, bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from crossbench.data.protocols import FitSplit
from crossbench.errors import CrossbenchError
from crossbench.plugin.interfaces import FitReport, RunEnv
from crossbench.train.pretrain import PretrainedRecommender
from crossbench_zoo import neighbours
from crossbench_zoo.neighbours import EASE


def standardised(scores: torch.Tensor) -> torch.Tensor:
    """Each row minus its mean, divided by its standard deviation (rows without spread: zeros)."""
    centred = scores - scores.mean(dim=1, keepdim=True)
    spread = centred.pow(2).mean(dim=1, keepdim=True).sqrt()
    return centred / spread.clamp(min=1e-12) * (spread > 1e-12).to(scores.dtype)


class LmAttention(PretrainedRecommender):
    """``lm-attention``: the pretrained-then-fine-tuned composed model, optionally with an EASE item-item term."""

    def __init__(self, *, item_item_weight: float = 0.0, item_item_l2: float = 3000.0, **composed: Any) -> None:
        super().__init__(**composed)
        if not 0.0 <= item_item_weight < float("inf"):
            raise CrossbenchError(f"lm-attention: item_item_weight must be a finite number >= 0 (0 = off), got {item_item_weight}")
        if not item_item_l2 > 0:
            raise CrossbenchError(f"lm-attention: item_item_l2 must be positive, got {item_item_l2}")
        self.item_item_weight, self.item_item_l2 = float(item_item_weight), float(item_item_l2)
        self.item_item: EASE | None = None

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.item_item_weight > 0:
            out["hybrid"] = {"item_item": "ease", "weight": self.item_item_weight, "l2": self.item_item_l2, "domains": "all",
                             "combination": "z(neural) + weight * z(item-item), per user over the target catalogue"}
        return out

    def _fit_item_item(self, split: FitSplit, env: RunEnv) -> None:
        """Fit the EASE term on ``split``'s training data (when the weight is on), refusing a catalogue
        too large for its dense item-item matrix before any work."""
        if self.item_item_weight == 0:
            return
        n_items = sum(split.train.domain(d).n_items for d in split.train.domain_names)
        if n_items > neighbours.MAX_COLUMNS:
            raise CrossbenchError(
                f"lm-attention: the item-item term (item_item_weight={self.item_item_weight}) is a dense EASE over all "
                f"{n_items} items of every domain, above its limit of {neighbours.MAX_COLUMNS}; pass item_item_weight=0"
            )
        self.item_item = EASE(l2=self.item_item_l2, domains="all")
        self.item_item.fit(split, env=env)

    def fit(self, split: FitSplit, *, env: RunEnv) -> FitReport:
        self._fit_item_item(split, env)
        return super().fit(split, env=env)

    def update(self, split: FitSplit, *, env: RunEnv) -> FitReport:
        self._fit_item_item(split, env)
        return super().update(split, env=env)

    def load_checkpoint(self, path: Path, split: FitSplit, *, env: RunEnv) -> None:
        """The neural part's weights from ``path``; the item-item term (closed form) fitted again on ``split``."""
        self._fit_item_item(split, env)
        super().load_checkpoint(path, split, env=env)

    def score(self, users: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        if self.item_item is None:
            return super().score(users, out=out)
        neural = super().score(users)
        combined = standardised(neural) + self.item_item_weight * standardised(self.item_item.score(users.to(neural.device)))
        if out is None:
            return combined
        return out.copy_(combined)
