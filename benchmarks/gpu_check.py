"""Train and evaluate the reference big model (lm-attention) on CPU and on CUDA, same seed, and compare.

Synthetic data (cold-start, test fraction 0.5), the same seed and settings on both devices;
prints both metric sets, the largest absolute difference, the training time on each and
the speed-up, then one JSON line. The tolerance is stated in the JSON (``tolerance``):
float32 training on two devices takes different kernels and summation orders, so the
metrics agree within run-to-run noise, not bit for bit.

Runs from a checkout without installing crossbench (plugins are registered directly).
Text embeddings come from the on-disk cache (``--cache-dir``): fill it once where the
text model is installed, e.g. with ``--cpu-only``, and carry it to the GPU machine.

On a machine without CUDA the CPU half runs, the CUDA half is reported as skipped (the JSON
line has ``"cuda_skipped"``) and the exit code is 0; ``--require-cuda`` makes a missing CUDA
device an error instead (use it on the GPU machine). ``--n-users 200 --n-items 100 --epochs 1``
checks the script in seconds.

Usage: python benchmarks/gpu_check.py [--cpu-only | --require-cuda] [--bf16] [--epochs 2] [--cache-dir build/gpu-cache]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "plugins"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import torch  # noqa: E402

from crossbench.data.protocols import train_items  # noqa: E402
from crossbench.evaluate.ranking import evaluate  # noqa: E402
from crossbench.plugin.interfaces import RunEnv  # noqa: E402
from crossbench.plugin.manager import get_plugin_manager  # noqa: E402
from crossbench.plugin.registry import Registry  # noqa: E402
from crossbench_protocols import ColdStart  # noqa: E402

TOLERANCE = 0.02  # absolute, on NDCG@10 and Recall@10 of about 1800 cold users


def registry() -> Registry:
    from importlib.metadata import entry_points

    if any(ep.name == "zoo" for ep in entry_points(group="crossbench")):
        return Registry(get_plugin_manager())
    import crossbench_basic
    import crossbench_synthetic
    import crossbench_zoo

    pm = get_plugin_manager([crossbench_basic, crossbench_synthetic, crossbench_zoo], load_entry_points=False)
    return Registry(pm)


def run(device: str, args: argparse.Namespace, reg: Registry, split, bf16: bool = False) -> dict:  # type: ignore[no-untyped-def, type-arg]
    torch.manual_seed(args.seed)
    model = reg.get("recommenders", "lm-attention").factory(epochs=args.epochs, patience=args.epochs)
    env = RunEnv(registry=reg, device=torch.device(device), seed=args.seed, progress=False, cache_dir=args.cache_dir, bf16=bf16)
    t0 = time.perf_counter()
    report = model.fit(split.fit_view(), env=env)
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    res = evaluate(
        model.score, split.test, n_items=split.train.domain(split.target).n_items, metrics=reg.metrics(["ndcg", "recall"]),
        ks=[10], exclude=train_items(split.train, split.target), device=device,
    )
    eval_s = time.perf_counter() - t1
    return {"device": device, "bf16": bf16, "metrics": res.means, "fit_s": fit_s, "train_s": report.train_seconds,
            "samples_per_s": report.samples_per_second, "eval_s": eval_s, "epochs": report.epochs,
            "best_epoch": report.best_epoch, "valid": report.valid_score, "threads": report.threads}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-only", action="store_true", help="skip CUDA (to test the script, or to fill the text cache)")
    ap.add_argument("--bf16", action="store_true", help="also train on CUDA under bf16 autocast")
    ap.add_argument("--require-cuda", action="store_true", help="fail (exit 1) when no CUDA device is available")
    ap.add_argument("--n-users", type=int, default=6000)
    ap.add_argument("--n-items", type=int, default=None, help="items per domain (default: the synthetic dataset's)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "build" / "gpu-cache")
    args = ap.parse_args()
    if args.require_cuda and not torch.cuda.is_available():
        raise SystemExit("no CUDA device (torch.cuda.is_available() is False) but --require-cuda was given: "
                         f"run on a machine with CUDA and a CUDA build of torch (this one: {torch.__version__})")
    if args.threads:
        torch.set_num_threads(args.threads)
    from crossbench_synthetic import SyntheticDataset

    reg = registry()
    sizes = {"n_users": args.n_users} if args.n_items is None else {"n_users": args.n_users, "n_items": args.n_items}
    data = SyntheticDataset(**sizes, seed=args.seed).load()
    split = ColdStart(target="movies", test_fraction=0.5, valid_fraction=0.1, seed=args.seed).split(data)
    runs = [run("cpu", args, reg, split)]
    print(f"cpu : {runs[0]['metrics']} train {runs[0]['train_s']:.1f}s ({torch.get_num_threads()} threads)", flush=True)
    out: dict = {"benchmark": "gpu_check", "n_users": args.n_users, "n_items": data.domain(split.target).n_items,  # type: ignore[type-arg]
                 "epochs": args.epochs, "seed": args.seed, "cpu_threads": torch.get_num_threads(), "tolerance": TOLERANCE, "cpu": runs[0]}
    if not args.cpu_only and not torch.cuda.is_available():
        reason = f"no CUDA device (torch {torch.__version__}, torch.cuda.is_available() is False)"
        print(f"cuda: skipped, {reason}; only the CPU half ran", flush=True)
        out["cuda_skipped"] = reason
    elif not args.cpu_only:
        gpu = run("cuda", args, reg, split)
        print(f"cuda: {gpu['metrics']} train {gpu['train_s']:.1f}s on {torch.cuda.get_device_name()}", flush=True)
        diff = max(abs(gpu["metrics"][k] - runs[0]["metrics"][k]) for k in gpu["metrics"])
        out.update(cuda=gpu, gpu=torch.cuda.get_device_name(), max_abs_diff=diff, within_tolerance=diff <= TOLERANCE,
                   speedup_train=runs[0]["train_s"] / gpu["train_s"], speedup_fit=runs[0]["fit_s"] / gpu["fit_s"])
        print(f"max |cpu - cuda| = {diff:.4f} (tolerance {TOLERANCE}); training speed-up {out['speedup_train']:.1f}x", flush=True)
        if args.bf16:
            b = run("cuda", args, reg, split, bf16=True)
            bdiff = max(abs(b["metrics"][k] - runs[0]["metrics"][k]) for k in b["metrics"])
            out.update(cuda_bf16=b, bf16_max_abs_diff=bdiff, speedup_train_bf16=runs[0]["train_s"] / b["train_s"])
            print(f"cuda bf16: {b['metrics']} train {b['train_s']:.1f}s; max |cpu - bf16| = {bdiff:.4f}", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
