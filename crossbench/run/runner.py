"""The experiment runner: splits, (tunes,) fits, evaluates, and keeps each run as it finishes.

Every (target, seed, model) run writes its record into the results folder the moment it
finishes (see :mod:`crossbench.records.folder`), so a failed or killed command loses only the run in
progress; the same command again resumes, skipping finished runs. Models are fitted on
:meth:`Split.fit_view` (training data and validation users); only this module hands the test
ground truth to the evaluator.
"""

from __future__ import annotations

import dataclasses
import errno
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from crossbench.data.audit import audit_split
from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import Split, exclude_for_test, parse_target, resolve_targets
from crossbench.errors import LINE_LIMIT, CrossbenchError, shorten
from crossbench.evaluate import evaluate
from crossbench.evaluate.breakdowns import record_breakdowns, split_tiers, tier_groups
from crossbench.evaluate.distributed import evaluate_sharded
from crossbench.evaluate.groups import breakdown, head_tail, item_popularity, user_groups
from crossbench.evaluate.peruser import PerUserFiles, save_per_user
from crossbench.evaluate.ranking import EvalResult
from crossbench.evaluate.rating import RATING_COLUMNS, evaluate_rating
from crossbench.evaluate.sampled import draw_negatives, evaluate_sampled, protocol_negatives, sampled_key
from crossbench.experiment.checks import dataset_params, pick_device, validate
from crossbench.experiment.extend import extension
from crossbench.experiment.tomlfile import experiment_to_toml
from crossbench.files import safe_name as safe_name  # re-exported: the CLI commands name output folders with it
from crossbench.plugin.build import make_protocol, make_recommender
from crossbench.plugin.experiment import Experiment, ModelRef, RunOptions, TuningSettings, experiment_fingerprint
from crossbench.plugin.interfaces import Recommender, RunEnv
from crossbench.plugin.registry import Registry
from crossbench.plugin.specs import ComponentRef
from crossbench.progress import duration
from crossbench.records.folder import ResultsFolder
from crossbench.records.store import (
    SCHEMA_VERSION,
    environment,
    json_value,
    load_records,
    peak_rss_mb,
    reset_peak_rss,
    write_record,
)
from crossbench.report.curves import curve_plots
from crossbench.report.exports import artefacts, write_artefacts
from crossbench.train.distributed import ranks


def warn(message: str) -> None:
    """One ``crossbench: warning:`` line on stderr (shown with ``-q`` too)."""
    sys.stderr.write(shorten(f"crossbench: warning: {message}", LINE_LIMIT) + "\n")


def run_finished(registry: Registry, *, record: dict[str, Any], path: Path) -> None:
    """Call every plugin's ``crossbench_run_finished``; one that fails is a warning naming it.

    The record is already written when the hook runs, so a failing logger or exporter must not
    end the run (or lose the runs after it).
    """
    for impl in registry.pm.hook.crossbench_run_finished.get_hookimpls():
        try:
            impl.function(record=record, path=path)
        except Exception as exc:  # noqa: BLE001 - isolate the plugin, keep the run
            warn(f"plugin {impl.plugin_name!r}: crossbench_run_finished failed for {path.name} "
                 f"({type(exc).__name__}: {exc}); the record is kept")


def record_file(target: str, label: str, seed: int) -> str:
    """The record's file name of one (target, model label, seed) run."""
    return f"{safe_name(target)}-{safe_name(label)}-seed{seed}.json"


def set_threads(threads: int | None) -> int:
    """Apply ``--threads`` (``None``: leave torch's default); return the thread count in force."""
    if threads is not None:
        if threads < 1:
            raise CrossbenchError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


#: errors of the place written to, not of crossbench: a full disk, a read-only or forbidden folder, a quota
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG})


@contextmanager
def _disk_errors(folder: Path) -> Iterator[None]:
    """A full or read-only disk while the results are written is one line naming the path (the runs
    finished before it are kept), not an internal error."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _DISK_ERRNOS:
            raise
        where = exc.filename or folder
        raise CrossbenchError(f"cannot write {where}: {exc.strerror or exc}; finished runs are kept in {folder} — "
                              "free space or make it writable, then run the same command again to resume") from None


def run_experiment(
    exp: Experiment,
    *,
    registry: Registry,
    options: RunOptions,
    log: Callable[[str], None] = lambda _msg: None,
    tuning: TuningSettings | None = None,
    overwrite: bool = False,
) -> tuple[list[dict[str, Any]], str]:
    """Run every (target, seed, model) not finished yet; return all records and the leaderboard.

    With ``tuning``, each model with a search space is first tuned on each split's own
    validation users (one study per split, see :mod:`crossbench.tune.tuning`) and the best
    hyperparameters are fitted and evaluated on that split's test users.
    """
    built = validate(exp, registry)  # each model once, unfitted: fitted in its first run
    if tuning is not None:
        from crossbench.tune.tuning import check_tuning

        check_tuning(exp, tuning, registry=registry, results_dir=options.output_dir)
    dp = ranks()  # several processes (torchrun, --nproc): each fits and evaluates its share; rank 0 alone writes
    device = dp.device(pick_device(options.device))
    threads = set_threads(options.threads)
    fingerprint = experiment_fingerprint(exp, tuning)
    manifest = {"experiment": dataclasses.asdict(exp), "tuning": dataclasses.asdict(tuning) if tuning else None}
    extends = None if overwrite else extension(options.output_dir, exp, tuning)
    folder = ResultsFolder(options.output_dir, experiment=json_value(manifest["experiment"]), extends=extends)
    if dp.writes:
        folder.check(fingerprint, overwrite=overwrite)
        if extends:
            log(f"{exp.name}: adds model(s) to the experiment of {options.output_dir}; the runs it finished earlier are kept")
    t_load = time.perf_counter()
    data = registry.get("datasets", exp.dataset.name).factory(**dataset_params(exp, registry)).load()
    load_s = time.perf_counter() - t_load
    targets = resolve_targets(data, list(exp.protocol.targets) or None)
    notes = []  # said once the first run is kept: a split that fails must end in its one error line alone
    log(f"{exp.name}: dataset {exp.dataset.name} loaded in {duration(load_s)}; {len(targets)} target(s) x {len(exp.seeds)} "
        f"seed(s) x {len(exp.models)} model(s) = {len(targets) * len(exp.seeds) * len(exp.models)} run(s)")
    for target in targets:
        n_items = data.domain(parse_target(target)[1]).n_items  # a domain pair "comedy>drama" targets drama
        if max(exp.ks) > n_items:
            big = ", ".join(str(k) for k in exp.ks if k > n_items)
            notes.append(f"cut-off(s) {big} exceed the {n_items} items of target {target!r}: every item is retrieved there, "
                         "so recall and hit rate at those cut-offs are 1 for every user")
    exp_toml = experiment_to_toml(exp)
    if not dp.writes:
        _run_all(exp, data, targets, registry=registry, options=options, folder=None, device=device, threads=threads,
                 tuning=tuning, log=log, load_s=load_s, begin=lambda: None, built=built, fingerprint=fingerprint)
        return [], ""
    with folder.locked(), _disk_errors(folder.path):
        folder.prepare(fingerprint=fingerprint, overwrite=overwrite)
        def begin() -> None:
            folder.write_manifest(fingerprint=fingerprint, manifest=manifest, experiment_toml=exp_toml)
            while notes:
                warn(notes.pop(0))

        _run_all(exp, data, targets, registry=registry, options=options, folder=folder, device=device, threads=threads,
                 tuning=tuning, log=log, load_s=load_s, begin=begin, built=built, fingerprint=fingerprint)
        per_user = PerUserFiles()
        records = load_records([folder.path], files=per_user)
        files = artefacts(records, command=options.command, record_dir=folder.runs, files=per_user)
        write_artefacts(folder.path, files)
        write_artefacts(folder.path, curve_plots(records))  # each run's validation curve, beside the table's plots
    return records, files["leaderboard.md"].content.decode("utf-8")


def _run_all(
    exp: Experiment, data: CrossDomainData, targets: list[str], *, registry: Registry, options: RunOptions,
    folder: ResultsFolder | None, device: torch.device, threads: int, tuning: TuningSettings | None,
    log: Callable[[str], None], load_s: float, begin: Callable[[], None], built: dict[str, Recommender], fingerprint: str,
) -> None:
    metrics = registry.metrics(exp.metrics)
    shared: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "experiment": exp.name,
        "experiment_fingerprint": fingerprint,
        "command": options.command,
        "environment": environment(),
        "plugins": [{"name": n, "package": p, "version": v} for n, p, v in registry.pm.plugin_distributions()],  # type: ignore[attr-defined]
        "threads": threads,
        "device": str(device),
        "distributed": ranks().describe(device),  # world size, backend, each rank's device
        "dataset": {
            "name": exp.dataset.name,
            "params": dict(exp.dataset.params),
            "fingerprint": data.fingerprint(),
            "load_s": load_s,
            "meta": dict(data.meta),
            "domains": {
                d.name: {"users": int(len(d.users())), "items": d.n_items, "interactions": d.n_interactions}
                for d in data.domains.values()
            },
        },
    }
    total = len(targets) * len(exp.seeds) * len(exp.models)
    for ti, target in enumerate(targets):
        for si, seed in enumerate(exp.seeds):
            todo = [m for m in exp.models if m.display in ranks().agree(None if folder is None else [  # rank 0's folder decides
                n.display for n in exp.models if not folder.finished(record_file(target, n.display, seed), fingerprint=fingerprint)])]
            first = (ti * len(exp.seeds) + si) * len(exp.models) + 1  # this split's first run's position
            where = {m.display: f"run {first + i} of {total}: {m.display} on {target} seed {seed}" for i, m in enumerate(exp.models)}
            for m in exp.models:
                if m not in todo:
                    log(f"{where[m.display]}: finished earlier, kept")
            if not todo:
                continue
            split = make_protocol(registry, exp.protocol.name, target=target, seed=seed, **exp.protocol.params).split(data)
            split_fp = split.fingerprint()
            audit = audit_split(split).to_dict()
            for m in todo:
                model = built.pop(m.display, None)  # the instance validation built, for the model's first run
                tuned: dict[str, Any] | None = None
                log(where[m.display])
                if tuning is not None:
                    from crossbench.tune.tuning import tune_split

                    outcome = tune_split(
                        exp, m, split.fit_view(), seed=seed, split_fingerprint=split_fp, dataset_fingerprint=shared["dataset"]["fingerprint"],
                        registry=registry, device=device, options=options, settings=tuning, log=log,
                    )
                    if outcome is not None:
                        m = replace(m, params={**m.params, **outcome.params})
                        tuned, model = outcome.record, None
                scope = reset_peak_rss()
                rec = _run_one(exp, m, split, split_fp, seed=seed, registry=registry, device=device, options=options,
                               metrics=metrics, runs_dir=None if folder is None else folder.runs, model=model)
                if folder is None:
                    continue
                rec["protocol"]["audit"] = audit
                rec["model"]["tuning"] = tuned
                rec.update(shared)
                rec["timings"]["peak_rss_mb"] = peak_rss_mb()
                rec["timings"]["peak_rss_scope"] = scope
                path = folder.runs / rec["file"]
                begin()
                write_record(path, rec)
                run_finished(registry, record=rec, path=path)
                log(f"{where[m.display]}: done, {_summary(rec)}")


def _summary(rec: Mapping[str, Any]) -> str:
    """A finished run in a few words: its primary metric, the epochs trained and the seconds spent."""
    ev, fit, t = rec["evaluation"], rec["fit"], rec["timings"]
    value = ev["metrics"].get(ev["primary"])
    epochs = f" ({fit['epochs']} epochs, best {fit['best_epoch']})" if fit.get("epochs") else ""
    text = f"{ev['primary']} {value:.4f}; " if isinstance(value, float) else ""
    return text + f"fit {duration(t['fit_s'])}{epochs}, evaluation {duration(t['eval_s'])}"


def _run_one(
    exp: Experiment, m: ModelRef, split: Split, split_fp: str, *, seed: int, registry: Registry,
    device: torch.device, options: RunOptions, metrics: Mapping[str, Any], runs_dir: Path | None, model: Recommender | None = None,
) -> dict[str, Any]:
    torch.manual_seed(seed)
    if model is None:
        model = make_recommender(registry, m.name, m.params, where=f"model {m.display!r}")
    env = RunEnv(registry=registry, device=device, seed=seed, progress=options.progress, cache_dir=options.cache_dir, bf16=options.bf16)
    t0 = time.perf_counter()
    report = model.fit(split.fit_view(), env=env)
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    result, columns, primary, lower = _evaluate_test(exp, model, split, seed=seed, device=device, options=options,
                                                     metrics=metrics, label=m.display)
    result, tiers = split_tiers(result)  # the popularity tiers go to the breakdown, not to the run's metrics
    eval_s = time.perf_counter() - t1
    file = record_file(split.label, m.display, seed)
    users_file = file.removesuffix(".json") + ".users.npz"
    sha = save_per_user(result, runs_dir / users_file) if runs_dir is not None else ""  # rank 0 alone writes
    return {
        "file": file,
        "seed": seed,
        "model": {
            "label": m.display,
            "name": m.name,
            "plugin": registry.plugin_of("recommenders", m.name),
            "params": {k: (v.to_dict() if isinstance(v, ComponentRef) else v) for k, v in m.params.items()},
            "description": model.describe(),
            **declared_behaviour(model, label=m.display),
            "cold_items": declared_cold_items(model, label=m.display),
        },
        "protocol": {
            "name": split.protocol,
            "target": split.label,
            "evaluation": split.evaluation.label,
            "params": dict(split.params),
            "split_fingerprint": split_fp,
            "n_test_users": int(split.test.n_users),
            "n_valid_users": int(split.valid.n_users),
            **({"held_out_items": int(len(split.held_items))} if split.held_items is not None else {}),
            **({"candidates_only": True} if split.test_candidates is not None else {}),
        },
        "fit": dataclasses.asdict(report),
        "timings": {
            "fit_s": fit_s,
            "train_s": report.train_seconds,
            "train_samples_per_s": report.samples_per_second,
            "fit_threads": report.threads,
            "eval_s": eval_s,
            "eval_users_per_s": split.test.n_users / max(eval_s, 1e-9),
        },
        "evaluation": {
            "mode": result.mode,
            "sampling": dict(result.sampling),
            "ks": list(exp.ks),
            "columns": columns,
            "primary": primary,
            "metrics": result.means,
            "lower_is_better": lower,
            "user_groups": _finite_groups(breakdown(result, user_groups(split.train, split.target, result.users)))
            if result.per_user else {},  # the rating task's errors are one number per run, not per user
            "breakdowns": record_breakdowns(result, tiers, train=split.train, target=split.target, columns=columns,
                                            popularity=item_popularity(split.train, split.target), relevant_items=split.test.items),
            "per_user": {"path": users_file, "sha256": sha},
        },
    }


def _evaluate_test(
    exp: Experiment, model: Recommender, split: Split, *, seed: int, device: torch.device, options: RunOptions,
    metrics: Mapping[str, Any], label: str,
) -> tuple[EvalResult, list[str], str, list[str]]:
    """The test users' result as the split's protocol evaluates it (full ranking, sampled negatives or
    rating error), with its columns, its primary column and the columns where lower is better."""
    n_items = split.train.domain(split.target).n_items
    exclude = exclude_for_test(split)  # training items (and items outside a candidate set)
    popularity = item_popularity(split.train, split.target)
    if split.evaluation.kind == "rating":  # the rating task: MAE and RMSE, never beside ranking metrics
        result = evaluate_rating(model.predict_ratings, split.test, device=device)
        return result, list(RATING_COLUMNS), RATING_COLUMNS[0], list(RATING_COLUMNS)
    elif exp.sampled_negatives or split.evaluation.kind == "sampled":
        sample = protocol_negatives(split, seed=seed) if split.evaluation.kind == "sampled" else draw_negatives(
            split.test, n_items=n_items, n_negatives=exp.sampled_negatives, strategy=exp.sampling,
            popularity=popularity, exclude=exclude, seed=seed,
        )
        result = evaluate_sampled(
            model.score, split.test, n_items=n_items, metrics=metrics, ks=exp.ks, sample=sample,
            chunk_size=exp.chunk_size, device=device,
        )
        columns = [sampled_key(f"{name}@{k}", sample) for k in exp.ks for name in metrics]
        primary = sampled_key(exp.primary_metric, sample)
    else:
        kw: dict[str, Any] = {"n_items": n_items, "metrics": metrics, "ks": exp.ks, "exclude": exclude, "chunk_size": exp.chunk_size,
                              "device": device, "item_popularity": popularity,
                              "item_groups": {**head_tail(popularity), **tier_groups(popularity)}}
        result = (evaluate(model.score, split.test, progress=options.progress, label=f"evaluating {label}", **kw)
                  if not ranks().active else evaluate_sharded(model.score, split.test, everywhere=True, **kw))  # type: ignore[assignment]
        columns = [f"{name}@{k}" for k in exp.ks for name in metrics]
        primary = exp.primary_metric
    lower = [c for c, (name, _) in zip(columns, ((n, k) for k in exp.ks for n in metrics)) if not metrics[name].higher_is_better]
    return result, columns, primary, lower


def declared_behaviour(model: Recommender | Any, *, label: str) -> dict[str, bool | str | None]:
    """What the model declares for leaderboards: ``reads_source_domains`` and ``cold_users`` (``None``: undeclared).

    A plugin model that does not subclass :class:`Recommender` and lacks the methods declares nothing.
    """
    declare = [getattr(model, name, None) for name in ("reads_source_domains", "cold_users")]
    reads, cold = (fn() if callable(fn) else None for fn in declare)
    if reads is not None and not isinstance(reads, bool):
        raise CrossbenchError(
            f"model {label!r}: reads_source_domains() returned {reads!r}; return True, False or None (not declared)"
        )
    if cold is not None and not isinstance(cold, str):
        raise CrossbenchError(
            f"model {label!r}: cold_users() returned {cold!r}; return a few words of text or None (not declared)"
        )
    return {"reads_source_domains": reads, "cold_users": cold}


def declared_cold_items(model: Recommender | Any, *, label: str) -> bool | None:
    """Whether the model scores items with no training interaction from their text (``None``: not declared)."""
    fn = getattr(model, "cold_items", None)
    value = fn() if callable(fn) else None
    if value is not None and not isinstance(value, bool):
        raise CrossbenchError(f"model {label!r}: cold_items() returned {value!r}; return True or False")
    return value


def _finite_groups(groups: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float | None]]:
    """Drop empty user groups; undefined means become ``null`` (JSON has no NaN)."""
    return {
        name: {k: (None if v != v else v) for k, v in values.items()}
        for name, values in groups.items()
        if values.get("n_users", 0) > 0
    }
