"""Full-ranking evaluation throughput against the machine's bound for the same shapes.

For each shape (users x items, embedding size d) this times ``crossbench.evaluate.evaluate``
with a dot-product score function that writes into the evaluator's reusable buffer, and,
on the same chunks and thread count, the machine's bound: the matrix product
``users x d @ d x items`` plus ``torch.topk`` of the same width alone, with the product
written into one reused buffer (``bound``). Two more references are printed: the same
with a fresh product tensor per chunk (``bound_fresh``, the plain ``u @ items.T``), and
the product alone (``matmul``), the floor no exact evaluator of these scores can go below.
``ratio_to_bound`` is ``bound / ours``; above 1 the evaluator is faster than the product
plus ``torch.topk`` (its top-K is a two-stage exact one, see ``crossbench.evaluate.ties``).
``--million`` instead evaluates 1M users over 100k items once and reports the peak
resident memory.

``--recbole-python PATH`` (a Python with RecBole 1.2.1 installed) also times RecBole's
full-sort evaluation of the same data and vectors after each of this benchmark's repeats
(``recbole_eval.py``, at RecBole's default batch and at 4096 users per batch), so that both
are measured side by side, and prints crossbench's best over RecBole's best, and the
speed-up of each repeat (crossbench's run over the RecBole run right after it).

    python benchmarks/eval_throughput.py [--device cpu|cuda] [--shapes 10000x50000,100000x100000]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins"), str(ROOT / "benchmarks")]

from synthetic_eval_data import make_eval_data  # noqa: E402

from crossbench.data.protocols import GroundTruth  # noqa: E402
from crossbench.evaluate import chunk_size_for, evaluate  # noqa: E402
from crossbench_basic.metrics import METRICS as BASIC  # noqa: E402
from crossbench_metrics.measures import METRICS as MORE  # noqa: E402

METRICS = {m.name: m for m in (*BASIC, *MORE) if m.inputs == "ranks"}  # recall ndcg hr mrr map precision
KS = (5, 10, 20)


def make_data(n_users: int, n_items: int, dim: int, seed: int = 0):
    """User/item vectors and the held-out and training items as ground truths (see synthetic_eval_data)."""
    d = make_eval_data(n_users, n_items, dim, seed)
    uid = np.arange(n_users, dtype=np.int64)
    return (torch.from_numpy(d.user_vectors), torch.from_numpy(d.item_vectors),
            GroundTruth(uid, d.test_indptr, d.test_items), GroundTruth(uid, d.train_indptr, d.train_items))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def dot_scores(users: torch.Tensor, items: torch.Tensor):
    """The benchmark's score function: user vectors times the item matrix, into ``out`` when given."""

    def score(u: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return torch.matmul(users[u], items.T, out=out)

    return score


def time_ours(users, items, truth, train, chunk: int, device: torch.device) -> tuple[float, dict[str, float]]:
    score = dot_scores(users, items)

    sync(device)
    t0 = time.perf_counter()
    res = evaluate(score, truth, n_items=items.shape[0], metrics=METRICS, ks=KS, exclude=train, chunk_size=chunk, device=device)
    sync(device)
    wall = time.perf_counter() - t0
    return wall, {k: round(v, 6) for k, v in res.means.items() if k.endswith("@10")}


def time_bound(users, items, chunk: int, device: torch.device, *, kind: str) -> float:
    """``kind``: "bound" (product into a reused buffer + topk), "fresh" (new product tensor + topk), "matmul"."""
    k = max(KS) + 1  # the evaluator keeps K + 1 values to see ties across the cut-off
    buf = torch.empty(min(chunk, users.shape[0]), items.shape[0], device=device) if kind != "fresh" else None
    sync(device)
    t0 = time.perf_counter()
    for s in range(0, users.shape[0], chunk):
        u = users[s : s + chunk]
        scores = u @ items.T if buf is None else torch.matmul(u, items.T, out=buf[: len(u)])
        if kind != "matmul":
            torch.topk(scores, k, dim=1)
    sync(device)
    return time.perf_counter() - t0


def recbole_once(python: str, n_users: int, n_items: int, dim: int, threads: int) -> dict[str, float]:
    """Users per second of RecBole's evaluation at each batch setting, from one run of recbole_eval.py."""
    cmd = [python, str(ROOT / "benchmarks" / "recbole_eval.py"), "--users", str(n_users), "--items", str(n_items),
           "--dim", str(dim), "--threads", str(threads), "--batch-users", "default,4096"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"recbole_eval.py failed with exit code {done.returncode} under {python}; its output is above")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report.get("recbole") is None:
        raise SystemExit(f"--recbole-python {python}: {report.get('skipped')}; give the python of a virtualenv with "
                         "recbole==1.2.1, or leave the option out to time crossbench alone")
    return {r["batch_users"]: float(r["users_per_s"]) for r in report["runs"]}


def bench_shape(
    n_users: int, n_items: int, dim: int, device: torch.device, budget: int, repeat: int, recbole: str | None = None
) -> dict:
    users, items, truth, train = make_data(n_users, n_items, dim)
    users, items = users.to(device), items.to(device)
    chunk = chunk_size_for(n_items, budget)
    kinds = ("bound", "fresh", "matmul")
    # warm up every path on a slice
    for kind in kinds:
        time_bound(users[: 2 * chunk], items, chunk, device, kind=kind)
    w = min(2 * chunk, n_users)
    small = GroundTruth(truth.users[:w], truth.indptr[: w + 1], truth.items[: truth.indptr[w]])
    time_ours(users, items, small, train, chunk, device)
    ours: list[float] = []
    refs: dict[str, list[float]] = {kind: [] for kind in kinds}
    peer: dict[str, list[float]] = {}
    for _ in range(repeat):  # interleaved, so that a change in outside load hits every figure alike
        for kind in kinds:
            refs[kind].append(time_bound(users, items, chunk, device, kind=kind))
        wall, means = time_ours(users, items, truth, train, chunk, device)
        ours.append(wall)
        if recbole:
            for setting, rate in recbole_once(recbole, n_users, n_items, dim, torch.get_num_threads()).items():
                peer.setdefault(setting, []).append(rate)
    t_ours = min(ours)
    best = {kind: min(v) for kind, v in refs.items()}
    side = {}
    if peer:
        side = {
            "recbole_users_per_s": {s: max(v) for s, v in peer.items()},
            "all_recbole_users_per_s": peer,
            "speedup_over_recbole": {s: round(n_users / t_ours / max(v), 2) for s, v in peer.items()},
            # repeat by repeat: crossbench's run over the RecBole run that followed it
            "speedup_by_repeat": {s: [round(n_users / o / r, 2) for o, r in zip(ours, v)] for s, v in peer.items()},
        }
    return {
        "users": n_users, "items": n_items, "dim": dim, "chunk_size": chunk,
        "ours_s": round(t_ours, 3), "bound_s": round(best["bound"], 3),
        "bound_fresh_s": round(best["fresh"], 3), "matmul_s": round(best["matmul"], 3),
        "ours_users_per_s": round(n_users / t_ours, 1), "bound_users_per_s": round(n_users / best["bound"], 1),
        "bound_fresh_users_per_s": round(n_users / best["fresh"], 1),
        "matmul_users_per_s": round(n_users / best["matmul"], 1),
        "ratio_to_bound": round(best["bound"] / t_ours, 4),
        "ratio_to_bound_fresh": round(best["fresh"] / t_ours, 4),
        "ratio_to_matmul": round(best["matmul"] / t_ours, 4),
        "all_ours_s": [round(x, 3) for x in ours],
        **{f"all_{kind}_s": [round(x, 3) for x in v] for kind, v in refs.items()},
        "means@10": means,
        **side,
    }


def million(device: torch.device, budget: int, dim: int) -> dict:
    n_users, n_items = 1_000_000, 100_000
    users, items, truth, train = make_data(n_users, n_items, dim, seed=1)
    users, items = users.to(device), items.to(device)
    chunk = chunk_size_for(n_items, budget)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = evaluate(dot_scores(users, items), truth, n_items=n_items, metrics=METRICS, ks=KS, exclude=train,
                   chunk_size=chunk, device=device)
    sync(device)
    wall = time.perf_counter() - t0
    out = {
        "users": n_users, "items": n_items, "dim": dim, "chunk_size": chunk, "wall_s": round(wall, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "ndcg@10": round(res.means["ndcg@10"], 6),
    }
    if device.type == "cuda":
        out["peak_cuda_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shapes", default="10000x50000,100000x100000")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--budget-mib", type=int, default=None, help="memory budget per chunk (default 256 on CPU; on CUDA 8192, 2048 with --million)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--million", action="store_true", help="evaluate 1M users x 100k items once and report peak memory")
    ap.add_argument("--recbole-python", default=None, help="a Python with RecBole: time its evaluation side by side")
    a = ap.parse_args()
    if a.recbole_python:  # fail before any timing when the peer cannot run
        probe = subprocess.run([a.recbole_python, "-c", "import recbole"], capture_output=True, text=True)
        if probe.returncode != 0:
            raise SystemExit(f"--recbole-python {a.recbole_python} cannot import recbole; give the python of a virtualenv "
                             "with recbole==1.2.1, or leave the option out to time crossbench alone")
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    default_mib = 256 if device.type != "cuda" else (2048 if a.million else 8192)
    budget = (a.budget_mib or default_mib) * 2**20
    report: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "metrics": sorted(METRICS), "ks": list(KS),
        "budget_mib": budget // 2**20,
    }
    if a.million:
        report["million"] = million(device, budget, a.dim)
        print(f"1M users x 100k items: {report['million']}", flush=True)
    else:
        report["shapes"] = []
        for shape in a.shapes.split(","):
            nu, ni = (int(x) for x in shape.lower().split("x"))
            r = bench_shape(nu, ni, a.dim, device, budget, a.repeat, a.recbole_python)
            report["shapes"].append(r)
            print(f"{nu} users x {ni} items, d={a.dim}, threads {report['threads']}: ours {r['ours_users_per_s']:.0f} users/s, bound "
                  f"{r['bound_users_per_s']:.0f} users/s, ratio {r['ratio_to_bound']:.3f}; fresh-tensor bound "
                  f"{r['bound_fresh_users_per_s']:.0f} (ratio {r['ratio_to_bound_fresh']:.3f}), product alone "
                  f"{r['matmul_users_per_s']:.0f} (ratio {r['ratio_to_matmul']:.3f}) (chunk {r['chunk_size']})", flush=True)
            for setting, rate in r.get("recbole_users_per_s", {}).items():
                by_repeat = ", ".join(f"{x:.1f}x" for x in r["speedup_by_repeat"][setting])
                print(f"  RecBole 1.2.1 at batch {setting}: {rate:.0f} users/s; crossbench is "
                      f"{r['speedup_over_recbole'][setting]:.1f}x faster (best over best; by repeat {by_repeat})",
                      flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
