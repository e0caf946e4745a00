"""The feedback loop: recommend -> feedback model -> append what users took -> update, round by round.

One simulation is one (target, seed, model). Its population is the protocol's test users
(cold in the target domain under ``cold-start``) plus warm training users whose latest target
interactions are held out as their future (:class:`~crossbench.plugin.simulation_settings.SimulationSettings`).

Round ``r`` (1..R): every simulated user is shown the top ``k`` target items of the current
model, ranked as the evaluator ranks (:mod:`crossbench.evaluate.lists`: seen items excluded,
the same tie rule); the feedback model says which they take; those are appended to the
users' target histories with timestamps after every training timestamp; the model is
updated (:meth:`crossbench.plugin.interfaces.Recommender.update`); then one scoring pass measures
accuracy on each user's held-out items not yet taken and, from the same scores, ranks the
lists of round ``r + 1``. Round 0 is the model fitted before any feedback.

Everything is drawn from the seed. After each round the record (every finished round) and the
taken interactions are written atomically; a killed simulation resumes after its last
finished round: the model is rebuilt by the same fit and the recorded updates (a refit model
by one refit), and the rounds continue.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from crossbench.data.protocols import FitSplit, GroundTruth, Split, train_items
from crossbench.errors import CrossbenchError
from crossbench.evaluate.lists import SeenMask, lists_of, top_lists
from crossbench.evaluate.ranking import accepts_out, chunk_scores, evaluate
from crossbench.files import atomic_write
from crossbench.loop.feedback import FeedbackContext, FeedbackModel, check_taken
from crossbench.plugin.interfaces import Recommender, RunEnv
from crossbench.plugin.simulation_settings import SimulationSettings
from crossbench.plugin.specs import MetricSpec
from crossbench.records.store import write_json_atomic

STATE_COLUMNS = ("user", "item", "round", "rank")


@dataclass(frozen=True)
class Population:
    """Who is simulated: user indices (sorted), which of them are cold, and every one's held-out items."""

    users: np.ndarray
    cold: np.ndarray
    #: held-out items the feedback model may credit
    future: GroundTruth
    #: held-out items kept for measuring: never taken, the ground truth of every round's accuracy
    probe: GroundTruth
    base: FitSplit


def population(split: Split, settings: SimulationSettings, *, seed: int) -> Population:
    """The simulated users of ``split`` and the training data before any feedback (warm users' futures removed)."""
    rng = np.random.default_rng([seed, 13])
    test = split.test
    chosen = test.users
    if settings.users is not None and settings.users < len(chosen):
        chosen = np.sort(rng.choice(chosen, settings.users, replace=False))
    rows = np.searchsorted(test.users, chosen)
    fu = [np.full(len(test.items_of(j)), u) for j, u in zip(rows, chosen)]
    fi = [test.items_of(j) for j in rows]
    frame = split.train.domain(split.target).interactions
    counts = frame.groupby("user").size()
    held_out = set(split.valid.users.tolist()) | set(test.users.tolist())
    candidates = np.array(sorted(u for u, n in counts.items() if n >= 4 and u not in held_out), dtype=np.int64)
    warm = np.sort(rng.choice(candidates, min(settings.warm_users, len(candidates)), replace=False)) if len(candidates) else candidates
    drop = np.zeros(len(frame), dtype=bool)
    if len(warm):
        order = frame.assign(_row=np.arange(len(frame))).sort_values(["user", "timestamp", "item"], kind="stable")
        order = order[order["user"].isin(warm)]
        for u, part in order.groupby("user", sort=True):
            n_out = max(1, int(np.ceil(settings.warm_holdout * len(part))))
            last = part.iloc[len(part) - n_out :]
            drop[last["_row"].to_numpy()] = True
            fu.append(np.full(n_out, u))
            fi.append(last["item"].to_numpy())
    future = GroundTruth.from_pairs(np.concatenate(fu) if fu else np.zeros(0, np.int64), np.concatenate(fi) if fi else np.zeros(0, np.int64))
    probe, open_ = _probes(future, settings.probe, rng)
    train = _with_target(split.train, split.target, frame[~drop].reset_index(drop=True))
    users = np.union1d(chosen, warm).astype(np.int64)
    in_train = np.bincount(train.domain(split.target).interactions["user"].to_numpy(), minlength=train.n_users)
    cold = users[in_train[users] == 0]
    return Population(users, cold, open_, probe, dataclasses.replace(split.fit_view(), train=train))


def _probes(future: GroundTruth, share: float, rng: np.random.Generator) -> tuple[GroundTruth, GroundTruth]:
    """Each user's held-out items cut into probes (a seeded ``share``, at least one) and the rest."""
    users = np.repeat(future.users, np.diff(future.indptr))
    draw = rng.random(len(future.items))
    is_probe = np.zeros(len(future.items), dtype=bool)
    for j in range(future.n_users):
        lo, hi = int(future.indptr[j]), int(future.indptr[j + 1])
        n_probe = max(1, int(round(share * (hi - lo))))
        is_probe[lo + np.argsort(draw[lo:hi], kind="stable")[:n_probe]] = True
    return (GroundTruth.from_pairs(users[is_probe], future.items[is_probe]),
            GroundTruth.from_pairs(users[~is_probe], future.items[~is_probe]))


def _with_target(data: Any, target: str, frame: pd.DataFrame) -> Any:
    dom = data.domain(target)
    return data.with_domains({**data.domains, target: type(dom)(name=dom.name, interactions=frame, items=dom.items)})


def train_after(base: FitSplit, taken: Mapping[str, np.ndarray], *, upto: int, k: int) -> FitSplit:
    """``base`` with the items taken in rounds ``1..upto`` appended to the target domain.

    A taken item gets the timestamp ``T + round * k + rank``, ``T`` one past every training
    timestamp of every domain, so histories keep the rounds' order and the rank order within one.
    """
    keep = taken["round"] <= upto
    if not keep.any():
        return base
    frame = base.train.domain(base.target).interactions
    t0 = max(int(d.interactions["timestamp"].max()) for d in base.train.domains.values()) + 1
    new = pd.DataFrame({
        "user": taken["user"][keep].astype(np.int64),
        "item": taken["item"][keep].astype(np.int64),
        "timestamp": (t0 + taken["round"][keep] * k + taken["rank"][keep]).astype(np.int64),
    })
    if "rating" in frame.columns:
        new["rating"] = float(frame["rating"].max())
    both = pd.concat([frame, new], ignore_index=True).sort_values(["user", "timestamp", "item"], kind="stable")
    return dataclasses.replace(base, train=_with_target(base.train, base.target, both.reset_index(drop=True)))


def update_seed(seed: int, round: int) -> int:
    """The seed of round ``round``'s update (and feedback), drawn from the simulation's seed."""
    return int(np.random.SeedSequence([seed, round]).generate_state(1)[0] % (2**31))


def scoring_pass(
    model: Recommender, split: FitSplit, pop: Population, truth: GroundTruth, *, k: int,
    metrics: Mapping[str, MetricSpec], device: torch.device, chunk_size: int,
) -> tuple[dict[str, Any], np.ndarray]:
    """One pass over the simulated users' scores: accuracy on ``truth`` and every user's next top ``k``."""
    n_items = split.train.domain(split.target).n_items
    exclude = train_items(split.train, split.target)
    mask = SeenMask(exclude, n_items=n_items, device=device)
    lists: dict[int, np.ndarray] = {}
    takes_out = accepts_out(model.score)

    def score_fn(users: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        ids = users.cpu().numpy()
        s = chunk_scores(model.score, ids, n_items, device, out=out if takes_out else None)
        s = mask.apply(s, ids)
        items, _ = lists_of(s, k)
        for u, row in zip(ids.tolist(), items.cpu().numpy()):
            lists[u] = row
        return s

    accuracy: dict[str, Any] = {"all": {}, "cold": {}, "warm": {}}
    counts = {"all": 0, "cold": 0, "warm": 0}
    if truth.n_users:
        result = evaluate(score_fn, truth, n_items=n_items, metrics=metrics, ks=[k], exclude=exclude,
                          chunk_size=chunk_size, device=device)
        is_cold = np.isin(result.users, pop.cold)
        for group, sel in (("all", np.ones(len(is_cold), bool)), ("cold", is_cold), ("warm", ~is_cold)):
            counts[group] = int(sel.sum())
            for key, values in result.per_user.items():
                accuracy[group][key] = float(values[sel].mean()) if sel.any() else None
    rest = np.array([u for u in pop.users.tolist() if u not in lists], dtype=np.int64)
    if len(rest):
        extra = top_lists(model.score, rest, n_items=n_items, k=k, exclude=exclude, chunk_size=chunk_size, device=device)
        lists.update(zip(rest.tolist(), extra.items))
    shown = np.stack([lists[u] for u in pop.users.tolist()]) if len(pop.users) else np.zeros((0, k), np.int64)
    return {"accuracy": accuracy, "users_with_future": counts}, shown


def _report(report: Any) -> dict[str, Any]:
    """A fit's report for the record (a plugin model may return none)."""
    return dataclasses.asdict(report) if dataclasses.is_dataclass(report) and not isinstance(report, type) else {}


def _content_sha(taken: Mapping[str, np.ndarray], counts: np.ndarray) -> str:
    """sha256 of the state's arrays (the taken interactions, then the exposure counts)."""
    import hashlib

    h = hashlib.sha256()
    for a in [*(taken[c] for c in STATE_COLUMNS), counts]:
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    return h.hexdigest()


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative ``counts`` (0: all equal; towards 1: all on one item)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    return float((2.0 * np.sum(np.arange(1, n + 1) * x)) / (n * total) - (n + 1) / n)


def exposure(shown: np.ndarray, n_items: int) -> dict[str, float]:
    """Catalogue coverage (share of target items shown to anyone) and the Gini of how often each was shown."""
    counts = np.bincount(shown[shown >= 0].astype(np.int64), minlength=n_items)
    return {"coverage": float((counts > 0).mean()), "gini": gini(counts)}


@dataclass
class Simulation:
    """One (target, seed, model) simulation and the files that keep it."""

    record_path: Path
    state_path: Path
    settings: SimulationSettings
    seed: int
    chunk_size: int = 1024

    def run(
        self, split: Split, data: Any, model: Recommender, feedback: FeedbackModel, *, env: RunEnv,
        metrics: Mapping[str, MetricSpec], header: Mapping[str, Any], log: Callable[[str], None] = lambda _m: None,
    ) -> dict[str, Any]:
        """Run (or resume) every round; return the finished record."""
        s = self.settings
        primary = f"{next(iter(metrics))}@{s.k}"  # the first metric, as the report's curves
        pop = population(split, s, seed=self.seed)
        n_items = split.train.domain(split.target).n_items
        record, taken, counts = self._load(header, n_items)
        done = max(len(record["rounds"]) - 1, 0)  # rounds finished (round 0 is the fit)
        feedback.start(FeedbackContext(data=data, target=split.target, future=pop.future, seed=self.seed))
        torch.manual_seed(self.seed)
        t0 = time.perf_counter()
        report = model.fit(pop.base, env=env)
        fit_s = time.perf_counter() - t0
        own = getattr(type(model), "update", None)  # a plugin model need not subclass Recommender
        refits = own is None or own is Recommender.update
        update = model.update if own is not None else model.fit
        probe_keys = np.repeat(pop.probe.users, np.diff(pop.probe.indptr)).astype(np.int64) * n_items + pop.probe.items
        is_probe = lambda lists: np.isin(pop.users[:, None] * n_items + lists, probe_keys) & (lists >= 0)  # noqa: E731
        current = pop.base
        if done > 0:
            log(f"resuming after round {done}")
            for r in ([done] if refits else range(1, done + 1)):
                current = train_after(pop.base, taken, upto=r, k=s.k)
                update(current, env=dataclasses.replace(env, seed=update_seed(self.seed, r)))
        t1 = time.perf_counter()
        measured, shown = scoring_pass(model, current, pop, pop.probe, k=s.k, metrics=metrics,
                                       device=env.device, chunk_size=self.chunk_size)
        if not record["rounds"]:
            record["rounds"] = [{"round": 0, **measured, "exposure": None, "taken": 0,
                                 "seconds": {"update": fit_s, "pass": time.perf_counter() - t1}, "fit": _report(report)}]
            record["population"] = {"users": len(pop.users), "cold": len(pop.cold), "warm": len(pop.users) - len(pop.cold),
                                    "future_items": len(pop.future.items)}
            record["update"] = "refit" if refits else "own update (" + type(model).__name__ + ".update)"
            self._save(record, taken, counts)
        for r in range(done + 1, s.rounds + 1):
            tf = time.perf_counter()
            rng = np.random.default_rng(update_seed(self.seed, r))
            took = check_taken(feedback.respond(pop.users, shown, round=r, rng=rng), shown, name=str(s.feedback)) & ~is_probe(shown)
            rows, ranks = np.nonzero(took)
            taken = {
                "user": np.concatenate([taken["user"], pop.users[rows]]), "item": np.concatenate([taken["item"], shown[rows, ranks]]),
                "round": np.concatenate([taken["round"], np.full(len(rows), r)]), "rank": np.concatenate([taken["rank"], ranks]),
            }
            feedback_s = time.perf_counter() - tf
            tu = time.perf_counter()
            current = train_after(pop.base, taken, upto=r, k=s.k)
            fitted = update(current, env=dataclasses.replace(env, seed=update_seed(self.seed, r)))
            update_s = time.perf_counter() - tu
            tp = time.perf_counter()
            round_exposure = exposure(shown, n_items)
            counts = np.vstack([counts, np.bincount(shown[shown >= 0].astype(np.int64), minlength=n_items)[None, :]])
            round_exposure["cumulative_gini"] = gini(counts.sum(0))
            measured, shown = scoring_pass(model, current, pop, pop.probe, k=s.k, metrics=metrics,
                                           device=env.device, chunk_size=self.chunk_size)
            popularity = np.bincount(current.train.domain(current.target).interactions["item"].to_numpy(), minlength=n_items)
            record["rounds"].append({
                "round": r, **measured, "exposure": {**round_exposure, "interaction_gini": gini(popularity)},
                "taken": int(len(rows)), "fit": _report(fitted),
                "seconds": {"feedback": feedback_s, "update": update_s, "pass": time.perf_counter() - tp},
            })
            self._save(record, taken, counts)
            log(f"round {r}/{s.rounds}: {len(rows)} item(s) taken, {primary} {measured['accuracy']['all'].get(primary)}")
        record["finished"] = True
        write_json_atomic(self.record_path, record)
        return record

    def _load(self, header: Mapping[str, Any], n_items: int) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]:
        """The record and state of the rounds finished earlier (none: a fresh start)."""
        fresh = ({**header, "rounds": [], "finished": False}, {c: np.zeros(0, np.int64) for c in STATE_COLUMNS},
                 np.zeros((0, n_items), np.int64))
        if not self.record_path.is_file():
            return fresh
        import json

        record = json.loads(self.record_path.read_text(encoding="utf-8"))
        if record.get("fingerprint") != header.get("fingerprint"):
            raise CrossbenchError(f"{self.record_path} belongs to another simulation; use another --output or --overwrite")
        done = len(record["rounds"]) - 1
        if done <= 0 or not self.state_path.is_file():
            return fresh
        with np.load(self.state_path) as state:
            taken = {c: np.asarray(state[c], dtype=np.int64) for c in STATE_COLUMNS}
            counts = np.asarray(state["exposure"], dtype=np.int64)[:done]
        keep = taken["round"] <= done  # the state may be one round ahead of a record cut short
        taken = {c: v[keep] for c, v in taken.items()}
        saved = record.get("state", {})
        if saved.get("rounds") == done and saved.get("sha256") != _content_sha(taken, counts):
            raise CrossbenchError(f"{self.state_path} does not match its record {self.record_path.name}; pass --overwrite to start again")
        return record, taken, counts

    def _save(self, record: dict[str, Any], taken: Mapping[str, np.ndarray], counts: np.ndarray) -> None:
        """The state (taken interactions, exposure counts per round), then the record, each atomically."""
        with atomic_write(self.state_path) as f:
            arrays: dict[str, Any] = {c: np.asarray(taken[c], dtype=np.int64) for c in STATE_COLUMNS}
            np.savez(f, exposure=counts, **arrays)
        record["state"] = {"path": self.state_path.name, "rounds": len(record["rounds"]) - 1, "sha256": _content_sha(taken, counts)}
        write_json_atomic(self.record_path, record)
