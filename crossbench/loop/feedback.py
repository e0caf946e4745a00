"""Feedback models: which of the items shown to a user in a simulation round the user takes.

A feedback model is a plugin component (hook ``crossbench_feedback_models``): its factory takes
keyword hyperparameters and returns a :class:`FeedbackModel`. The simulation calls
:meth:`FeedbackModel.start` once with what the environment knows (the whole dataset and the
held-out future of every simulated user) and then :meth:`FeedbackModel.respond` once per
round with the lists shown. The model being simulated never sees any of this.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from crossbench.data.protocols import GroundTruth
from crossbench.errors import CrossbenchError

if TYPE_CHECKING:
    from crossbench.data.model import CrossDomainData


@dataclass(frozen=True)
class FeedbackContext:
    """What a feedback model may know: the environment's truth, hidden from the recommender.

    ``data`` is the whole dataset as loaded (before any split); ``future`` holds, per simulated
    user (global user index), the held-out target-domain items that user really interacted with.
    """

    data: CrossDomainData
    target: str
    future: GroundTruth
    seed: int


class FeedbackModel(abc.ABC):
    """Decides which shown items each user takes."""

    def check(self, *, dataset: str, where: str) -> None:
        """Refuse a dataset this model cannot serve (raise :class:`CrossbenchError`), before any work."""
        return None

    @abc.abstractmethod
    def start(self, context: FeedbackContext) -> None:
        """Called once before the first round."""

    @abc.abstractmethod
    def respond(self, users: np.ndarray, shown: np.ndarray, *, round: int, rng: np.random.Generator) -> np.ndarray:
        """``users`` ``[U]`` int64 user indices; ``shown`` ``[U, K]`` target item indices in rank order
        (``-1`` where fewer than ``K`` items could be shown). Returns ``[U, K]`` bool: true where
        the user takes the item (never true on ``-1``). ``rng`` is seeded from the simulation's
        seed and the round, so that a resumed simulation draws the same feedback."""

    def describe(self) -> Mapping[str, Any]:
        """Hyperparameters for the simulation record."""
        return {}


def examination(k: int, position_bias: float) -> np.ndarray:
    """``[k]`` chance that a user looks at the item at 0-based rank ``r``: ``1 / (r + 1) ** position_bias``.

    ``position_bias = 0`` (no bias) looks at every rank.
    """
    if position_bias < 0:
        raise CrossbenchError(f"position_bias must be 0 (none) or positive, got {position_bias}")
    return 1.0 / np.power(np.arange(1, k + 1, dtype=np.float64), position_bias)


def check_taken(taken: np.ndarray, shown: np.ndarray, *, name: str) -> np.ndarray:
    """``taken`` as a bool array of ``shown``'s shape; refuses another shape or an item taken where none was shown."""
    taken = np.asarray(taken)
    if taken.shape != shown.shape or taken.dtype != bool:
        raise CrossbenchError(
            f"feedback model {name!r} returned {taken.dtype} {taken.shape}; expected bool {shown.shape} (one flag per shown item)"
        )
    if (taken & (shown < 0)).any():
        raise CrossbenchError(f"feedback model {name!r} credited a position where no item was shown")
    return taken
