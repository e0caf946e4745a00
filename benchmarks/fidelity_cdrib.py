"""CDRIB's authors' code (cjx96/CDRIB) as the reference for crossbench's ``cdrib``, under the authors' protocol.

The authors' protocol, as their data preparation and ``train_rec.py`` run it, kept here:

* data: every rating is an interaction; items with fewer than 10 ratings in their domain are
  dropped, then users with fewer than 5 interactions in either domain and items with fewer
  than 5 (their filters, one pass each);
* users active in both domains ("common" users) are numbered first, in a seeded random order;
  with ``L = int(0.1 * n_common)``, common users ``[8L, 9L)`` are cold in the target (all their
  target interactions held out) and ``[9L, n_common)`` cold in the source; each held-out
  interaction goes to test or validation with probability 1/2, so validation and test share
  their users. Every other interaction trains. Users of one domain only follow the common ones;
* each held-out target interaction whose item has a training interaction is one test case: the
  item ranked against 999 items drawn uniformly, with replacement, from the target items seen
  in training (nothing excluded, so the positive item itself is among its negatives about
  999 / n_items times, 2.3 on MovieLens-100K drama); the rank is their ``(-pred).argsort().argsort()[0]``
  with torch's unstable sort, which puts such tied copies above the positive about as often as
  not (:func:`authors_ranks`); MRR, NDCG@5/10, HR@1/5/10 averaged over the cases;
* selection: the validation cases' MRR after epochs 10, 15, 20, ...; the reported test numbers
  are those of the last epoch whose validation MRR beat every earlier one.

Both sides get the same files' interactions and the same selection rule; the negatives of
crossbench's side are drawn by the same rule from a seeded generator (the reference draws its own
when it loads the files). ``--cdrib-epochs`` caps training on both sides (the authors' default
is 100; below 60 epochs their learning-rate decay, which starts after ten evaluations, never acts);
``--cdrib-dim`` sets the embedding size on both sides (the authors' default 128).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from fidelity_cross import _domain, _no_users

from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import FitSplit
from crossbench.plugin.interfaces import RunEnv
from crossbench.train.stages import Stage, replace_stage

METRICS = ("mrr", "ndcg@5", "ndcg@10", "hr@1", "hr@5", "hr@10")
NEGATIVES = 999
_TARGET_LINE = re.compile(r"target: \t([0-9.]+)\t([0-9.]+)\t([0-9.]+)\t([0-9.]+)\t([0-9.]+)\t([0-9.]+)")


@dataclass(frozen=True)
class CdribTask:
    """One split in the authors' layout. Frames have columns ``user`` (crossbench's numbering), ``item``.

    Crossbench's user ``u`` is the authors' user ``u`` in the source files and ``target_ids[u]`` in
    the target files (the same number for common users; users of one domain are numbered per domain).
    """

    source_train: pd.DataFrame
    target_train: pd.DataFrame
    source_valid: pd.DataFrame
    source_test: pd.DataFrame
    target_valid: pd.DataFrame
    target_test: pd.DataFrame
    target_ids: np.ndarray
    n_users: int
    n_common: int
    n_source_items: int
    n_target_items: int


def authors_filter(source: pd.DataFrame, target: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The authors' filters: items rated < 10 times, users with < 5 in either domain, items with < 5."""
    source, target = (f[["user", "item"]] for f in (source, target))
    source, target = (f[f["item"].map(f["item"].value_counts()) >= 10] for f in (source, target))
    few = set()
    for f in (source, target):
        counts = f["user"].value_counts()
        few |= set(counts.index[counts < 5])
    source, target = (f[~f["user"].isin(few)] for f in (source, target))
    return tuple(f[f["item"].map(f["item"].value_counts()) >= 5].reset_index(drop=True) for f in (source, target))  # type: ignore[return-value]


def cdrib_task(source: pd.DataFrame, target: pd.DataFrame, *, seed: int) -> CdribTask:
    """The authors' split of ``source`` and ``target`` (columns ``user``, ``item``) for ``seed``."""
    source, target = authors_filter(source, target)
    rng = np.random.default_rng(seed)
    s_users, t_users = set(source["user"]), set(target["user"])
    common = rng.permutation(np.array(sorted(s_users & t_users)))
    only_s, only_t = sorted(s_users - t_users), sorted(t_users - s_users)
    n_common = len(common)
    # crossbench numbering: common users, then source-only, then target-only users
    ids = {u: k for k, u in enumerate([*common, *only_s, *only_t])}
    target_ids = np.concatenate([np.arange(n_common + len(only_s)), n_common + np.arange(len(only_t))])
    target_ids[n_common : n_common + len(only_s)] = -1
    frames = []
    for f in (source, target):
        f = f.assign(user=f["user"].map(ids), item=np.searchsorted(np.unique(f["item"]), f["item"]))
        frames.append(f.sort_values(["user", "item"], kind="stable").reset_index(drop=True))
    source, target = frames
    step = n_common // 10
    cold = {"target": (8 * step, 9 * step), "source": (9 * step, n_common)}
    parts: dict[str, pd.DataFrame] = {}
    for name, f in (("source", source), ("target", target)):
        lo, hi = cold[name]
        held = ((f["user"] >= lo) & (f["user"] < hi)).to_numpy()
        to_test = rng.integers(0, 2, size=int(held.sum())).astype(bool)
        out = f[held].reset_index(drop=True)
        parts[name] = f[~held].reset_index(drop=True)
        parts[f"{name}_test"], parts[f"{name}_valid"] = out[to_test].reset_index(drop=True), out[~to_test].reset_index(drop=True)
    return CdribTask(
        source_train=parts["source"], target_train=parts["target"], source_valid=parts["source_valid"],
        source_test=parts["source_test"], target_valid=parts["target_valid"], target_test=parts["target_test"],
        target_ids=target_ids, n_users=len(ids), n_common=n_common,
        n_source_items=int(source["item"].max()) + 1, n_target_items=int(target["item"].max()) + 1,
    )


def write_cdrib(task: CdribTask, folder: Path, *, source_name: str, target_name: str) -> str:
    """The authors' files ``dataset/S_T/{train,valid,test}.txt`` and ``dataset/T_S/...``; return ``S_T``."""
    dirs = {"source": Path(folder) / "dataset" / f"{source_name}_{target_name}",
            "target": Path(folder) / "dataset" / f"{target_name}_{source_name}"}
    for side, where in dirs.items():
        where.mkdir(parents=True, exist_ok=True)
        for part in ("train", "valid", "test"):
            frame = getattr(task, f"{side}_{part}")
            users = frame["user"].to_numpy() if side == "source" else task.target_ids[frame["user"].to_numpy()]
            text = "".join(f"{int(u)}\t{int(i)}\n" for u, i in zip(users, frame["item"]))
            path = where / f"{part}.txt"
            if not path.is_file() or path.read_text() != text:  # never truncate a file a running reference may read
                path.write_text(text)
    return f"{source_name}_{target_name}"


def run_reference(*, checkout: Path, python: Path, folder: Path, dataset: str, seed: int, epochs: int, threads: int,
                  dim: int = 128, timeout: float = 7200) -> tuple[dict[str, float], float, Path]:
    """The authors' ``train_rec.py`` (CPU) on ``folder/dataset``: target test metrics at the best validation MRR."""
    script = Path(checkout) / "train_rec.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: --cdrib-ref must be the CDRIB folder of cjx96/CDRIB (with train_rec.py)")
    run = Path(folder) / "run"
    run.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONHASHSEED=str(seed))
    cmd = [str(python), "-u", str(script), "--cpu", "--dataset", dataset, "--seed", str(seed), "--num_epoch", str(epochs),
           "--id", f"fid{seed}"]
    if dim != 128:  # the authors' default; their hidden size must equal it
        cmd += ["--feature_dim", str(dim), "--hidden_dim", str(dim)]
    log = Path(folder) / "reference.log"
    head = f"$ {' '.join(cmd)}"
    if log.is_file() and log.read_text().startswith(head + "\n") and "--- exit 0 after " in log.read_text():
        # a finished run of this very command on these very files (the files are rewritten identically per seed)
        text = log.read_text()
        seconds = float(text.rsplit("--- exit 0 after ", 1)[1].split(" s", 1)[0])
        returncode, stdout, stderr = 0, text, ""
    else:
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=run, env=env, capture_output=True, text=True, timeout=timeout)
        seconds = time.perf_counter() - start
        returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        log.write_text(f"{head}\n{stdout}\n--- stderr ---\n{stderr}\n--- exit {returncode} after {seconds:.0f} s\n")
    best = None
    lines = stdout.splitlines()
    for k, line in enumerate(lines):
        if line.startswith("target best!"):
            found = next((_TARGET_LINE.search(x) for x in lines[k + 1 :] if _TARGET_LINE.search(x)), None)
            best = found or best
    if returncode != 0 or best is None:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"CDRIB reference failed (exit {returncode}, or no test line); log: {log}\n{tail}")
    return dict(zip(METRICS, (float(v) for v in best.groups()))), seconds, log


# --------------------------------------------------------------------------- crossbench's side


def sampled_cases(held: pd.DataFrame, train_items: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(users, candidates ``[n, 1 + 999]``): each held-out pair whose item trained, beside 999 uniform draws."""
    pool = np.unique(train_items)
    kept = held[np.isin(held["item"].to_numpy(), pool)]
    draws = pool[rng.integers(0, len(pool), size=(len(kept), NEGATIVES))]
    return kept["user"].to_numpy(np.int64), np.concatenate([kept["item"].to_numpy(np.int64)[:, None], draws], 1)


TIES = ("authors", "favour")


def authors_ranks(s: np.ndarray) -> np.ndarray:
    """Each row's rank of column 0 exactly as their ``predict`` computes it: ``(-pred).argsort().argsort()[0]``,
    one float32 row at a time. Torch's sort is not stable, so a negative tied with the positive (a copy of
    the positive item: negatives are drawn with replacement) lands above or below it as the sort leaves it."""
    rows = torch.as_tensor(np.ascontiguousarray(s, dtype=np.float32))
    return np.array([int((-row).argsort().argsort()[0]) for row in rows], dtype=np.int64)


def sampled_metrics(scores: np.ndarray, users: np.ndarray, cands: np.ndarray, *, ties: str = "authors") -> dict[str, float]:
    """The authors' metrics over the candidates (positive first): ``ties="authors"`` ranks as their argsort does
    (:func:`authors_ranks`), ``ties="favour"`` counts only the candidates scored strictly above the positive."""
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    s = scores[users[:, None], cands]
    rank = authors_ranks(s) if ties == "authors" else (s[:, 1:] > s[:, :1]).sum(1)
    gain = 1.0 / np.log2(rank + 2.0)
    return {"mrr": float(np.mean(1.0 / (rank + 1))), "ndcg@5": float(np.mean(np.where(rank < 5, gain, 0.0))),
            "ndcg@10": float(np.mean(np.where(rank < 10, gain, 0.0))), "hr@1": float(np.mean(rank < 1)),
            "hr@5": float(np.mean(rank < 5)), "hr@10": float(np.mean(rank < 10))}


def fit_split(task: CdribTask, *, source_name: str, target_name: str) -> FitSplit:
    """Both domains' training interactions; no validation users (the selection below reads the authors' cases)."""
    data = CrossDomainData(
        name="fidelity-cdrib", user_ids=np.array([str(u) for u in range(task.n_users)]),
        domains={source_name: _domain(source_name, task.source_train, task.n_source_items, rating=False),
                 target_name: _domain(target_name, task.target_train, task.n_target_items, rating=False)},
    )
    return FitSplit(protocol="cdrib-authors", target=target_name, train=data.validate(), valid=_no_users())


class _EveryEpoch:
    """Wraps a stage's loss and calls ``after(epoch)`` before the first batch of each later epoch."""

    def __init__(self, loss: Callable[..., torch.Tensor], batches: int, after: Callable[[int], None]) -> None:
        self.loss, self.batches, self.after, self.calls = loss, batches, after, 0

    def __call__(self, model: torch.nn.Module, batch: Any, gen: torch.Generator) -> torch.Tensor:
        if self.calls and self.calls % self.batches == 0:
            self.after(self.calls // self.batches)
        self.calls += 1
        return self.loss(model, batch, gen)


def fit_crossbench(task: CdribTask, *, seed: int, epochs: int, threads: int, source_name: str, target_name: str,
                   dim: int = 128) -> tuple[dict[str, float], float, int, dict[str, float]]:
    """Fit crossbench's ``cdrib`` (defaults, ``epochs``) and select as the authors do; (test metrics, seconds, best
    epoch, the same test metrics with ties counted for the positive)."""
    from crossbench_cdr.cdrib import CDRIB

    torch.set_num_threads(threads)
    rng = np.random.default_rng(10_000 + seed)
    train_items = task.target_train["item"].to_numpy()
    valid = sampled_cases(task.target_valid, train_items, rng)
    test = sampled_cases(task.target_test, train_items, rng)
    model = CDRIB(dim=dim, epochs=epochs, patience=epochs)
    best: dict[str, Any] = {"mrr": 0.0, "test": None, "epoch": 0}

    def after(epoch: int) -> None:
        if epoch < 10 or epoch % 5:
            return
        module = model.model
        assert module is not None
        was = module.training
        module.eval()
        with torch.no_grad():
            scores = model.score(torch.arange(task.n_users)).numpy()
        module.train(was)
        mrr = sampled_metrics(scores, *valid)["mrr"]
        if mrr > best["mrr"]:
            best.update(mrr=mrr, test=sampled_metrics(scores, *test), favour=sampled_metrics(scores, *test, ties="favour"),
                        epoch=epoch)

    original = model.stages

    def stages(split_: FitSplit, module: torch.nn.Module, env: RunEnv) -> Sequence[Stage]:
        found = list(original(split_, module, env))
        last = found[-1]
        n = max(1, math.ceil(len(last.data) / last.batch_size))
        found[-1] = replace_stage(last, loss=_EveryEpoch(last.loss, n, after))
        return found

    model.stages = stages  # type: ignore[method-assign]  # this fit only
    split = fit_split(task, source_name=source_name, target_name=target_name)
    start = time.perf_counter()
    model.fit(split, env=RunEnv(registry=None, seed=seed, progress=False))  # type: ignore[arg-type]
    after(epochs)
    seconds = time.perf_counter() - start
    if best["test"] is None:
        raise RuntimeError("crossbench cdrib: no validation MRR above 0 at epochs 10, 15, ...; give --cdrib-epochs >= 10")
    return best["test"], seconds, int(best["epoch"]), best["favour"]


def describe(task: CdribTask) -> str:
    """One line: the split's sizes."""
    return (f"{task.n_common} common users, {len(task.target_test)} target test / {len(task.target_valid)} valid "
            f"interactions, {len(task.source_train)} source and {len(task.target_train)} target training interactions")


def run_seed(job: tuple[int, Path, Path, Path, int, int, int, str, str]) -> tuple[int, dict[str, float], dict[str, float], str]:
    """One seed, both sides: (seed, reference metrics, crossbench metrics, a line saying what ran)."""
    seed, workdir, checkout, python, epochs, dim, threads, source_name, target_name = job
    from fidelity_data import movielens_domains

    source, target, _, _, _ = movielens_domains(source_name, target_name)
    task = cdrib_task(source, target, seed=seed)
    folder = Path(workdir) / f"cdrib-seed{seed}"
    dataset = write_cdrib(task, folder, source_name=source_name, target_name=target_name)
    ours, cb_seconds, best_epoch, favour = fit_crossbench(task, seed=seed, epochs=epochs, threads=threads, source_name=source_name,
                                                  target_name=target_name, dim=dim)
    ref, seconds, log = run_reference(checkout=checkout, python=python, folder=folder, dataset=dataset, seed=seed,
                                      epochs=epochs, threads=threads, dim=dim)
    line = (f"seed {seed}: {describe(task)}; reference {seconds:.0f} s (log {log}); crossbench {cb_seconds:.0f} s, "
            f"best validation epoch {best_epoch}; crossbench with ties for the positive: "
            + ", ".join(f"{m} {favour[m]:.4f}" for m in METRICS))
    return seed, ref, ours, line


def run_cdrib(*, seeds: Sequence[int], workdir: Path, checkout: Path, python: Path, epochs: int, threads: int, jobs: int,
              source_name: str, target_name: str, dim: int = 128) -> list[tuple[int, str, str, float]]:
    """Every seed (``jobs`` at a time, each in its own process): ``(seed, side, metric, value)`` rows."""
    from concurrent.futures import ProcessPoolExecutor

    work = [(s, Path(workdir), Path(checkout), Path(python), epochs, dim, threads, source_name, target_name) for s in seeds]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            done = list(pool.map(run_seed, work))
    else:
        done = [run_seed(w) for w in work]
    rows = []
    for seed, ref, ours, line in done:
        print(line, flush=True)
        for metric in METRICS:
            rows += [(seed, "reference", metric, ref[metric]), (seed, "crossbench", metric, ours[metric])]
    return rows
