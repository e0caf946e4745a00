"""The model zoo on the synthetic cold-start benchmark, several seeds, with paired tests.

For each transfer strength and seed: generate the synthetic data (seeded), split it
cold-start (target ``movies``, test fraction 0.5, validation 0.1, same seed), fit every
model (selection on validation only) and evaluate the cold test users by full ranking.
Per-user NDCG@10 values of all seeds are pooled for paired t-tests. Prints a table per
transfer strength and, last, one JSON line with the means and the checks:

* transfer > 0: every cross-domain model beats target-only MF and Popularity on cold users
  (higher mean, paired one-sided p < 0.05); the reference big model is the best or within
  noise of the best (two-sided p >= 0.05 against the best);
* transfer = 0: no cross-domain model beats Popularity significantly.

Usage: python benchmarks/zoo_synthetic.py [--seeds 0 1 2] [--n-users 6000] [--transfers 0.8 0.0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from crossbench.data.protocols import train_items
from crossbench.evaluate.ranking import evaluate
from crossbench.plugin.interfaces import RunEnv
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench_protocols import ColdStart
from crossbench_synthetic import SyntheticDataset

TARGET_ONLY = ("popularity", "mf", "sasrec")
CROSS_DOMAIN = ("shared-id", "shared-mean", "emcdr-joint", "ptupcdr-joint", "cd-concat", "cd-gating", "cd-attention", "itemknn", "ease", "lm-attention")
BIG = "lm-attention"
HISTORY_MODELS = ("shared-mean", "emcdr-joint", "ptupcdr-joint", "cd-concat", "cd-gating", "cd-attention", "sasrec", "lm-attention")


def run_models(
    *, registry: Registry, models: list[str], n_users: int, transfer: float, seed: int, fraction: float, threads: int,
    cache_dir: Path, overrides: dict[str, dict[str, object]], progress: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, float]]:
    """Per-user NDCG@10 on the cold test users, and fit seconds per model, for one seed."""
    torch.set_num_threads(threads)
    data = SyntheticDataset(n_users=n_users, transfer=transfer, seed=seed).load()
    split = ColdStart(target="movies", test_fraction=fraction, valid_fraction=0.1, seed=seed).split(data)
    metrics = registry.metrics(["ndcg", "recall"])
    exclude = train_items(split.train, split.target)
    n_items = split.train.domain(split.target).n_items
    per_user, seconds, recall = {}, {}, {}
    for name in models:
        torch.manual_seed(seed)
        model = registry.get("recommenders", name).factory(**overrides.get(name, {}))
        env = RunEnv(registry=registry, seed=seed, progress=progress, cache_dir=cache_dir)
        t0 = time.perf_counter()
        report = model.fit(split.fit_view(), env=env)
        seconds[name] = time.perf_counter() - t0
        if progress or report.history:
            print(f"  seed={seed} {name}: epochs {report.epochs}, best {report.best_epoch}, "
                  f"validation {[round(v, 4) for v in report.history]}", flush=True)
        res = evaluate(model.score, split.test, n_items=n_items, metrics=metrics, ks=[10], exclude=exclude)
        per_user[name] = res.per_user["ndcg@10"]
        recall[name] = float(res.per_user["recall@10"].mean())
    return per_user, seconds, recall


def paired_p(a: np.ndarray, b: np.ndarray, alternative: str) -> float:
    """Paired t-test p-value of ``a`` against ``b`` (``greater``: a > b)."""
    if np.allclose(a, b):
        return 1.0
    return float(stats.ttest_rel(a, b, alternative=alternative).pvalue)


def summarise(transfer: float, runs: list[dict[str, np.ndarray]], models: list[str]) -> dict[str, object]:
    pooled = {m: np.concatenate([r[m] for r in runs]) for m in models}
    seed_means = {m: [float(r[m].mean()) for r in runs] for m in models}
    best = max(models, key=lambda m: pooled[m].mean())
    out: dict[str, object] = {"transfer": transfer, "ndcg@10": {m: float(np.mean(v)) for m, v in seed_means.items()},
                              "ndcg@10_std": {m: float(np.std(v)) for m, v in seed_means.items()}, "best": best}
    cd = [m for m in models if m in CROSS_DOMAIN]
    if transfer > 0:
        beats = {}
        for m in cd:
            checks = [
                pooled[m].mean() > pooled[base].mean() and paired_p(pooled[m], pooled[base], "greater") < 0.05
                for base in ("mf", "popularity") if base in models
            ]
            beats[m] = all(checks)
        out["cross_domain_beat_baselines"] = beats
        if BIG in models:
            p = 1.0 if best == BIG else paired_p(pooled[BIG], pooled[best], "two-sided")
            out["big_vs_best_p"] = p
            if best == BIG and len(models) > 1:  # how far ahead: the runner-up and the paired test against it
                second = max((m for m in models if m != BIG), key=lambda m: pooled[m].mean())
                out["runner_up"] = second
                out["big_vs_runner_up_p"] = paired_p(pooled[BIG], pooled[second], "two-sided")
            out["big_best_or_within_noise"] = best == BIG or p >= 0.05
    elif "popularity" not in models:
        out["significantly_beat_popularity"] = "not checked: popularity is not among --models"
    else:
        sig = {m: bool(pooled[m].mean() > pooled["popularity"].mean() and paired_p(pooled[m], pooled["popularity"], "greater") < 0.05) for m in cd}
        out["significantly_beat_popularity"] = sig
        out["none_beat_popularity"] = not any(sig.values())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-users", type=int, default=6000)
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--transfers", type=float, nargs="+", default=[0.8, 0.0])
    ap.add_argument("--models", nargs="+", default=[*TARGET_ONLY, *CROSS_DOMAIN])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--history-length", type=int, default=20)
    ap.add_argument("--cache-dir", type=Path, default=Path("build/crossbench-cache"))
    ap.add_argument("--model-path", default=None, help="local HF model for lm-attention (default: shipped MiniLM)")
    ap.add_argument(
        "--set", dest="settings", action="append", default=[], metavar="MODEL.KEY=VALUE",
        help="override one hyperparameter of one model (value parsed as JSON, else a string); repeatable",
    )
    a = ap.parse_args()
    registry = Registry(get_plugin_manager())
    # every history-reading composition reads the same 20 most recent items per domain
    overrides: dict[str, dict[str, object]] = {m: {"history_length": a.history_length} for m in HISTORY_MODELS}
    # ID-embedding models start from small vectors (init_std 0.02, chosen on validation NDCG@10)
    overrides["mf"] = {"init_std": 0.02}
    overrides["shared-id"] = {"init_std": 0.02}
    if a.model_path:
        overrides[BIG]["model_path"] = a.model_path
    for setting in a.settings:
        model, _, assignment = setting.partition(".")
        key, eq, raw = assignment.partition("=")
        if not (model and key and eq):
            ap.error(f"--set {setting!r}: expected MODEL.KEY=VALUE, e.g. --set lm-attention.loss=softmax")
        try:
            value: object = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        overrides.setdefault(model, {})[key] = value
    summaries = []
    for transfer in a.transfers:
        runs, secs = [], {m: [] for m in a.models}
        recalls = {m: [] for m in a.models}
        for seed in a.seeds:
            per_user, seconds, recall = run_models(
                registry=registry, models=a.models, n_users=a.n_users, transfer=transfer, seed=seed, fraction=a.fraction,
                threads=a.threads, cache_dir=a.cache_dir, overrides=overrides,
            )
            runs.append(per_user)
            for m in a.models:
                secs[m].append(seconds[m])
                recalls[m].append(recall[m])
            print(f"transfer={transfer} seed={seed}: " + ", ".join(f"{m}={per_user[m].mean():.4f}" for m in a.models), flush=True)
        s = summarise(transfer, runs, a.models)
        s["fit_seconds"] = {m: float(np.mean(v)) for m, v in secs.items()}
        s["recall@10"] = {m: float(np.mean(v)) for m, v in recalls.items()}
        summaries.append(s)
        print(f"\ntransfer = {transfer}, cold users, {len(a.seeds)} seeds, {a.n_users} users, threads = {a.threads}")
        print(f"{'model':<14} {'NDCG@10':>16} {'Recall@10':>10} {'fit s':>7}")
        nd, sd = s["ndcg@10"], s["ndcg@10_std"]
        for m in sorted(a.models, key=lambda m: -nd[m]):  # type: ignore[index]
            print(f"{m:<14} {nd[m]:.4f} ± {sd[m]:.4f} {s['recall@10'][m]:>10.4f} {s['fit_seconds'][m]:>7.1f}")  # type: ignore[index]
        print({k: v for k, v in s.items() if k not in ("ndcg@10", "ndcg@10_std", "fit_seconds", "recall@10")}, flush=True)
    print(json.dumps({"benchmark": "zoo_synthetic", "seeds": a.seeds, "n_users": a.n_users, "fraction": a.fraction,
                      "threads": a.threads, "history_length": a.history_length, "overrides": overrides, "results": summaries}))


if __name__ == "__main__":
    main()
