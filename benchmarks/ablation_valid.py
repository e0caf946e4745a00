"""Validation NDCG@10 of one model configuration on the splits of an experiment (for ablations).

For each seed, the experiment's dataset is split by its protocol and target, the model (its
defaults, changed by ``--set``) is fitted on the split's training data, and the split's
*validation* users are evaluated by full ranking; the test users are never read. Prints
one line per seed and the mean, then one JSON line. An ablation is one run per changed
setting, e.g. (the rows of docs/models.md's ablation table):

    python benchmarks/ablation_valid.py leaderboards/movielens-100k/experiment.toml --model lm-attention
    python benchmarks/ablation_valid.py leaderboards/movielens-100k/experiment.toml --model lm-attention --set loss=bpr
    python benchmarks/ablation_valid.py --tiny      # a seconds-long check on small synthetic data

Values of ``--set KEY=VALUE`` are read as TOML values (``true``, ``0.5``, ``"bpr"``), else as strings.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", nargs="?", type=Path, help="experiment TOML (dataset, protocol, target, seeds)")
    ap.add_argument("--model", default="lm-attention")
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds (default: the experiment's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tiny", action="store_true", help="synthetic data of 300 users, 2 epochs")
    args = ap.parse_args()
    if args.experiment is None and not args.tiny:
        ap.error("give an experiment file or --tiny")

    import torch

    from crossbench.data.protocols import train_items
    from crossbench.evaluate.ranking import evaluate
    from crossbench.experiment.assignments import parse_assignment
    from crossbench.plugin.build import make_protocol, make_recommender
    from crossbench.plugin.interfaces import RunEnv
    from crossbench.plugin.manager import get_plugin_manager
    from crossbench.plugin.registry import Registry

    torch.set_num_threads(args.threads)
    registry = Registry(get_plugin_manager())
    params = dict(parse_assignment(s, option="--set") for s in args.settings)
    if args.tiny:
        from crossbench_synthetic import SyntheticDataset

        data = SyntheticDataset(n_users=300, n_items=60).load()
        protocol, target, protocol_params, seeds = "cold-start", "movies", {"test_fraction": 0.3, "valid_fraction": 0.2}, [0]
        params = {"epochs": 2, **params}
    else:
        from crossbench.experiment import default_experiment
        from crossbench.experiment.tomlfile import load_experiment

        exp = load_experiment(args.experiment, default_experiment(registry.pm))
        data = registry.get("datasets", exp.dataset.name).factory(**exp.dataset.params).load()
        protocol, protocol_params, seeds = exp.protocol.name, dict(exp.protocol.params), list(exp.seeds)
        target = exp.protocol.targets[0] if exp.protocol.targets else str(data.meta.get("default_target"))
    if args.seeds:
        seeds = [int(s) for s in args.seeds.split(",")]
    values = []
    for seed in seeds:
        split = make_protocol(registry, protocol, target=target, seed=seed, **protocol_params).split(data)
        model = make_recommender(registry, args.model, params, where=f"model {args.model!r}")
        t0 = time.perf_counter()
        report = model.fit(split.fit_view(), env=RunEnv(registry=registry, seed=seed, progress=False))
        fit_s = time.perf_counter() - t0
        res = evaluate(
            model.score, split.valid, n_items=split.train.domain(target).n_items, metrics=registry.metrics(["ndcg"]),
            ks=[10], exclude=train_items(split.train, target),
        )
        values.append(res.means["ndcg@10"])
        print(f"seed {seed}: validation ndcg@10 {values[-1]:.4f} ({split.valid.n_users} users), fit {fit_s:.1f} s, "
              f"epochs {report.epochs}, threads {args.threads}")
    mean = sum(values) / len(values)
    print(f"{args.model} {params}: mean validation ndcg@10 {mean:.4f} over {len(values)} seeds")
    print(json.dumps({"model": args.model, "params": {k: str(v) for k, v in params.items()}, "seeds": seeds,
                      "valid_ndcg@10": values, "mean": mean, "threads": args.threads}))


if __name__ == "__main__":
    main()
