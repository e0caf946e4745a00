"""Replay: credit a shown item only when the user really interacted with it later."""

from __future__ import annotations

from typing import Any

import numpy as np

from crossbench.data.protocols import GroundTruth
from crossbench.errors import CrossbenchError
from crossbench.loop.feedback import FeedbackContext, FeedbackModel, examination


class Replay(FeedbackModel):
    """A shown item is taken when it is in the user's held-out future; with ``position_bias``, only when
    the user also looks at its rank (chance ``1 / (rank + 1) ** position_bias``). Nothing else is taken."""

    def __init__(self, *, position_bias: float = 0.0) -> None:
        examination(1, position_bias)
        self.position_bias = position_bias
        self.future: GroundTruth | None = None

    def start(self, context: FeedbackContext) -> None:
        self.future = context.future
        self.n_items = context.data.domain(context.target).n_items

    def respond(self, users: np.ndarray, shown: np.ndarray, *, round: int, rng: np.random.Generator) -> np.ndarray:
        if self.future is None:
            raise CrossbenchError("feedback model 'replay': respond() called before start()")
        f = self.future
        keys = np.repeat(f.users.astype(np.int64), np.diff(f.indptr)) * self.n_items + f.items.astype(np.int64)
        asked = users.astype(np.int64)[:, None] * self.n_items + shown
        taken = np.isin(asked, keys) & (shown >= 0)
        if self.position_bias > 0:
            looks = rng.random(shown.shape) < examination(shown.shape[1], self.position_bias)[None, :]
            taken &= looks
        return np.asarray(taken, dtype=bool)

    def describe(self) -> dict[str, Any]:
        return {"position_bias": self.position_bias}


def replay(*, position_bias: float = 0.0) -> Replay:
    """Held-out future interactions, replayed: the only items ever credited are ones the user really took."""
    return Replay(position_bias=position_bias)
