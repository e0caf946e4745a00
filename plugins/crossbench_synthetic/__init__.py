"""The built-in synthetic cross-domain dataset and its planted feedback model."""

from __future__ import annotations

from crossbench import hookimpl
from crossbench.interfaces import CategoricalParam, ComponentSpec, FloatParam
from crossbench_synthetic.feedback import planted
from crossbench_synthetic.generator import SyntheticDataset, synthetic


@hookimpl
def crossbench_datasets() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            "synthetic",
            synthetic,
            "generated users with tastes shared across domains (knob: transfer), Zipf popularity, topical item text",
            (FloatParam("transfer", 0.0, 1.0), CategoricalParam("n_users", (1000, 6000, 20000, 100000))),
        )
    ]


@hookimpl
def crossbench_feedback_models() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            "planted", planted,
            "synthetic data only: a shown item is taken with the generator's own acceptance probability (seeded; optional position bias)",
        )
    ]


__all__ = ["SyntheticDataset", "synthetic"]
