"""Training: the settings every trained model shares, the composed model (item encoder,
user encoder, fusion, scorer) and its trainer (pairs and sequences, early stopping on
validation users, pruning, checkpoints, devices).

It imports the plugin contract, the data and the evaluator (early stopping evaluates on
validation users). Whole torch models that train in stages and graph propagation belong
here too. The names below load the trainer (and torch) on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crossbench.train.trainer import ComposedRecommender

_HOMES = {"ComposedRecommender": "trainer"}

__all__ = ["ComposedRecommender"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"crossbench.train.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
