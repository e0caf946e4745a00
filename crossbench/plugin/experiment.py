"""The experiment as pure values: what to run (dataset, protocol, models, metrics, seeds),
how to tune, and run options.

The default-experiment hook returns an :class:`Experiment`, so the values belong to the
plugin contract. Experiment files are read and written by :mod:`crossbench.experiment.tomlfile`,
checked against the registry by :mod:`crossbench.experiment.checks`, and run by
:mod:`crossbench.run.runner`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossbench.errors import CrossbenchError, unknown_name_message
from crossbench.plugin.simulation_settings import SimulationSettings


@dataclass(frozen=True)
class DatasetRef:
    """A registered dataset and its hyperparameters."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProtocolRef:
    """A protocol, the target domain(s) (empty: the dataset's default; ``("all",)``: each in turn)."""

    name: str
    targets: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelRef:
    """A registered recommender, its hyperparameters and the label it gets in tables."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    label: str | None = None

    @property
    def display(self) -> str:
        return self.label or self.name


@dataclass(frozen=True, kw_only=True)
class Experiment:
    """Everything a run needs; built from a TOML file, from CLI options, or the default.

    The dataset, protocol and metrics are named by the plugins that register them; the
    default experiment (hook ``crossbench_default_experiment``) supplies them, and the primary
    metric, where an experiment file leaves them out.
    """

    name: str = "default"
    dataset: DatasetRef
    protocol: ProtocolRef
    models: tuple[ModelRef, ...] = ()
    metrics: tuple[str, ...]
    ks: tuple[int, ...] = (10, 20)
    seeds: tuple[int, ...] = (0,)
    chunk_size: int = 1024
    #: 0: full ranking (the default). N > 0: rank the relevant items among N sampled
    #: negatives per user instead; such results are labelled "sampled" everywhere.
    sampled_negatives: int = 0
    sampling: str = "uniform"
    #: the ``[simulation]`` section (read by ``crossbench simulate`` only)
    simulation: SimulationSettings | None = None
    #: ``metric@k`` that tables rank and test models on, tuning maximises unless told otherwise
    #: and the simulation reports; ``None``: the first metric at the first cut-off
    primary: str | None = None

    @property
    def primary_metric(self) -> str:
        """The primary metric as ``metric@k`` (see :attr:`primary`)."""
        return self.primary or f"{self.metrics[0]}@{self.ks[0]}"


#: Pruners a tuning study can use on trainer-based models' per-epoch validation metric.
PRUNERS = ("median", "hyperband", "none")


@dataclass(frozen=True)
class TuningSettings:
    """How every model is tuned: the same budget per model and split, on validation users.

    A study is stopped when ``trials`` trials have finished (complete or pruned) or their
    fitting has taken ``timeout_s`` seconds in all, whichever comes first; at least one of the
    two must be set.
    """

    trials: int | None = 20
    timeout_s: float | None = None
    #: the validation metric maximised, ``metric@k``
    metric: str = "ndcg"
    k: int = 10
    pruner: str = "median"
    #: seed of the TPE sampler; ``None``: the seed of the split being tuned
    sampler_seed: int | None = None
    #: ``None``: an SQLite file ``tuning.db`` in the results folder; else a journal file or a database URL
    storage: str | None = None
    #: prefix of the study names (``STUDY/TARGET/seedN/LABEL``); ``None``: the experiment's name
    study: str | None = None
    #: seconds between a running trial's heartbeats; a trial silent for twice as long is retried
    heartbeat_s: int = 60

    @property
    def objective(self) -> str:
        return f"{self.metric}@{self.k}"

    def check(self) -> None:
        """Raise a :class:`CrossbenchError` for a budget or setting out of range."""
        if self.trials is None and self.timeout_s is None:
            raise CrossbenchError("tuning needs a budget: give --trials N, --timeout SECONDS or both")
        if self.trials is not None and self.trials < 1:
            raise CrossbenchError(f"--trials must be at least 1, got {self.trials}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise CrossbenchError(f"--timeout must be a positive number of seconds, got {self.timeout_s}")
        if self.k < 1:
            raise CrossbenchError(f"the tuning objective's cut-off must be positive, got {self.objective}")
        if self.pruner not in PRUNERS:
            raise CrossbenchError(unknown_name_message("pruner", self.pruner, PRUNERS))
        if self.heartbeat_s < 1:
            raise CrossbenchError(f"--heartbeat must be at least 1 second, got {self.heartbeat_s}")

    def fingerprint_fields(self) -> dict[str, Any]:
        """What changes the results (not where the studies are stored)."""
        return {"trials": self.trials, "timeout_s": self.timeout_s, "objective": self.objective,
                "pruner": self.pruner, "sampler_seed": self.sampler_seed}


def experiment_fingerprint(exp: Experiment, tuning: TuningSettings | None = None) -> str:
    """sha256 of everything that decides an experiment's results (not its name, nor the chunk size)."""
    body = dataclasses.asdict(exp)
    body.pop("name")
    body.pop("chunk_size")
    body.pop("simulation", None)  # a run's results do not depend on the [simulation] section
    body.pop("primary", None)  # nor on which metric the tables rank by
    body["tuning"] = tuning.fingerprint_fields() if tuning else None
    text = json.dumps(body, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------------------ options


@dataclass(frozen=True)
class RunOptions:
    """How to run: where results go, on which device, with how many threads."""

    output_dir: Path
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    cache_dir: Path = Path(".crossbench-cache")
    command: str | None = None
    bf16: bool = False


