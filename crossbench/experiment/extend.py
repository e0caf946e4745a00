"""Adding models to an experiment whose results folder already holds finished runs.

A results folder belongs to one experiment (its fingerprint, :mod:`crossbench.records.folder`).
A published table often has to take one more model without rerunning the others: the new
model's results do not depend on which other models the experiment lists. So a folder may be
*extended*: when the experiment being run is the folder's experiment with models added, and
nothing else changed (dataset, protocol, seeds, metrics, tuning budget, and every earlier
model's name, hyperparameters and label), the finished runs stay and only the new models run.

The folder's ``experiment.json`` then keeps, under ``extends``, each earlier form of the
experiment (its fingerprint, its experiment and the labels of its models): a record carrying
an earlier fingerprint belongs to the folder when its model is one of that form's models
(:func:`crossbench.records.schema.check_belongs`), and ``crossbench verify`` recomputes every
earlier fingerprint and checks that each earlier form is the current experiment restricted to
its own models (:func:`check_extends`). Any other change is refused as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from crossbench.errors import CrossbenchError
from crossbench.plugin.experiment import Experiment, TuningSettings, experiment_fingerprint
from crossbench.records.schema import MANIFEST, read_manifest


def _restricted(exp: Experiment, labels: Sequence[str]) -> Experiment:
    """``exp`` with only the models labelled ``labels``, in ``exp``'s order."""
    wanted = set(labels)
    return dataclasses.replace(exp, models=tuple(m for m in exp.models if m.display in wanted))


def _tuning(manifest: Mapping[str, Any], where: str) -> TuningSettings | None:
    try:
        return TuningSettings(**manifest["tuning"]) if manifest.get("tuning") else None
    except TypeError as exc:
        raise CrossbenchError(f"{where}: its tuning settings are not crossbench's ({exc})") from None


def _form(fingerprint: str, experiment: Mapping[str, Any], labels: Sequence[str]) -> dict[str, Any]:
    return {"fingerprint": fingerprint, "models": list(labels), "experiment": dict(experiment)}


def extension(folder: Path, exp: Experiment, tuning: TuningSettings | None) -> list[dict[str, Any]] | None:
    """The ``extends`` list the folder's manifest gets when ``exp`` adds models to the folder's experiment.

    ``None`` when there is nothing to extend (no manifest, the same experiment, or an experiment
    that differs in more than added models: the folder then refuses it with its usual line).
    """
    from crossbench.experiment.tomlfile import experiment_from_manifest

    path = Path(folder) / MANIFEST
    try:
        manifest = read_manifest(path)
    except CrossbenchError:
        return None
    if manifest is None or not isinstance(manifest.get("experiment"), dict):
        return None
    fingerprint = experiment_fingerprint(exp, tuning)
    if manifest["fingerprint"] == fingerprint:
        return None
    try:
        old = experiment_from_manifest(manifest["experiment"], where=str(path))
    except CrossbenchError:
        return None
    labels = [m.display for m in old.models]
    now = {m.display: m for m in exp.models}
    if any(now.get(m.display) != m for m in old.models) or len(exp.models) <= len(old.models):
        return None  # a model was removed or changed, or none was added
    if _tuning(manifest, str(path)) != tuning or experiment_fingerprint(_restricted(exp, labels), tuning) != manifest["fingerprint"]:
        return None  # something besides the models changed
    earlier = [dict(e) for e in manifest.get("extends") or []]
    return [*earlier, _form(manifest["fingerprint"], manifest["experiment"], labels)]


def check_extends(manifest: Mapping[str, Any], exp: Experiment, tuning: TuningSettings | None, *, where: str) -> int:
    """Check every earlier form a manifest keeps: its fingerprint recomputed from its experiment, and that
    experiment the current one restricted to the form's models. Returns how many forms were checked."""
    from crossbench.experiment.tomlfile import experiment_from_manifest

    forms = manifest.get("extends") or []
    if not isinstance(forms, list):
        raise CrossbenchError(f"{where}: 'extends' is not a list of earlier forms of the experiment; the manifest was edited")
    for i, form in enumerate(forms):
        at = f"{where}: earlier form {i + 1} ('extends')"
        if not isinstance(form, dict) or not isinstance(form.get("fingerprint"), str) or not isinstance(form.get("models"), list):
            raise CrossbenchError(f"{at} is not a fingerprint with its models; the manifest was edited")
        old = experiment_from_manifest(form.get("experiment") or {}, where=at)
        if experiment_fingerprint(old, tuning) != form["fingerprint"]:
            raise CrossbenchError(f"{at} states fingerprint {form['fingerprint'][:12]} but holds another experiment; the manifest was edited")
        if sorted(m.display for m in old.models) != sorted(form["models"]):
            raise CrossbenchError(f"{at} lists models {form['models']} that are not its experiment's; the manifest was edited")
        if experiment_fingerprint(_restricted(exp, form["models"]), tuning) != form["fingerprint"]:
            raise CrossbenchError(f"{at} is not the folder's experiment restricted to its models {form['models']}; "
                                  "only added models keep earlier records")
    return len(forms)
