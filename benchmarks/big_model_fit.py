"""Fit time of the reference big model (``lm-attention``) on a dataset of the size of real ones.

The dataset is generated: about 6,000 users and 530,000 interactions in three domains of
1,000 items each (the synthetic generator with ``n_users=6000, n_items=1000, n_domains=3,
mean_interactions=40``), split cold-start (test fraction 0.5, target ``movies``). The model
is fitted with its defaults, early stopping on validation users included; the item texts
are encoded by the language model once beforehand (``text encoding s``; later fits read
them from the cache), so ``fit s`` is what every further seed or tuning trial costs.
Pretraining (``pretrain_epochs`` > 0, :mod:`crossbench.train.pretrain`) is timed apart:
``pretrain s`` is its time (loading, when its weights come from the cache: ``cached``), and
``fit s`` is the rest of the fit (fine-tuning with early stopping, and the item-item term
when the model has one). ``--set KEY=VALUE`` changes a hyperparameter of ``lm-attention``
(TOML values), e.g. ``--set pretrain_epochs=3``.

In the same run, EASE (``domains="all"``) is fitted on the same split as a baseline, so the
ratio ``lm-attention fit / EASE fit`` can be compared across machines and load. The thread
count and the machine's load average before and after are printed with every timing.

Usage:
    python benchmarks/big_model_fit.py [--threads 2] [--seeds 0] [--users 6000] [--set KEY=VALUE ...]
    python benchmarks/big_model_fit.py --tiny      # a seconds-long smoke run (600 users, 2 epochs)
Prints a table and one final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (one fit each)")
    ap.add_argument("--users", type=int, default=6000)
    ap.add_argument("--tiny", action="store_true", help="600 users, 200 items per domain, 2 epochs")
    ap.add_argument("--cache-dir", type=Path, default=None, help="text-embedding cache (default: a temporary folder)")
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                    help="a hyperparameter of lm-attention (repeatable), e.g. pretrain_epochs=3")
    args = ap.parse_args()

    import torch

    from crossbench.data.protocols import train_items
    from crossbench.evaluate.ranking import evaluate
    from crossbench.experiment.assignments import parse_assignment
    from crossbench.plugin.build import make_recommender
    from crossbench.plugin.interfaces import RunEnv
    from crossbench.plugin.manager import get_plugin_manager
    from crossbench.plugin.registry import Registry
    from crossbench_protocols import ColdStart
    from crossbench_synthetic import SyntheticDataset

    torch.set_num_threads(args.threads)
    n_users, n_items = (600, 200) if args.tiny else (args.users, 1000)
    load_before = os.getloadavg()[0]
    data = SyntheticDataset(n_users=n_users, n_items=n_items, n_domains=3, mean_interactions=40.0).load()
    n_inter = sum(len(data.domain(d).interactions) for d in data.domain_names)
    registry = Registry(get_plugin_manager())
    params = {**({"epochs": 2} if args.tiny else {}), **dict(parse_assignment(a, option="--set") for a in args.settings)}
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache_dir or Path(tmp)
        rows = []
        for seed in (int(s) for s in args.seeds.split(",")):
            split = ColdStart(target="movies", test_fraction=0.5, seed=seed).split(data)
            env = RunEnv(registry=registry, seed=seed, progress=False, cache_dir=cache)
            t0 = time.perf_counter()
            warm = make_recommender(registry, "lm-attention", {"epochs": 1}, where="benchmark")
            warm._prepare(split.fit_view(), env)  # type: ignore[attr-defined]  # encodes (and caches) the item texts
            text_s = time.perf_counter() - t0
            out = {}
            for name, p in (("ease", {}), ("lm-attention", params)):
                model = make_recommender(registry, name, p, where="benchmark")
                t0 = time.perf_counter()
                report = model.fit(split.fit_view(), env=env)
                fit_s = time.perf_counter() - t0
                pretraining = model.describe().get("pretraining", {})
                pretrain_s = float(pretraining.get("seconds", 0.0))
                fit_s -= pretrain_s
                res = evaluate(
                    model.score, split.valid, n_items=split.train.domain("movies").n_items,
                    metrics=registry.metrics(["ndcg"]), ks=[10], exclude=train_items(split.train, "movies"),
                )
                out[name] = {"fit_s": fit_s, "epochs": report.epochs, "valid_ndcg@10": res.means["ndcg@10"],
                             "samples_per_s": report.samples_per_second, "pretrain_s": pretrain_s,
                             "pretrain_cached": pretraining.get("cached"), "pretrain_key": pretraining.get("key")}
            rows.append({"seed": seed, "text_encoding_s": text_s, **out})
    load_after = os.getloadavg()[0]
    print(f"dataset: {n_users} users, {n_inter} interactions, 3 domains x {n_items} items; threads {args.threads}; "
          f"load average {load_before:.2f} before, {load_after:.2f} after (cores: {os.cpu_count()})")
    print(f"{'seed':>4} {'text s':>7} {'lm fit s':>9} {'epochs':>6} {'samples/s':>10} {'EASE fit s':>10} {'ratio':>7} "
          f"{'lm valid':>8} {'EASE valid':>10} {'pretrain s':>10} {'cached':>6}")
    for r in rows:
        lm, ease = r["lm-attention"], r["ease"]
        print(f"{r['seed']:>4} {r['text_encoding_s']:7.1f} {lm['fit_s']:9.1f} {lm['epochs']:6d} {lm['samples_per_s'] or 0:10.0f} "
              f"{ease['fit_s']:10.2f} {lm['fit_s'] / max(ease['fit_s'], 1e-9):7.1f} {lm['valid_ndcg@10']:8.4f} {ease['valid_ndcg@10']:10.4f} "
              f"{lm['pretrain_s']:10.1f} {'yes' if lm['pretrain_cached'] else 'no':>6}")
    print(json.dumps({"threads": args.threads, "params": {k: str(v) for k, v in params.items()}, "load_before": load_before, "load_after": load_after,
                      "n_users": n_users, "n_interactions": n_inter, "runs": rows}))


if __name__ == "__main__":
    main()
