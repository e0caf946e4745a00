"""The ``crossbench`` command."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import click

from crossbench import __version__
from crossbench.assignments import parse_assignment
from crossbench.cli_errors import ErrorContractGroup
from crossbench.cli_records import reproduce, verify
from crossbench.data.cli import data_group
from crossbench.errors import CrossbenchError, closest, unknown_name_message
from crossbench.experiment import (
    PRUNERS,
    DatasetRef,
    Experiment,
    ModelRef,
    ProtocolRef,
    RunOptions,
    TuningSettings,
    default_experiment,
    experiment_fingerprint,
    no_default_message,
)
from crossbench.experiment_toml import load_experiment
from crossbench.interfaces import COMPONENT_ROLES
from crossbench.plugins import add_commands, get_plugin_manager
from crossbench.registry import KINDS, NOUNS, Registry
from crossbench.results import load_records


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
                click.echo(f"crossbench: warning: {line}", err=True)
        return self._registry


_Group = ErrorContractGroup


def _state() -> CliState:
    ctx = click.get_current_context()
    if not isinstance(ctx.obj, CliState):
        ctx.obj = CliState()
    return ctx.obj


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="crossbench")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """crossbench: benchmark cross-domain recommenders fairly and reproducibly.

    Run `crossbench run` for the default benchmark, `crossbench list models` to see what
    can be compared, and `crossbench plugins` for the installed plugins.
    """
    if not isinstance(ctx.obj, CliState):
        ctx.obj = CliState()


def _experiment_options(f: Any) -> Any:
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


def _experiment(state: CliState, experiment_file: Path | None, selection: dict[str, Any]) -> Experiment:
    """The experiment file (or the default benchmark) with the command-line selection applied.

    Without a file and without a default experiment (no loaded plugin provides one), the
    options must name the dataset, the protocol, the models and the metrics.
    """
    defaults = default_experiment(state.registry.pm)
    if experiment_file:
        exp = load_experiment(experiment_file, defaults)
    elif defaults is not None:
        exp = defaults
    else:
        needed = {"--dataset": "dataset", "--protocol": "protocol", "--model": "models", "--metrics": "metrics"}
        missing = [option for option, key in needed.items() if not selection.get(key)]
        if missing:
            raise CrossbenchError(f"{no_default_message()} (missing: {', '.join(missing)})")
        exp = Experiment(name="custom", dataset=DatasetRef(selection["dataset"]), protocol=ProtocolRef(selection["protocol"]), metrics=())
    changed = _apply_options(exp, registry=state.registry, **selection)
    if experiment_file is None and changed != exp:
        # each command-line experiment gets its own folder: a different one never lands on another's results
        changed = replace(changed, name=f"custom-{experiment_fingerprint(changed)[:10]}")
    return changed


def _options(command: str, out: Path, *, device: str, threads: int | None, quiet: bool, cache_dir: Path, bf16: bool = False) -> RunOptions:
    if out.exists() and not out.is_dir():
        raise CrossbenchError(f"--output {str(out)!r} is an existing file, not a folder; name a folder for the results")
    line = "crossbench " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == [command] else None
    return RunOptions(output_dir=out, device=device, threads=threads, progress=not quiet, cache_dir=cache_dir, command=line, bf16=bf16)


@cli.command()
@_experiment_options
@click.option("--sampled", "sampled", type=int, help="Sampled evaluation: N negatives per user (labelled 'sampled'; default: full ranking).")
@click.option("--sampling", type=click.Choice(["uniform", "popularity"]), help="How --sampled negatives are drawn.")
@click.option("--bf16", is_flag=True, help="Train composed models under bf16 autocast on CUDA.")
def run(
    experiment_file: Path | None, output: Path | None, device: str, threads: int | None, cache_dir: Path, quiet: bool,
    overwrite: bool, sampled: int | None, sampling: str | None, bf16: bool, **selection: Any,
) -> None:
    """Run a benchmark and print its leaderboard.

    With no arguments: the default benchmark, provided by a plugin (the built-in one: synthetic
    data, cold-start protocol, Popularity vs target-only MF vs a cross-domain model). With
    EXPERIMENT_FILE (TOML): that experiment.
    Options override either. Each finished run is kept at once; the same command again
    resumes, skipping finished runs.
    """
    from crossbench.runner import run_experiment, safe_name

    state = _state()
    exp = _experiment(state, experiment_file, selection)
    if sampled is not None:
        if sampled < 1:
            raise CrossbenchError(f"--sampled {sampled}: give a positive number of negatives per user, or leave it out for full ranking")
        exp = replace(exp, sampled_negatives=sampled)
    if sampling is not None:
        if not exp.sampled_negatives:
            raise CrossbenchError(f"--sampling {sampling} only applies to sampled evaluation; add --sampled N")
        exp = replace(exp, sampling=sampling)
    out = output or Path("crossbench-results") / safe_name(exp.name)
    options = _options("run", out, device=device, threads=threads, quiet=quiet, cache_dir=cache_dir, bf16=bf16)
    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    records, markdown = run_experiment(exp, registry=state.registry, options=options, log=log, overwrite=overwrite)
    click.echo(markdown)
    click.echo(f"{len(records)} run record(s), leaderboard.md and pairwise.md in {out}", err=True)


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
    seeds: str | None, ks: str | None, metrics: str | None, registry: Registry,
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
    return exp


def _model_params(models: tuple[ModelRef, ...], assignments: tuple[str, ...], registry: Registry) -> tuple[ModelRef, ...]:
    """Apply ``[LABEL.][ROLE.]KEY=VALUE``: to one model (``LABEL.``) or to every model that has KEY;
    ``ROLE.KEY`` (``fusion.heads=2``) sets a hyperparameter of that model's component in ROLE.

    Assignments of a model's own hyperparameters apply first, so ``fusion=attention`` and
    ``fusion.heads=2`` can be given together in any order.
    """
    from crossbench.modelspace import make_recommender

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
                                  f"(see `crossbench list models` and each model's factory)")
        for m in takers:
            out[m.display][f"{role}.{key}" if role else key] = value
    return tuple(replace(m, params=out[m.display]) for m in models)


@cli.command()
@_experiment_options
@click.option("--trials", type=int, help="Trials per model and split (the same for every model); default 20 unless --timeout is given.")
@click.option("--timeout", "timeout_s", type=float, help="Seconds of trials per model and split (with --trials: whichever ends first).")
@click.option("--objective", default="ndcg@10", show_default=True, help="Validation metric to maximise, as NAME@K.")
@click.option("--pruner", type=click.Choice(PRUNERS), default="median", show_default=True,
              help="Stop unpromising trials of trainer-based models early, on the per-epoch validation metric.")
@click.option("--sampler-seed", type=int, help="Seed of the TPE sampler (default: each split's seed).")
@click.option("--storage", help="Where studies live: a journal file (PATH.log or journal:PATH) or a database URL "
              "(sqlite:///..., postgresql://...); default: tuning.db in the results folder.")
@click.option("--study", help="Prefix of the study names, shared by every worker of one study (default: the experiment's name).")
@click.option("--worker", is_flag=True, help="Only run trials of the studies (join other workers), then exit: no test evaluation.")
@click.option("--heartbeat", "heartbeat_s", type=int, default=60, show_default=True,
              help="Seconds between a running trial's heartbeats; a trial silent for twice as long is run again.")
def tune(
    experiment_file: Path | None, output: Path | None, device: str, threads: int | None, cache_dir: Path, quiet: bool,
    overwrite: bool, trials: int | None, timeout_s: float | None, objective: str, pruner: str, sampler_seed: int | None,
    storage: str | None, study: str | None, worker: bool, heartbeat_s: int, **selection: Any,
) -> None:
    """Tune every model on each split's validation users with Optuna, then run the benchmark.

    Each reported (target, seed) split is tuned on its own validation users, one study per
    model, with the same budget for every model; the best hyperparameters are then fitted
    and evaluated on that split's test users. Studies are stored (SQLite in the results
    folder by default) and resume where they stopped; processes started with the same
    --storage and --study (and --worker) share the trials.
    """
    from crossbench.runner import run_experiment, safe_name, set_threads
    from crossbench.tuning import work

    state = _state()
    exp = _experiment(state, experiment_file, selection)
    name, _, k = objective.partition("@")
    if not k.isdigit():
        raise CrossbenchError(f"--objective {objective!r}: expected NAME@K, e.g. ndcg@10")
    settings = TuningSettings(
        trials=trials if trials is not None or timeout_s is not None else 20, timeout_s=timeout_s, metric=name, k=int(k),
        pruner=pruner, sampler_seed=sampler_seed, storage=storage, study=study, heartbeat_s=heartbeat_s,
    )
    exp = replace(exp, name=f"{exp.name}-tuned")
    out = output or Path("crossbench-results") / safe_name(exp.name)
    options = _options("tune", out, device=device, threads=threads, quiet=quiet, cache_dir=cache_dir)
    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    if worker:
        set_threads(threads)
        n = work(exp, registry=state.registry, options=options, settings=settings, log=log)
        click.echo(f"worker finished: {n} stud{'y' if n == 1 else 'ies'} at their budget", err=True)
        return
    records, markdown = run_experiment(exp, registry=state.registry, options=options, log=log, tuning=settings, overwrite=overwrite)
    click.echo(markdown)
    click.echo(f"{len(records)} run record(s), leaderboard.md, pairwise.md and study plots in {out}", err=True)


@cli.command("list")
@click.argument("kind", type=click.Choice([*KINDS, "models"]))
def list_(kind: str) -> None:
    """List registered components of KIND with the plugin that provides each."""
    kind = "recommenders" if kind == "models" else kind
    reg = _state().registry
    rows = [(e.spec.name, e.plugin, e.spec.description) for e in reg.entries(kind)]
    if not rows:
        click.echo(f"no {NOUNS[kind]}s registered")
        return
    width = max(len(r[0]) for r in rows)
    pw = max(len(r[1]) for r in rows)
    for name, plugin, desc in rows:
        click.echo(f"{name:<{width}}  {plugin:<{pw}}  {desc}")


@cli.command()
def plugins() -> None:
    """List every loaded plugin with its package and version, and every broken one with its cause."""
    registry = _state().registry
    for name, dist, version in registry.pm.plugin_distributions():  # type: ignore[attr-defined]
        click.echo(f"{name}\t{dist}\t{version}")
    for failure in registry.failures():
        click.echo(f"{failure.plugin}\t{failure.package}\tbroken: {failure.cause}")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the Markdown here, with its CSV, JSON, pairwise table and plots beside it.")
@click.option("--check", "check", type=click.Path(dir_okay=False, path_type=Path),
              help="Fail if this Markdown file, or its CSV, JSON, pairwise table or plots, differ from the regenerated ones.")
def leaderboard(paths: tuple[Path, ...], output: Path | None, check: Path | None) -> None:
    """Build the leaderboard from run records (files or results folders).

    Every record is verified first: its schema, and each mean against its sha256-checked
    per-user file; a record that disagrees is refused.
    """
    from crossbench.exports import artefacts, stale, write_artefacts

    records = load_records(paths)
    commands = {r.get("command") for r in records if r.get("command")}
    command = commands.pop() if len(commands) == 1 else None
    target = check or output
    stem = target.name.removesuffix(".md") if target is not None else "leaderboard"
    files = artefacts(records, command=command, stem=stem)
    markdown = files[f"{stem}.md"].content.decode("utf-8")
    if check is not None:
        out = stale(check.parent, files)
        if out:
            raise CrossbenchError(f"{check.parent}: out of date with its run records: {', '.join(out)}; "
                                  f"regenerate them with --output {check}")
        click.echo(f"{check} and its {len(files) - 1} companion file(s) are up to date")
        return
    if output is not None:
        write_artefacts(output.parent, files)
    click.echo(markdown)


cli.add_command(data_group)
cli.add_command(verify)
cli.add_command(reproduce)
from crossbench.cli_simulate import recommend_command, simulate_command  # noqa: E402 (reads the options above)

cli.add_command(recommend_command); cli.add_command(simulate_command)  # noqa: E702


def build_cli(state: CliState | None = None) -> click.Group:
    """The command group with plugin-provided commands added."""
    state = state or CliState()
    add_commands(state.registry.pm, cli)  # type: ignore[arg-type]
    return cli


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    state = CliState()
    try:
        group = build_cli(state)
    except CrossbenchError as exc:
        click.echo(f"crossbench: error: {exc}", err=True)
        sys.exit(2)
    group.main(args=list(argv) if argv is not None else None, prog_name="crossbench", obj=state)
