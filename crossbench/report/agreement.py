"""Agreement between a paper protocol's verdict and full ranking's (Krichene and Rendle, KDD 2020).

Sampled metrics can reorder models. When the run records hold one table under a sampled paper
protocol (e.g. ``loo-999``) and one under full ranking (e.g. ``loo`` or ``cold-start``) for the
same dataset and target, :func:`agreements` lines up the models the two tables share, ordered by
each table's primary metric (mean over seeds), and measures how far the two orders agree with
Kendall's tau-b (:func:`kendall_tau_b`, which counts ties as SciPy's ``kendalltau`` does), and
lists every pair of models whose order flips (:func:`flipped_pairs`). :func:`render_agreement`
writes it as Markdown; the leaderboard files carry it where such a pair of tables exists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crossbench.report.leaderboard import group_records, metric_columns, primary_column, rank_models, records_by_model


def _sign(v: float) -> int:
    return (v > 0) - (v < 0)


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two paired score lists: ``(C - D) / sqrt((P - Tx) (P - Ty))``.

    ``C`` and ``D`` count concordant and discordant pairs, ``P`` all pairs, ``Tx`` (``Ty``) the
    pairs tied in ``x`` (``y``). ``NaN`` when either list is constant or has fewer than 2 values.
    """
    if len(x) != len(y):
        raise ValueError(f"kendall_tau_b needs paired lists, got {len(x)} and {len(y)} values")
    n = len(x)
    concordant = discordant = tied_x = tied_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            sx, sy = _sign(x[i] - x[j]), _sign(y[i] - y[j])
            tied_x += sx == 0
            tied_y += sy == 0
            concordant += sx * sy > 0
            discordant += sx * sy < 0
    pairs = n * (n - 1) // 2
    denominator = math.sqrt((pairs - tied_x) * (pairs - tied_y))
    return (concordant - discordant) / denominator if denominator > 0 else math.nan


def flipped_pairs(labels: Sequence[str], x: Sequence[float], y: Sequence[float]) -> list[tuple[str, str]]:
    """Pairs ``(a, b)`` that ``x`` puts strictly ahead (``a`` over ``b``) and ``y`` strictly the other way."""
    out = []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            sx, sy = _sign(x[i] - x[j]), _sign(y[i] - y[j])
            if sx * sy < 0:
                out.append((labels[i], labels[j]) if sx > 0 else (labels[j], labels[i]))
    return out


@dataclass(frozen=True)
class Agreement:
    """Two tables of one dataset and target: a sampled paper protocol's and a full-ranking one's."""

    dataset: str
    target: str
    paper: str
    full: str
    paper_metric: str
    full_metric: str
    #: the shared models in the paper protocol's order: (label, paper value, full-ranking value)
    rows: tuple[tuple[str, float, float], ...]
    tau: float
    flips: tuple[tuple[str, str], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "target": self.target, "paper_protocol": self.paper, "full_protocol": self.full,
            "paper_metric": self.paper_metric, "full_metric": self.full_metric, "kendall_tau_b": self.tau,
            "models": [{"model": m, "paper": a, "full": b} for m, a, b in self.rows],
            "flips": [list(pair) for pair in self.flips],
        }


def _means(recs: Sequence[dict[str, Any]], key: str) -> dict[str, float]:
    return {m: sum(r["evaluation"]["metrics"][key] for r in rs) / len(rs) for m, rs in records_by_model(recs).items()}


def _full_metric(paper_metric: str, columns: Sequence[str], fallback: str) -> str:
    """The full-ranking column of the paper protocol's metric (``ndcg@10:sampled-uniform-999`` -> ``ndcg@10``)."""
    base = paper_metric.split(":", 1)[0]
    return base if base in columns else fallback


def agreements(records: Sequence[dict[str, Any]]) -> list[Agreement]:
    """Every (sampled paper protocol, full-ranking protocol) pair of tables on the same dataset and target
    that share at least two models."""
    sampled: list[tuple[tuple[str, str, str], str, list[dict[str, Any]]]] = []
    full: list[tuple[tuple[str, str, str], str, list[dict[str, Any]]]] = []
    for (dataset, fingerprint, protocol, target), recs in sorted(group_records(records).items()):
        mode = recs[0]["evaluation"].get("mode")
        if mode in ("sampled", "full"):
            (sampled if mode == "sampled" else full).append(((dataset, fingerprint, target), protocol, recs))
    out = []
    for where, paper, recs_p in sampled:
        for other, fullname, recs_f in full:
            if other != where:
                continue
            cols_p, cols_f = metric_columns(recs_p), metric_columns(recs_f)
            if not cols_p or not cols_f:
                continue
            metric_p = primary_column(recs_p, cols_p)
            metric_f = _full_metric(metric_p, cols_f, primary_column(recs_f, cols_f))
            means_p, means_f = _means(recs_p, metric_p), _means(recs_f, metric_f)
            shared = {m: rs for m, rs in records_by_model(recs_p).items() if m in means_f}
            if len(shared) < 2:
                continue
            order = rank_models(shared, metric_p)
            xs, ys = [means_p[m] for m in order], [means_f[m] for m in order]
            out.append(Agreement(
                dataset=where[0], target=where[2], paper=paper, full=fullname, paper_metric=metric_p, full_metric=metric_f,
                rows=tuple(zip(order, xs, ys)), tau=kendall_tau_b(xs, ys), flips=tuple(flipped_pairs(order, xs, ys)),
            ))
    return out


def _rank_of(values: Sequence[float]) -> list[int]:
    """1-based competition ranks, highest value first (ties share a rank)."""
    return [1 + sum(w > v for w in values) for v in values]


def render_agreement(items: Sequence[Agreement]) -> str:
    """Markdown: per pair of tables, the two orders side by side, Kendall's tau-b and the flipped pairs."""
    out: list[str] = []
    for a in items:
        ranks_p, ranks_f = _rank_of([r[1] for r in a.rows]), _rank_of([r[2] for r in a.rows])
        short_p, full = a.paper.split(",", 1)[0], f"{a.full} (full ranking)"
        rows = [f"| {m} | {rp} | {vp:.4f} | {rf} | {vf:.4f} |" for (m, vp, vf), rp, rf in zip(a.rows, ranks_p, ranks_f)]
        tau = "undefined (one of the orders is all ties)" if math.isnan(a.tau) else f"{a.tau:.3f}"
        flips = "; ".join(f"{x} over {y} under {short_p}, {y} over {x} under {a.full}" for x, y in a.flips)
        out += [
            f"## Agreement: {a.dataset} → {a.target}: {a.paper} against {full}",
            "",
            f"The {len(a.rows)} models of both tables, in the order of {a.paper_metric} under {a.paper} (mean over seeds), "
            f"beside their rank and {a.full_metric} under {full}. Sampled metrics can reorder models (Krichene and Rendle, KDD 2020).",
            "",
            f"| model | rank ({short_p}) | {a.paper_metric} | rank ({a.full}) | {a.full_metric} |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Kendall's tau-b between the two orders: {tau} over {len(a.rows)} models. "
            + (f"Pairs whose order flips ({len(a.flips)}): {flips}." if a.flips else "No pair of models flips."),
            "",
        ]
    return "\n".join(out)
