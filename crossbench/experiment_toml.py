"""Writing an :class:`~crossbench.experiment.Experiment` back as an experiment TOML file.

Every results folder keeps the experiment it ran as ``runs/experiment.toml`` (beside the run
records), so a row can be rerun from the folder alone (``crossbench reproduce``), whether the
experiment came from a file, from command-line options or from the default. The file loads
back to an equal experiment (:func:`experiment_to_toml` and
:func:`~crossbench.experiment.load_experiment` round-trip; tested).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from crossbench.experiment import Experiment, ModelRef, experiment_from_dict
from crossbench.interfaces import ComponentRef

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
    """The experiment as TOML text that :func:`~crossbench.experiment.load_experiment` reads back as ``exp``."""
    lines = [
        "# The experiment these run records belong to; `crossbench reproduce RECORD` reruns a row from it.",
        f"name = {_value(exp.name)}",
        f"metrics = {_value(list(exp.metrics))}",
        f"ks = {_value(list(exp.ks))}",
        f"seeds = {_value(list(exp.seeds))}",
        f"chunk_size = {exp.chunk_size}",
        f"sampled_negatives = {exp.sampled_negatives}",
        f"sampling = {_value(exp.sampling)}",
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
    for m in exp.models:
        lines += ["", "[[models]]", f"name = {_value(m.name)}"]
        if m.label is not None:
            lines.append(f"label = {_value(m.label)}")
        lines += [f"{_key(k)} = {_value(v)}" for k, v in m.params.items()]
    return "\n".join(lines) + "\n"


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
    """Parse experiment TOML text (as :func:`~crossbench.experiment.load_experiment` does for a file)."""
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
