"""The UniCDR authors' code as the reference for crossbench's ``unicdr``: the split, its files, the runs.

The authors' repository (cjx96/UniCDR, a checkout outside this repository; its ``UniCDR/``
folder holds ``train_rec.py``) runs under Python 3.11 / torch 2 on CPU after patches that change
no computation of the model or its training (listed in ``docs/models.md``); two of them read the
evaluation's negative count (``UNICDR_EVAL_NEGATIVES``) and the steps per epoch
(``UNICDR_STEPS``) from the environment, their defaults being the authors' 999 and 500. Their
``dual-user-intra`` task is the one whose protocol fits two domains with shared users:

* the data: ``datasets/dual-user-intra/dataset/<A>_<B>/{train,test}.txt`` per domain, one
  ``user<TAB>item`` line per interaction (users share ids across domains, items 0-based per
  domain); their code reads ``test.txt`` both as validation and as test;
* the test users: one held-out interaction per user; their code keeps a test line only when
  its item occurs in the domain's training data;
* the scoring: the held-out item against distinct negatives drawn uniformly from the domain's
  training items the user did not train on (999 in their code, which never ends on a catalogue
  under 1000 items: MovieLens-100K's comedy has 608, drama 726; 99 here, ``EVAL_NEGATIVES``);
  NDCG@10 and HR@10 (their ``predict``); every 5 epochs both files are scored, and the test
  metrics printed when the validation NDCG@10 improves are the reported ones (validation and
  test share the positives; each draws its own negatives and each user's sampled history).

:func:`dual_task` draws the split once per seed from MovieLens-100K genre domains: all ratings
as implicit interactions, users present in both domains, and for each such user with at least
3 items in a domain one of them (uniformly, by seed) held out for test in that domain; a test
item that no training row of the domain holds is dropped. Both domains get a test file (the
reference scores both and decays its learning rate on both); the numbers compared are the
target's (drama). Crossbench's side (:func:`fit_unicdr`) fits on the same training files and is
scored the same way by its own draw of negatives.

``fidelity.py --models unicdr`` runs both sides per seed; with ``--unicdr-from-logs`` it scores
crossbench against reference runs already in ``--workdir``, read up to ``--unicdr-epochs``
(:func:`run_from_logs`).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from fidelity_cross import EpochProbe
from fidelity_report import Result

from crossbench.data.model import CrossDomainData, Domain
from crossbench.data.protocols import FitSplit, GroundTruth
from crossbench.plugin.interfaces import RunEnv
from crossbench.train.stages import Stage, replace_stage

TASK = "dual-user-intra"
#: sampled negatives per test item; the authors' 999 distinct ones need a catalogue of at least 1000 items
EVAL_NEGATIVES = 99
#: one metric of a printed dict, e.g. ``'NDCG_10': np.float64(0.0442)`` or ``'HT_10': 0.1``
_METRIC = re.compile(r"'(\w+)': (?:np\.float64\()?([-+0-9.eE]+)")
MIN_ITEMS = 3


@dataclass(frozen=True)
class DualTask:
    """Training and test interactions (columns ``user``, ``item``) of each domain, in the domains' order."""

    names: tuple[str, ...]
    train: tuple[pd.DataFrame, ...]
    test: tuple[pd.DataFrame, ...]
    n_users: int
    n_items: tuple[int, ...]
    seed: int


def dual_task(frames: dict[str, pd.DataFrame], n_items: dict[str, int], *, n_users: int, seed: int) -> DualTask:
    """Hold out one random item per shared user with >= ``MIN_ITEMS`` items, per domain (see the module docstring)."""
    rng = np.random.default_rng(seed)
    names = tuple(frames)
    clean = {d: f[["user", "item"]].drop_duplicates().sort_values(["user", "item"]).reset_index(drop=True) for d, f in frames.items()}
    shared = set(clean[names[0]]["user"])
    for d in names[1:]:
        shared &= set(clean[d]["user"])
    trains, tests = [], []
    for d in names:
        frame = clean[d]
        held = np.zeros(len(frame), bool)
        for u, rows in frame.groupby("user", sort=True).indices.items():
            if u in shared and len(rows) >= MIN_ITEMS:
                held[rng.choice(rows)] = True
        train, test = frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)
        test = test[test["item"].isin(set(train["item"]))].reset_index(drop=True)
        trains.append(train)
        tests.append(test)
    return DualTask(names, tuple(trains), tuple(tests), n_users, tuple(n_items[d] for d in names), seed)


def folder_names(names: tuple[str, ...]) -> list[str]:
    """The reference's folder per domain for ``--domains A_B``: ``A_B`` (domain A's data), then ``B_A``."""
    a, b = names
    return [f"{a}_{b}", f"{b}_{a}"]


def write_unicdr(task: DualTask, folder: Path) -> Path:
    """Write the task under ``folder/datasets/...``; return ``folder``."""
    for name, train, test in zip(folder_names(task.names), task.train, task.test):
        out = Path(folder) / "datasets" / TASK / "dataset" / name
        out.mkdir(parents=True, exist_ok=True)
        for part, frame in (("train", train), ("test", test)):
            with open(out / f"{part}.txt", "w") as fh:
                fh.writelines(f"{int(u)}\t{int(i)}\n" for u, i in zip(frame["user"], frame["item"]))
    return Path(folder)


def parse_log(text: str, domain: str, *, up_to: int | None = None) -> list[dict[str, float]]:
    """The test metrics the reference printed for ``domain`` (one per validation improvement), in order;
    with ``up_to``, only those of the evaluations after epochs ``<= up_to``."""
    found: list[dict[str, float]] = []
    lines = text.splitlines()
    epoch = 0
    for k, line in enumerate(lines):
        if line.startswith("Epoch ") and line.rstrip().endswith("starts !"):
            epoch = int(line.split()[1])
        if up_to is not None and epoch > up_to:
            break
        if line.startswith(f"{domain}  better results!"):
            for nxt in lines[k + 1 : k + 4]:
                if nxt.startswith("{"):
                    found.append({key: float(v) for key, v in _METRIC.findall(nxt)})
                    break
    return found


def evaluated(text: str, epoch: int) -> bool:
    """Whether the log shows the evaluation after ``epoch`` finished (its ``valid time`` line)."""
    lines = text.splitlines()
    try:
        at = lines.index(f"Epoch {epoch} starts !")
    except ValueError:
        return False
    return any(line.startswith("valid time:") for line in lines[at:])


def start_unicdr(
    *, checkout: Path, python: Path, task: DualTask, folder: Path, seed: int, epochs: int, steps: int, aggregator: str,
    threads: int, negatives: int = EVAL_NEGATIVES,
) -> Callable[[], tuple[dict[str, float], float]]:
    """Start the reference on ``task`` (its code copied next to the data, since it reads ``../datasets``) and
    return ``finish()``, which waits for it and returns the target's reported test metrics (``ndcg@10``,
    ``hit@10``) and the seconds it ran; crossbench's side can fit meanwhile."""
    code = Path(checkout) / "UniCDR" if (Path(checkout) / "UniCDR" / "train_rec.py").is_file() else Path(checkout)
    if not (code / "train_rec.py").is_file():
        raise FileNotFoundError(f"{code}/train_rec.py not found: --unicdr-ref must be a checkout of the UniCDR authors' code")
    write_unicdr(task, folder)
    run_dir = Path(folder) / "code"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(code, run_dir, ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore",
               UNICDR_EVAL_NEGATIVES=str(negatives), UNICDR_STEPS=str(steps))
    cmd = [str(python), "-u", "train_rec.py", "--static_sample", "--domains", "_".join(task.names), "--task", TASK,
           "--aggregator", aggregator, "--num_epoch", str(epochs), "--seed", str(seed)]
    log = Path(folder) / "unicdr.log"
    fh = open(log, "w")  # noqa: SIM115 (closed by finish)
    fh.write(f"$ UNICDR_EVAL_NEGATIVES={negatives} UNICDR_STEPS={steps} {' '.join(cmd)}\n")
    fh.flush()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=run_dir, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True)

    def finish() -> tuple[dict[str, float], float]:
        code = proc.wait()
        seconds = time.perf_counter() - start
        fh.close()
        found = parse_log(log.read_text(), folder_names(task.names)[1])
        if code != 0 or not found:
            tail = "\n".join(log.read_text().strip().splitlines()[-5:])
            raise RuntimeError(f"UniCDR reference failed (exit {code}); log: {log}\n{tail}")
        return {"ndcg@10": found[-1]["NDCG_10"], "hit@10": found[-1]["HT_10"]}, seconds

    return finish


# --------------------------------------------------------------------------- crossbench's side


def _domain(name: str, frame: pd.DataFrame, n_items: int) -> Domain:
    inter = pd.DataFrame({"user": frame["user"].to_numpy(np.int64), "item": frame["item"].to_numpy(np.int64),
                          "timestamp": np.zeros(len(frame), np.int64)})
    ids = [str(i) for i in range(n_items)]
    return Domain(name=name, interactions=inter, items=pd.DataFrame({"item_id": ids, "title": ids, "text": [""] * n_items}))


def dual_split(task: DualTask) -> FitSplit:
    """Both domains' training interactions, the last domain the target; no validation users (the reference
    stops on nothing: every epoch runs, and :func:`fit_unicdr` reads its sampled scores itself)."""
    domains = {name: _domain(name, train, n) for name, train, n in zip(task.names, task.train, task.n_items)}
    data = CrossDomainData(name="fidelity", user_ids=np.array([str(u) for u in range(task.n_users)]), domains=domains)
    empty = GroundTruth.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64))
    return FitSplit(protocol="unicdr-dual-user-intra", target=task.names[-1], train=data.validate(), valid=empty)


def sampled_candidates(train: pd.DataFrame, test: pd.DataFrame, *, negatives: int, rng: np.random.Generator) -> np.ndarray:
    """``[len(test), 1 + negatives]``: each test item, then distinct negatives drawn uniformly from the domain's
    training items that the user did not train on (the reference's sampler)."""
    pool = np.unique(train["item"].to_numpy())
    taken = train.groupby("user")["item"].apply(set).to_dict()
    rows = []
    for u, i in zip(test["user"].to_numpy(), test["item"].to_numpy()):
        free = np.setdiff1d(pool, np.fromiter(taken.get(u, set()) | {int(i)}, np.int64))
        rows.append(np.concatenate([[i], rng.choice(free, negatives, replace=False)]))
    return np.asarray(rows, np.int64)


def sampled_metrics(scores: np.ndarray, users: np.ndarray, candidates: np.ndarray) -> dict[str, float]:
    """NDCG@10 and HR@10 of each test item (column 0) among its candidates; rank = negatives scored higher."""
    s = scores[users[:, None], candidates]
    rank = (s[:, 1:] > s[:, :1]).sum(1)
    hit = rank < 10
    return {"ndcg@10": float(np.where(hit, 1.0 / np.log2(rank + 2), 0.0).mean()), "hit@10": float(hit.mean())}


def fit_unicdr(model: Any, task: DualTask, *, seed: int, every: int = 5, negatives: int = EVAL_NEGATIVES,
               threads: int = 1) -> tuple[dict[str, float], float, Any]:
    """Fit ``model`` on ``task`` and score it as the reference does: after every ``every``-th epoch the target's
    test items against one set of sampled negatives (validation) and against another (test); the test
    metrics at the best validation NDCG@10 are returned, with the seconds and the fit report."""
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    train, test = task.train[-1], task.test[-1]
    users = test["user"].to_numpy(np.int64)
    valid_c, test_c = (sampled_candidates(train, test, negatives=negatives, rng=rng) for _ in range(2))
    best: dict[str, Any] = {"valid": -1.0, "test": None}
    epochs = {"n": 0}

    def measure() -> None:
        epochs["n"] += 1
        if epochs["n"] % every:
            return
        module = model.model
        was = module.training
        module.eval()
        scores = model.score(torch.as_tensor(users.copy())).numpy()
        module.train(was)
        valid = sampled_metrics(scores, np.arange(len(users)), valid_c)
        if valid["ndcg@10"] > best["valid"]:
            best["valid"], best["test"] = valid["ndcg@10"], sampled_metrics(scores, np.arange(len(users)), test_c)

    original = model.stages

    def stages(split_: FitSplit, module: torch.nn.Module, env: RunEnv) -> Sequence[Stage]:
        found = list(original(split_, module, env))
        last = found[-1]
        n = max(1, math.ceil(len(last.data) / last.batch_size))
        found[-1] = replace_stage(last, loss=EpochProbe(last.loss, batches_per_epoch=n, measure=measure))
        return found

    model.stages = stages  # instance attribute: this fit only
    start = time.perf_counter()
    report = model.fit(dual_split(task), env=RunEnv(registry=None, seed=seed, progress=False))  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    measure()
    return best["test"], seconds, report


def run(args: Any, results: list[Result], *, source: str, target: str) -> None:
    """The ``unicdr`` block of ``fidelity.py``: per seed one split, the reference and crossbench on it."""
    from fidelity_data import movielens_domains

    from crossbench_cdr.unicdr import UniCDR

    src, tgt, n_users, n_src, n_tgt = movielens_domains(source, target)
    for seed in args.seeds:
        task = dual_task({source: src, target: tgt}, {source: n_src, target: n_tgt}, n_users=n_users, seed=seed)
        print(f"seed {seed}: {target} {len(task.train[1])} training interactions, {len(task.test[1])} test users", flush=True)
        folder = Path(args.workdir) / f"unicdr-seed{seed}"
        finish = start_unicdr(checkout=args.unicdr_ref, python=args.unicdr_python, task=task, folder=folder, seed=seed,
                              epochs=args.unicdr_epochs, steps=args.unicdr_steps, aggregator="mean", threads=args.threads)
        # every epoch runs on both sides (no early stop); validation here is the probe's, as the reference's
        model = UniCDR(epochs=args.unicdr_epochs, steps=args.unicdr_steps, patience=args.unicdr_epochs)
        ours, cb_seconds, report = fit_unicdr(model, task, seed=seed, threads=args.threads)
        print(f"seed {seed}: crossbench unicdr fitted in {cb_seconds:.0f} s, {report.epochs} epochs, {report.threads} thread(s)",
              flush=True)
        ref, seconds = finish()
        print(f"seed {seed}: UniCDR reference ran {seconds:.0f} s (beside crossbench's fit)", flush=True)
        for metric in ("ndcg@10", "hit@10"):
            results.append(Result("unicdr", "reference", metric, seed, ref[metric], lower_better=False))
            results.append(Result("unicdr", "crossbench", metric, seed, ours[metric], lower_better=False))


def run_from_logs(args: Any, results: list[Result], *, source: str, target: str) -> None:
    """``fidelity.py --models unicdr --unicdr-from-logs``: fit crossbench on every seed's split, then read the
    reference runs already in ``--workdir`` (started by ``fidelity.py --models unicdr``, same seeds and
    ``--unicdr-steps``) up to epoch ``--unicdr-epochs``, waiting for them to get there. A reference run up to an
    epoch does not depend on its ``--num_epoch`` (its learning-rate decay starts after epoch 10), so a longer
    run read at epoch E reports what a run capped at E reports."""
    from fidelity_data import movielens_domains

    from crossbench_cdr.unicdr import UniCDR

    epochs, steps = args.unicdr_epochs, args.unicdr_steps
    logs = {seed: Path(args.workdir) / f"unicdr-seed{seed}" / "unicdr.log" for seed in args.seeds}
    for seed, log in logs.items():
        head = log.read_text().splitlines()[0] if log.is_file() else ""
        if f"UNICDR_STEPS={steps} " not in head or f"--seed {seed}" not in head:
            raise FileNotFoundError(f"{log} is not a reference run of seed {seed} with {steps} steps per epoch")
    src, tgt, n_users, n_src, n_tgt = movielens_domains(source, target)
    for seed in args.seeds:  # crossbench first, every seed, while the references go on
        task = dual_task({source: src, target: tgt}, {source: n_src, target: n_tgt}, n_users=n_users, seed=seed)
        model = UniCDR(epochs=epochs, steps=steps, patience=epochs)
        ours, cb_seconds, report = fit_unicdr(model, task, seed=seed, threads=args.threads)
        print(f"seed {seed}: crossbench unicdr fitted in {cb_seconds:.0f} s, {report.epochs} epochs: {ours}", flush=True)
        for metric in ("ndcg@10", "hit@10"):
            results.append(Result("unicdr", "crossbench", metric, seed, ours[metric], lower_better=False))
    for seed, log in logs.items():
        while not evaluated(log.read_text(), epochs):
            time.sleep(30)
        ref = parse_log(log.read_text(), folder_names((source, target))[1], up_to=epochs)[-1]
        print(f"seed {seed}: reference read at epoch {epochs}: {ref}", flush=True)
        for metric, key in (("ndcg@10", "NDCG_10"), ("hit@10", "HT_10")):
            results.append(Result("unicdr", "reference", metric, seed, ref[key], lower_better=False))
