"""Feedback models for any dataset: ``replay`` of the held-out future."""

from __future__ import annotations

from crossbench import hookimpl
from crossbench.plugin.specs import ComponentSpec
from crossbench_feedback.replay import Replay, replay


@hookimpl
def crossbench_feedback_models() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            "replay", replay,
            "a shown item is taken only if the user really interacted with it in the held-out future (optional position bias)",
            meanings={"position_bias": "exponent of the examination chance 1 / (rank + 1) ** position_bias of a shown item (0: every rank looked at)"},
        )
    ]


__all__ = ["Replay", "replay"]
