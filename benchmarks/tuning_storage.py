"""What tuning storages cost per trial, and how tuning throughput scales with workers.

(a) **Overhead per trial.** ``crossbench.tune.trials.optimize`` (the loop of ``crossbench tune``)
runs ``--trials`` trials of an objective that only suggests a realistic space (six
hyperparameters: log-uniform learning rate and L2, log-int dimension, dropout, negatives, a
categorical batch size) and returns a constant, so every millisecond measured is the tuning
machinery: the TPE sampler, the budget and heartbeat bookkeeping, and the storage. Storages:
Optuna's in-memory storage (the baseline, measured in the same run), the default SQLite file,
a journal file, and PostgreSQL with ``--postgres URL``; each opened by
``crossbench.tune.storage.open_storage`` as ``crossbench tune`` opens it. Reported per storage:
milliseconds per trial (median over ``--repeats``, the storages interleaved within each
repeat), the same over the last fifth of the trials (the loop reads the whole study each
trial, so the cost grows with its size), the ratio to in-memory and the extra milliseconds
beyond in-memory. Target: under 50 ms per trial beyond the objective.

(b) **Workers.** ``crossbench tune --worker`` processes (``--threads 1`` each, pruner off so
that every trial trains to its early stop) tune target-only MF on synthetic data
(``--n-users``/``--n-items``) to ``--worker-trials`` trials of one fresh study, once with 1
worker and once with 2 sharing it (order alternated per repeat). Trials per hour are counted
two ways: over the trials' own span (first trial start to last trial end: the steady rate) and
over the wall time from launching the processes to their exit (start-up included). The ratio
2 workers / 1 worker is the scaling; target at least 1.8x on 2 cores. The workers' TPE samplers
see different histories, so the two runs train different configurations: the mean trial time
and ``busy workers`` (trial seconds per second of the span; 2.0 is two workers never idle)
tell a change of the configuration mix from a loss of parallelism.

Usage, from the repository root with the project's virtualenv:

    .venv/bin/python benchmarks/tuning_storage.py [--trials 100] [--repeats 3]
        [--postgres postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB]
        [--worker-trials 24] [--worker-repeats 1] [--worker-storage sqlite|journal|postgres]
        [--skip-workers | --skip-overhead]

Studies made in PostgreSQL are deleted afterwards. Prints a table per part and one final JSON
line with every figure, the thread counts and the versions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

import optuna  # noqa: E402

from crossbench.tune.storage import open_storage, resolve_storage  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _loop() -> tuple[str, Callable[[optuna.Study, Callable[[optuna.Trial], float], int], None]]:
    """The tuning loop to time: crossbench's own where it exists, else Optuna's ``Study.optimize``."""
    try:
        from crossbench.tune.trials import Budget, optimize
    except ImportError:
        def run_optuna(study: optuna.Study, objective: Callable[[optuna.Trial], float], n: int) -> None:
            study.sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=5)
            study.optimize(objective, n_trials=n)
        return "optuna Study.optimize", run_optuna

    def run_crossbench(study: optuna.Study, objective: Callable[[optuna.Trial], float], n: int) -> None:
        optimize(study, objective, budget=Budget(trials=n, timeout_s=None), sampler_seed=0)
    return "crossbench.tune.trials.optimize", run_crossbench


def _objective(stamps: list[float]) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        stamps.append(time.perf_counter())
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_int("dim", 8, 256, log=True)
        trial.suggest_float("l2", 1e-8, 1e-3, log=True)
        trial.suggest_float("dropout", 0.0, 0.5)
        trial.suggest_int("negatives", 1, 8)
        trial.suggest_categorical("batch_size", [256, 512, 1024, 2048])
        return 0.5
    return objective


def _storage(kind: str, work: Path, postgres: str | None) -> tuple[optuna.storages.BaseStorage, str]:
    """A fresh storage of ``kind`` (and the text that names it), opened as ``crossbench tune`` opens it."""
    tag = uuid.uuid4().hex[:8]
    if kind == "memory":
        return optuna.storages.InMemoryStorage(), "memory"
    text = {"sqlite": f"sqlite:///{work}/{tag}.db", "journal": f"journal:{work}/{tag}.log", "postgres": postgres}[kind]
    assert text is not None
    spec = resolve_storage(text, results_dir=work)
    return open_storage(spec, heartbeat_interval=None), spec.display


def overhead(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Part (a): milliseconds per trial of each storage, the in-memory baseline in the same run."""
    loop_name, run = _loop()
    kinds = ["memory", "sqlite", "journal"] + (["postgres"] if args.postgres else [])
    per_kind: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    for _ in range(args.repeats):
        for kind in kinds:
            storage, _shown = _storage(kind, work, args.postgres)
            name = f"bench-overhead-{uuid.uuid4().hex[:8]}"
            study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
            stamps: list[float] = []
            t0 = time.perf_counter()
            run(study, _objective(stamps), args.trials)
            total = time.perf_counter() - t0
            stamps.append(t0 + total)
            tail = max(2, args.trials // 5)
            gaps = [b - a for a, b in zip(stamps[-tail - 1:-1], stamps[-tail:])]
            per_kind[kind].append((1000 * total / args.trials, 1000 * statistics.fmean(gaps)))
            if kind == "postgres":
                optuna.delete_study(study_name=name, storage=storage)
    base = statistics.median(ms for ms, _ in per_kind["memory"])
    rows = {}
    for kind in kinds:
        ms = statistics.median(m for m, _ in per_kind[kind])
        rows[kind] = {
            "ms_per_trial": round(ms, 2),
            "ms_per_trial_last_fifth": round(statistics.median(t for _, t in per_kind[kind]), 2),
            "ratio_to_memory": round(ms / base, 2),
            "ms_beyond_memory": round(ms - base, 2),
            "repeats_ms": [round(m, 2) for m, _ in per_kind[kind]],
        }
    print(f"\n(a) tuning overhead per trial: {loop_name}, {args.trials} trials, 6 parameters, median of {args.repeats}")
    print(f"{'storage':<10}{'ms/trial':>10}{'last 1/5':>10}{'x memory':>10}{'+ms vs memory':>15}")
    for kind, r in rows.items():
        print(f"{kind:<10}{r['ms_per_trial']:>10.2f}{r['ms_per_trial_last_fifth']:>10.2f}{r['ratio_to_memory']:>10.2f}{r['ms_beyond_memory']:>15.2f}")
    return {"loop": loop_name, "trials": args.trials, "repeats": args.repeats, "storages": rows}


def _crossbench_command() -> list[str]:
    script = Path(sys.executable).with_name("crossbench")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from crossbench.cli import main; main()"]


def _worker_run(n_workers: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Tune one fresh study with ``n_workers`` ``crossbench tune --worker`` processes; its trial rates."""
    tag = uuid.uuid4().hex[:8]
    text = {"sqlite": f"sqlite:///{work}/workers-{tag}.db", "journal": f"journal:{work}/workers-{tag}.log",
            "postgres": args.postgres}[args.worker_storage]
    study_prefix = f"bench-workers-{tag}"
    cmd = [*_crossbench_command(), "tune", "--worker", "--model", "mf", "--dataset-param", f"n_users={args.n_users}",
           "--dataset-param", f"n_items={args.n_items}", "--seeds", "0", "--trials", str(args.worker_trials),
           "--threads", "1", "-q", "--pruner", "none", "--storage", text, "--study", study_prefix,
           "--output", str(work / f"out-{tag}"), "--cache-dir", str(work / "cache")]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(n_workers)]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t0
    for p, out in zip(procs, outs):
        if p.returncode != 0:
            sys.exit(f"a worker failed (exit {p.returncode}):\n{out[-3000:]}")
    spec = resolve_storage(text, results_dir=work)
    storage = open_storage(spec, heartbeat_interval=None)
    name = f"{study_prefix}/movies/seed0/mf"
    study = optuna.load_study(study_name=name, storage=storage)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    counted = [t for t in study.get_trials(deepcopy=False) if t.state in finished]
    start = min(t.datetime_start.timestamp() for t in counted if t.datetime_start)
    end = max(t.datetime_complete.timestamp() for t in counted if t.datetime_complete)
    trial_s = [(t.datetime_complete - t.datetime_start).total_seconds() for t in counted if t.datetime_start and t.datetime_complete]
    if args.worker_storage == "postgres":
        optuna.delete_study(study_name=name, storage=storage)
    return {
        "workers": n_workers, "trials": len(counted), "span_s": round(end - start, 2), "wall_s": round(wall, 2),
        "trials_per_hour_span": round(3600 * len(counted) / (end - start), 1),
        "trials_per_hour_wall": round(3600 * len(counted) / wall, 1),
        "mean_trial_s": round(statistics.fmean(trial_s), 3),
        "busy_workers": round(sum(trial_s) / (end - start), 3),
    }


def workers(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Part (b): trials per hour of 2 workers against 1, on one study each time."""
    if args.worker_storage == "postgres" and not args.postgres:
        sys.exit("--worker-storage postgres needs --postgres URL")
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for r in range(args.worker_repeats):
        for n in ((1, 2) if r % 2 == 0 else (2, 1)):
            runs[n].append(_worker_run(n, args, work))
    keys = ("trials_per_hour_span", "trials_per_hour_wall", "span_s", "wall_s", "mean_trial_s", "busy_workers")
    med = {n: {k: statistics.median(x[k] for x in rs) for k in keys} for n, rs in runs.items()}
    ratio_span = med[2]["trials_per_hour_span"] / med[1]["trials_per_hour_span"]
    ratio_wall = med[2]["trials_per_hour_wall"] / med[1]["trials_per_hour_wall"]
    print(f"\n(b) crossbench tune --worker, mf on synthetic n_users={args.n_users} n_items={args.n_items}, "
          f"{args.worker_trials} trials, --threads 1 per worker, {args.worker_storage} storage, median of {args.worker_repeats}")
    print(f"{'workers':<9}{'trials/h (span)':>17}{'trials/h (wall)':>17}{'span s':>9}{'wall s':>9}{'mean trial s':>14}{'busy workers':>14}")
    for n in (1, 2):
        m = med[n]
        print(f"{n:<9}{m['trials_per_hour_span']:>17.0f}{m['trials_per_hour_wall']:>17.0f}{m['span_s']:>9.1f}{m['wall_s']:>9.1f}"
              f"{m['mean_trial_s']:>14.2f}{m['busy_workers']:>14.2f}")
    print(f"2 workers / 1 worker: {ratio_span:.2f}x over the trials' span, {ratio_wall:.2f}x over wall time (start-up included)")
    return {"n_users": args.n_users, "n_items": args.n_items, "trials": args.worker_trials, "threads_per_worker": 1,
            "storage": args.worker_storage, "repeats": args.worker_repeats, "runs": runs,
            "ratio_2_to_1_span": round(ratio_span, 3), "ratio_2_to_1_wall": round(ratio_wall, 3)}


def _versions(postgres: str | None) -> dict[str, Any]:
    import sqlalchemy

    out: dict[str, Any] = {"python": platform.python_version(), "optuna": optuna.__version__, "sqlalchemy": sqlalchemy.__version__}
    if postgres:
        import psycopg2  # noqa: F401  (resolve_storage has checked it is installed)

        out["psycopg2"] = sys.modules["psycopg2"].__version__
        engine = sqlalchemy.create_engine(resolve_storage(postgres, results_dir=Path(".")).url)
        with engine.connect() as conn:
            out["postgresql"] = conn.execute(sqlalchemy.text("SHOW server_version")).scalar()
        engine.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100, help="(a) trials per storage and repeat")
    ap.add_argument("--repeats", type=int, default=3, help="(a) repeats, storages interleaved")
    ap.add_argument("--postgres", help="(a, b) a PostgreSQL URL to include, e.g. postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB")
    ap.add_argument("--worker-trials", type=int, default=24, help="(b) trial budget of the study")
    ap.add_argument("--worker-repeats", type=int, default=1, help="(b) repeats of the 1- and 2-worker runs")
    ap.add_argument("--worker-storage", choices=["sqlite", "journal", "postgres"], default="sqlite", help="(b) the shared storage")
    ap.add_argument("--n-users", type=int, default=3000, help="(b) synthetic users")
    ap.add_argument("--n-items", type=int, default=800, help="(b) synthetic items per domain")
    ap.add_argument("--skip-workers", action="store_true", help="run (a) only")
    ap.add_argument("--skip-overhead", action="store_true", help="run (b) only")
    args = ap.parse_args()
    if args.postgres:
        resolve_storage(args.postgres, results_dir=Path("."))  # a bad URL fails here, before any timing
    work = Path(tempfile.mkdtemp(prefix="crossbench-tuning-bench-"))
    try:
        report: dict[str, Any] = {"benchmark": "tuning_storage", "machine": platform.machine(), "cpus": os.cpu_count(),
                                  "versions": _versions(args.postgres)}
        if args.postgres:
            report["postgres"] = resolve_storage(args.postgres, results_dir=Path(".")).display
        if not args.skip_overhead:
            report["overhead"] = overhead(args, work)
        if not args.skip_workers:
            report["workers"] = workers(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
