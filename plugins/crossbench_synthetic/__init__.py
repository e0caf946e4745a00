"""The built-in synthetic cross-domain dataset."""

from __future__ import annotations

from crossbench import hookimpl
from crossbench.interfaces import CategoricalParam, ComponentSpec, FloatParam
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


__all__ = ["SyntheticDataset", "synthetic"]
