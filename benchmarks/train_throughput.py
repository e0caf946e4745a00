"""Training throughput of crossbench's MF/BPR composition against RecBole 1.2.1's BPR, side by side.

Both train on the same interactions (the synthetic dataset's target domain, each user's
last 20% by time held out), with the same embedding size, batch size, learning rate, a comparable initialisation
(normal, std 0.02; RecBole's Xavier normal gives about 0.02 for this catalogue), one
uniformly sampled negative per positive, no weight decay and the same number of epochs, on
CPU with the same thread count. Throughput is training pairs per second of training steps
(RecBole's ``_train_epoch``, which includes its negative sampling; crossbench's training
loop, likewise). Both models are then evaluated by crossbench's full-ranking evaluator on
the same held-out items (RecBole's embeddings are mapped back to crossbench's ids), so the
NDCG@10 values are directly comparable.

Usage (RecBole in its own virtualenv; nothing of RecBole is imported by crossbench):
    python benchmarks/train_throughput.py --recbole-python PATH/TO/recbole-venv/bin/python [--threads 2]
Prints a table and one final JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_split(n_users: int, seed: int, out: Path) -> None:
    """Write train/test pairs of the synthetic target domain as ``.npz`` and RecBole atomic files."""
    from crossbench_synthetic import SyntheticDataset

    data = SyntheticDataset(n_users=n_users, seed=seed).load()
    inter = data.domain("movies").interactions.sort_values(["user", "timestamp"], kind="stable")
    users, items = inter["user"].to_numpy(), inter["item"].to_numpy()
    rank = inter.groupby("user").cumcount().to_numpy()
    size = inter.groupby("user")["item"].transform("size").to_numpy()
    test = rank >= np.ceil(size * 0.8)
    np.savez(out / "split.npz", train_u=users[~test], train_i=items[~test], test_u=users[test], test_i=items[test],
             n_users=data.n_users, n_items=data.domain("movies").n_items)
    atomic = out / "synth"
    atomic.mkdir()
    for part, rows in (("train", ~test), ("valid", test), ("test", test)):
        lines = ["user_id:token\titem_id:token"] + [f"{u}\t{i}" for u, i in zip(users[rows], items[rows])]
        (atomic / f"synth.{part}.inter").write_text("\n".join(lines) + "\n")


def evaluate_embeddings(split: dict, user_vec, item_vec) -> float:  # type: ignore[no-untyped-def]
    """NDCG@10 of ``user_vec @ item_vec.T`` on the held-out pairs, training items masked."""
    import torch

    from crossbench.data.protocols import GroundTruth
    from crossbench.evaluate.ranking import evaluate
    from crossbench.plugins import get_plugin_manager
    from crossbench.registry import Registry

    reg = Registry(get_plugin_manager())
    truth = GroundTruth.from_pairs(split["test_u"], split["test_i"])
    exclude = GroundTruth.from_pairs(split["train_u"], split["train_i"])
    uv, iv = torch.as_tensor(user_vec, dtype=torch.float32), torch.as_tensor(item_vec, dtype=torch.float32)
    res = evaluate(lambda u: uv[u] @ iv.T, truth, n_items=int(split["n_items"]), metrics=reg.metrics(["ndcg"]), ks=[10], exclude=exclude)
    return res.means["ndcg@10"]


def run_crossbench(args: argparse.Namespace, work: Path) -> dict:  # type: ignore[type-arg]
    import pandas as pd
    import torch

    from crossbench.data.model import CrossDomainData
    from crossbench.data.protocols import GroundTruth, Split
    from crossbench.interfaces import RunEnv
    from crossbench.plugins import get_plugin_manager
    from crossbench.registry import Registry

    torch.set_num_threads(args.threads)
    s = dict(np.load(work / "split.npz"))
    frame = pd.DataFrame({"domain": "movies", "user": s["train_u"], "item": s["train_i"], "timestamp": np.arange(len(s["train_u"]))})
    items = pd.DataFrame({"domain": "movies", "item": np.arange(int(s["n_items"])), "title": "", "text": ""})
    data = CrossDomainData.from_frames("throughput", frame, items)
    # from_frames renumbers raw ids as sorted strings: map back so that indices equal the raw ids
    uid = np.array([int(x) for x in data.user_ids])
    iid = np.array([int(x) for x in data.domain("movies").items["item_id"]])
    empty = GroundTruth.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64))
    split = Split(protocol="throughput", target="movies", train=data, valid=empty, test=empty)
    reg = Registry(get_plugin_manager())
    model = reg.get("recommenders", "mf").factory(
        dim=args.dim, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, l2=0.0, negatives=1, init_std=args.init_std
    )
    t0 = time.perf_counter()
    report = model.fit(split.fit_view(), env=RunEnv(registry=reg, seed=args.seed, progress=False))
    wall = time.perf_counter() - t0
    user_vec = np.zeros((int(s["n_users"]), args.dim), np.float32)
    item_vec = np.zeros((int(s["n_items"]), args.dim), np.float32)
    user_vec[uid] = model.model.user_encoders["movies"].embedding.weight.detach().numpy()
    item_vec[iid] = model.model.item_encoders["movies"].embedding.weight.detach().numpy()
    return {"samples_per_s": report.samples_per_second, "train_s": report.train_seconds, "fit_wall_s": wall,
            "samples": report.train_samples, "threads": report.threads, "ndcg@10": evaluate_embeddings(s, user_vec, item_vec)}


def run_recbole_worker(args: argparse.Namespace, work: Path) -> None:
    """Runs inside RecBole's virtualenv: train BPR, time its epochs, dump its embeddings."""
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import BPR
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    torch.set_num_threads(args.threads)
    config = Config(model="BPR", dataset="synth", config_dict={
        "data_path": str(work), "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"]}, "embedding_size": args.dim, "train_batch_size": args.batch_size,
        "learning_rate": args.lr, "weight_decay": 0.0, "epochs": args.epochs, "seed": args.seed, "reproducibility": True,
        "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}, "use_gpu": False, "device": "cpu",
        "show_progress": False, "checkpoint_dir": str(work / "ckpt"), "eval_args": {"mode": "full", "order": "RO"},
        "state": "WARNING",
    })
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    model = BPR(config, train_data._dataset).to("cpu")
    trainer = Trainer(config, model)
    torch.set_num_threads(args.threads)
    seconds = 0.0
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        trainer._train_epoch(train_data, epoch, show_progress=False)
        seconds += time.perf_counter() - t0
    samples = args.epochs * len(train_data._dataset)
    users = np.zeros((dataset.user_num, args.dim), np.float32)
    u_tokens = dataset.field2id_token["user_id"]
    i_tokens = dataset.field2id_token["item_id"]
    u_emb = model.user_embedding.weight.detach().numpy()
    i_emb = model.item_embedding.weight.detach().numpy()
    u_raw = np.array([int(t) for t in u_tokens[1:]])
    i_raw = np.array([int(t) for t in i_tokens[1:]])
    np.savez(work / "recbole.npz", u_raw=u_raw, i_raw=i_raw, u_emb=u_emb[1:], i_emb=i_emb[1:])
    print(json.dumps({"samples_per_s": samples / seconds, "train_s": seconds, "samples": samples,
                      "threads": torch.get_num_threads(), "users": int(users.shape[0])}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recbole-python", required=True, help="python of a virtualenv with recbole==1.2.1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-users", type=int, default=6000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init-std", type=float, default=0.02, help="crossbench MF init (RecBole: Xavier normal, std ~0.02 here)")
    ap.add_argument("--recbole-worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.recbole_worker is not None:
        run_recbole_worker(args, args.recbole_worker)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_split(args.n_users, args.seed, work)
        ours = run_crossbench(args, work)
        cmd = [args.recbole_python, __file__, "--recbole-worker", str(work), "--recbole-python", args.recbole_python,
               "--threads", str(args.threads), "--dim", str(args.dim),
               "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--epochs", str(args.epochs), "--seed", str(args.seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(f"RecBole worker failed with exit code {proc.returncode}")
        theirs = json.loads(proc.stdout.strip().splitlines()[-1])
        s = dict(np.load(work / "split.npz"))
        r = np.load(work / "recbole.npz")
        user_vec = np.zeros((int(s["n_users"]), args.dim), np.float32)
        item_vec = np.full((int(s["n_items"]), args.dim), 0.0, np.float32)
        user_vec[r["u_raw"]] = r["u_emb"]
        item_vec[r["i_raw"]] = r["i_emb"]
        theirs["ndcg@10"] = evaluate_embeddings(s, user_vec, item_vec)
    ratio = ours["samples_per_s"] / theirs["samples_per_s"]
    print(f"MF/BPR, {args.n_users} users, dim {args.dim}, batch {args.batch_size}, lr {args.lr}, {args.epochs} epochs, "
          f"1 negative, threads {args.threads}")
    print(f"{'library':<12} {'samples/s':>12} {'train s':>9} {'NDCG@10':>9}")
    print(f"{'crossbench':<12} {ours['samples_per_s']:>12.0f} {ours['train_s']:>9.2f} {ours['ndcg@10']:>9.4f}")
    print(f"{'RecBole':<12} {theirs['samples_per_s']:>12.0f} {theirs['train_s']:>9.2f} {theirs['ndcg@10']:>9.4f}")
    print(f"throughput ratio crossbench / RecBole = {ratio:.2f}")
    print(json.dumps({"benchmark": "train_throughput", "threads": args.threads, "n_users": args.n_users, "epochs": args.epochs,
                      "dim": args.dim, "batch_size": args.batch_size, "lr": args.lr, "crossbench": ours, "recbole": theirs,
                      "ratio": ratio}))


if __name__ == "__main__":
    main()
