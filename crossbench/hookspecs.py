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

    from crossbench.interfaces import ComponentSpec, MetricSpec

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
def crossbench_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``crossbench`` command group."""


@hookspec
def crossbench_run_finished(record: dict[str, Any], path: Path) -> None:
    """Called after a run record has been written to ``path`` (loggers, exporters)."""
