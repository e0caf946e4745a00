"""Speed-up of data-parallel training and sharded evaluation: 2 processes against 1.

The reference big model (``lm-attention``, its defaults, ``epochs=1``) is trained for one epoch
on synthetic data (cold-start, target ``movies``, 3 domains) and its test users are evaluated
(full ranking, NDCG and Recall @10), in four configurations:

* 1 process with T threads, 2 processes with T/2 threads each (the same total thread count, T);
* 1 process with 1 thread, 2 processes with 1 thread each.

Each configuration runs in fresh processes (joined by gloo on 127.0.0.1 when there are 2);
with ``--repeats R`` every configuration runs R times, in R rounds that each run all of them
(so a slow spell of the machine touches every configuration alike), and the median of each
time is reported (every run's times are in the JSON line).
The training time is rank 0's ``FitReport.train_seconds`` (the epoch's steps; rank 0 waits for
the other rank at every gradient all-reduce, so it is the epoch's wall time); the evaluation
time is that of ``evaluate`` (1 process) or ``evaluate_sharded`` (2), from a barrier to the
result on rank 0. Printed: each configuration's times, the outside load while it ran (cores
other processes kept busy, ``machine_load.py``), and the speed-ups ``time(1 process) /
time(2 processes)`` at the same total thread count and at 1 thread each, for the epoch and for
the evaluation. Only ratios measured with an outside load near 0 measure the code.

The item texts are encoded once beforehand into ``--cache-dir`` (every configuration reads them).

Usage:
    python benchmarks/distributed_speedup.py [--users 3000] [--items 400] [--total-threads 2] [--batch-size 512] [--repeats 1]
    python benchmarks/distributed_speedup.py --tiny       # a check of the script (seconds per configuration)
Prints a table, the ratio lines, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_load import OutsideLoad, describe  # noqa: E402

TARGET = "movies"


def _data(args: argparse.Namespace) -> Any:
    from crossbench_protocols import ColdStart
    from crossbench_synthetic import SyntheticDataset

    data = SyntheticDataset(n_users=args.users, n_items=args.items, n_domains=3, mean_interactions=args.interactions).load()
    return ColdStart(target=TARGET, test_fraction=0.5, seed=0).split(data)


def worker(args: argparse.Namespace) -> None:
    """One rank of one configuration (``RANK``/``WORLD_SIZE`` in the environment): fit one epoch, evaluate."""
    import torch
    import torch.distributed as dist

    from crossbench.data.protocols import train_items
    from crossbench.evaluate.distributed import evaluate_sharded
    from crossbench.evaluate.ranking import evaluate
    from crossbench.plugin.build import make_recommender
    from crossbench.plugin.interfaces import RunEnv
    from crossbench.plugin.manager import get_plugin_manager
    from crossbench.plugin.registry import Registry

    torch.set_num_threads(args.threads)
    world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    if world > 1:
        dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world)
    registry = Registry(get_plugin_manager())
    split = _data(args)
    model = make_recommender(registry, "lm-attention", _params(args), where="benchmark")
    report = model.fit(split.fit_view(), env=RunEnv(registry=registry, seed=0, progress=False, cache_dir=args.cache_dir))
    kw: dict[str, Any] = {"n_items": split.train.domain(TARGET).n_items, "metrics": registry.metrics(["ndcg", "recall"]),
                          "ks": [10], "exclude": train_items(split.train, TARGET)}
    if world > 1:
        dist.barrier()
    t0 = time.perf_counter()
    result = evaluate_sharded(model.score, split.test, **kw) if world > 1 else evaluate(model.score, split.test, **kw)
    eval_s = time.perf_counter() - t0
    if rank == 0:
        assert result is not None
        print(json.dumps({"train_s": report.train_seconds, "eval_s": eval_s, "samples": report.train_samples,
                          "threads": torch.get_num_threads(), "test_users": int(split.test.n_users),
                          "ndcg@10": result.means["ndcg@10"]}), flush=True)
    if world > 1:
        dist.destroy_process_group()


def _params(args: argparse.Namespace) -> dict[str, Any]:
    """lm-attention's hyperparameters here: one epoch, and the global batch when ``--batch-size`` names one."""
    return {"epochs": 1} if args.batch_size is None else {"epochs": 1, "batch_size": args.batch_size}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def configuration(args: argparse.Namespace, world: int, threads: int) -> dict[str, Any]:
    """Run one configuration in ``world`` fresh processes; rank 0's figures and the outside load."""
    port = _free_port()
    base = [sys.executable, __file__, "--worker", "--threads", str(threads), "--users", str(args.users), "--items",
            str(args.items), "--interactions", str(args.interactions), "--cache-dir", str(args.cache_dir)]
    base += [] if args.batch_size is None else ["--batch-size", str(args.batch_size)]
    env = {**os.environ, "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "OMP_NUM_THREADS": str(threads)}
    with OutsideLoad() as load:
        procs = [subprocess.Popen(base, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE, text=True)
                 for r in range(world)]
        outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"configuration world={world} threads={threads} failed: {[p.returncode for p in procs]}")
    figures = json.loads(outs[0].strip().splitlines()[-1])
    return {"world": world, "threads_per_rank": threads, "total_threads": world * threads, **figures,
            "outside_cores": load.cores, "load": describe(load.cores)}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration's figures over its runs: the median time and outside load, every run's times beside them."""
    out = dict(runs[0])
    for key in ("train_s", "eval_s", "outside_cores"):
        values = [r[key] for r in runs]
        out[key] = None if None in values else float(statistics.median(values))
        if key != "outside_cores":
            out[f"{key}_runs"] = values
    out["load"] = describe(out["outside_cores"])
    return out


def encode_texts(args: argparse.Namespace) -> float:
    """Fill the text-embedding cache once (every configuration then reads it); seconds taken."""
    from crossbench.plugin.build import make_recommender
    from crossbench.plugin.interfaces import RunEnv
    from crossbench.plugin.manager import get_plugin_manager
    from crossbench.plugin.registry import Registry

    registry = Registry(get_plugin_manager())
    t0 = time.perf_counter()
    model = make_recommender(registry, "lm-attention", {"epochs": 1}, where="benchmark")
    model._prepare(_data(args).fit_view(), RunEnv(registry=registry, seed=0, progress=False, cache_dir=args.cache_dir))  # type: ignore[attr-defined]
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--items", type=int, default=400)
    ap.add_argument("--interactions", type=float, default=30.0, help="mean interactions per user and domain")
    ap.add_argument("--total-threads", type=int, default=2, help="T: the thread count of the same-total comparison (even)")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=1, help="runs of each configuration (the median is reported)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="lm-attention's global batch (sequences per step, shared out over the ranks; default: its default, 128)")
    ap.add_argument("--tiny", action="store_true", help="300 users, 60 items per domain")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tiny:
        args.users, args.items, args.interactions = 300, 60, 10.0
    if args.worker:
        worker(args)
        return
    if args.total_threads < 2 or args.total_threads % 2:
        raise SystemExit("--total-threads must be an even number of at least 2")
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        args.cache_dir = args.cache_dir or Path(tmp)
        text_s = encode_texts(args)
        t = args.total_threads
        plan = [(1, t), (2, t // 2)] + ([(1, 1), (2, 1)] if t != 2 else [(1, 1)])
        runs: dict[tuple[int, int], list[dict[str, Any]]] = {key: [] for key in plan}
        for _ in range(args.repeats):
            for w, th in plan:
                runs[(w, th)].append(configuration(args, w, th))
        rows = {key: _median(found) for key, found in runs.items()}
    batch = "default" if args.batch_size is None else args.batch_size
    print(f"lm-attention, one epoch, global batch {batch}; {args.users} users, 3 domains x {args.items} items; text encoding {text_s:.1f} s; "
          f"machine cores {os.cpu_count()}; median of {args.repeats} run(s) each")
    print(f"{'procs':>5} {'thr/proc':>8} {'total thr':>9} {'epoch s':>8} {'eval s':>7} {'outside cores':>13}")
    for r in rows.values():
        cores = "n/a" if r["outside_cores"] is None else f"{r['outside_cores']:.2f}"
        print(f"{r['world']:>5} {r['threads_per_rank']:>8} {r['total_threads']:>9} {r['train_s']:8.2f} {r['eval_s']:7.2f} {cores:>13}")
    ratios = {}
    for label, one, two in (("same total threads", (1, t), (2, t // 2)), ("1 thread each", (1, 1), (2, 1))):
        a, b = rows[one], rows[two]
        ratios[label] = {"train": a["train_s"] / b["train_s"], "eval": a["eval_s"] / b["eval_s"]}
        print(f"speed-up of 2 processes, {label} ({one[1]} vs {two[1]} per process): epoch {ratios[label]['train']:.2f}x, "
              f"evaluation {ratios[label]['eval']:.2f}x")
    print(json.dumps({"users": args.users, "items": args.items, "batch_size": args.batch_size, "text_encoding_s": text_s, "total_threads": t,
                      "configurations": list(rows.values()), "speedups": ratios}))


if __name__ == "__main__":
    main()
