"""The experiment as the CLI and files give it: reading and writing experiment files
(TOML) and manifests, command-line assignments, and validation of every name and setting
against the registry before any work starts.

Its values (``Experiment``, ``DatasetRef``, ``ModelRef``, ...) are defined by the plugin
contract (:mod:`crossbench.plugin.experiment`), since the default-experiment hook returns
one; they are importable from here too. It imports the plugin contract, the data and the
evaluator's settings; tuning, the runner, the feedback loop and the CLI import it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crossbench.experiment.checks import default_experiment
    from crossbench.plugin.experiment import DatasetRef, Experiment, ModelRef, ProtocolRef, RunOptions, TuningSettings, experiment_fingerprint
    from crossbench.plugin.simulation_settings import SimulationSettings

_HOMES = {
    "DatasetRef": "crossbench.plugin.experiment", "Experiment": "crossbench.plugin.experiment",
    "ModelRef": "crossbench.plugin.experiment", "ProtocolRef": "crossbench.plugin.experiment",
    "RunOptions": "crossbench.plugin.experiment", "TuningSettings": "crossbench.plugin.experiment",
    "default_experiment": "crossbench.experiment.checks", "experiment_fingerprint": "crossbench.plugin.experiment",
    "SimulationSettings": "crossbench.plugin.simulation_settings",
}

__all__ = [
    "DatasetRef", "Experiment", "ModelRef", "ProtocolRef", "RunOptions", "SimulationSettings", "TuningSettings", "default_experiment",
    "experiment_fingerprint",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
