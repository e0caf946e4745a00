"""What the commands share: the registry of one invocation, and the experiment options of
`run`, `tune`, `recommend` and `simulate` with how they become an experiment and run options.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import click

from crossbench.errors import LINE_LIMIT, CrossbenchError, closest, shorten, unknown_name_message
from crossbench.experiment.assignments import parse_assignment
from crossbench.experiment.checks import check_threads, coerce_components, default_experiment, no_default_message
from crossbench.experiment.tomlfile import load_experiment
from crossbench.plugin.experiment import DatasetRef, Experiment, ModelRef, ProtocolRef, RunOptions, experiment_fingerprint
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.params import seed_problem
from crossbench.plugin.registry import Registry
from crossbench.plugin.specs import COMPONENT_ROLES


@dataclass
class CliState:
    """Shared by every command: extra in-process plugins (for embedding and tests) and the registry."""

    extra_plugins: Sequence[object] = ()
    _registry: Registry | None = field(default=None, repr=False)

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(get_plugin_manager(self.extra_plugins))
            for line in self._registry.problems():  # once per process, one line each
                click.echo(shorten(f"crossbench: warning: {line}", LINE_LIMIT), err=True)
        return self._registry


class FiniteFloat(click.ParamType):
    """A float option that refuses ``nan`` and ``inf`` (no option of crossbench means them)."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import math

        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class BoundedInt(click.ParamType):
    """An integer option within int64 (a larger one is a typo, and overflows every array it reaches)."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.INT.convert(value, param, ctx)
        if not -(2**63) <= number < 2**63:
            self.fail(f"{shorten(str(value), 40)} is out of range (|N| < 2**63)", param, ctx)
        return number


class SeedInt(click.ParamType):
    """A seed option: an integer in ``[0, 2**32)``, what NumPy's and torch's generators all accept."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.INT.convert(value, param, ctx)
        problem = seed_problem(number)
        if problem:
            self.fail(f"{shorten(str(value), 40)} {problem}", param, ctx)
        return number


def check_numbers(command: click.Command) -> None:
    """Give every float option of ``command`` (and of its sub-commands) :class:`FiniteFloat`, every
    integer option :class:`BoundedInt`, and every integer option named ``*seed`` :class:`SeedInt`:
    numbers are checked where they enter, for every command (plugins' commands included)."""
    for param in command.params:
        if param.type is click.FLOAT:
            param.type = FiniteFloat()
        elif param.type is click.INT:
            param.type = SeedInt() if (param.name or "").endswith("seed") else BoundedInt()
    for sub in getattr(command, "commands", {}).values():
        check_numbers(sub)


def current_state() -> CliState:
    ctx = click.get_current_context()
    if not isinstance(ctx.obj, CliState):
        ctx.obj = CliState()
    return ctx.obj


def experiment_options(f: Any) -> Any:
    """The options shared by `run` and `tune`: what to run, where, and how."""
    options = [
        click.argument("experiment_file", required=False, type=click.Path(path_type=Path)),
        click.option("--dataset", "dataset", help="Registered dataset name (see `crossbench list datasets`)."),
        click.option("--dataset-param", "dataset_params", multiple=True, metavar="KEY=VALUE", help="Dataset hyperparameter (repeatable)."),
        click.option("--model", "models", multiple=True, help="Registered model name (repeatable; see `crossbench list models`)."),
        click.option("--model-param", "model_params", multiple=True, metavar="[MODEL.]KEY=VALUE", help="Model hyperparameter (repeatable)."),
        click.option("--protocol", help="Protocol name (see `crossbench list protocols`; default: the default experiment's)."),
        click.option("--target", "targets", multiple=True, help="Target domain (repeatable, or 'all'); default: the dataset's."),
        click.option("--protocol-param", "protocol_params", multiple=True, metavar="KEY=VALUE", help="Protocol parameter, e.g. test_fraction=0.2."),
        click.option("--seeds", help="Comma-separated seeds, e.g. 0,1,2."),
        click.option("--ks", help="Comma-separated cut-offs, e.g. 10,20."),
        click.option("--metrics", "metrics", help="Comma-separated metric names."),
        click.option("--primary", help="Primary metric as NAME@K: tables rank and test on it, tuning maximises it "
                                       "(default: the experiment's; else the first metric at the first cut-off)."),
        click.option("--output", "output", type=click.Path(path_type=Path), help="Results folder (default: crossbench-results/NAME)."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--threads", type=int, help="torch CPU threads (recorded in every run record)."),
        click.option("--cache-dir", type=click.Path(path_type=Path), default=Path(".crossbench-cache"), show_default=True,
                     help="Cache for encoded item text."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bars."),
        click.option("--overwrite", is_flag=True, help="Replace the results of another experiment in --output (default: refuse)."),
    ]
    for decorate in reversed(options):
        f = decorate(f)
    return f


def experiment_from_options(state: CliState, experiment_file: Path | None, selection: dict[str, Any]) -> Experiment:
    """The experiment file (or the default benchmark) with the command-line selection applied.

    Without a file and without a default experiment (no loaded plugin provides one), the
    options must name the dataset, the protocol, the models and the metrics.
    """
    if experiment_file:
        # the default experiment is asked for only when the file leaves out what it supplies
        exp = load_experiment(experiment_file, lambda: default_experiment(state.registry.pm))
    elif (defaults := default_experiment(state.registry.pm)) is not None:
        exp = defaults
    else:
        needed = {"--dataset": "dataset", "--protocol": "protocol", "--model": "models", "--metrics": "metrics"}
        missing = [option for option, key in needed.items() if not selection.get(key)]
        if missing:
            raise CrossbenchError(f"{no_default_message()} (missing: {', '.join(missing)})")
        exp = Experiment(name="custom", dataset=DatasetRef(selection["dataset"]), protocol=ProtocolRef(selection["protocol"]), metrics=())
    changed = coerce_components(_apply_options(exp, registry=state.registry, **selection), state.registry)
    if experiment_file is None and changed != exp:
        # each command-line experiment gets its own folder: a different one never lands on another's results
        changed = replace(changed, name=f"custom-{experiment_fingerprint(changed)[:10]}")
    return changed


def run_options(command: str, out: Path, *, device: str, threads: int | None, quiet: bool, cache_dir: Path, bf16: bool = False) -> RunOptions:
    check_threads(threads)
    if not str(out).strip() or str(out) == ".":
        raise CrossbenchError(f"--output {str(out)!r}: name a results folder (an empty name would write into the current folder)")
    if out.exists() and not out.is_dir():
        raise CrossbenchError(f"--output {str(out)!r} is an existing file, not a folder; name a folder for the results")
    line = "crossbench " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == [command] else None
    return RunOptions(output_dir=out, device=device, threads=threads, progress=not quiet, cache_dir=cache_dir, command=line, bf16=bf16)


EXAMPLES = {"--seeds": "0,1,2", "--ks": "10,20", "--metrics": "ndcg,recall"}


def _split_csv(text: str, kind: type, option: str) -> tuple[Any, ...]:
    try:
        values = tuple(kind(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise CrossbenchError(f"{option} {text!r}: expected comma-separated {kind.__name__}s") from None
    if not values:
        raise CrossbenchError(f"{option} {text!r}: no values given; list at least one, e.g. {option} {EXAMPLES.get(option, '...')}")
    return values


def _apply_options(
    exp: Experiment, *, dataset: str | None, dataset_params: tuple[str, ...], models: tuple[str, ...],
    model_params: tuple[str, ...], protocol: str | None, targets: tuple[str, ...], protocol_params: tuple[str, ...],
    seeds: str | None, ks: str | None, metrics: str | None, primary: str | None, registry: Registry,
) -> Experiment:
    if dataset:
        exp = replace(exp, dataset=DatasetRef(dataset, {}))
    if dataset_params:
        params = dict(exp.dataset.params)
        params.update(parse_assignment(a, option="--dataset-param") for a in dataset_params)
        exp = replace(exp, dataset=replace(exp.dataset, params=params))
    if models:
        exp = replace(exp, models=tuple(ModelRef(m) for m in models))
    if model_params:
        exp = replace(exp, models=_model_params(exp.models, model_params, registry))
    if protocol or targets or protocol_params:
        p = exp.protocol
        # parameters of another protocol do not carry over when the protocol changes
        params = dict(p.params) if protocol in (None, p.name) else {}
        params.update(parse_assignment(a, option="--protocol-param") for a in protocol_params)
        exp = replace(
            exp,
            protocol=ProtocolRef(protocol or p.name, ("all",) if targets == ("all",) else (tuple(targets) or p.targets), params),
        )
    # an empty --seeds '' is refused, not taken for "the defaults"
    if seeds is not None:
        exp = replace(exp, seeds=_split_csv(seeds, int, "--seeds"))
    if ks is not None:
        exp = replace(exp, ks=_split_csv(ks, int, "--ks"))
    if metrics is not None:
        exp = replace(exp, metrics=_split_csv(metrics, str, "--metrics"))
    if primary is not None:
        exp = replace(exp, primary=primary)
    elif exp.primary is not None and (metrics is not None or ks is not None):
        name, _, k = exp.primary.rpartition("@")
        if name not in exp.metrics or not k.isdigit() or int(k) not in exp.ks:
            exp = replace(exp, primary=None)  # the default's primary metric is not among the chosen ones
    return exp


def _model_params(models: tuple[ModelRef, ...], assignments: tuple[str, ...], registry: Registry) -> tuple[ModelRef, ...]:
    """Apply ``[LABEL.][ROLE.]KEY=VALUE``: to one model (``LABEL.``) or to every model that has KEY;
    ``ROLE.KEY`` (``fusion.heads=2``) sets a hyperparameter of that model's component in ROLE.

    Assignments of a model's own hyperparameters apply first, so ``fusion=attention`` and
    ``fusion.heads=2`` can be given together in any order.
    """
    from crossbench.plugin.build import make_recommender

    out = {m.display: dict(m.params) for m in models}
    parsed = []
    for text in assignments:
        head, sep, value_text = text.partition("=")
        parts = head.strip().split(".")
        scope = None
        if len(parts) > 1 and parts[0] in out and parts[0] not in COMPONENT_ROLES:
            scope, parts = parts[0], parts[1:]
        elif len(parts) > 1 and parts[0] not in COMPONENT_ROLES:
            raise CrossbenchError(unknown_name_message(f"model label or component role in --model-param {text!r}:", parts[0],
                                                       [*out, *COMPONENT_ROLES]))
        if len(parts) > 2 or not sep:
            raise CrossbenchError(f"--model-param {text!r}: expected [MODEL.][ROLE.]KEY=VALUE, e.g. dim=32 or fusion.heads=2")
        role = parts[0] if len(parts) == 2 else None
        key, value = parse_assignment(f"{parts[-1]}={value_text}", option="--model-param")
        parsed.append((text, scope, role, key, value))
    for text, scope, role, key, value in sorted(parsed, key=lambda p: p[2] is not None):
        candidates = [m for m in models if scope is None or m.display == scope]
        if role is None:
            takers = [m for m in candidates if key in registry.get("recommenders", m.name).hyperparameters()]
        else:
            takers = [m for m in candidates
                      if role in make_recommender(registry, m.name, out[m.display], where=f"model {m.display!r}").components()]
        if not takers:
            names = ", ".join(m.display for m in candidates)
            what = f"a {role}" if role else f"a hyperparameter {key!r}"
            known = sorted({h for m in candidates for h in registry.get("recommenders", m.name).hyperparameters()})
            near = closest(key, known) if role is None else []
            hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
            raise CrossbenchError(f"--model-param {text}: none of the models ({names}) has {what}{hint} "
                                  f"(see `crossbench show MODEL` for every hyperparameter of a model)")
        for m in takers:
            out[m.display][f"{role}.{key}" if role else key] = value
    return tuple(replace(m, params=out[m.display]) for m in models)
