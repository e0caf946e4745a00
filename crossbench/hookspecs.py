"""The hooks a crossbench plugin can implement.

A plugin is any module or object with functions marked ``@crossbench.hookimpl`` whose
names match the specs below. Packages announce plugins through the ``crossbench``
entry-point group; the built-in plugins are loaded the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from crossbench.experiment import Experiment
    from crossbench.interfaces import ComponentSpec, MetricSpec, ProtocolSpec

PROJECT = "crossbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def crossbench_datasets() -> Iterable[ComponentSpec]:
    """Datasets: each factory takes keyword hyperparameters and returns a ``Dataset``."""
    raise NotImplementedError


@hookspec
def crossbench_item_encoders() -> Iterable[ComponentSpec]:
    """Item encoders: ``factory(context=BuildContext, domain=str, **hp) -> ItemEncoder``."""
    raise NotImplementedError


@hookspec
def crossbench_user_encoders() -> Iterable[ComponentSpec]:
    """User encoders: ``factory(context=BuildContext, domain=str, **hp) -> UserEncoder``."""
    raise NotImplementedError


@hookspec
def crossbench_fusions() -> Iterable[ComponentSpec]:
    """Fusions: ``factory(context=BuildContext, **hp) -> Fusion``."""
    raise NotImplementedError


@hookspec
def crossbench_scorers() -> Iterable[ComponentSpec]:
    """Scorers: ``factory(context=BuildContext, **hp) -> Scorer``."""
    raise NotImplementedError


@hookspec
def crossbench_recommenders() -> Iterable[ComponentSpec]:
    """Whole models, selectable with ``--model``: ``factory(**hp) -> Recommender``."""
    raise NotImplementedError


@hookspec
def crossbench_metrics() -> Iterable[MetricSpec]:
    """Ranking metrics computed from the ranks of each user's relevant items."""
    raise NotImplementedError


@hookspec
def crossbench_feedback_models() -> Iterable[ComponentSpec]:
    """Feedback models of the simulation (which shown items a user takes): ``factory(**hp) -> FeedbackModel``
    (:class:`crossbench.feedback.FeedbackModel`)."""
    raise NotImplementedError


@hookspec
def crossbench_protocols() -> Iterable[ProtocolSpec]:
    """Protocols: how a dataset becomes training data plus held-out validation and test ground truth.

    Called once, when the registry is built (every command that reads components). Return
    an iterable of :class:`crossbench.interfaces.ProtocolSpec`, one per protocol, each with a
    name unique among all plugins' protocols (``--protocol NAME``, ``[protocol] name``).

    A spec's ``factory`` is called as ``factory(target=DOMAIN, seed=SEED, **parameters)``
    for each target domain and seed of a run, with the experiment's ``[protocol]`` table
    (``--protocol-param KEY=VALUE``) as ``parameters``; it must accept ``target`` and
    ``seed`` (a deterministic protocol ignores the seed) and return a
    :class:`crossbench.data.protocols.Protocol`, whose ``split(data)`` returns the
    :class:`crossbench.data.protocols.Split`. Unknown parameter names are refused before
    any data loads. ``presets`` name parameter sets that ``crossbench data stats`` shows
    side by side.

    Example::

        @hookimpl
        def crossbench_protocols():
            return [ProtocolSpec("last-two", LastTwo, "the last two target items of each user held out")]
    """
    raise NotImplementedError


@hookspec
def crossbench_default_experiment() -> Experiment | None:
    """The experiment ``crossbench run`` (and ``tune``) runs when given no experiment file.

    Called when a command needs the default: ``run``/``tune`` without EXPERIMENT_FILE
    (options such as ``--model`` then change this experiment), and for the ``[dataset]``,
    the ``[protocol]`` name and the ``metrics`` an experiment file leaves out. Return a
    :class:`crossbench.experiment.Experiment` naming components that the plugin itself or
    other installed plugins register, or ``None`` to provide none.

    At most one loaded plugin may return one (the built-in ``basic`` plugin does); two
    defaults are an error naming both plugins. With none, ``crossbench run`` without an
    experiment file stops with exit status 2 and says what to give instead.

    Example::

        @hookimpl
        def crossbench_default_experiment():
            return Experiment(dataset=DatasetRef("my-data"), protocol=ProtocolRef("cold-start"),
                              models=(ModelRef("popularity"), ModelRef("my-model")), metrics=("ndcg",))
    """


@hookspec
def crossbench_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``crossbench`` command group."""


@hookspec
def crossbench_run_finished(record: dict[str, Any], path: Path) -> None:
    """Called after a run record has been written to ``path`` (loggers, exporters)."""
