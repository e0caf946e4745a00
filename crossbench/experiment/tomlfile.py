"""Experiment TOML files: reading them into an :class:`~crossbench.plugin.experiment.Experiment`, and writing one back.

Errors of a file name the file and what is wrong in it. Every results folder keeps the experiment it ran as ``runs/experiment.toml`` (beside the run
records), so a row can be rerun from the folder alone (``crossbench reproduce``), whether the
experiment came from a file, from command-line options or from the default. The file loads
back to an equal experiment (:func:`experiment_to_toml` and
:func:`load_experiment` round-trip; tested).
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Union

from crossbench.errors import CrossbenchError, closest, short_repr
from crossbench.experiment.names import check_label, check_name
from crossbench.plugin.experiment import DatasetRef, Experiment, ModelRef, ProtocolRef
from crossbench.plugin.simulation_settings import SimulationSettings, simulation_from_dict
from crossbench.plugin.specs import COMPONENT_ROLES, ComponentRef

# ------------------------------------------------------------------------------ reading


#: the largest experiment file read (an experiment is a few kilobytes; a bigger file is a mistake)
MAX_FILE_BYTES = 1 << 20

#: the default experiment, or a function that returns it when it is first needed
Defaults = Union[Experiment, None, Callable[[], Union[Experiment, None]]]

_TOP_KEYS = {"name", "dataset", "protocol", "models", "metrics", "ks", "seeds", "chunk_size", "sampled_negatives", "sampling", "simulation", "primary"}


def load_experiment(path: Path, defaults: Defaults = None) -> Experiment:
    """Parse an experiment TOML file; errors name the file and what is wrong in it.

    ``defaults`` (the default experiment, or a function returning it) supplies the
    ``[dataset]``, the ``[protocol]`` name and the ``metrics`` the file leaves out; a function is
    called only when the file leaves one of them out.
    """
    try:
        with open(path, "rb") as f:  # bounded: a device such as /dev/zero never ends
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise CrossbenchError(f"experiment file {path} is larger than {MAX_FILE_BYTES:,} bytes, the most an experiment "
                                  "file may hold (names, labels and parameters are short)")
        raw = tomllib.loads(data.decode("utf-8"))
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
    return experiment_from_dict(raw, where=f"experiment file {path}", defaults=defaults)


def experiment_from_dict(raw: Mapping[str, Any], *, where: str, defaults: Defaults = None) -> Experiment:
    """Build an :class:`Experiment` from a parsed TOML document (see :func:`load_experiment` for ``defaults``)."""
    if callable(defaults):
        protocol = raw.get("protocol")
        needed = any(k not in raw for k in ("dataset", "protocol", "metrics")) or (isinstance(protocol, dict) and "name" not in protocol)
        defaults = defaults() if needed else None
    for key in raw:
        if key not in _TOP_KEYS:
            near = closest(key, _TOP_KEYS)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise CrossbenchError(f"{where}: unknown key {short_repr(key, 60)}{hint} (valid: {', '.join(sorted(_TOP_KEYS))})")
    kwargs: dict[str, Any] = {}
    if "name" in raw:
        kwargs["name"] = check_name(_expect(raw["name"], str, f"{where}: 'name'"), where=f"{where}: 'name'")
    if "dataset" in raw:
        table = dict(_expect(raw["dataset"], dict, f"{where}: [dataset]"))
        name = _expect(table.pop("name", None), str, f"{where}: [dataset] 'name'")
        kwargs["dataset"] = DatasetRef(name, table)
    if "protocol" in raw:
        table = dict(_expect(raw["protocol"], dict, f"{where}: [protocol]"))
        default_name = defaults.protocol.name if defaults is not None else None
        name = _expect(table.pop("name", default_name), str, f"{where}: [protocol] 'name'")
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
                label = check_label(_expect(label, str, f"{where}: [[models]] #{i + 1} 'label'"), where=f"{where}: [[models]] #{i + 1} 'label'")
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
        kwargs["seeds"] = tuple(_expect_list(raw["seeds"], int, f"{where}: 'seeds'"))  # their range: checks.check_seeds
    if "chunk_size" in raw:
        kwargs["chunk_size"] = _expect(raw["chunk_size"], int, f"{where}: 'chunk_size'")
    if "sampled_negatives" in raw:
        kwargs["sampled_negatives"] = _expect(raw["sampled_negatives"], int, f"{where}: 'sampled_negatives'")
    if "sampling" in raw:
        kwargs["sampling"] = _expect(raw["sampling"], str, f"{where}: 'sampling'")
    if "simulation" in raw:
        kwargs["simulation"] = simulation_from_dict(raw["simulation"], where=where)
    if "primary" in raw:
        kwargs["primary"] = _expect(raw["primary"], str, f"{where}: 'primary'")
    missing = [key for key in ("dataset", "protocol", "metrics") if key not in kwargs]
    if missing and defaults is None:
        raise CrossbenchError(
            f"{where}: no {', '.join(missing)} given and no loaded plugin provides a default experiment to take "
            f"{'them' if len(missing) > 1 else 'it'} from; add {' and '.join(_EXAMPLES[m] for m in missing)}"
        )
    if defaults is not None:
        kwargs.setdefault("dataset", defaults.dataset)
        kwargs.setdefault("protocol", ProtocolRef(defaults.protocol.name))
        if "metrics" not in kwargs and "ks" not in kwargs:  # the default's primary metric goes with its metrics
            kwargs.setdefault("primary", defaults.primary)
        kwargs.setdefault("metrics", defaults.metrics)
    exp = Experiment(**kwargs)
    if not exp.models:
        raise CrossbenchError(f"{where}: no [[models]] given; add at least one, e.g. [[models]] name = \"popularity\"")
    return exp


_EXAMPLES = {"dataset": '[dataset] name = "..."', "protocol": '[protocol] name = "..."', "metrics": 'metrics = ["..."]'}


def _component_ref(value: Any) -> Any:
    if isinstance(value, dict) and "name" in value:
        rest = dict(value)
        return ComponentRef(str(rest.pop("name")), rest)
    return value


def _expect(value: Any, kind: type, where: str) -> Any:
    if value is None:
        raise CrossbenchError(f"{where} is missing")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CrossbenchError(f"{where} must be a {kind.__name__}, got {short_repr(value)}")
    return value


def _expect_list(value: Any, kind: type, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise CrossbenchError(f"{where} must be a non-empty list, got {short_repr(value)}")
    return [_expect(v, kind, f"{where} item") for v in value]



# ------------------------------------------------------------------------------ writing


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, ComponentRef):
        return _inline({"name": value.name, **dict(value.params)})
    if isinstance(value, Mapping):
        return _inline(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as a TOML value")


def _inline(table: Mapping[str, Any]) -> str:
    if not table:
        return "{}"
    return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in table.items()) + " }"


def experiment_to_toml(exp: Experiment) -> str:
    """The experiment as TOML text that :func:`load_experiment` reads back as ``exp``."""
    lines = [
        "# The experiment these run records belong to; `crossbench reproduce RECORD` reruns a row from it.",
        f"name = {_value(exp.name)}",
        f"metrics = {_value(list(exp.metrics))}",
        f"ks = {_value(list(exp.ks))}",
        f"seeds = {_value(list(exp.seeds))}",
        f"chunk_size = {exp.chunk_size}",
        f"sampled_negatives = {exp.sampled_negatives}",
        f"sampling = {_value(exp.sampling)}",
        *([f"primary = {_value(exp.primary)}"] if exp.primary is not None else []),
        "",
        "[dataset]",
        f"name = {_value(exp.dataset.name)}",
        *(f"{_key(k)} = {_value(v)}" for k, v in exp.dataset.params.items()),
        "",
        "[protocol]",
        f"name = {_value(exp.protocol.name)}",
    ]
    if exp.protocol.targets == ("all",):
        lines.append('targets = "all"')
    elif exp.protocol.targets:
        lines.append(f"targets = {_value(list(exp.protocol.targets))}")
    lines += [f"{_key(k)} = {_value(v)}" for k, v in exp.protocol.params.items()]
    if exp.simulation is not None:
        lines += ["", *_simulation_lines(exp.simulation)]
    for m in exp.models:
        lines += ["", "[[models]]", f"name = {_value(m.name)}"]
        if m.label is not None:
            lines.append(f"label = {_value(m.label)}")
        lines += [f"{_key(k)} = {_value(v)}" for k, v in m.params.items()]
    return "\n".join(lines) + "\n"


def _simulation_lines(s: SimulationSettings) -> list[str]:
    """The ``[simulation]`` section that :func:`simulation_from_dict` reads back as ``s``."""
    lines = ["[simulation]", f"rounds = {s.rounds}", f"k = {s.k}"]
    if s.feedback is not None:
        lines.append(f"feedback = {_inline({'name': s.feedback, **s.feedback_params}) if s.feedback_params else _value(s.feedback)}")
    if s.users is not None:
        lines.append(f"users = {s.users}")
    lines += [f"warm_users = {s.warm_users}", f"warm_holdout = {_value(s.warm_holdout)}", f"probe = {_value(s.probe)}"]
    if s.metrics:
        lines.append(f"metrics = {_value(list(s.metrics))}")
    return lines


def model_from_record(model: Mapping[str, Any]) -> ModelRef:
    """The :class:`ModelRef` a run record's ``model`` field describes (its fitted hyperparameters)."""
    params = {}
    for key, value in dict(model["params"]).items():
        if isinstance(value, Mapping) and set(value) == {"name", "params"} and isinstance(value["name"], str):
            value = ComponentRef(value["name"], dict(value["params"]))
        params[key] = value
    label = model["label"] if model["label"] != model["name"] else None
    return ModelRef(str(model["name"]), params, label)


def experiment_from_text(text: str, *, where: str) -> Experiment:
    """Parse experiment TOML text (as :func:`load_experiment` does for a file)."""
    import tomllib

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        from crossbench.errors import CrossbenchError

        raise CrossbenchError(f"{where}: malformed TOML: {exc}") from None
    return experiment_from_dict(raw, where=where)


def experiment_from_manifest(body: Mapping[str, Any], *, where: str) -> Experiment:
    """The experiment of a results folder's ``experiment.json`` (its ``experiment`` field, as the runner wrote it)."""
    from crossbench.errors import CrossbenchError

    try:
        raw: dict[str, Any] = {k: body[k] for k in ("name", "metrics", "ks", "seeds", "chunk_size", "sampled_negatives", "sampling")}
        if body.get("primary") is not None:  # manifests written before the field existed have none
            raw["primary"] = body["primary"]
        raw["dataset"] = {"name": body["dataset"]["name"], **body["dataset"]["params"]}
        protocol = body["protocol"]
        raw["protocol"] = {"name": protocol["name"], **protocol["params"]}
        if protocol["targets"]:
            raw["protocol"]["targets"] = "all" if list(protocol["targets"]) == ["all"] else list(protocol["targets"])
        models = [model_from_record({"label": m["label"] or m["name"], "name": m["name"], "params": m["params"]}) for m in body["models"]]
    except (KeyError, TypeError) as exc:
        raise CrossbenchError(f"{where}: not an experiment manifest written by crossbench ({type(exc).__name__}: {exc})") from None
    raw["models"] = [{"name": "placeholder"}]
    exp = experiment_from_dict(raw, where=where)
    return Experiment(**{**{f: getattr(exp, f) for f in exp.__dataclass_fields__}, "models": tuple(models)})
