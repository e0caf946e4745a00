"""The commands `run`, `tune`, `list` and `plugins`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from crossbench.cli.common import current_state, experiment_from_options, experiment_options, run_options
from crossbench.cli.launch import nproc_option, ranks_of
from crossbench.errors import CrossbenchError
from crossbench.plugin.experiment import PRUNERS, TuningSettings
from crossbench.plugin.registry import KINDS, NOUNS


@click.command()
@experiment_options
@click.option("--sampled", "sampled", type=int, help="Sampled evaluation: N negatives per user (labelled 'sampled'; default: full ranking).")
@click.option("--sampling", type=click.Choice(["uniform", "popularity"]), help="How --sampled negatives are drawn.")
@click.option("--bf16", is_flag=True, help="Train composed models under bf16 autocast on CUDA.")
@nproc_option
def run(
    experiment_file: Path | None, output: Path | None, device: str, threads: int | None, cache_dir: Path, quiet: bool,
    overwrite: bool, sampled: int | None, sampling: str | None, bf16: bool, nproc: int | None, **selection: Any,
) -> None:
    """Run a benchmark and print its leaderboard.

    With no arguments: the default benchmark, provided by a plugin (the built-in one: synthetic
    data, cold-start protocol, Popularity vs target-only MF vs a cross-domain model). With
    EXPERIMENT_FILE (TOML): that experiment.
    Options override either. Each finished run is kept at once; the same command again
    resumes, skipping finished runs.
    """
    from crossbench.run.runner import run_experiment, safe_name

    state = current_state()
    exp = experiment_from_options(state, experiment_file, selection)
    if sampled is not None:
        if sampled < 1:
            raise CrossbenchError(f"--sampled {sampled}: give a positive number of negatives per user, or leave it out for full ranking")
        exp = replace(exp, sampled_negatives=sampled)
    if sampling is not None:
        if not exp.sampled_negatives:
            raise CrossbenchError(f"--sampling {sampling} only applies to sampled evaluation; add --sampled N")
        exp = replace(exp, sampling=sampling)
    out = output or Path("crossbench-results") / safe_name(exp.name)
    options = run_options("run", out, device=device, threads=threads, quiet=quiet, cache_dir=cache_dir, bf16=bf16)
    with ranks_of("run", nproc, exp, state.registry, device) as dp:  # --nproc N: this process only watches N ranks
        if dp is None:
            return
        options = replace(options, progress=options.progress and dp.writes)  # rank 0 alone speaks
        log = (lambda msg: None) if quiet or not dp.writes else (lambda msg: click.echo(msg, err=True))
        records, markdown = run_experiment(exp, registry=state.registry, options=options, log=log, overwrite=overwrite)
        if dp.writes:
            click.echo(markdown)
            click.echo(f"{len(records)} run record(s), leaderboard.md and pairwise.md in {out}", err=True)


@click.command()
@experiment_options
@click.option("--trials", type=int, help="Trials per model and split (the same for every model); default 20 unless --timeout is given.")
@click.option("--timeout", "timeout_s", type=float, help="Seconds of trials per model and split (with --trials: whichever ends first).")
@click.option("--objective", help="Validation metric to maximise, as NAME@K (default: the experiment's primary metric).")
@click.option("--pruner", type=click.Choice(PRUNERS), default="median", show_default=True,
              help="Stop unpromising trials of trainer-based models early, on the per-epoch validation metric.")
@click.option("--sampler-seed", type=int, help="Seed of the TPE sampler (default: each split's seed).")
@click.option("--storage", help="Where studies live: a journal file (PATH.log or journal:PATH) or a database URL "
              "(sqlite:///..., postgresql://...); default: tuning.db in the results folder.")
@click.option("--study", help="Prefix of the study names, shared by every worker of one study (default: the experiment's name).")
@click.option("--worker", is_flag=True, help="Only run trials of the studies (join other workers), then exit: no test evaluation.")
@click.option("--heartbeat", "heartbeat_s", type=int, default=60, show_default=True,
              help="Seconds between a running trial's heartbeats; a trial silent for twice as long is run again.")
@nproc_option
def tune(
    experiment_file: Path | None, output: Path | None, device: str, threads: int | None, cache_dir: Path, quiet: bool,
    overwrite: bool, trials: int | None, timeout_s: float | None, objective: str | None, pruner: str, sampler_seed: int | None,
    storage: str | None, study: str | None, worker: bool, heartbeat_s: int, nproc: int | None, **selection: Any,
) -> None:
    """Tune every model on each split's validation users with Optuna, then run the benchmark.

    Each reported (target, seed) split is tuned on its own validation users, one study per
    model, with the same budget for every model; the best hyperparameters are then fitted
    and evaluated on that split's test users. Studies are stored (SQLite in the results
    folder by default) and resume where they stopped; processes started with the same
    --storage and --study (and --worker) share the trials.
    """
    from crossbench.run.runner import run_experiment, safe_name, set_threads
    from crossbench.tune.tuning import work

    state = current_state()
    exp = experiment_from_options(state, experiment_file, selection)
    objective = objective or exp.primary_metric
    name, _, k = objective.partition("@")
    if not k.isdigit():
        raise CrossbenchError(f"--objective {objective!r}: expected NAME@K, e.g. ndcg@10")
    settings = TuningSettings(
        trials=trials if trials is not None or timeout_s is not None else 20, timeout_s=timeout_s, metric=name, k=int(k),
        pruner=pruner, sampler_seed=sampler_seed, storage=storage, study=study, heartbeat_s=heartbeat_s,
    )
    exp = replace(exp, name=f"{exp.name}-tuned")
    out = output or Path("crossbench-results") / safe_name(exp.name)
    options = run_options("tune", out, device=device, threads=threads, quiet=quiet, cache_dir=cache_dir)
    if worker and nproc not in (None, 1):
        raise CrossbenchError(f"--worker with --nproc {nproc}: a worker runs trials in one process; start more workers instead")
    with ranks_of("tune", nproc, exp, state.registry, device) as dp:  # --nproc N: this process only watches N ranks
        if dp is None:
            return
        options = replace(options, progress=options.progress and dp.writes)  # rank 0 alone speaks
        log = (lambda msg: None) if quiet or not dp.writes else (lambda msg: click.echo(msg, err=True))
        if worker:
            set_threads(threads)
            n = work(exp, registry=state.registry, options=options, settings=settings, log=log)
            click.echo(f"worker finished: {n} stud{'y' if n == 1 else 'ies'} at their budget", err=True)
            return
        records, markdown = run_experiment(exp, registry=state.registry, options=options, log=log, tuning=settings, overwrite=overwrite)
        if dp.writes:
            click.echo(markdown)
            click.echo(f"{len(records)} run record(s), leaderboard.md, pairwise.md and study plots in {out}", err=True)


@click.command("list")
@click.argument("kind", type=click.Choice([*KINDS, "models"]))
@click.option("--params", is_flag=True, help="Also every hyperparameter of each: type, default, searched range, meaning "
              "(as `crossbench show NAME`).")
def list_(kind: str, params: bool) -> None:
    """List registered components of KIND with the plugin that provides each."""
    kind = "recommenders" if kind == "models" else kind
    reg = current_state().registry
    rows = [(e.spec.name, e.plugin, e.spec.description) for e in reg.entries(kind)]
    if not rows:
        click.echo(f"no {NOUNS[kind]}s registered")
        return
    if params:
        from crossbench.cli.show import render

        click.echo("\n\n".join(render(reg, kind, name) for name, _, _ in rows))
        return
    width = max(len(r[0]) for r in rows)
    pw = max(len(r[1]) for r in rows)
    for name, plugin, desc in rows:
        click.echo(f"{name:<{width}}  {plugin:<{pw}}  {desc}")


@click.command()
def plugins() -> None:
    """List every loaded plugin with its package and version, and every broken one with its cause."""
    registry = current_state().registry
    for name, dist, version in registry.pm.plugin_distributions():  # type: ignore[attr-defined]
        click.echo(f"{name}\t{dist}\t{version}")
    for failure in registry.failures():
        click.echo(f"{failure.plugin}\t{failure.package}\tbroken: {failure.cause}")
