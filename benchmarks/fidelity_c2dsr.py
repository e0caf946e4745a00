"""C2DSR against the authors' code (cjx96/C2DSR), both sides under the authors' protocol.

Per seed, ONE split (:mod:`fidelity_c2dsr_data`: mixed comedy/drama sequences of MovieLens-100K,
users split 70/10/20 into training, validation and test users) is written in the authors'
file format and run with their ``train_rec.py`` (a subprocess with their interpreter), and the
same training sequences are given to crossbench's ``c2dsr`` as a ``FitSplit`` (source domain
``comedy``, target ``drama``; the timestamps are the positions in each sequence). Crossbench's
model is then scored as the authors' code scores theirs: every 5th epoch the validation users'
held-out items are ranked against 999 uniform negatives of their domain from the history before
them, and when a domain's validation MRR improves the test users of that domain are ranked the
same way; the numbers reported are the test numbers of the epoch of best validation MRR, per
domain (Y: drama, the target; X: comedy). The probe only reads the model between epochs (its
dropout is switched back on before training goes on); the model never sees validation or test
users. The negatives are drawn with the same rule as the authors' loader, by a seeded numpy
generator (the authors' are drawn by Python's ``random`` inside their process; both sides rank
against draws of the same distribution, not the same draws).

``--c2dsr-epochs`` caps training on both sides (the authors' default: 100). The authors' process
runs beside crossbench's fit (one thread each); a seed finished earlier in the same ``--workdir``
(the reference's log of the same command, crossbench's result of the same settings) is reused,
so seeds may run as separate processes and a last run over all seeds collects them.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from fidelity_c2dsr_data import C2dsrTask, c2dsr_task, draw_negatives, finish_reference, rank_metrics, ranks, start_reference, write_c2dsr
from fidelity_cross import EpochProbe
from fidelity_report import Result

from crossbench.data.model import CrossDomainData, Domain
from crossbench.data.protocols import FitSplit, GroundTruth
from crossbench.plugin.interfaces import RunEnv
from crossbench.train.stages import Stage, replace_stage

SOURCE, TARGET = "comedy", "drama"
NAME = "comedy-drama"
#: the authors' evaluation interval in epochs
EVERY = 5


def c2dsr_split(task: C2dsrTask) -> FitSplit:
    """The training users' sequences as two domains (source ids ``0 .. n_x-1``, target ids re-based at 0), no validation users."""
    rows = [(u, t, item) for u, seq in enumerate(task.train) for t, item in enumerate(seq)]
    frame = pd.DataFrame(rows, columns=["user", "timestamp", "item"])
    domains = {}
    for name, mask, offset, n in ((SOURCE, frame["item"] < task.n_x, 0, task.n_x), (TARGET, frame["item"] >= task.n_x, task.n_x, task.n_y)):
        part = frame[mask]
        inter = pd.DataFrame({"user": part["user"].to_numpy(np.int64), "item": part["item"].to_numpy(np.int64) - offset,
                              "timestamp": part["timestamp"].to_numpy(np.int64)}).reset_index(drop=True)
        ids = [str(i) for i in range(n)]
        domains[name] = Domain(name=name, interactions=inter, items=pd.DataFrame({"item_id": ids, "title": ids, "text": [""] * n}))
    data = CrossDomainData(name="fidelity-c2dsr", user_ids=np.array([str(u) for u in range(len(task.train))]), domains=domains)
    none = GroundTruth.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64))
    return FitSplit(protocol="c2dsr-authors", target=TARGET, train=data.validate(), valid=none)


class HeldOut:
    """The validation or test users of one domain: histories ``[B, maxlen]``, held-out items (domain ids), negatives."""

    def __init__(self, sequences: Sequence[list[int]], *, target: bool, task: C2dsrTask, maxlen: int, rng: np.random.Generator) -> None:
        rows = [s for s in sequences if (s[-1] >= task.n_x) == target]
        self.history = torch.full((len(rows), maxlen), -1, dtype=torch.long)
        for r, seq in enumerate(rows):
            past = seq[:-1][-(maxlen - 1):]
            self.history[r, maxlen - len(past):] = torch.as_tensor(past)
        offset, n = (task.n_x, task.n_y) if target else (0, task.n_x)
        self.truth = np.array([s[-1] - offset for s in rows], dtype=np.int64)
        self.negatives = draw_negatives(self.truth, n, rng=rng)
        self.domain = "target" if target else "source"

    def measure(self, model: Any) -> dict[str, float]:
        scores = model.score_histories(self.history, domain=self.domain).numpy()
        return rank_metrics(ranks(scores, self.truth, self.negatives))


def fit_crossbench(task: C2dsrTask, *, seed: int, epochs: int, threads: int) -> tuple[dict[str, dict[str, float]], float]:
    """Crossbench's C2DSR (the authors' defaults) on the task; the test metrics per domain at the epoch of best validation MRR."""
    from crossbench_cdr.c2dsr import C2DSR

    torch.set_num_threads(threads)
    model = C2DSR(epochs=epochs)
    rng = np.random.default_rng(seed)
    sets = {(part, key): HeldOut(rows, target=key == "Y", task=task, maxlen=model.maxlen, rng=rng)
            for part, rows in (("valid", task.valid), ("test", task.test)) for key in ("X", "Y")}
    best: dict[str, float] = {"X": 0.0, "Y": 0.0}
    found: dict[str, dict[str, float]] = {}
    epoch = {"n": 0}

    def measure() -> None:
        epoch["n"] += 1
        if epoch["n"] % EVERY:
            return
        net = model.model
        assert net is not None
        training = net.training
        for key in ("X", "Y"):
            mrr = sets["valid", key].measure(model)["mrr"]
            if mrr > best[key]:
                best[key], found[key] = mrr, sets["test", key].measure(model)
        net.train(training)

    original = model.stages

    def stages(split_: FitSplit, module: torch.nn.Module, env: RunEnv) -> Sequence[Stage]:
        (stage,) = original(split_, module, env)
        n = max(1, math.ceil(len(stage.data) / stage.batch_size))
        return [replace_stage(stage, loss=EpochProbe(stage.loss, batches_per_epoch=n, measure=measure))]

    model.stages = stages  # type: ignore[method-assign]  # this fit only
    start = time.perf_counter()
    model.fit(c2dsr_split(task), env=RunEnv(registry=None, seed=seed, progress=False))  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    with torch.no_grad():
        measure()  # after the last epoch
    return found, seconds


def crossbench_side(task: C2dsrTask, *, folder: Path, seed: int, epochs: int, threads: int) -> tuple[dict[str, dict[str, float]], float]:
    """:func:`fit_crossbench`, its result kept in ``folder``; a result of the same settings kept there earlier is reused."""
    kept = folder / f"crossbench-seed{seed}.json"
    settings = {"seed": seed, "epochs": epochs, "threads": threads, "train_users": len(task.train)}
    if kept.is_file():
        earlier = json.loads(kept.read_text())
        if earlier["settings"] == settings:
            return earlier["results"], earlier["seconds"]
    found, seconds = fit_crossbench(task, seed=seed, epochs=epochs, threads=threads)
    kept.write_text(json.dumps({"settings": settings, "results": found, "seconds": seconds}))
    return found, seconds


def run_c2dsr(args: argparse.Namespace, results: list[Result]) -> None:
    """Both sides for every seed of ``args``; appends one :class:`Result` per side, domain, metric and seed."""
    from fidelity_data import movielens_domains

    source, target, _, _, _ = movielens_domains(SOURCE, TARGET)
    for seed in args.seeds:
        task = c2dsr_task(source, target, seed=seed)
        folder = Path(args.workdir) / f"c2dsr-seed{seed}"
        write_c2dsr(task, folder, name=NAME)
        n_y = sum(s[-1] >= task.n_x for s in task.test)
        print(f"seed {seed}: {len(task.train)} training, {len(task.valid)} validation, {len(task.test)} test users "
              f"({n_y} with a drama item held out); {task.n_x} comedy, {task.n_y} drama items", flush=True)
        run = start_reference(checkout=args.c2dsr_ref, python=args.c2dsr_python, folder=folder, name=NAME, seed=seed,
                              epochs=args.c2dsr_epochs, threads=args.threads)  # runs beside crossbench's fit
        ours, cb_seconds = crossbench_side(task, folder=folder, seed=seed, epochs=args.c2dsr_epochs, threads=args.threads)
        print(f"seed {seed}: crossbench c2dsr fitted in {cb_seconds:.0f} s", flush=True)
        ref, seconds, log = finish_reference(run)
        print(f"seed {seed}: the authors' C2DSR ran {seconds:.0f} s; log {log}", flush=True)
        for key, label in (("Y", f"{TARGET} (target)"), ("X", f"{SOURCE} (source)")):
            for metric in ("mrr", "ndcg@10", "hr@10", "ndcg@5", "hr@1"):
                name = f"{label} {metric}"
                if key in ref:
                    results.append(Result("c2dsr", "reference", name, seed, ref[key][metric], lower_better=False))
                if key in ours:
                    results.append(Result("c2dsr", "crossbench", name, seed, ours[key][metric], lower_better=False))
