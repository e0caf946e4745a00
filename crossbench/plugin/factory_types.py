"""Typed factories, one per component kind: what a :class:`~crossbench.plugin.specs.ComponentSpec`'s
``factory`` is called with and must return.

A factory's hyperparameters are extra keyword arguments with defaults (datasets and whole models
may also have required ones, such as a dataset's ``path``); the protocols name only the keywords
crossbench itself passes, so any factory with more keywords matches them. Annotate a factory
with one to have a type checker hold it to its kind's contract::

    fusion: FusionFactory = mean_gate

The registry checks the same contract when a plugin registers (:mod:`crossbench.plugin.checks`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from crossbench.plugin.interfaces import BuildContext, Dataset, Fusion, ItemEncoder, Recommender, Scorer, UserEncoder

#: ``factory(**hyperparameters) -> Dataset``
DatasetFactory = Callable[..., "Dataset"]

#: ``factory(**hyperparameters) -> Recommender``
RecommenderFactory = Callable[..., "Recommender"]


class ItemEncoderFactory(Protocol):
    """``factory(context=..., domain=..., **hyperparameters) -> ItemEncoder`` for domain ``domain``."""

    def __call__(self, *, context: BuildContext, domain: str) -> ItemEncoder: ...


class UserEncoderFactory(Protocol):
    """``factory(context=..., domain=..., **hyperparameters) -> UserEncoder`` for histories in ``domain``."""

    def __call__(self, *, context: BuildContext, domain: str) -> UserEncoder: ...


class FusionFactory(Protocol):
    """``factory(context=..., **hyperparameters) -> Fusion`` over the domains of ``context.data``."""

    def __call__(self, *, context: BuildContext) -> Fusion: ...


class ScorerFactory(Protocol):
    """``factory(context=..., **hyperparameters) -> Scorer`` for vectors of size ``context.dim``."""

    def __call__(self, *, context: BuildContext) -> Scorer: ...


class MetricCompute(Protocol):
    """``compute(ranks, second, k) -> [users]`` (or a 0-dim tensor for ``item_counts``); see
    :class:`~crossbench.plugin.specs.MetricSpec` for what ``second`` is for each ``inputs``."""

    def __call__(self, ranks: torch.Tensor, second: torch.Tensor, k: int, /) -> torch.Tensor: ...


#: kind (as on the command line) -> the type of its factory
FACTORIES: dict[str, object] = {
    "datasets": DatasetFactory,
    "item-encoders": ItemEncoderFactory,
    "user-encoders": UserEncoderFactory,
    "fusions": FusionFactory,
    "scorers": ScorerFactory,
    "recommenders": RecommenderFactory,
    "metrics": MetricCompute,
}
