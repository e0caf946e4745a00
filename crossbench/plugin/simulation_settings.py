"""The ``[simulation]`` section of an experiment file: how the feedback loop runs."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crossbench.errors import CrossbenchError, closest


@dataclass(frozen=True)
class SimulationSettings:
    """R rounds; each round every simulated user is shown their top ``k`` target items, the
    feedback model decides which they take, those are appended to their target history and
    the model is updated.

    Simulated users are the protocol's test users (``users``: at most that many, a seeded
    sample; ``None``: all) plus ``warm_users`` training users with target history, whose latest
    ``warm_holdout`` share of target interactions becomes their held-out future.
    """

    rounds: int = 10
    k: int = 10
    #: the feedback model; ``None``: the default experiment's, else the only one registered
    feedback: str | None = None
    feedback_params: Mapping[str, Any] = field(default_factory=dict)
    users: int | None = None
    warm_users: int = 500
    warm_holdout: float = 0.5
    #: share of each simulated user's held-out items kept as probes (at least one): never taken,
    #: they are the ground truth of every round's accuracy; the rest is what feedback may credit
    probe: float = 0.5
    #: accuracy metrics at ``k`` on the held-out items not yet taken; the first is the curves' and leaderboard's.
    #: Empty: the default experiment's, when the experiment has them all, else the experiment's
    #: primary metric and its other accuracy metrics
    metrics: tuple[str, ...] = ()

    @property
    def primary(self) -> str:
        if not self.metrics:
            raise ValueError("the simulation's metrics are not resolved yet (crossbench.experiment.checks.resolve_simulation)")
        return f"{self.metrics[0]}@{self.k}"


_KEYS = {f for f in inspect.signature(SimulationSettings).parameters} - {"feedback_params"}


def simulation_from_dict(raw: Any, *, where: str) -> SimulationSettings:
    """``[simulation]`` of a TOML document; ``feedback`` is a name or a table ``{ name = "...", ...params }``."""
    if not isinstance(raw, Mapping):
        raise CrossbenchError(f"{where}: [simulation] must be a table, got {raw!r}")
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _KEYS:
            near = closest(key, _KEYS)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise CrossbenchError(f"{where}: [simulation] has no setting {key!r}{hint} (valid: {', '.join(sorted(_KEYS))})")
        if key == "feedback":
            if isinstance(value, Mapping):
                params = dict(value)
                name = params.pop("name", None)
                if not isinstance(name, str):
                    raise CrossbenchError(f"{where}: [simulation] feedback table needs name = \"replay\" (or another feedback model)")
                kwargs["feedback"], kwargs["feedback_params"] = name, params
            elif isinstance(value, str):
                kwargs["feedback"] = value
            else:
                raise CrossbenchError(f"{where}: [simulation] feedback must be a name or a table, got {value!r}")
        elif key == "metrics":
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise CrossbenchError(f"{where}: [simulation] metrics must be a non-empty list of names, got {value!r}")
            kwargs["metrics"] = tuple(value)
        elif key in ("warm_holdout", "probe"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CrossbenchError(f"{where}: [simulation] {key} must be a number, got {value!r}")
            kwargs[key] = float(value)
        else:
            if isinstance(value, bool) or not isinstance(value, int):
                raise CrossbenchError(f"{where}: [simulation] {key} must be an integer, got {value!r}")
            kwargs[key] = value
    return SimulationSettings(**kwargs)
