"""Training throughput of crossbench against RecBole 1.2.1 on the same rows, side by side.

Two pairs, each trained on the same interactions (the synthetic dataset's target domain,
each user's last 20% by time held out) with the same sizes, learning rate, epochs and no
weight decay, on CPU with the same thread count (``--models``, both by default):

* ``mf``: crossbench's MF/BPR composition against RecBole's BPR, BPR against one uniformly
  sampled negative, the same batch size, and a comparable initialisation (normal, std 0.02;
  RecBole's Xavier normal gives about 0.02 for this catalogue).
* ``sasrec``: crossbench's ``sasrec`` against RecBole's SASRec: ``--layers`` blocks with
  ``--heads`` heads, a feed-forward width of twice ``--dim``, ``--dropout`` (RecBole's hidden
  and attention dropout), the ``--history-length`` most recent training items. RecBole reads
  each training interaction with the items before it (its own augmentation, written here as
  its pre-split atomic files, batches of ``--batch-size`` interactions); crossbench trains
  all positions of each sequence at once, with as many sequences per batch as hold about
  ``--batch-size`` interactions. By default it lists each sequence twice an epoch, each
  listing training a random half of its positions (``target_groups=2``, chosen on the
  validation split): a step then ranks about as many targets, drawn from twice as many users.
  Both use softmax cross-entropy over the catalogue (RecBole's ``loss_type="CE"``, its
  default; crossbench's ``loss="full-softmax"``).

``--sequence-batch targets`` sizes crossbench's batches by ranked targets instead (the
items after each window's first, RecBole's samples), so that both take the same steps per epoch.

Throughput is training interactions per second: the split's training interactions times the
epochs run, over the seconds of the training epochs (RecBole's ``_train_epoch``, which
includes its negative sampling; crossbench's training loop, likewise: ``FitReport.train_seconds``).
Both libraries get the same numerator, so the ratio is the ratio of their epoch times. The
outside load is the number of cores other processes kept busy while each library trained
(``machine_load.py``); only a run with an outside load near 0 measures the code by the wall
clock. The CPU seconds of the same spans (RecBole's epochs; crossbench's whole fit, its set-up
included) are printed too: at one thread their ratio holds on a loaded machine. Every model
is then scored by crossbench's full-ranking evaluator on the same held-out items (RecBole's
vectors mapped back to crossbench's ids; SASRec's user vector is its state after the user's
most recent training items), so the NDCG@10 values are directly comparable.

Usage (RecBole in its own virtualenv; nothing of RecBole is imported by crossbench):
    python benchmarks/train_throughput.py --recbole-python PATH/TO/recbole-venv/bin/python [--threads 2] [--models mf,sasrec]
    python benchmarks/train_throughput.py --tiny [--recbole-python PATH]    # a check of the script in seconds
    python benchmarks/train_throughput.py --models sasrec --threads 1 --seeds 0 1 2 --recbole-python PATH
        # both libraries at three training seeds on the same data: per-seed rows, NDCG@10 mean and sample std
Without ``--recbole-python`` only crossbench's half runs, and the RecBole half is reported as
skipped. Prints a table and a ratio line per pair, then one final JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_load import OutsideLoad, describe  # noqa: E402
from throughput_data import make_split, sequences_per_batch  # noqa: E402

MODELS = ("mf", "sasrec")
TITLES = {"mf": "MF/BPR (crossbench mf, RecBole BPR)", "sasrec": "SASRec (crossbench sasrec, RecBole SASRec)"}
DEFAULT_LR = {"mf": 5e-3, "sasrec": 2e-3}
TINY = {"n_users": 300, "epochs": 1, "dim": 16, "batch_size": 512, "history_length": 10}


def evaluate_scores(split: dict[str, np.ndarray], score: Any) -> float:
    """NDCG@10 of ``score(users)`` (raw user ids -> ``[B, n_items]`` in raw item order), training items masked."""
    from crossbench.data.protocols import GroundTruth
    from crossbench.evaluate.ranking import evaluate
    from crossbench.plugin.manager import get_plugin_manager
    from crossbench.plugin.registry import Registry

    reg = Registry(get_plugin_manager())
    truth = GroundTruth.from_pairs(split["test_u"], split["test_i"])
    exclude = GroundTruth.from_pairs(split["train_u"], split["train_i"])
    res = evaluate(score, truth, n_items=int(split["n_items"]), metrics=reg.metrics(["ndcg"]), ks=[10], exclude=exclude)
    return res.means["ndcg@10"]


def vector_scores(user_vec: np.ndarray, item_vec: np.ndarray) -> Any:
    import torch

    uv, iv = torch.as_tensor(user_vec, dtype=torch.float32), torch.as_tensor(item_vec, dtype=torch.float32)
    return lambda u: uv[u] @ iv.T


def run_crossbench(name: str, args: argparse.Namespace, work: Path, seed: int) -> dict[str, Any]:
    import pandas as pd
    import torch

    from crossbench.data.model import CrossDomainData
    from crossbench.data.protocols import GroundTruth, Split
    from crossbench.plugin.interfaces import RunEnv
    from crossbench.plugin.manager import get_plugin_manager
    from crossbench.plugin.registry import Registry

    torch.set_num_threads(args.threads)
    s = dict(np.load(work / "split.npz"))
    frame = pd.DataFrame({"domain": "movies", "user": s["train_u"], "item": s["train_i"], "timestamp": np.arange(len(s["train_u"]))})
    items = pd.DataFrame({"domain": "movies", "item": np.arange(int(s["n_items"])), "title": "", "text": ""})
    data = CrossDomainData.from_frames("throughput", frame, items)
    # from_frames renumbers raw ids as sorted strings: map raw ids to crossbench's indices and back
    user_index = np.full(int(s["n_users"]), -1, np.int64)
    user_index[np.array([int(x) for x in data.user_ids])] = np.arange(data.n_users)
    raw_items = np.array([int(x) for x in data.domain("movies").items["item_id"]])
    item_index = np.empty(int(s["n_items"]), np.int64)
    item_index[raw_items] = np.arange(len(raw_items))
    empty = GroundTruth.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64))
    split = Split(protocol="throughput", target="movies", train=data, valid=empty, test=empty)
    reg = Registry(get_plugin_manager())
    lr = args.lr if args.lr is not None else DEFAULT_LR[name]
    common = {"dim": args.dim, "epochs": args.epochs, "batch_size": args.batch_size, "lr": lr, "l2": 0.0, "negatives": 1}
    if name == "mf":
        model = reg.get("recommenders", "mf").factory(**common, init_std=args.init_std)
    else:
        # all-position training: a batch holds whole sequences; as many as give about
        # --batch-size training interactions per step, the interactions in RecBole's batch
        common["batch_size"] = sequences_per_batch(s["train_u"], args.history_length, args.batch_size, by=args.sequence_batch)
        model = reg.get("recommenders", "sasrec").factory(
            **common, layers=args.layers, heads=args.heads, dropout=args.dropout, history_length=args.history_length,
            loss="full-softmax", **args.sasrec_param,
        )
    cpu0 = time.process_time()
    with OutsideLoad() as load:
        report = model.fit(split.fit_view(), env=RunEnv(registry=reg, seed=seed, progress=False))
    cpu_s = time.process_time() - cpu0  # the whole fit, its set-up included
    rows = len(s["train_u"])
    cols = torch.as_tensor(item_index)

    def score(users: torch.Tensor) -> torch.Tensor:
        return model.score(torch.as_tensor(user_index[users.numpy()]))[:, cols]

    return {"interactions_per_s": rows * report.epochs / report.train_seconds, "train_s": report.train_seconds,
            "fit_wall_s": load.wall_s, "epochs": report.epochs, "train_interactions": rows, "samples": report.train_samples,
            "threads": report.threads, "outside_cores_during": load.cores, "cpu_s": cpu_s, "ndcg@10": evaluate_scores(s, score)}


def run_recbole_worker(args: argparse.Namespace, work: Path) -> None:
    """Runs inside RecBole's virtualenv: train BPR or SASRec, time its epochs, dump its vectors."""
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import BPR
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    torch.set_num_threads(args.threads)
    name = args.worker_model
    common = {
        "data_path": str(work), "benchmark_filename": ["train", "valid", "test"], "embedding_size": args.dim,
        "train_batch_size": args.batch_size, "learning_rate": args.lr, "weight_decay": 0.0, "epochs": args.epochs,
        "seed": args.seed, "reproducibility": True, "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
        "use_gpu": False, "device": "cpu", "show_progress": False, "checkpoint_dir": str(work / "ckpt"), "state": "WARNING",
    }
    if name == "mf":
        config = Config(model="BPR", dataset="synth", config_dict={
            **common, "load_col": {"inter": ["user_id", "item_id"]}, "eval_args": {"mode": "full", "order": "RO"},
        })
    else:
        config = Config(model="SASRec", dataset="synth_seq", config_dict={
            **common, "load_col": {"inter": ["user_id", "item_id_list", "item_id"]}, "alias_of_item_id": ["item_id_list"],
            "MAX_ITEM_LIST_LENGTH": args.history_length, "eval_args": {"mode": "full", "order": "TO"},
            "hidden_size": args.dim, "inner_size": 2 * args.dim, "n_layers": args.layers, "n_heads": args.heads,
            "hidden_dropout_prob": args.dropout, "attn_dropout_prob": args.dropout, "loss_type": "CE",
            "train_neg_sample_args": None,
        })
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    model = (BPR if name == "mf" else SASRec)(config, train_data._dataset).to("cpu")
    trainer = Trainer(config, model)
    torch.set_num_threads(args.threads)
    seconds = cpu_s = 0.0
    with OutsideLoad() as load:
        for epoch in range(args.epochs):
            t0, c0 = time.perf_counter(), time.process_time()
            trainer._train_epoch(train_data, epoch, show_progress=False)
            seconds += time.perf_counter() - t0
            cpu_s += time.process_time() - c0
    i_tokens = dataset.field2id_token["item_id"]
    i_raw = np.array([int(t) for t in i_tokens[1:]])
    model.eval()
    if name == "mf":
        u_raw = np.array([int(t) for t in dataset.field2id_token["user_id"][1:]])
        u_emb = model.user_embedding.weight.detach().numpy()[1:]
    else:
        u_raw, u_emb = sasrec_user_vectors(model, work, dataset, args.history_length)
    np.savez(work / "recbole.npz", u_raw=u_raw, i_raw=i_raw, u_emb=u_emb, i_emb=model.item_embedding.weight.detach().numpy()[1:])
    print(json.dumps({"train_s": seconds, "samples": args.epochs * len(train_data._dataset), "threads": torch.get_num_threads(),
                      "outside_cores_during": load.cores, "cpu_s": cpu_s}))


def sasrec_user_vectors(model: Any, work: Path, dataset: Any, history_length: int) -> tuple[np.ndarray, np.ndarray]:
    """SASRec's state after each user's ``history_length`` most recent training items (its full-sort user vector)."""
    import torch

    s = dict(np.load(work / "split.npz"))
    token_id = dataset.field2token_id["item_id"]
    u, i = s["train_u"], s["train_i"]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    ends = np.r_[starts[1:], len(u)]
    seqs = np.zeros((len(starts), history_length), np.int64)
    lengths = np.zeros(len(starts), np.int64)
    for row, (a, b) in enumerate(zip(starts, ends)):
        recent = [token_id[str(x)] for x in i[max(a, b - history_length) : b]]
        seqs[row, : len(recent)] = recent
        lengths[row] = len(recent)
    out = []
    with torch.no_grad():
        for lo in range(0, len(seqs), 1024):
            out.append(model.forward(torch.as_tensor(seqs[lo : lo + 1024]), torch.as_tensor(lengths[lo : lo + 1024])).numpy())
    return u[starts], np.concatenate(out)


def run_recbole(name: str, args: argparse.Namespace, work: Path, seed: int) -> dict[str, Any]:
    lr = args.lr if args.lr is not None else DEFAULT_LR[name]
    cmd = [args.recbole_python, __file__, "--recbole-worker", str(work), "--worker-model", name,
           "--recbole-python", args.recbole_python, "--threads", str(args.threads), "--dim", str(args.dim),
           "--batch-size", str(args.batch_size), "--lr", str(lr), "--epochs", str(args.epochs), "--seed", str(seed),
           "--layers", str(args.layers), "--heads", str(args.heads), "--dropout", str(args.dropout),
           "--history-length", str(args.history_length)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"the RecBole worker ({name}) failed with exit code {proc.returncode}; its output is above")
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    s = dict(np.load(work / "split.npz"))
    r = np.load(work / "recbole.npz")
    user_vec = np.zeros((int(s["n_users"]), r["u_emb"].shape[1]), np.float32)
    item_vec = np.zeros((int(s["n_items"]), r["i_emb"].shape[1]), np.float32)
    user_vec[r["u_raw"]] = r["u_emb"]
    item_vec[r["i_raw"]] = r["i_emb"]
    rows = len(s["train_u"])
    theirs.update(interactions_per_s=rows * args.epochs / theirs["train_s"], epochs=args.epochs, train_interactions=rows)
    theirs["ndcg@10"] = evaluate_scores(s, vector_scores(user_vec, item_vec))
    return theirs


def check_recbole_python(python: str) -> None:
    """Fail before any timing when ``python`` cannot import RecBole."""
    probe = subprocess.run([python, "-c", "import recbole; print(recbole.__version__)"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise SystemExit(f"--recbole-python {python} cannot import recbole ({probe.stderr.strip().splitlines()[-1:]}); "
                         "give the python of a virtualenv with recbole==1.2.1, or leave the option out to skip RecBole")


def parse_param(text: str, ap: argparse.ArgumentParser) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as an int, a float or else text."""
    key, eq, value = text.partition("=")
    if not eq or not key:
        ap.error(f"--sasrec-param {text!r}: write KEY=VALUE")
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    return key, value


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recbole-python", default=None, help="python of a virtualenv with recbole==1.2.1 (without it RecBole is skipped)")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated pairs to run, of {', '.join(MODELS)}")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-users", type=int, default=6000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--lr", type=float, default=None, help=f"learning rate (default: {DEFAULT_LR})")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (and of training unless --seeds)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                    help="training seeds, each run by both libraries on the same data (--seed's); mean and std reported")
    ap.add_argument("--init-std", type=float, default=0.02, help="crossbench MF init (RecBole: Xavier normal, std ~0.02 here)")
    ap.add_argument("--layers", type=int, default=2, help="sasrec: Transformer blocks")
    ap.add_argument("--heads", type=int, default=2, help="sasrec: attention heads")
    ap.add_argument("--dropout", type=float, default=0.1, help="sasrec: dropout")
    ap.add_argument("--history-length", type=int, default=50, help="sasrec: most recent items read")
    ap.add_argument("--sequence-batch", choices=("items", "targets"), default="items",
                    help="sasrec: --batch-size counts the windows' items (default) or their ranked targets (RecBole's samples)")
    ap.add_argument("--validation", action="store_true",
                    help="score on the validation split (test items dropped, each user's last 20%% of the rest held out): choose settings here")
    ap.add_argument("--sasrec-param", action="append", default=[], metavar="KEY=VALUE",
                    help="crossbench sasrec: set one more hyperparameter (default norm=post init_std=0.02, RecBole's layout, and "
                         "target_groups=2; norm=pre init_std=0 target_groups=1 are sasrec's own defaults); repeatable")
    ap.add_argument("--tiny", action="store_true", help=f"a check of the script in seconds: {TINY} unless given")
    ap.add_argument("--recbole-worker", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-model", choices=MODELS, default="mf", help=argparse.SUPPRESS)
    if ap.parse_known_args()[0].tiny:
        ap.set_defaults(**TINY)
    args = ap.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.seeds = list(dict.fromkeys(args.seeds)) if args.seeds else [args.seed]
    # RecBole's block layout and initialisation, and each sequence's targets spread over two listings (chosen on the
    # validation split), unless told otherwise; sasrec's own defaults keep the published boards' model
    args.sasrec_param = {"norm": "post", "init_std": 0.02, "target_groups": 2, **dict(parse_param(p, ap) for p in args.sasrec_param)}
    unknown = [m for m in args.models if m not in MODELS]
    if unknown or not args.models:
        ap.error(f"--models {','.join(args.models)}: choose from {', '.join(MODELS)}")
    return args


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value)."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def outside_load(runs: list[dict[str, Any]]) -> str:
    """The largest outside load over ``runs``, in cores ("?" when one was not measured)."""
    cores = [r["outside_cores_during"] for r in runs]
    return "?" if None in cores else f"{max(cores):.2f}"


def print_row(label: str, seed: int, r: dict[str, Any] | None, skipped: str | None) -> None:
    if r is None:
        print(f"{label:<12} skipped: {skipped}", flush=True)
        return
    load = "?" if r["outside_cores_during"] is None else f"{r['outside_cores_during']:.2f}"
    cpu = f"{r['cpu_s']:.2f}" if "cpu_s" in r else "?"
    print(f"{label:<12} {seed:>5} {r['interactions_per_s']:>15.0f} {r['train_s']:>9.2f} {cpu:>9} {load:>14} {r['ndcg@10']:>9.4f}", flush=True)


def run_pair(name: str, args: argparse.Namespace, work: Path, skipped: str | None) -> dict[str, Any]:
    """Both libraries at every training seed on the same data; prints the table and the ratio line."""
    lr = args.lr if args.lr is not None else DEFAULT_LR[name]
    extra = (f", softmax cross-entropy, {args.layers} blocks, {args.heads} heads, history {args.history_length}"
             if name == "sasrec" else ", BPR with 1 negative")
    rows = len(np.load(work / "split.npz")["train_u"])
    print(f"{TITLES[name]}: {args.n_users} users, {rows} training interactions, dim {args.dim}, "
          f"batch {args.batch_size} interactions, lr {lr}, {args.epochs} epochs{extra}, threads {args.threads}, "
          f"{'validation' if args.validation else 'test'} split, data seed {args.seed}")
    print(f"{'library':<12} {'seed':>5} {'interactions/s':>15} {'train s':>9} {'CPU s':>9} {'outside cores':>14} {'NDCG@10':>9}", flush=True)
    runs = []
    for seed in args.seeds:  # each row as soon as it is measured
        ours = run_crossbench(name, args, work, seed)
        print_row("crossbench", seed, ours, skipped)
        theirs = None if skipped else run_recbole(name, args, work, seed)
        print_row("RecBole", seed, theirs, skipped)
        runs.append((seed, ours, theirs))
    ours_all = [r[1] for r in runs]
    theirs_all = [r[2] for r in runs if r[2] is not None]
    ndcg = {"crossbench": mean_std([r["ndcg@10"] for r in ours_all]),
            "recbole": mean_std([r["ndcg@10"] for r in theirs_all]) if theirs_all else None}
    # the ratio of the summed epoch times: every run trains the same interactions for the same epochs
    ours_rate = sum(r["train_interactions"] * r["epochs"] for r in ours_all) / sum(r["train_s"] for r in ours_all)
    theirs_rate = sum(r["train_interactions"] * r["epochs"] for r in theirs_all) / sum(r["train_s"] for r in theirs_all) if theirs_all else None
    ratio = None if theirs_rate is None else ours_rate / theirs_rate
    # on a loaded machine the wall-clock ratio measures the load; at one thread the CPU seconds do not
    cpu_ratio = sum(r["cpu_s"] for r in theirs_all) / sum(r["cpu_s"] for r in ours_all) if theirs_all else None
    if len(runs) > 1:
        line = " / ".join(f"{ndcg[k]['mean']:.4f} +- {ndcg[k]['std']:.4f}" for k in ("crossbench", "recbole") if ndcg[k])
        print(f"{name}: NDCG@10 over seeds {','.join(map(str, args.seeds))} (mean +- sample std), crossbench{' / RecBole' if theirs_all else ''}: {line}")
    threads = ours_all[0]["threads"]
    if ratio is None:
        print(f"{name}: crossbench {ours_rate:.0f} training interactions/s (threads {threads}, "
              f"{describe(ours_all[0]['outside_cores_during'])}); no ratio: RecBole skipped", flush=True)
    else:
        loads = " / ".join(outside_load(rs) for rs in (ours_all, theirs_all))
        print(f"{name}: throughput ratio crossbench / RecBole = {ratio:.2f} (threads {threads} / {theirs_all[0]['threads']}, "
              f"outside load {loads} cores)", flush=True)
        print(f"{name}: CPU-time ratio RecBole / crossbench = {cpu_ratio:.2f} (RecBole's epochs against crossbench's whole fit)",
              flush=True)
    single = len(runs) == 1
    return {"lr": lr, "seeds": args.seeds, "crossbench": ours_all[0] if single else ours_all,
            "recbole": (theirs_all[0] if theirs_all else None) if single else (theirs_all or None), "ratio": ratio,
            "cpu_ratio": cpu_ratio, "ndcg@10": ndcg}


def main() -> None:
    args = parse_args()
    if args.recbole_worker is not None:
        run_recbole_worker(args, args.recbole_worker)
        return
    skipped = None if args.recbole_python else "no --recbole-python given (the python of a virtualenv with recbole==1.2.1)"
    if args.recbole_python:
        check_recbole_python(args.recbole_python)
    report: dict[str, Any] = {"benchmark": "train_throughput", "split": "validation" if args.validation else "test",
                              "sasrec_params": args.sasrec_param, "threads": args.threads, "n_users": args.n_users,
                              "epochs": args.epochs, "dim": args.dim, "batch_size": args.batch_size, "recbole_skipped": skipped,
                              "data_seed": args.seed, "seeds": args.seeds,
                              "sequence_batch": args.sequence_batch, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_split(args.n_users, args.seed, args.history_length, work, sequences="sasrec" in args.models and not skipped,
                   validation=args.validation)
        for name in args.models:
            report["models"][name] = run_pair(name, args, work, skipped)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
