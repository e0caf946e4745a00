"""RecBole 1.2.1's sequential protocol for the fidelity benchmark (GRU4Rec), both sides.

The data: drama ratings >= 4 as implicit interactions of crossbench's ``movielens-100k``, users
with at least ``min_items`` of them. Each user's items are ordered by time (ties by item index)
and numbered so that no two interactions share a timestamp; items are renumbered ``0 .. n-1``
over the items that remain (RecBole knows no others).

RecBole's protocol, given it through one atomic file with timestamps (not pre-split files: its
sequential datasets build their prefix samples themselves): each user's sequence sorted by
time, the last item the test item, the one before it the validation item (``LS:
valid_and_test``), every earlier item a training target with the items before it (at most
``MAX_ITEM_LIST_LENGTH`` = 50) as its input; full ranking over the catalogue WITHOUT masking the
user's history (RecBole masks nothing for sequential models); early stopping on validation
MRR@10; the best validation epoch tested, the test input being the 50 items before the test
item (the validation item included).

crossbench's side (:func:`fit_sequence_model`): the same training items as a ``FitSplit`` (the
validation items as validation ground truth), ``Gru4Rec`` fitted on it, then scored from each
user's 50 items before the test item and measured by :func:`fidelity_cross.ranking_metrics`
with nothing masked, as RecBole.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from crossbench.data.protocols import FitSplit, GroundTruth
from crossbench.plugin.interfaces import RunEnv

#: RecBole 1.2.1's MAX_ITEM_LIST_LENGTH (its dataset presets)
MAX_LENGTH = 50


@dataclass(frozen=True)
class SequenceTask:
    """Time-ordered implicit interactions (columns ``user``, ``item``, ``timestamp``) split leave-one-out per user."""

    frame: pd.DataFrame
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    n_users: int
    n_items: int


def sequence_task(interactions: pd.DataFrame, *, n_users: int, min_rating: float = 4.0, min_items: int = 5) -> SequenceTask:
    """The data and its leave-one-out split (see the module docstring); it does not depend on a seed."""
    frame = interactions[interactions["rating"] >= min_rating][["user", "item", "timestamp"]]
    frame = frame.drop_duplicates(["user", "item"]).sort_values(["user", "timestamp", "item"], kind="stable")
    counts = frame.groupby("user")["item"].transform("size")
    frame = frame[counts >= min_items].reset_index(drop=True)
    kept = np.unique(frame["item"].to_numpy())
    frame["item"] = np.searchsorted(kept, frame["item"].to_numpy())
    frame["timestamp"] = np.arange(len(frame), dtype=np.int64)  # the order above, with no ties
    from_end = frame.groupby("user").cumcount(ascending=False).to_numpy()
    train, valid, test = (frame[m].reset_index(drop=True) for m in (from_end >= 2, from_end == 1, from_end == 0))
    return SequenceTask(frame=frame, train=train, valid=valid, test=test, n_users=n_users, n_items=len(kept))


def write_recbole_sequence(task: SequenceTask, folder: Path, *, name: str) -> Path:
    """Write ``folder/name/name.inter`` (user, item, timestamp) for RecBole's own sequential split."""
    out = Path(folder) / name
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.inter", "w") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u, i, t in zip(task.frame["user"].to_numpy(), task.frame["item"].to_numpy(), task.frame["timestamp"].to_numpy()):
            fh.write(f"{int(u)}\t{int(i)}\t{int(t)}\n")
    return out


def sequence_split(task: SequenceTask, *, name: str) -> FitSplit:
    """The training interactions (with their timestamps) and the validation items as a ``FitSplit``."""
    from fidelity_cross import ranking_split

    return ranking_split(task, name=name)  # type: ignore[arg-type]  # the same fields as a RankingTask


def history_before_test(task: SequenceTask) -> torch.Tensor:
    """``[n_users, MAX_LENGTH]``: each user's last items before the test item (validation item included), ``-1`` padding."""
    seen = pd.concat([task.train, task.valid]).sort_values("timestamp")
    out = torch.full((task.n_users, MAX_LENGTH), -1, dtype=torch.long)
    for user, items in seen.groupby("user")["item"]:
        last = items.to_numpy()[-MAX_LENGTH:]
        out[int(user), MAX_LENGTH - len(last):] = torch.as_tensor(last.copy())
    return out


def fit_sequence_model(model: Any, task: SequenceTask, *, name: str, seed: int, threads: int = 1,
                       ks: tuple[int, ...] = (10, 20)) -> tuple[dict[str, float], float, Any]:
    """Fit ``model`` (``Gru4Rec``) and return RecBole-style test metrics (nothing masked), the seconds and the fit report."""
    from fidelity_cross import ranking_metrics

    torch.set_num_threads(threads)
    start = time.perf_counter()
    report = model.fit(sequence_split(task, name=name), env=RunEnv(registry=None, seed=seed, progress=False))  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    scores = model.score_histories(history_before_test(task)).float().numpy()
    nothing = GroundTruth.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64))
    truth = GroundTruth.from_pairs(task.test["user"].to_numpy(), task.test["item"].to_numpy())
    return ranking_metrics(scores, exclude=nothing, truth=truth, ks=ks), seconds, report
