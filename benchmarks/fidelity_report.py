"""The fidelity benchmark's numbers: one :class:`Result` per side, model, metric and seed; seed spreads and verdicts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Result:
    """One number: ``side`` is ``"reference"`` or ``"crossbench"``."""

    model: str
    side: str
    metric: str
    seed: int
    value: float
    lower_better: bool


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation over seeds (std 0 for one seed), with the per-seed values."""

    mean: float
    std: float
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        arr = np.asarray(values, dtype=np.float64)
        std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
        return cls(float(arr.mean()), std, tuple(float(v) for v in arr))

    def text(self) -> str:
        seeds = ", ".join(f"{v:.4f}" for v in self.values)
        return f"{self.mean:.4f} ± {self.std:.4f}  [{seeds}]"


def verdict(ours: Spread, ref: Spread, *, lower_better: bool) -> str:
    """``within spread`` when the means differ by at most twice the reference's seed std; else better or worse."""
    diff = ours.mean - ref.mean
    if abs(diff) <= 2 * ref.std:
        return f"within spread (diff {diff:+.4f}, 2 x ref std {2 * ref.std:.4f})"
    good = diff < 0 if lower_better else diff > 0
    return f"{'better' if good else 'worse'} than the reference (diff {diff:+.4f}, 2 x ref std {2 * ref.std:.4f})"


def summarise(results: Sequence[Result]) -> list[dict[str, object]]:
    """One row per (model, metric): each side's spread and, where both sides ran, the verdict."""
    rows: list[dict[str, object]] = []
    keys = list(dict.fromkeys((r.model, r.metric) for r in results))
    for model, metric in keys:
        mine = [r for r in results if r.model == model and r.metric == metric]
        sides = {side: Spread.of([r.value for r in mine if r.side == side]) for side in ("reference", "crossbench")
                 if any(r.side == side for r in mine)}
        row: dict[str, object] = {"model": model, "metric": metric, **sides}
        if len(sides) == 2:
            row["verdict"] = verdict(sides["crossbench"], sides["reference"], lower_better=mine[0].lower_better)
        rows.append(row)
    return rows


def print_results(results: Sequence[Result]) -> None:
    """Print each model's block: per metric, the reference line, the crossbench line and the verdict."""
    current = None
    for row in summarise(results):
        if row["model"] != current:
            current = row["model"]
            print(f"\n== {current}")
        print(f"  {row['metric']}")
        for side in ("reference", "crossbench"):
            if side in row:
                spread = row[side]
                assert isinstance(spread, Spread)
                print(f"    {side:<11} {spread.text()}")
            else:
                print(f"    {side:<11} (not run: no such model on this side)")
        if "verdict" in row:
            print(f"    verdict     {row['verdict']}")
