"""The ``crossbench recommend`` and ``crossbench simulate`` commands."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from crossbench.cli.common import current_state, experiment_from_options, experiment_options, run_options
from crossbench.errors import CrossbenchError
from crossbench.experiment.assignments import parse_assignment


@click.command("recommend")
@experiment_options
@click.option("--users", "users_spec", required=True, help="Raw user ids, comma-separated, or @FILE with one id per line.")
@click.option("-k", "k", type=int, default=10, show_default=True, help="Items per user.")
@click.option("--include-seen", is_flag=True, help="Also list items the user interacted with in training (default: excluded).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "parquet"]), help="Output format (default: from --output's suffix, else csv).")
@click.option("--seed", type=int, help="Which seed's split and fit (default: the experiment's first seed).")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="Load a composed model's checkpoint instead of fitting.")
def recommend_command(
    experiment_file: Path | None, output: Path | None, device: str, threads: int | None, cache_dir: Path, quiet: bool,
    overwrite: bool, users_spec: str, k: int, include_seen: bool, fmt: str | None, seed: int | None, checkpoint: Path | None,
    **selection: Any,
) -> None:
    """Fit a model on the experiment's split and write each user's top-K target items.

    The model (the experiment's first, or --model) is fitted on the training data of the
    protocol's split for the target and seed, exactly as `crossbench run` fits it, and the
    items are ranked as the evaluator ranks them (seen items excluded, the same tie rule).
    Rows: user, rank, item, title, score. Without --output the table goes to stdout.
    """
    from crossbench.experiment.checks import pick_device
    from crossbench.loop.recommend import check_parquet, check_writable, fit_for, load_split, read_users, recommend, user_indices
    from crossbench.plugin.interfaces import RunEnv
    from crossbench.run.runner import set_threads

    if k < 1:
        raise CrossbenchError(f"-k {k}: give a positive number of items per user")
    if fmt == "parquet" or (fmt is None and output is not None and output.suffix.lower() == ".parquet"):
        check_parquet()
    if output is not None and output.is_dir():
        raise CrossbenchError(f"--output {str(output)!r} is a folder; name a file such as recommendations.csv")
    if output is not None:
        check_writable(output)
    if checkpoint is not None and not checkpoint.is_file():
        raise CrossbenchError(f"--checkpoint {str(checkpoint)!r} does not exist")
    ids = read_users(users_spec)
    state = current_state()
    exp = experiment_from_options(state, experiment_file, selection)
    if len(exp.models) != 1:
        labels = ", ".join(m.display for m in exp.models)
        raise CrossbenchError(f"recommend uses one model; the experiment has {len(exp.models)} ({labels}): pick one with --model")
    seed = exp.seeds[0] if seed is None else seed
    dev = pick_device(device)
    set_threads(threads)
    data, split = load_split(exp, state.registry, target=None, seed=seed)  # --target is in the experiment's protocol
    users = user_indices(data, ids)
    env = RunEnv(registry=state.registry, device=dev, seed=seed, progress=not quiet, cache_dir=cache_dir)
    model = fit_for(exp, exp.models[0], split, registry=state.registry, env=env, checkpoint=checkpoint)
    recs = recommend(model, split.train, split.target, users, k=k, exclude_seen=not include_seen, device=dev, chunk_size=exp.chunk_size)
    if output is None:
        if fmt == "json":
            import json

            click.echo(json.dumps(recs.to_json(), indent=2))
        elif fmt == "parquet":
            raise CrossbenchError("--format parquet needs --output FILE")
        else:
            click.echo(recs.frame.to_csv(index=False), nl=False)
        return
    used = recs.write(output, fmt=fmt)
    click.echo(f"{len(recs.frame)} recommendation(s) for {len(ids)} user(s) written to {output} ({used})", err=True)


@click.command("simulate")
@experiment_options
@click.option("--rounds", type=int, help="Rounds of the feedback loop (default: the [simulation] section's, else 10).")
@click.option("-k", "k", type=int, help="Items shown per user per round (default 10).")
@click.option("--feedback", help="Feedback model (see `crossbench list feedback-models`; default: the default experiment's).")
@click.option("--feedback-param", "feedback_params", multiple=True, metavar="KEY=VALUE", help="Feedback model hyperparameter (repeatable).")
@click.option("--users", "n_users", type=int, help="Simulate at most this many test users (a seeded sample; default all).")
@click.option("--warm-users", type=int, help="Warm training users simulated beside them (default 500).")
def simulate_command(
    experiment_file: Path | None, output: Path | None, device: str, threads: int | None, cache_dir: Path, quiet: bool,
    overwrite: bool, rounds: int | None, k: int | None, feedback: str | None, feedback_params: tuple[str, ...],
    n_users: int | None, warm_users: int | None, **selection: Any,
) -> None:
    """Close the loop: recommend, observe feedback, update the model, round by round.

    Each round every simulated user is shown the model's top-K target items, the feedback
    model decides which they take, those are appended to their target history and the model
    updates itself. Accuracy on held-out items not yet taken, coverage and exposure Gini are
    recorded per round. Settings come from the experiment file's [simulation] section and
    these options. A killed simulation resumes after its last finished round.
    """
    from crossbench.files import safe_name
    from crossbench.loop.runner import run_simulations
    from crossbench.plugin.simulation_settings import SimulationSettings

    state = current_state()
    exp = experiment_from_options(state, experiment_file, selection)
    settings = exp.simulation or SimulationSettings()
    changes: dict[str, Any] = {key: value for key, value in
                               (("rounds", rounds), ("k", k), ("users", n_users), ("warm_users", warm_users)) if value is not None}
    if feedback is not None and feedback != settings.feedback:
        changes["feedback"], changes["feedback_params"] = feedback, {}
    if feedback_params:
        params = dict(changes.get("feedback_params", settings.feedback_params))
        params.update(parse_assignment(a, option="--feedback-param") for a in feedback_params)
        changes["feedback_params"] = params
    settings = dataclasses.replace(settings, **changes)
    out = output or Path("crossbench-results") / f"{safe_name(exp.name)}-simulation"
    options = run_options("simulate", out, device=device, threads=threads, quiet=quiet, cache_dir=cache_dir)
    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    records = run_simulations(exp, settings, registry=state.registry, options=options, log=log, overwrite=overwrite)
    click.echo((out / "simulations.md").read_text(encoding="utf-8"))
    click.echo(f"{len(records)} simulation record(s), simulations.md, simulation-rounds.md and curves in {out}", err=True)


__all__ = ["recommend_command", "simulate_command"]
