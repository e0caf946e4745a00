"""The CUDA paths of data-parallel training and sharded evaluation, in one short run (under 5 minutes).

On a machine with N CUDA devices it starts N processes joined by NCCL (one device each) and checks:

* ``nccl``: an all-reduce of every rank's number gives the sum ``N*(N-1)/2`` on every rank;
* ``bf16``: a product under bf16 autocast is bf16 and within 2% (relative Frobenius norm) of float32;
* ``sharded_scoring``: the catalogue (2,000 items, tied scores) split over the ranks, each rank's
  top 50 merged (:func:`crossbench.evaluate.distributed.sharded_top_lists`) equals the top 50 of the
  whole catalogue on one device, item for item;
* ``train_step``: the big model's training (``lm-attention`` with ID item vectors, so that no text
  model is needed: Transformer per domain, item-level attention fusion, full softmax) for one
  epoch, data-parallel on the N devices under bf16 autocast; every rank must end with the same
  weights, and the epoch's samples per second are reported.

It prints one JSON line (``"status"``: ``ok``, ``failed`` or ``skipped``) and exits 1 when a
check failed. On a machine without CUDA every check is reported as skipped and the exit
status is 0.

Usage: python benchmarks/device_check.py [--users 2000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "plugins"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

CHECKS = ("nccl", "bf16", "sharded_scoring", "train_step")


def _check(name: str, fn: Any, results: dict[str, Any]) -> None:
    t0 = time.perf_counter()
    try:
        results[name] = {"status": "ok", **fn(), "seconds": round(time.perf_counter() - t0, 2)}
    except Exception as exc:  # noqa: BLE001 - a failed check is reported, the others still run
        results[name] = {"status": "failed", "error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def _rank(rank: int, world: int, port: int, users: int, out: str) -> None:
    import numpy as np
    import torch
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    device = torch.device("cuda", rank)
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))
    results: dict[str, Any] = {}

    def nccl() -> dict[str, Any]:
        t = torch.tensor([float(rank)], device=device)
        dist.all_reduce(t)
        assert float(t) == world * (world - 1) / 2, float(t)
        return {"sum": float(t)}

    def bf16() -> dict[str, Any]:
        g = torch.Generator(device=device).manual_seed(0)
        a, b = torch.randn(512, 256, device=device, generator=g), torch.randn(256, 1024, device=device, generator=g)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            low = a @ b
        assert low.dtype == torch.bfloat16, low.dtype
        rel = float(torch.linalg.norm(low.float() - a @ b) / torch.linalg.norm(a @ b))
        assert rel < 0.02, rel
        return {"relative_error": rel}

    def sharded() -> dict[str, Any]:
        from crossbench.evaluate.distributed import sharded_top_lists
        from crossbench.evaluate.lists import top_lists

        scores = torch.as_tensor(np.random.default_rng(1).integers(0, 20, size=(300, 2000)).astype(np.float32), device=device)
        users = np.arange(300)
        got = sharded_top_lists(lambda u, a, b: scores[u][:, a:b], users, n_items=2000, k=50, chunk_size=128, device=device)
        whole = top_lists(lambda u: scores[u], users, n_items=2000, k=50, device=device)
        assert np.array_equal(got.items, whole.items), "sharded top-50 differs from the whole catalogue's"
        return {"users": 300, "items": 2000, "k": 50}

    def train() -> dict[str, Any]:
        from crossbench.plugin.build import make_recommender
        from crossbench.plugin.interfaces import RunEnv
        from crossbench.plugin.manager import get_plugin_manager
        from crossbench.plugin.registry import Registry
        from crossbench_protocols import ColdStart
        from crossbench_synthetic import SyntheticDataset

        registry = Registry(get_plugin_manager())
        data = SyntheticDataset(n_users=users, n_items=500, n_domains=3, mean_interactions=30.0).load()
        split = ColdStart(target="movies", test_fraction=0.5, seed=0).split(data)
        model = make_recommender(registry, "lm-attention", {"epochs": 1, "item_text": False}, where="device check")
        report = model.fit(split.fit_view(), env=RunEnv(registry=registry, device=device, seed=0, progress=False, bf16=True))
        digest = hashlib.sha256(b"".join(v.float().cpu().numpy().tobytes()
                                         for _, v in sorted(model.model.state_dict().items()))).hexdigest()  # type: ignore[attr-defined]
        digests: list[Any] = [None] * world
        dist.all_gather_object(digests, digest)
        assert len(set(digests)) == 1, "the ranks' weights differ after the epoch"
        return {"train_s": report.train_seconds, "samples_per_s": report.samples_per_second, "valid_ndcg@10": report.valid_score}

    for name, fn in zip(CHECKS, (nccl, bf16, sharded, train)):
        _check(name, fn, results)
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    dist.destroy_process_group()


def run(users: int) -> dict[str, Any]:
    """Every check on every CUDA device of this machine; skipped (status 0) without one."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    base = {"torch": torch.__version__, "cuda_devices": n}
    if n == 0:
        return {**base, "status": "skipped", "reason": "no CUDA device", **{c: {"status": "skipped"} for c in CHECKS}}
    import tempfile

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "results.json")
        mp.spawn(_rank, args=(n, port, users, out), nprocs=n, join=True)
        results = json.loads(Path(out).read_text())
    failed = [c for c in CHECKS if results[c]["status"] != "ok"]
    return {**base, "device": torch.cuda.get_device_name(0), "status": "failed" if failed else "ok", **results}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=2000, help="synthetic users of the training step")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    result = run(args.users)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result), flush=True)
    return 1 if result["status"] == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
