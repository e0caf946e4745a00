"""RecBole's full-sort evaluation on the data of eval_throughput.py, for a side-by-side timing.

Run it with a Python environment that has RecBole (1.2.1 was measured) and torch:

    /path/to/recbole-venv/bin/python benchmarks/recbole_eval.py --users 10000 --items 50000

It writes the synthetic data of ``synthetic_eval_data.py`` as RecBole atomic files in a
temporary folder (train / valid / test; the valid file repeats one training pair per user,
so RecBole masks exactly the training items, as crossbench does), builds a BPR model whose
user and item embeddings are the benchmark's vectors (size ``--dim``), and times
``Trainer.evaluate`` on the test data at each ``--batch-users`` setting: ``default``
(``eval_batch_size`` 4096, which RecBole turns into ``max(4096 // n_items, 1)`` users per
batch) and ``N`` (``eval_batch_size = N * n_items``, N users per batch). Only the
evaluation call is timed, ``--repeat`` times per setting (the best is reported, as
``eval_throughput.py`` reports its best). The last line printed is one JSON object.
``eval_throughput.py --recbole-python PATH`` runs this between its own repeats, so that
both are timed in the same stretch of time on the same machine.

Run by a Python without RecBole (e.g. ``python benchmarks/recbole_eval.py --users 200
--items 1000`` with the project's virtualenv), it still writes the atomic files and checks
their row counts against the data, says that it skipped the RecBole timing, and prints a
JSON line with ``"recbole": null`` and the reason under ``"skipped"``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_eval_data import make_eval_data  # noqa: E402


def write_atomic(folder: Path, d, n_items: int) -> None:
    """bench.{train,valid,test}.inter in RecBole's atomic format (tab-separated, typed header)."""
    folder.mkdir(parents=True, exist_ok=True)
    n_users = d.user_vectors.shape[0]

    def dump(name: str, indptr: np.ndarray, items: np.ndarray) -> None:
        users = np.repeat(np.arange(n_users), np.diff(indptr))
        with open(folder / f"bench.{name}.inter", "w") as f:
            f.write("user_id:token\titem_id:token\n")
            f.write("".join(f"u{u}\ti{i}\n" for u, i in zip(users.tolist(), items.tolist())))

    dump("train", d.train_indptr, d.train_items)
    first = d.train_indptr[:-1]
    has = np.diff(d.train_indptr) > 0
    dump("valid", np.concatenate([[0], np.cumsum(has)]), d.train_items[first[has]])
    dump("test", d.test_indptr, d.test_items)
    # Items no user touched would drop out of RecBole's catalogue: an extra user, who has no
    # test items and so is never evaluated, holds them in the valid file.
    unseen = np.setdiff1d(np.arange(n_items), np.concatenate([d.train_items, d.test_items]))
    with open(folder / "bench.valid.inter", "a") as f:
        f.write("".join(f"uextra\ti{i}\n" for i in unseen.tolist()))


def atomic_rows(folder: Path) -> dict[str, int]:
    """Rows (pairs, header excluded) of each atomic file in ``folder``."""
    return {f.name.split(".")[1]: sum(1 for _ in f.open()) - 1 for f in sorted(folder.glob("bench.*.inter"))}


def skip_recbole(a: argparse.Namespace, reason: str) -> None:
    """Without RecBole: write the atomic files, check their rows against the data, and say what was skipped."""
    d = make_eval_data(a.users, a.items, a.dim)
    with tempfile.TemporaryDirectory() as tmp:
        write_atomic(Path(tmp) / "bench", d, a.items)
        rows = atomic_rows(Path(tmp) / "bench")
    unseen = np.setdiff1d(np.arange(a.items), np.concatenate([d.train_items, d.test_items]))
    expected = {"test": len(d.test_items), "train": len(d.train_items),
                "valid": int((np.diff(d.train_indptr) > 0).sum()) + len(unseen)}
    if rows != expected:
        raise SystemExit(f"the atomic files hold {rows} rows, the data {expected}: write_atomic is wrong")
    print(f"{reason}: skipped the RecBole timing; wrote the atomic files it would read "
          f"(train {rows['train']}, valid {rows['valid']}, test {rows['test']} rows, as the data has)", flush=True)
    print(json.dumps({"recbole": None, "skipped": reason, "users": a.users, "items": a.items, "dim": a.dim, "atomic_rows": rows}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch-users", default="default,4096")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()

    try:
        import recbole
        from recbole.config import Config
        from recbole.data import create_dataset, data_preparation
        from recbole.model.general_recommender import BPR
        from recbole.trainer import Trainer
    except ImportError as exc:
        skip_recbole(a, f"RecBole is not importable by {sys.executable} ({exc})")
        return

    d = make_eval_data(a.users, a.items, a.dim)
    report: dict = {"recbole": recbole.__version__, "torch": torch.__version__, "users": a.users, "items": a.items, "dim": a.dim}
    with tempfile.TemporaryDirectory() as tmp:
        write_atomic(Path(tmp) / "bench", d, a.items)
        base = {
            "data_path": tmp, "benchmark_filename": ["train", "valid", "test"], "checkpoint_dir": tmp,
            "load_col": {"inter": ["user_id", "item_id"]},
            "embedding_size": a.dim, "metrics": ["Recall", "NDCG", "Hit", "MRR", "Precision", "MAP"], "topk": [5, 10, 20],
            "valid_metric": "NDCG@10", "use_gpu": False, "show_progress": False, "seed": 0, "state": "ERROR",
        }
        logging.getLogger().setLevel(logging.ERROR)
        if a.threads:
            torch.set_num_threads(a.threads)
        report["threads"] = torch.get_num_threads()
        runs = []
        for setting in a.batch_users.split(","):
            n_catalogue = a.items + 1  # RecBole's item ids start at 1 (0 is padding)
            ebs = 4096 if setting == "default" else int(setting) * n_catalogue
            config = Config(model="BPR", dataset="bench", config_dict={**base, "eval_batch_size": ebs})
            if a.threads:
                torch.set_num_threads(a.threads)
            t0 = time.perf_counter()
            dataset = create_dataset(config)  # a fresh one per setting: RecBole converts it in place
            _, _, test_data = data_preparation(config, dataset)
            assert dataset.item_num == n_catalogue, (dataset.item_num, n_catalogue)
            prepare_s = time.perf_counter() - t0
            model = BPR(config, test_data._dataset)
            with torch.no_grad():
                uid = dataset.field2id_token["user_id"]
                iid = dataset.field2id_token["item_id"]
                for tokens, emb, table in ((uid, model.user_embedding, d.user_vectors), (iid, model.item_embedding, d.item_vectors)):
                    real = np.array([t != "uextra" for t in tokens[1:]])
                    idx = np.array([int(t[1:]) for t in tokens[1:] if t != "uextra"])
                    rows = torch.from_numpy(np.flatnonzero(real) + 1)
                    emb.weight[rows] = torch.from_numpy(table[idx])
            trainer = Trainer(config, model)
            walls = []
            for _ in range(max(a.repeat, 1)):
                t0 = time.perf_counter()
                result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
                walls.append(time.perf_counter() - t0)
            wall = min(walls)
            n_eval = int((np.diff(d.test_indptr) > 0).sum())
            runs.append({
                "batch_users": setting, "eval_batch_size": ebs, "prepare_s": round(prepare_s, 1),
                "users_per_batch": max(ebs // dataset.item_num, 1), "eval_s": round(wall, 3),
                "all_eval_s": [round(w, 3) for w in walls], "users_per_s": round(n_eval / wall, 1),
                "metrics": {k: float(v) for k, v in result.items() if k.endswith("@10")},
            })
            print(f"RecBole {recbole.__version__} batch={setting}: {runs[-1]['users_per_s']:.0f} users/s "
                  f"({wall:.1f} s) {runs[-1]['metrics']}", flush=True)
        report["runs"] = runs
    print(json.dumps(report))


if __name__ == "__main__":
    main()
