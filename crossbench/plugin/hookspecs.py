"""The hooks a crossbench plugin can implement.

A plugin is any module or object with functions marked ``@crossbench.hookimpl`` whose
names match the specs below. Packages announce plugins through the ``crossbench``
entry-point group; the built-in plugins are loaded the same way. docs/plugins.md documents
every hook with an example (a test keeps it complete).

The component hooks (``crossbench_datasets`` ... ``crossbench_metrics``) take no arguments and
return a list of specs. They are called once per process, when the registry is built (before
any command that names a component, ``crossbench list`` and ``crossbench plugins`` included),
one plugin at a time. A plugin whose hook raises, returns something other than a list of specs,
or returns a spec that fails the registration checks (:mod:`crossbench.plugin.checks`) is skipped
as a whole with one line naming it; the other plugins load.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from crossbench.plugin.experiment import Experiment
    from crossbench.plugin.specs import ComponentSpec, MetricSpec, ProtocolSpec

PROJECT = "crossbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def crossbench_datasets() -> Iterable[ComponentSpec]:
    """Datasets, selected with ``--dataset NAME`` (hyperparameters with ``--dataset-param``).

    Returns a list of :class:`~crossbench.plugin.specs.ComponentSpec` whose ``factory(**hp)``
    returns a :class:`~crossbench.plugin.interfaces.Dataset` (:data:`crossbench.plugin.factory_types.DatasetFactory`).
    Its ``load()`` returns a validated :class:`~crossbench.data.model.CrossDomainData` (build one
    with ``CrossDomainData.from_frames``); ``meta["default_target"]`` names the domain ranked when
    no ``--target`` is given (else the last domain). Required keywords (a ``path``) are allowed;
    they are checked before any data loads. The factory is called once per run, ``load`` once.
    """
    raise NotImplementedError


@hookspec
def crossbench_item_encoders() -> Iterable[ComponentSpec]:
    """Item encoders, used by composed models as ``item_encoder=NAME``.

    Returns a list of specs whose ``factory(context=BuildContext, domain=str, **hp)`` returns an
    :class:`~crossbench.plugin.interfaces.ItemEncoder` for ``domain``
    (:class:`crossbench.plugin.factory_types.ItemEncoderFactory`); every hyperparameter has a default.
    Called once per domain when a composed model is built, after the split: ``context.data`` is
    the training data only.
    """
    raise NotImplementedError


@hookspec
def crossbench_user_encoders() -> Iterable[ComponentSpec]:
    """User encoders, used by composed models as ``user_encoder=NAME``.

    Returns a list of specs whose ``factory(context=BuildContext, domain=str, **hp)`` returns a
    :class:`~crossbench.plugin.interfaces.UserEncoder` (:class:`crossbench.plugin.factory_types.UserEncoderFactory`);
    every hyperparameter has a default. Called once per domain when a composed model is built.
    """
    raise NotImplementedError


@hookspec
def crossbench_fusions() -> Iterable[ComponentSpec]:
    """Fusions, used by composed models as ``fusion=NAME``.

    Returns a list of specs whose ``factory(context=BuildContext, **hp)`` returns a
    :class:`~crossbench.plugin.interfaces.Fusion` (:class:`crossbench.plugin.factory_types.FusionFactory`); every
    hyperparameter has a default. Called once when a composed model is built. The fusion must
    give a finite vector to a user with no history in any domain (every ``present`` false).
    """
    raise NotImplementedError


@hookspec
def crossbench_scorers() -> Iterable[ComponentSpec]:
    """Scorers, used by composed models as ``scorer=NAME``.

    Returns a list of specs whose ``factory(context=BuildContext, **hp)`` returns a
    :class:`~crossbench.plugin.interfaces.Scorer` (:class:`crossbench.plugin.factory_types.ScorerFactory`); every
    hyperparameter has a default. Called once when a composed model is built.
    """
    raise NotImplementedError


@hookspec
def crossbench_recommenders() -> Iterable[ComponentSpec]:
    """Whole models, selected with ``--model NAME`` (hyperparameters with ``--model-param``).

    Returns a list of specs whose ``factory(**hp)`` returns a
    :class:`~crossbench.plugin.interfaces.Recommender` (:data:`crossbench.plugin.factory_types.RecommenderFactory`).
    The factory is called before any data loads to check the parameters, then once per run (and
    per tuning trial); ``fit`` receives a :class:`~crossbench.data.protocols.FitSplit` (no test set).
    """
    raise NotImplementedError


@hookspec
def crossbench_metrics() -> Iterable[MetricSpec]:
    """Ranking metrics, selected with ``--metrics NAME,...``.

    Returns a list of :class:`~crossbench.plugin.specs.MetricSpec`. ``compute`` is called per chunk
    of users and per cut-off ``k``; for ``ranks`` and ``graded`` metrics ``ranks`` holds each
    relevant item's 0-based rank in item-index order (not sorted), ``inf`` past ``k`` and for
    padding. Such a metric is also recomputed per item group (``ndcg@10[tail]``).
    """
    raise NotImplementedError


@hookspec
def crossbench_feedback_models() -> Iterable[ComponentSpec]:
    """Feedback models of the simulation (which shown items a user takes), selected with ``--feedback``.

    Returns a list of specs whose ``factory(**hp) -> FeedbackModel``
    (:class:`crossbench.loop.feedback.FeedbackModel`). The factory is called before any work to check
    the parameters (and ``check(dataset=..., where=...)``), then once per simulation; the model's
    ``start(context)`` is called once before the first round and ``respond`` once per round.
    """
    raise NotImplementedError


@hookspec
def crossbench_protocols() -> Iterable[ProtocolSpec]:
    """Protocols: how a dataset becomes training data plus held-out validation and test ground truth.

    Called once, when the registry is built (every command that reads components). Return
    an iterable of :class:`crossbench.plugin.specs.ProtocolSpec`, one per protocol, each with a
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
    :class:`crossbench.plugin.experiment.Experiment` naming components that the plugin itself or
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
    """Add sub-commands to the ``crossbench`` command group.

    ``cli`` is the top-level :class:`click.Group`; call ``cli.add_command(...)``. Called once at
    start-up, after the registry is built and before the command line is parsed; a plugin whose
    hook raises is skipped with one warning line. Returns nothing.
    """


@hookspec
def crossbench_run_finished(record: dict[str, Any], path: Path) -> None:
    """Called after each run record has been written to ``path`` (loggers, exporters).

    ``record`` is the run record as written (JSON-compatible: the experiment, the model and its
    parameters, the split, the metric values, timings); ``path`` the file holding it. Called once
    per finished (model, target, seed) run, in the process that ran it. Returns nothing.
    """
