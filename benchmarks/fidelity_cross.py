"""Crossbench's side of the fidelity benchmark: its models fitted on the very split the reference got.

:func:`rating_split` turns a :class:`~fidelity_data.RatingTask` into the ``FitSplit`` a model
fits on (both domains' training ratings; no validation users, as the reference has none, so
every epoch runs); :func:`fit_rating_model` fits a model and returns its test MAE/RMSE curve.
:func:`ranking_split` and :func:`ranking_metrics` do the same for a
:class:`~fidelity_data.RankingTask` under RecBole's full-ranking protocol.

The per-epoch test curve: the PTUPCDR authors' protocol reports the best test MAE over the
epochs of a model's last training phase, so the same number is measured here by
:class:`EpochProbe`, which wraps the loss of the model's last stage and evaluates the test pairs
at the start of each epoch after the first (that is, after the previous epoch's last step)
and once after fitting. The probe only reads the model; the model never sees the test pairs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from fidelity_data import RankingTask, RatingTask

from crossbench.data.model import CrossDomainData, Domain
from crossbench.data.protocols import FitSplit, GroundTruth
from crossbench.interfaces import RunEnv
from crossbench.stages import Stage, StagedRecommender, replace_stage


def _domain(name: str, frame: pd.DataFrame, n_items: int, *, rating: bool) -> Domain:
    cols = {"user": frame["user"].to_numpy(np.int64), "item": frame["item"].to_numpy(np.int64)}
    ts = frame["timestamp"].to_numpy(np.int64) if "timestamp" in frame else np.zeros(len(frame), np.int64)
    inter = pd.DataFrame({**cols, "timestamp": ts})
    if rating:
        inter["rating"] = frame["rating"].to_numpy(np.float64)
    ids = [str(i) for i in range(n_items)]
    items = pd.DataFrame({"item_id": ids, "title": ids, "text": [""] * n_items})
    return Domain(name=name, interactions=inter.reset_index(drop=True), items=items)


def _no_users() -> GroundTruth:
    return GroundTruth.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64))


def rating_split(task: RatingTask, *, source_name: str, target_name: str) -> FitSplit:
    """Source ratings and the target's training ratings (test users' target ratings absent), no validation users."""
    data = CrossDomainData(
        name="fidelity", user_ids=np.array([str(u) for u in range(task.n_users)]),
        domains={
            source_name: _domain(source_name, task.source, task.n_source_items, rating=True),
            target_name: _domain(target_name, task.target_train, task.n_target_items, rating=True),
        },
    )
    return FitSplit(protocol="ptupcdr-cold-start", target=target_name, train=data.validate(), valid=_no_users(), cold=True)


def ranking_split(task: RankingTask, *, name: str, source: pd.DataFrame | None = None, source_name: str = "source") -> FitSplit:
    """The target's training interactions (and every ``source`` interaction, when given, as a second
    domain), with the validation items as the validation ground truth."""
    domains = {name: _domain(name, task.train, task.n_items, rating=False)}
    if source is not None:
        domains = {source_name: _domain(source_name, source, int(source["item"].max()) + 1, rating=False), **domains}
    data = CrossDomainData(name="fidelity", user_ids=np.array([str(u) for u in range(task.n_users)]), domains=domains)
    valid = GroundTruth.from_pairs(task.valid["user"].to_numpy(), task.valid["item"].to_numpy())
    return FitSplit(protocol="recbole-rs", target=name, train=data.validate(), valid=valid)


def mae_rmse(predicted: torch.Tensor, ratings: np.ndarray) -> tuple[float, float]:
    err = predicted.double().numpy() - ratings.astype(np.float64)
    return float(np.abs(err).mean()), float(np.sqrt((err**2).mean()))


class EpochProbe:
    """Wraps a stage's loss: ``measure()`` runs before the first batch of each epoch after the first."""

    def __init__(self, loss: Callable[..., torch.Tensor], *, batches_per_epoch: int, measure: Callable[[], None]) -> None:
        self.loss, self.batches, self.measure, self.calls = loss, batches_per_epoch, measure, 0

    def __call__(self, model: torch.nn.Module, batch: Any, gen: torch.Generator) -> torch.Tensor:
        if self.calls and self.calls % self.batches == 0:
            with torch.no_grad():
                self.measure()
        self.calls += 1
        return self.loss(model, batch, gen)


@dataclass(frozen=True)
class RatingCurve:
    """Crossbench's test MAE/RMSE after each epoch of the model's last stage, and the fit's seconds and threads."""

    mae: tuple[float, ...]
    rmse: tuple[float, ...]
    seconds: float
    threads: int
    stage: str

    def best_test(self) -> tuple[float, float]:
        return min(self.mae), min(self.rmse)

    def last(self) -> tuple[float, float]:
        return self.mae[-1], self.rmse[-1]


def fit_rating_model(model: Any, split: FitSplit, task: RatingTask, *, seed: int, threads: int = 1) -> RatingCurve:
    """Fit ``model`` (objective ``"rating"``, with ``predict(users, items)``) and measure the test pairs per epoch."""
    torch.set_num_threads(threads)
    users = torch.as_tensor(task.test["user"].to_numpy(np.int64).copy())
    items = torch.as_tensor(task.test["item"].to_numpy(np.int64).copy())
    ratings = task.test["rating"].to_numpy()
    curve: list[tuple[float, float]] = []

    def measure() -> None:
        curve.append(mae_rmse(model.predict(users, items), ratings))

    probed = {"name": ""}
    if isinstance(model, StagedRecommender):
        original = model.stages

        def stages(split_: FitSplit, module: torch.nn.Module, env: RunEnv) -> Sequence[Stage]:
            found = list(original(split_, module, env))
            last = found[-1]
            n = max(1, math.ceil(len(last.data) / last.batch_size))
            found[-1] = replace_stage(last, loss=EpochProbe(last.loss, batches_per_epoch=n, measure=measure))
            probed["name"] = last.name
            return found

        model.stages = stages  # instance attribute: this fit only
    start = time.perf_counter()
    model.fit(split, env=RunEnv(registry=None, seed=seed, progress=False))  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    measure()
    return RatingCurve(tuple(m for m, _ in curve), tuple(r for _, r in curve), seconds, torch.get_num_threads(), probed["name"])


# --------------------------------------------------------------------------- ranking (RecBole's protocol)


def ranking_metrics(scores: np.ndarray, *, exclude: GroundTruth, truth: GroundTruth, ks: Sequence[int] = (10, 20)) -> dict[str, float]:
    """RecBole's Recall, MRR, NDCG, Hit and Precision @k, averaged over ``truth``'s users.

    ``scores`` is ``[n_users, n_items]`` indexed by user; ``exclude``'s items are ranked last
    (RecBole's full-sort masking of training, and for test also validation, items).
    """
    out: dict[str, list[float]] = {}
    top = max(ks)
    masked = {int(u): exclude.items_of(j) for j, u in enumerate(exclude.users)}
    for j, u in enumerate(truth.users):
        row = scores[int(u)].astype(np.float64).copy()
        row[masked.get(int(u), np.zeros(0, np.int64))] = -np.inf
        ranked = np.argsort(-row, kind="stable")[:top]
        rel = np.isin(ranked, truth.items_of(j))
        n_pos = len(truth.items_of(j))
        for k in ks:
            hits = rel[:k]
            dcg = float((hits / np.log2(np.arange(2, k + 2))).sum())
            idcg = float((1.0 / np.log2(np.arange(2, min(n_pos, k) + 2))).sum())
            first = np.flatnonzero(hits)
            values = {
                "recall": hits.sum() / n_pos, "mrr": 1.0 / (first[0] + 1) if len(first) else 0.0,
                "ndcg": dcg / idcg, "hit": float(hits.any()), "precision": hits.sum() / k,
            }
            for name, v in values.items():
                out.setdefault(f"{name}@{k}", []).append(float(v))
    return {k: float(np.mean(v)) for k, v in out.items()}


def fit_ranking_model(
    model: Any, task: RankingTask, *, name: str, seed: int, threads: int = 1, source: pd.DataFrame | None = None,
    ks: Sequence[int] = (10, 20),
) -> tuple[dict[str, float], float, Any]:
    """Fit ``model`` on the task's training interactions (and ``source``'s; validation items for early
    stopping) and return the test metrics (training and validation items masked), the seconds and the fit report."""
    torch.set_num_threads(threads)
    split = ranking_split(task, name=name, source=source)
    start = time.perf_counter()
    report = model.fit(split, env=RunEnv(registry=None, seed=seed, progress=False))  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    with torch.no_grad():
        scores = model.score(torch.arange(task.n_users)).float().numpy()
    seen = pd.concat([task.train, task.valid])
    exclude = GroundTruth.from_pairs(seen["user"].to_numpy(), seen["item"].to_numpy())
    truth = GroundTruth.from_pairs(task.test["user"].to_numpy(), task.test["item"].to_numpy())
    return ranking_metrics(scores, exclude=exclude, truth=truth, ks=ks), seconds, report
