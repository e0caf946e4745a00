"""The DisenCDR authors' code (cjx96/DisenCDR) as the reference for crossbench's ``disencdr``.

Their protocol, read from their ``train_rec.py`` and ``utils/loader.py`` and kept here:

* every user is shared by the two domains and has training items in both; each user has one
  held-out item per domain (their ``test.txt``); a test item outside the domain's training
  catalogue is skipped (their loader drops it);
* each test item is ranked against 999 negatives drawn uniformly WITH replacement among the
  domain's training items the user did not take in training (a negative may repeat, and may be
  the test item itself), drawn once per run; the rank is ``(-pred).argsort().argsort()[0]``
  with the test item first; HR@10 and NDCG@10 averaged over the test users;
* they train 50 epochs and evaluate the test users every 10 epochs; the paper reports the best
  of those (selected on test). Both numbers are printed for both sides: ``last epoch`` and
  ``best-of-5 (test-selected)``.

The split (:func:`loo_task`, one per seed): MovieLens-100K comedy (source) and drama (target),
every rating an interaction, the users with at least two items in each domain; per user and
domain one item held out at random (seeded). :func:`write_disencdr` writes it in their format
(``dataset/comedy_drama/{train,test}.txt`` and ``dataset/drama_comedy/...``: ``user<TAB>item<TAB>1``,
users ``0 .. n-1`` in order so their first-appearance numbering keeps ours).

:func:`run_reference` copies their code folder into the work folder and runs ``train_rec.py``
with their interpreter (``--cpu``, the seed, ``--num_epoch``). Crossbench's model
(:func:`fit_crossbench`) trains on the same training interactions (no validation users, so
every epoch runs, as theirs) with the authors' single mix weight (``share_rate``, the last
user's source share, as their code computes it) and is scored every 10 epochs on the same test
items under the same rule, with its own draw of negatives (same distribution).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

EVERY = 10  # their evaluation interval in epochs
NEGATIVES = 999
_EPOCH = re.compile(r"epoch (\d+): train_loss = \S+, source_hit = (\S+), source_ndcg = (\S+), target_hit = (\S+), target_ndcg = (\S+)")


@dataclass(frozen=True)
class LooTask:
    """Training frames (``user``, ``item``) per domain and one test pair per user per domain."""

    source: pd.DataFrame
    target: pd.DataFrame
    source_test: pd.DataFrame
    target_test: pd.DataFrame
    n_users: int
    n_source_items: int
    n_target_items: int
    seed: int

    def reference_rate(self) -> float:
        """The mix weight the authors' code uses for every user: the LAST user's source share."""
        last = self.n_users - 1
        s = (self.source["user"] == last).sum()
        return float(s / (s + (self.target["user"] == last).sum()))


def _hold_out(frame: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One random row per user as test; the training catalogue renumbered ``0 .. n-1``; test items outside it dropped."""
    frame = frame.sort_values(["user", "item"]).reset_index(drop=True)
    starts = frame.groupby("user", sort=True).indices
    picked = np.array([rows[rng.integers(len(rows))] for rows in starts.values()])
    test = frame.iloc[picked]
    train = frame.drop(index=picked)
    kept = np.unique(train["item"].to_numpy())
    test = test[np.isin(test["item"].to_numpy(), kept)]
    out = []
    for part in (train, test):
        part = part.copy()
        part["item"] = np.searchsorted(kept, part["item"].to_numpy())
        out.append(part.reset_index(drop=True))
    return out[0], out[1]


def loo_task(source: pd.DataFrame, target: pd.DataFrame, *, seed: int) -> LooTask:
    """Users with at least two items in each domain, renumbered ``0 .. n-1``; one random test item per user and domain."""
    frames = [f[["user", "item"]].drop_duplicates() for f in (source, target)]
    counts = [f.groupby("user").size() for f in frames]
    users = np.sort(np.intersect1d(counts[0][counts[0] >= 2].index, counts[1][counts[1] >= 2].index))
    rng = np.random.default_rng(seed)
    parts = []
    for f in frames:
        f = f[f["user"].isin(users)].copy()
        f["user"] = np.searchsorted(users, f["user"].to_numpy())
        parts.append(_hold_out(f, rng))
    (s_train, s_test), (t_train, t_test) = parts
    return LooTask(source=s_train, target=t_train, source_test=s_test, target_test=t_test, n_users=len(users),
                   n_source_items=int(s_train["item"].max()) + 1, n_target_items=int(t_train["item"].max()) + 1, seed=seed)


def write_disencdr(task: LooTask, folder: Path, *, source_name: str, target_name: str) -> str:
    """Write ``folder/dataset/{S_T,T_S}/{train,test}.txt``; return the dataset name ``S_T`` their script takes."""
    for name, train, test in ((f"{source_name}_{target_name}", task.source, task.source_test),
                              (f"{target_name}_{source_name}", task.target, task.target_test)):
        out = Path(folder) / "dataset" / name
        out.mkdir(parents=True, exist_ok=True)
        for part, frame in (("train", train), ("test", test)):
            rows = frame.sort_values(["user", "item"])
            (out / f"{part}.txt").write_text("".join(f"{u}\t{i}\t1\n" for u, i in zip(rows["user"], rows["item"])))
    return f"{source_name}_{target_name}"


def run_reference(*, checkout: Path, python: Path, workdir: Path, dataset: str, seed: int, epochs: int, threads: int,
                  timeout: float = 7200) -> tuple[dict[int, dict[str, float]], float, Path]:
    """Their ``train_rec.py`` on ``workdir/dataset/<dataset>``: ``{epoch: metrics}`` of every evaluation, seconds, log."""
    code = Path(checkout) / "DisenCDR"
    if not (code / "train_rec.py").is_file():
        raise FileNotFoundError(f"{code}/train_rec.py not found: --disencdr-ref must be a checkout of cjx96/DisenCDR (runnable on CPU)")
    run_dir = Path(workdir) / "DisenCDR"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(code, run_dir)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [str(python), "-u", "train_rec.py", "--dataset", dataset, "--cpu", "--seed", str(seed), "--num_epoch", str(epochs)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=run_dir, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    log = Path(workdir) / "reference.log"
    log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    found = {int(m[0]): {"source hr@10": float(m[1]), "source ndcg@10": float(m[2]), "hr@10": float(m[3]),
                         "ndcg@10": float(m[4])} for m in _EPOCH.findall(proc.stdout)}
    if proc.returncode != 0 or not found:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"DisenCDR reference failed (exit {proc.returncode}); log: {log}\n{tail}")
    return found, seconds, log


def sampled_candidates(train: pd.DataFrame, test: pd.DataFrame, n_items: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(test users, ``[n, 1 + 999]`` candidates: the test item, then negatives drawn as the authors' loader draws them)."""
    rng = np.random.default_rng(seed)
    taken = train.groupby("user")["item"].apply(set).to_dict()
    users = test["user"].to_numpy()
    rows = []
    for u, i in zip(users, test["item"].to_numpy()):
        own, negs = taken[u], []
        while len(negs) < NEGATIVES:
            draw = rng.integers(n_items, size=NEGATIVES)
            negs.extend(int(d) for d in draw if int(d) not in own)
        rows.append([int(i), *negs[:NEGATIVES]])
    return users, np.asarray(rows, dtype=np.int64)


def hr_ndcg(scores: torch.Tensor) -> tuple[float, float]:
    """HR@10 and NDCG@10 from ``[n, 1000]`` candidate scores (test item first), ranked as the authors' script ranks."""
    ranks = np.array([int((-row).argsort().argsort()[0].item()) for row in scores])
    hit = ranks < 10
    return float(hit.mean()), float(np.where(hit, 1.0 / np.log2(ranks + 2), 0.0).mean())


def fit_crossbench(task: LooTask, *, seed: int, epochs: int, threads: int, source_name: str, target_name: str,
                   share_rate: float | None) -> tuple[dict[int, dict[str, float]], float]:
    """Crossbench's ``disencdr`` on the task's training data; ``{epoch: metrics}`` every 10 epochs and the seconds."""
    from fidelity_cross import EpochProbe, ranking_split
    from fidelity_data import RankingTask

    from crossbench.data.protocols import FitSplit
    from crossbench.plugin.interfaces import RunEnv
    from crossbench.train.stages import Stage, replace_stage
    from crossbench_cdr.disencdr import DisenCDR

    torch.set_num_threads(threads)
    empty = task.target.iloc[:0]
    ranking = RankingTask(train=task.target, valid=empty, test=task.target_test, n_users=task.n_users,
                          n_items=task.n_target_items, seed=seed)
    split = ranking_split(ranking, name=target_name, source=task.source, source_name=source_name)
    users, candidates = sampled_candidates(task.target, task.target_test, task.n_target_items, seed=seed + 7919)
    model = DisenCDR(epochs=epochs, share_rate=share_rate)
    curve: dict[int, dict[str, float]] = {}
    done = {"epochs": 0}

    def measure() -> None:
        done["epochs"] += 1
        if done["epochs"] % EVERY or model.model is None:
            return
        module = model.model
        module.eval()
        with torch.no_grad():
            full = model.score_users(module, torch.as_tensor(users))
        module.train()
        hr, ndcg = hr_ndcg(torch.gather(full, 1, torch.as_tensor(candidates)))
        curve[done["epochs"]] = {"hr@10": hr, "ndcg@10": ndcg}

    original: Callable[..., list[Stage]] = model.stages  # type: ignore[assignment]

    def stages(split_: FitSplit, module: torch.nn.Module, env: RunEnv) -> list[Stage]:
        (stage,) = original(split_, module, env)
        n = -(-len(stage.data) // stage.batch_size)
        return [replace_stage(stage, loss=EpochProbe(stage.loss, batches_per_epoch=n, measure=measure))]

    model.stages = stages  # type: ignore[method-assign]
    start = time.perf_counter()
    model.fit(split, env=RunEnv(registry=None, seed=seed, progress=False))  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    measure()
    return curve, seconds


def _cut(curve: dict[int, dict[str, float]], epochs: int, where: str) -> dict[int, dict[str, float]]:
    """The evaluations up to ``epochs``; the one at ``epochs`` must be there (it is the ``last epoch`` number)."""
    kept = {e: m for e, m in curve.items() if e <= epochs}
    if epochs not in kept:
        raise RuntimeError(f"{where} has no evaluation at epoch {epochs} (it has {sorted(curve)}): rerun without --disencdr-reuse")
    return kept


def reference_curve(args: Any, task: LooTask, folder: Path, *, source_name: str, target_name: str) -> tuple[dict[int, dict[str, float]], str]:
    """The reference's evaluations (rerun, or read back from ``folder/reference.log`` with ``--disencdr-reuse``)."""
    log = folder / "reference.log"
    dataset = write_disencdr(task, folder, source_name=source_name, target_name=target_name)
    if args.disencdr_reuse and log.is_file():
        curve = {int(m[0]): {"hr@10": float(m[3]), "ndcg@10": float(m[4])} for m in _EPOCH.findall(log.read_text())}
        return _cut(curve, args.disencdr_epochs, str(log)), f"read back from {log}"
    curve, seconds, log = run_reference(checkout=args.disencdr_ref, python=args.disencdr_python, workdir=folder, dataset=dataset,
                                        seed=task.seed, epochs=args.disencdr_epochs, threads=args.threads)
    return curve, f"ran {seconds:.0f} s; log {log}"


def crossbench_curve(args: Any, task: LooTask, folder: Path, *, source_name: str, target_name: str) -> tuple[dict[int, dict[str, float]], str]:
    """Crossbench's evaluations (refitted, or read back from ``folder/crossbench.json`` with ``--disencdr-reuse``)."""
    saved = folder / "crossbench.json"
    if args.disencdr_reuse and saved.is_file():
        curve = {int(e): m for e, m in json.loads(saved.read_text())["curve"].items()}
        return _cut(curve, args.disencdr_epochs, str(saved)), f"read back from {saved}"
    curve, seconds = fit_crossbench(task, seed=task.seed, epochs=args.disencdr_epochs, threads=args.threads,
                                    source_name=source_name, target_name=target_name, share_rate=task.reference_rate())
    folder.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps({"epochs": args.disencdr_epochs, "seconds": seconds, "curve": curve}, indent=1))
    return curve, f"fitted in {seconds:.0f} s"


def run_disencdr(args: Any, results: list[Any], *, source_name: str, target_name: str) -> None:
    """Per seed: one split, the reference and crossbench on it; ``results`` gets target HR@10 and NDCG@10,
    ``last epoch`` and ``best-of-N (test-selected)``, for both sides."""
    from fidelity_data import movielens_domains
    from fidelity_report import Result

    source, target, _, _, _ = movielens_domains(source_name, target_name)
    for seed in args.seeds:
        task = loo_task(source, target, seed=seed)
        folder = Path(args.workdir) / f"disencdr-seed{seed}"
        print(f"seed {seed}: {task.n_users} users, {len(task.source)} + {len(task.target)} training interactions, "
              f"{len(task.target_test)} target test users, mix weight {task.reference_rate():.4f}", flush=True)
        for side, fn in (("reference", reference_curve), ("crossbench", crossbench_curve)):
            curve, how = fn(args, task, folder, source_name=source_name, target_name=target_name)
            print(f"seed {seed}: {side} {how}; evaluated at epochs {sorted(curve)}", flush=True)
            best = f"best-of-{len(curve)} (test-selected)"
            for metric in ("hr@10", "ndcg@10"):
                results.append(Result("disencdr", side, f"{metric} last epoch", seed, curve[max(curve)][metric], lower_better=False))
                results.append(Result("disencdr", side, f"{metric} {best}", seed, max(m[metric] for m in curve.values()),
                                      lower_better=False))
