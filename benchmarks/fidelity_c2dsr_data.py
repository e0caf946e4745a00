"""The C2DSR authors' protocol for the fidelity benchmark: the data, their file format, running their code.

The data (one split per seed, handed unchanged to both sides): every MovieLens-100K rating of
the source (comedy) and target (drama) genre domains is an interaction. Each user's
interactions of both domains form ONE mixed sequence, ordered by time (ties by domain, then
item); the most recent ``window`` (15: the authors' ``maxlen``, so a test history holds at most
14 items) are kept, and a user is kept when that window holds at least two items of each domain
(the authors' loader drops a training sequence without a next item to predict in either
domain). Items are renumbered over those that remain: source items ``0 .. n_x-1``, target items
``n_x .. n_x+n_y-1`` (the authors' single id space, ``Alist.txt`` then ``Blist.txt``).

The authors' protocol (``train_rec.py``, ``utils/loader.py``, ``model/trainer.py``): users are
split into training, validation and test users (70/10/20 here, drawn per seed); a training
user's whole sequence trains; a validation or test user's last item is the held-out item and the
items before it the history the model reads (never trained on, never in the item graph). The
held-out item is ranked against 999 negatives drawn uniformly, with replacement, from the
held-out item's own domain (only the held-out item itself excluded); rank = 1 + the number of
negatives scored higher than it by more than 1e-5. MRR, NDCG@5, NDCG@10, HR@1, HR@5, HR@10,
separately for the users whose held-out item is a source item (X) and a target item (Y). Every
5th epoch the validation users are scored; the test numbers reported are those of the epoch of
best validation MRR, per domain.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

#: the authors' maxlen for every dataset but Entertainment-Education: windows of 15 items
WINDOW = 15
#: the authors' metrics, in the order their code prints them
METRICS = ("mrr", "ndcg@5", "ndcg@10", "hr@1", "hr@5", "hr@10")
_BEST = re.compile(r"^([XY]) best!\s*\n\[([^\]]*)\]", re.MULTILINE)


@dataclass(frozen=True)
class C2dsrTask:
    """Mixed sequences (global item ids, oldest first) of the training, validation and test users."""

    train: list[list[int]]
    valid: list[list[int]]
    test: list[list[int]]
    n_x: int
    n_y: int
    seed: int


def c2dsr_task(source: pd.DataFrame, target: pd.DataFrame, *, seed: int, window: int = WINDOW,
               fractions: tuple[float, float] = (0.7, 0.1)) -> C2dsrTask:
    """Mixed sequences of the users with at least two items of each domain in their last ``window`` (module docstring)."""
    frames = [source.assign(domain=0), target.assign(domain=1)]
    inter = pd.concat(frames)[["user", "item", "timestamp", "domain"]].sort_values(
        ["user", "timestamp", "domain", "item"], kind="stable")
    inter = inter.groupby("user", sort=True).tail(window)
    per_domain = inter.groupby(["user", "domain"]).size().unstack(fill_value=0)
    keep = per_domain.index[(per_domain.get(0, 0) >= 2) & (per_domain.get(1, 0) >= 2)]
    inter = inter[inter["user"].isin(keep)]
    x_items = np.unique(inter.loc[inter["domain"] == 0, "item"].to_numpy())
    y_items = np.unique(inter.loc[inter["domain"] == 1, "item"].to_numpy())
    glob = np.where(inter["domain"].to_numpy() == 0, np.searchsorted(x_items, inter["item"].to_numpy()),
                    len(x_items) + np.searchsorted(y_items, inter["item"].to_numpy()))
    inter = inter.assign(g=glob)
    sequences = [group["g"].tolist() for _, group in inter.groupby("user", sort=True)]
    order = np.random.default_rng(seed).permutation(len(sequences))
    n_train, n_valid = round(fractions[0] * len(order)), round(fractions[1] * len(order))
    pick = lambda rows: [sequences[i] for i in sorted(rows)]  # noqa: E731
    return C2dsrTask(train=pick(order[:n_train]), valid=pick(order[n_train:n_train + n_valid]),
                     test=pick(order[n_train + n_valid:]), n_x=len(x_items), n_y=len(y_items), seed=seed)


def write_c2dsr(task: C2dsrTask, folder: Path, *, name: str) -> Path:
    """``folder/dataset/name/{Alist,Blist}.txt`` and ``{train,valid,test}data_new.txt`` (``user\\t0\\titem|time...``)."""
    out = Path(folder) / "dataset" / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "Alist.txt").write_text("".join(f"x{i}\t{i}\n" for i in range(task.n_x)))
    (out / "Blist.txt").write_text("".join(f"y{i}\t{task.n_x + i}\n" for i in range(task.n_y)))
    for part, rows in (("train", task.train), ("valid", task.valid), ("test", task.test)):
        with open(out / f"{part}data_new.txt", "w") as fh:
            for u, seq in enumerate(rows):
                fh.write(f"{u}\t0\t" + "\t".join(f"{item}|{t}" for t, item in enumerate(seq)) + "\n")
    return out


@dataclass
class ReferenceRun:
    """The authors' ``train_rec.py`` started on one seed's data (``proc`` None when an earlier log of the same run was reused)."""

    cmd: list[str]
    log: Path
    proc: subprocess.Popen[str] | None
    start: float


def start_reference(*, checkout: Path, python: Path, folder: Path, name: str, seed: int, epochs: int,
                    threads: int) -> ReferenceRun:
    """Start the authors' ``train_rec.py`` on ``folder/dataset/name`` in the background (finish with :func:`finish_reference`).

    A log of the very same command, finished earlier in ``folder`` with a test result, is reused instead."""
    script = Path(checkout) / "train_rec.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: --c2dsr-ref must be the folder holding the authors' train_rec.py")
    cmd = [str(python), "-u", str(script), "--data_dir", name, "--seed", str(seed), "--num_epoch", str(epochs), "--cpu",
           "--id", f"seed{seed}"]
    log = Path(folder) / f"reference-seed{seed}.log"
    if log.is_file() and log.read_text().startswith(_head(cmd)) and "Y" in _best(log.read_text()):
        return ReferenceRun(cmd, log, None, time.perf_counter())
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return ReferenceRun(cmd, log, proc, time.perf_counter())


def finish_reference(run: ReferenceRun, *, timeout: float = 7200) -> tuple[dict[str, dict[str, float]], float, Path]:
    """Wait for the run; return the test metrics of the epoch of best validation MRR per domain
    (``{"X": {...}, "Y": {...}}``, the last ``X best!`` / ``Y best!`` lists of the log), the seconds and the log's path."""
    if run.proc is None:
        text = run.log.read_text()
        return _best(text), float(text.rsplit("seconds: ", 1)[-1]), run.log
    stdout, stderr = run.proc.communicate(timeout=timeout)
    seconds = time.perf_counter() - run.start
    run.log.write_text(f"{_head(run.cmd)}{stdout}\n--- stderr ---\n{stderr}\nseconds: {seconds:.1f}")
    best = _best(stdout)
    if run.proc.returncode != 0 or "Y" not in best:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"the authors' C2DSR failed (exit {run.proc.returncode}) or printed no test result; log: {run.log}\n{tail}")
    return best, seconds, run.log


def _head(cmd: list[str]) -> str:
    return f"$ {' '.join(cmd)}\n"


def _best(stdout: str) -> dict[str, dict[str, float]]:
    """The last ``X best!`` / ``Y best!`` test lists of the authors' log (numbers possibly printed as ``np.float64(v)``)."""
    best: dict[str, dict[str, float]] = {}
    for domain, values in _BEST.findall(stdout):
        numbers = [float(v.strip().removeprefix("np.float64(").removesuffix(")")) for v in values.split(",")]
        best[domain] = dict(zip(METRICS, numbers))
    return best


def ranks(scores: np.ndarray, truth: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """The authors' rank of each held-out item: 1 + negatives scored above it by more than 1e-5."""
    pos = scores[np.arange(len(truth)), truth]
    neg = np.take_along_axis(scores, negatives, axis=1)
    return 1 + (neg > pos[:, None] + 1e-5).sum(1)


def rank_metrics(rank: np.ndarray) -> dict[str, float]:
    """MRR, NDCG@5/10 and HR@1/5/10 of ranks, as the authors' ``cal_test_score`` computes them."""
    r = np.asarray(rank, dtype=np.float64)
    gain = 1 / np.log2(r + 1)
    return {"mrr": float((1 / r).mean()), "ndcg@5": float(np.where(r <= 5, gain, 0).mean()),
            "ndcg@10": float(np.where(r <= 10, gain, 0).mean()), "hr@1": float((r <= 1).mean()),
            "hr@5": float((r <= 5).mean()), "hr@10": float((r <= 10).mean())}


def draw_negatives(truth: np.ndarray, n_items: int, *, rng: np.random.Generator, count: int = 999) -> np.ndarray:
    """``[len(truth), count]`` items drawn uniformly with replacement from ``0 .. n_items-1``, never the row's held-out item."""
    out = rng.integers(0, n_items - 1, size=(len(truth), count))
    return out + (out >= truth[:, None])  # skip the held-out item: uniform over the other n_items - 1
