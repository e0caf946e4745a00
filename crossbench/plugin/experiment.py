"""Experiments: what to run (dataset, protocol, models, metrics, seeds), tuning settings, validation before any work, and run options.

Experiment files are read and written by :mod:`crossbench.experiment_toml`; the runner is :mod:`crossbench.runner`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossbench.assignments import parse_assignment as parse_assignment  # re-exported: read by the CLI commands
from crossbench.data.protocols import make_protocol
from crossbench.errors import CrossbenchError, unknown_name_message
from crossbench.interfaces import RunEnv, coerce_kwargs
from crossbench.modelspace import make_recommender
from crossbench.registry import Registry
from crossbench.simulation_settings import SimulationSettings

if TYPE_CHECKING:
    import pluggy
    import torch


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
    default experiment (hook ``crossbench_default_experiment``) supplies them where an
    experiment file leaves them out.
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
    body["tuning"] = tuning.fingerprint_fields() if tuning else None
    text = json.dumps(body, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def default_experiment(pm: pluggy.PluginManager) -> Experiment | None:
    """The experiment a loaded plugin provides as the default (hook ``crossbench_default_experiment``), if any.

    Two plugins providing one is an error naming both.
    """
    found = []
    for impl in reversed(pm.hook.crossbench_default_experiment.get_hookimpls()):
        exp = impl.function()
        if exp is None:
            continue
        if not isinstance(exp, Experiment):
            raise CrossbenchError(f"plugin {impl.plugin_name!r}: crossbench_default_experiment() returned {exp!r}, expected an Experiment")
        found.append((impl.plugin_name, exp))
    if len(found) > 1:
        names = " and ".join(repr(name) for name, _ in found)
        raise CrossbenchError(
            f"plugins {names} both provide a default experiment; disable one with CROSSBENCH_DISABLE_PLUGINS "
            "or give an experiment file"
        )
    return found[0][1] if found else None


def no_default_message() -> str:
    """What to do when no loaded plugin provides a default experiment."""
    from crossbench.plugins import DISABLE_ENV, disabled_plugins

    disabled = sorted(disabled_plugins())
    why = (f"the plugins disabled by {DISABLE_ENV} ({', '.join(disabled)}) may be the one that does"
           if disabled else "install or enable the plugin that provides it")
    return (
        "no default experiment: no loaded plugin provides one (hook crossbench_default_experiment); "
        f"{why}; or give an experiment file (crossbench run EXPERIMENT.toml), or name everything: "
        "--dataset NAME --protocol NAME --model NAME --metrics NAMES"
    )


# ------------------------------------------------------------------------------ validation


def dataset_params(exp: Experiment, registry: Registry) -> dict[str, Any]:
    """The dataset's parameters, checked by name and converted to the types its factory declares."""
    return coerce_kwargs(registry.get("datasets", exp.dataset.name), exp.dataset.params, where=f"dataset {exp.dataset.name!r}")


def validate(exp: Experiment, registry: Registry) -> None:
    """Check every name and hyperparameter before any work, so bad input writes nothing."""
    from crossbench.evaluate.sampled import STRATEGIES

    dataset_params(exp, registry)
    make_protocol(registry, exp.protocol.name, target="?", seed=0, **exp.protocol.params)
    if not exp.models:
        raise CrossbenchError("no models to run; name at least one with --model")
    labels = [m.display for m in exp.models]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise CrossbenchError(f"model label(s) {dup} appear more than once; give each a distinct label")
    env = RunEnv(registry=registry)
    for m in exp.models:
        model = make_recommender(registry, m.name, m.params, where=f"model {m.display!r}")
        if hasattr(model, "check"):
            model.check(env, where=f"model {m.display!r}")
    registry.metrics(exp.metrics)
    if not exp.ks or any(k < 1 for k in exp.ks):
        raise CrossbenchError(f"cut-offs must be positive integers, got {list(exp.ks)}")
    if not exp.seeds:
        raise CrossbenchError("at least one seed is needed")
    for what, values in (("seed", exp.seeds), ("cut-off", exp.ks), ("metric", exp.metrics)):
        repeated = sorted({v for v in values if list(values).count(v) > 1}, key=str)
        if repeated:
            raise CrossbenchError(f"{what}(s) {', '.join(map(str, repeated))} given more than once; list each once")
    if exp.chunk_size < 1:
        raise CrossbenchError(f"chunk_size must be positive, got {exp.chunk_size}")
    if exp.sampled_negatives < 0:
        raise CrossbenchError(f"sampled_negatives must be 0 (full ranking) or positive, got {exp.sampled_negatives}")
    if exp.sampling not in STRATEGIES:
        raise CrossbenchError(unknown_name_message("sampling strategy", exp.sampling, STRATEGIES))
    if exp.sampled_negatives:
        full_only = [n for n, spec in registry.metrics(exp.metrics).items() if spec.inputs not in ("ranks", "graded")]
        if full_only:
            raise CrossbenchError(f"metric(s) {', '.join(full_only)} need the full ranking; drop them or set sampled_negatives = 0")


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


def pick_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CrossbenchError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu or auto")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise CrossbenchError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    return torch.device(name)


