"""Experiments: what to run (dataset, protocol, models, metrics, seeds) and the runner."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from crossbench.data.protocols import PROTOCOLS, make_protocol
from crossbench.errors import CrossbenchError, closest, unknown_name_message
from crossbench.evaluate.sampled import STRATEGIES
from crossbench.interfaces import COMPONENT_ROLES, ComponentRef, RunEnv, coerce_kwargs
from crossbench.modelspace import make_recommender
from crossbench.registry import Registry
from crossbench.simulation_settings import SimulationSettings, simulation_from_dict


@dataclass(frozen=True)
class DatasetRef:
    """A registered dataset and its hyperparameters."""

    name: str = "synthetic"
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProtocolRef:
    """A protocol, the target domain(s) (empty: the dataset's default; ``("all",)``: each in turn)."""

    name: str = "cold-start"
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


@dataclass(frozen=True)
class Experiment:
    """Everything a run needs; built from a TOML file, from CLI options, or the default."""

    name: str = "default"
    dataset: DatasetRef = field(default_factory=DatasetRef)
    protocol: ProtocolRef = field(default_factory=ProtocolRef)
    models: tuple[ModelRef, ...] = ()
    metrics: tuple[str, ...] = ("recall", "ndcg", "hr", "mrr")
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


#: The benchmark ``crossbench run`` runs with no arguments.
DEFAULT_EXPERIMENT = Experiment(
    name="default",
    dataset=DatasetRef("synthetic", {}),
    protocol=ProtocolRef("cold-start", (), {"test_fraction": 0.5, "valid_fraction": 0.1}),
    models=(ModelRef("popularity"), ModelRef("mf"), ModelRef("shared-mean")),
    seeds=(0, 1, 2),
)


# ------------------------------------------------------------------------------ TOML


_TOP_KEYS = {"name", "dataset", "protocol", "models", "metrics", "ks", "seeds", "chunk_size", "sampled_negatives", "sampling", "simulation"}


def load_experiment(path: Path) -> Experiment:
    """Parse an experiment TOML file; errors name the file and what is wrong in it."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CrossbenchError(f"experiment file {path} does not exist") from None
    except IsADirectoryError:
        raise CrossbenchError(f"experiment file {path} is a folder; name the experiment's .toml file") from None
    except OSError as exc:
        raise CrossbenchError(f"experiment file {path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise CrossbenchError(f"experiment file {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise CrossbenchError(f"experiment file {path}: malformed TOML: {exc}") from None
    return experiment_from_dict(raw, where=f"experiment file {path}")


def experiment_from_dict(raw: Mapping[str, Any], *, where: str) -> Experiment:
    """Build an :class:`Experiment` from a parsed TOML document."""
    for key in raw:
        if key not in _TOP_KEYS:
            near = closest(key, _TOP_KEYS)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise CrossbenchError(f"{where}: unknown key {key!r}{hint} (valid: {', '.join(sorted(_TOP_KEYS))})")
    kwargs: dict[str, Any] = {}
    if "name" in raw:
        kwargs["name"] = _expect(raw["name"], str, f"{where}: 'name'")
    if "dataset" in raw:
        table = dict(_expect(raw["dataset"], dict, f"{where}: [dataset]"))
        name = _expect(table.pop("name", None), str, f"{where}: [dataset] 'name'")
        kwargs["dataset"] = DatasetRef(name, table)
    if "protocol" in raw:
        table = dict(_expect(raw["protocol"], dict, f"{where}: [protocol]"))
        name = _expect(table.pop("name", "cold-start"), str, f"{where}: [protocol] 'name'")
        targets: tuple[str, ...] = ()
        if "target" in table and "targets" in table:
            raise CrossbenchError(f"{where}: [protocol] has both 'target' and 'targets'; keep one")
        if "target" in table:
            targets = (_expect(table.pop("target"), str, f"{where}: [protocol] 'target'"),)
        if "targets" in table:
            value = table.pop("targets")
            targets = ("all",) if value == "all" else tuple(_expect_list(value, str, f"{where}: [protocol] 'targets'"))
        kwargs["protocol"] = ProtocolRef(name, targets, table)
    if "models" in raw:
        models = []
        for i, entry in enumerate(_expect_list(raw["models"], dict, f"{where}: [[models]]")):
            table = dict(entry)
            name = _expect(table.pop("name", None), str, f"{where}: [[models]] #{i + 1} 'name'")
            label = table.pop("label", None)
            if label is not None:
                label = _expect(label, str, f"{where}: [[models]] #{i + 1} 'label'")
            params: dict[str, Any] = {}
            for k, v in table.items():
                if k in COMPONENT_ROLES and isinstance(v, dict) and "name" not in v:
                    # `fusion = { heads = 2 }`: hyperparameters of the model's own fusion
                    params.update({f"{k}.{inner}": value for inner, value in v.items()})
                else:
                    params[k] = _component_ref(v)
            models.append(ModelRef(name, params, label))
        kwargs["models"] = tuple(models)
    if "metrics" in raw:
        kwargs["metrics"] = tuple(_expect_list(raw["metrics"], str, f"{where}: 'metrics'"))
    if "ks" in raw:
        kwargs["ks"] = tuple(_expect_list(raw["ks"], int, f"{where}: 'ks'"))
    if "seeds" in raw:
        kwargs["seeds"] = tuple(_expect_list(raw["seeds"], int, f"{where}: 'seeds'"))
    if "chunk_size" in raw:
        kwargs["chunk_size"] = _expect(raw["chunk_size"], int, f"{where}: 'chunk_size'")
    if "sampled_negatives" in raw:
        kwargs["sampled_negatives"] = _expect(raw["sampled_negatives"], int, f"{where}: 'sampled_negatives'")
    if "sampling" in raw:
        kwargs["sampling"] = _expect(raw["sampling"], str, f"{where}: 'sampling'")
    if "simulation" in raw:
        kwargs["simulation"] = simulation_from_dict(raw["simulation"], where=where)
    exp = Experiment(**kwargs)
    if not exp.models:
        raise CrossbenchError(f"{where}: no [[models]] given; add at least one, e.g. [[models]] name = \"popularity\"")
    return exp


def _component_ref(value: Any) -> Any:
    if isinstance(value, dict) and "name" in value:
        rest = dict(value)
        return ComponentRef(str(rest.pop("name")), rest)
    return value


def _expect(value: Any, kind: type, where: str) -> Any:
    if value is None:
        raise CrossbenchError(f"{where} is missing")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CrossbenchError(f"{where} must be a {kind.__name__}, got {value!r}")
    return value


def _expect_list(value: Any, kind: type, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise CrossbenchError(f"{where} must be a non-empty list, got {value!r}")
    return [_expect(v, kind, f"{where} item") for v in value]


def parse_assignment(text: str, *, option: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from the command line; VALUE is read as a TOML value, else as a string."""
    if "=" not in text:
        raise CrossbenchError(f"{option} {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise CrossbenchError(f"{option} {text!r}: {key!r} is not a valid parameter name")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key, parsed


# ------------------------------------------------------------------------------ validation


def dataset_params(exp: Experiment, registry: Registry) -> dict[str, Any]:
    """The dataset's parameters, checked by name and converted to the types its factory declares."""
    return coerce_kwargs(registry.get("datasets", exp.dataset.name), exp.dataset.params, where=f"dataset {exp.dataset.name!r}")


def validate(exp: Experiment, registry: Registry) -> None:
    """Check every name and hyperparameter before any work, so bad input writes nothing."""
    dataset_params(exp, registry)
    if exp.protocol.name not in PROTOCOLS:
        raise CrossbenchError(unknown_name_message("protocol", exp.protocol.name, PROTOCOLS))
    make_protocol(exp.protocol.name, target="?", seed=0, **exp.protocol.params)
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
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CrossbenchError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu or auto")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise CrossbenchError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    return torch.device(name)


