"""What one round of the feedback loop costs, as a ratio to one fit plus one evaluation of the same model.

On the default benchmark (synthetic data at its default size, cold-start in ``movies``, test
fraction 0.5, validation 0.1, seed 0) for each model:

* baseline: fit the model on the simulation's training data and evaluate the test users by
  full ranking as ``crossbench run`` does (recall, ndcg, hr, mrr at 10 and 20, head/tail groups);
* round: run the simulation (planted feedback, top 10, every test user plus 500 warm users)
  for ``--rounds`` rounds and average the seconds of rounds 1..R: feedback, the model's update
  (a refit for Popularity, warm-started fine-tuning for composed models) and the one scoring
  pass that measures accuracy and ranks the next lists.

Prints one line per model and, last, one JSON line with the seconds, the ratios, the thread
count and the outside load of the machine during each measurement.

Usage: python benchmarks/simulation_round.py [--models popularity mf shared-mean] [--rounds 2] [--threads 1] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_load import OutsideLoad, describe  # noqa: E402

from crossbench.data.protocols import train_items  # noqa: E402
from crossbench.evaluate.groups import head_tail, item_popularity  # noqa: E402
from crossbench.evaluate.ranking import evaluate  # noqa: E402
from crossbench.experiment.checks import feedback_model  # noqa: E402
from crossbench.loop.simulation import Simulation, population  # noqa: E402
from crossbench.plugin.build import make_recommender  # noqa: E402
from crossbench.plugin.interfaces import RunEnv  # noqa: E402
from crossbench.plugin.manager import get_plugin_manager  # noqa: E402
from crossbench.plugin.registry import Registry  # noqa: E402
from crossbench.plugin.simulation_settings import SimulationSettings  # noqa: E402
from crossbench_protocols import ColdStart  # noqa: E402
from crossbench_synthetic import SyntheticDataset  # noqa: E402


def measure(registry: Registry, name: str, params: dict, *, data, split, settings: SimulationSettings, seed: int) -> dict:
    metrics = registry.metrics(["recall", "ndcg", "hr", "mrr"])
    env = RunEnv(registry=registry, seed=seed, progress=False)
    pop = population(split, settings, seed=seed)
    torch.manual_seed(seed)
    model = make_recommender(registry, name, params, where=name)
    with OutsideLoad() as base_load:
        t0 = time.perf_counter()
        model.fit(pop.base, env=env)
        fit_s = time.perf_counter() - t0
        popularity = item_popularity(pop.base.train, split.target)
        t1 = time.perf_counter()
        evaluate(model.score, split.test, n_items=split.train.domain(split.target).n_items, metrics=metrics, ks=[10, 20],
                 exclude=train_items(pop.base.train, split.target), item_popularity=popularity, item_groups=head_tail(popularity))
        eval_s = time.perf_counter() - t1
    with tempfile.TemporaryDirectory() as tmp, OutsideLoad() as round_load:
        sim = Simulation(Path(tmp) / "sim.json", Path(tmp) / "sim.npz", settings, seed)
        torch.manual_seed(seed)
        fresh = make_recommender(registry, name, params, where=name)
        feedback = feedback_model(settings, registry)
        record = sim.run(split, data, fresh, feedback, env=env, metrics=registry.metrics(settings.metrics),
                         header={"fingerprint": "benchmark"})
    rounds = record["rounds"][1:]
    round_s = sum(sum(r["seconds"].values()) for r in rounds) / len(rounds)
    parts = {k: sum(r["seconds"][k] for r in rounds) / len(rounds) for k in ("feedback", "update", "pass")}
    return {"fit_s": fit_s, "eval_s": eval_s, "round_s": round_s, "round_parts_s": parts, "ratio": round_s / (fit_s + eval_s),
            "users": record["population"]["users"], "taken_per_round": [r["taken"] for r in rounds],
            "outside_cores_baseline": base_load.cores, "outside_cores_rounds": round_load.cores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["popularity", "mf", "shared-mean"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="400 users, 80 items, 2-epoch models (for the tests)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    registry = Registry(get_plugin_manager())
    size = {"n_users": 400, "n_items": 80} if args.tiny else {}
    params = {m: ({"epochs": 2, "dim": 8} if args.tiny and m != "popularity" else {}) for m in args.models}
    data = SyntheticDataset(seed=args.seed, **size).load()
    split = ColdStart(target="movies", test_fraction=0.5, valid_fraction=0.1, seed=args.seed).split(data)
    settings = SimulationSettings(rounds=args.rounds, k=10, feedback="planted", warm_users=50 if args.tiny else 500, metrics=("ndcg", "recall"))
    results = {}
    for name in args.models:
        r = measure(registry, name, params[name], data=data, split=split, settings=settings, seed=args.seed)
        results[name] = r
        print(f"{name}: one round {r['round_s']:.3f} s (feedback {r['round_parts_s']['feedback']:.3f}, update "
              f"{r['round_parts_s']['update']:.3f}, scoring pass {r['round_parts_s']['pass']:.3f}) / fit {r['fit_s']:.3f} s + "
              f"evaluation {r['eval_s']:.3f} s = {r['ratio']:.2f}x ({r['users']} simulated users, threads {args.threads}, "
              f"{describe(r['outside_cores_rounds'])})", flush=True)
    print(json.dumps({"threads": args.threads, "rounds": args.rounds, "n_users": data.n_users, "models": results}))


if __name__ == "__main__":
    main()
