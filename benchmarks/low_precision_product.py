"""Whether a lower-precision product could screen scores faster than float32 on this CPU.

Times ``users x d @ d x items`` (the evaluator's score product) in float32 into a reused
buffer, in bfloat16, and as int8 dynamic quantisation (``torch.ao`` ``quantize_dynamic``,
each quantised engine this build has), and prints each time over float32's. A screening
pass in low precision followed by an exact float32 rescoring of the survivors only pays
if the low-precision product is well under 1.

    python benchmarks/low_precision_product.py [--users 1024] [--items 50000] [--dim 64] [--threads 2]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import torch


def best_of(fn, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=1024)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    users = torch.randn(a.users, a.dim, generator=g)
    items = torch.randn(a.items, a.dim, generator=g)
    out = torch.empty(a.users, a.items)
    times = {"float32": best_of(lambda: torch.matmul(users, items.T, out=out), a.repeat)}
    ub, ib = users.bfloat16(), items.bfloat16()
    times["bfloat16"] = best_of(lambda: torch.matmul(ub, ib.T), a.repeat)
    linear = torch.nn.Linear(a.dim, a.items, bias=False)
    with torch.no_grad():
        linear.weight.copy_(items)
    warnings.filterwarnings("ignore")  # torch.ao.quantization's deprecation notices
    for engine in torch.backends.quantized.supported_engines:
        if engine == "none":
            continue
        torch.backends.quantized.engine = engine
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(linear), {torch.nn.Linear}, dtype=torch.qint8)
        with torch.no_grad():
            times[f"int8 ({engine})"] = best_of(lambda q=q: q(users), a.repeat)
    base = times["float32"]
    for name, t in times.items():
        print(f"{name:>16}: {t * 1e3:8.2f} ms, {t / base:.2f} x float32")
    print(json.dumps({"users": a.users, "items": a.items, "dim": a.dim, "threads": torch.get_num_threads(),
                      "seconds": {k: round(v, 5) for k, v in times.items()},
                      "over_float32": {k: round(v / base, 3) for k, v in times.items()}}))


if __name__ == "__main__":
    main()
