"""What a plugin registers: specs (a name, a factory, a description, a search space) of each
kind, with the typed search-space parameters tuning reads.

Components are built by the ``factory`` of a :class:`ComponentSpec` that a plugin returns
from a hook. Every hyperparameter is an explicit keyword argument of the factory; the
``search_space`` names a subset of them with typed ranges for tuning.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import torch

#: kind (as used on the command line) -> hook name
KINDS: dict[str, str] = {
    "datasets": "crossbench_datasets",
    "item-encoders": "crossbench_item_encoders",
    "user-encoders": "crossbench_user_encoders",
    "fusions": "crossbench_fusions",
    "scorers": "crossbench_scorers",
    "recommenders": "crossbench_recommenders",
    "metrics": "crossbench_metrics",
    "feedback-models": "crossbench_feedback_models",
    "protocols": "crossbench_protocols",
}

#: singular nouns for messages
NOUNS: dict[str, str] = {
    "datasets": "dataset",
    "item-encoders": "item encoder",
    "user-encoders": "user encoder",
    "fusions": "fusion",
    "scorers": "scorer",
    "recommenders": "model",
    "metrics": "metric",
    "feedback-models": "feedback model",
    "protocols": "protocol",
}


# --------------------------------------------------------------------------- search space


@dataclass(frozen=True)
class IntParam:
    """An integer hyperparameter in ``[low, high]``, optionally sampled on a log scale."""

    name: str
    low: int
    high: int
    log: bool = False
    step: int = 1


@dataclass(frozen=True)
class FloatParam:
    """A float hyperparameter in ``[low, high]``, optionally sampled on a log scale."""

    name: str
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class CategoricalParam:
    """A hyperparameter taking one of ``choices``."""

    name: str
    choices: tuple[Any, ...]


Param = Union[IntParam, FloatParam, CategoricalParam]


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class ComponentRef:
    """A component by registered name, with its hyperparameters."""

    name: str
    params: Mapping[str, Any] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.params is None:
            object.__setattr__(self, "params", {})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}


#: The roles of a composed model's components and the registry kind each is drawn from.
#: ``--model-param fusion.heads=2`` sets hyperparameter ``heads`` of the model's fusion.
COMPONENT_ROLES: dict[str, str] = {
    "item_encoder": "item-encoders",
    "user_encoder": "user-encoders",
    "fusion": "fusions",
    "scorer": "scorers",
}


@dataclass(frozen=True)
class ComponentSpec:
    """What a plugin registers: a named factory, its description and its search space.

    ``factory`` takes keyword arguments only. For item and user encoders it is called as
    ``factory(context=..., domain=..., **hyperparameters)``; for fusions and scorers as
    ``factory(context=..., **hyperparameters)``; for datasets and recommenders as
    ``factory(**hyperparameters)``.
    """

    name: str
    factory: Callable[..., Any]
    description: str = ""
    search_space: tuple[Param, ...] = ()
    #: one line of meaning per hyperparameter, by name (``crossbench show NAME`` prints it)
    meanings: Mapping[str, str] = field(default_factory=dict, compare=False)

    def hyperparameters(self) -> dict[str, Any]:
        """The factory's hyperparameters and their defaults (``inspect.Parameter.empty`` if none)."""
        skip = {"context", "domain"}
        out: dict[str, Any] = {}
        for p in inspect.signature(self.factory).parameters.values():
            if p.name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            out[p.name] = p.default
        return out


@dataclass(frozen=True)
class ProtocolSpec(ComponentSpec):
    """A protocol (how a dataset becomes training data and held-out ground truth), from ``crossbench_protocols``.

    ``factory(target=..., seed=..., **parameters)`` returns a
    :class:`crossbench.data.protocols.Protocol` for one target domain; ``seed`` is the run's
    seed (a deterministic protocol accepts and ignores it). ``presets`` are labelled parameter
    sets that ``crossbench data stats`` shows side by side when no protocol is named (none:
    one row with the defaults).
    """

    presets: tuple[tuple[str, Mapping[str, Any]], ...] = ()

    def parameters(self) -> dict[str, Any]:
        """The protocol's own parameters and their defaults (``target`` and ``seed`` left out)."""
        return {k: v for k, v in self.hyperparameters().items() if k not in ("target", "seed")}


#: What a metric's ``compute`` receives; see :class:`MetricSpec`.
METRIC_INPUTS = ("ranks", "graded", "top_items", "item_counts")


@dataclass(frozen=True)
class MetricSpec:
    """A metric of a ranked list, computed per user (or once per catalogue).

    ``inputs`` says what ``compute`` receives (all tensors float64 unless stated):

    - ``"ranks"`` (default): ``compute(ranks, n_relevant, k)``. ``ranks`` ``[users, R]``
      holds the 0-based rank of each relevant item under the pessimistic tie rule
      (``inf`` for padding and for items not ranked within the top ``k``);
      ``n_relevant`` ``[users]`` counts the relevant items. Returns ``[users]``.
    - ``"graded"``: ``compute(ranks, gains, k)``; ``gains`` ``[users, R]`` is the grade of
      each relevant item (``0`` for padding), aligned with ``ranks``. Returns ``[users]``.
    - ``"top_items"``: ``compute(top_items, popularity, k)``; ``top_items`` ``[users, k]``
      int64 item indices of each user's top ``k`` (``-1`` where fewer than ``k`` items
      could be recommended); ``popularity`` ``[n_items]`` training interaction counts.
      Returns ``[users]``.
    - ``"item_counts"``: ``compute(counts, n_users, k)``; ``counts`` ``[n_items]`` int64, how
      many users' top ``k`` hold each item. Returns a 0-dim tensor: one value for the run
      (no per-user values, so no paired tests).
    """

    name: str
    compute: Callable[..., torch.Tensor]
    description: str = ""
    higher_is_better: bool = True
    inputs: str = "ranks"

    def __post_init__(self) -> None:
        if self.inputs not in METRIC_INPUTS:
            from crossbench.errors import CrossbenchError

            raise CrossbenchError(
                f"metric {self.name!r}: inputs={self.inputs!r} is not known; use one of {', '.join(METRIC_INPUTS)}"
            )
