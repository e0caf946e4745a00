"""Markdown leaderboards built from run records alone."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from crossbench.evaluate.peruser import load_per_user
from crossbench.evaluate.stats import holm, paired_ttest, paired_values


def _fmt(values: Sequence[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.4f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.4f} ± {std:.4f}"


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _sampled_label(rec: dict[str, Any]) -> str:
    ev = rec["evaluation"]
    if ev.get("mode") != "sampled":
        return ""
    s = ev.get("sampling", {})
    return f", sampled: {s.get('n_negatives')} {s.get('strategy')} negatives, sample {str(s.get('sha256', ''))[:12]}"


def group_records(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str, str], list[dict[str, Any]]]:
    """Records grouped by (dataset, dataset fingerprint, protocol, target): one table each."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        key = (
            rec["dataset"]["name"],
            rec["dataset"]["fingerprint"],
            rec["protocol"]["name"] + _sampled_label(rec),
            rec["protocol"]["target"],
        )
        groups[key].append(rec)
    return dict(groups)


def _per_user(rec: dict[str, Any], key: str, record_dir: Path | None) -> tuple[np.ndarray, np.ndarray] | None:
    info = rec["evaluation"].get("per_user")
    base = record_dir or (Path(rec["_path"]).parent if "_path" in rec else None)
    if not info or base is None or not (base / info["path"]).exists():
        return None
    result = load_per_user(base / info["path"], sha256=info.get("sha256"))
    if key not in result.per_user:
        return None
    return result.users, result.per_user[key]


def significance(
    by_model: dict[str, list[dict[str, Any]]], best: str, key: str, record_dir: Path | None
) -> dict[str, float] | None:
    """Holm-adjusted p-values of paired t-tests of each model against ``best`` on ``key``.

    Per-user values are paired within each seed's split and pooled over seeds. ``None`` when
    a per-user file is missing.
    """
    best_runs = {r["seed"]: r for r in by_model[best]}
    raw: dict[str, float] = {}
    for label, runs in by_model.items():
        if label == best:
            continue
        xs, ys = [], []
        for r in runs:
            other = best_runs.get(r["seed"])
            if other is None or other["protocol"]["split_fingerprint"] != r["protocol"]["split_fingerprint"]:
                continue
            a, b = _per_user(other, key, record_dir), _per_user(r, key, record_dir)
            if a is None or b is None:
                return None
            x, y = paired_values(a[0], a[1], b[0], b[1])
            xs.append(x)
            ys.append(y)
        if not xs or sum(len(x) for x in xs) < 2:
            return None
        raw[label] = paired_ttest(np.concatenate(xs), np.concatenate(ys)).pvalue
    adjusted = holm(list(raw.values()))
    return dict(zip(raw, (float(p) for p in adjusted)))


def _fmt_p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def leaderboard_table(records: Sequence[dict[str, Any]], *, record_dir: Path | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per model label, metrics as mean ± sample std over seeds, best in bold.

    The last column is the Holm-adjusted p-value of a paired t-test (over test users, pooled
    over seeds) of each model against the best one on the primary metric (NDCG at the
    smallest K, else the first column).
    """
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_model[rec["model"]["label"]].append(rec)
    columns: list[str] = []
    for rec in records:
        for key in rec["evaluation"].get("columns") or sorted(rec["evaluation"]["metrics"]):
            if key not in columns and all(key in r["evaluation"]["metrics"] for r in records):
                columns.append(key)
    means = {m: {c: _mean([r["evaluation"]["metrics"][c] for r in rs]) for c in columns} for m, rs in by_model.items()}
    lower = {c for r in records for c in r["evaluation"].get("lower_is_better", [])}
    best = {c: (min if c in lower else max)(means[m][c] for m in by_model) for c in columns}
    header = ["model", "seeds", *columns, "fit s"]
    rows = []
    order = list(by_model)
    pvalues = None
    if columns:
        primary = next((c for c in columns if c.startswith("ndcg@")), columns[0])
        order = sorted(by_model, key=lambda m: -means[m][primary])
        if len(order) > 1:
            pvalues = significance(by_model, order[0], primary, record_dir)
        if pvalues is not None:
            header.append(f"p vs best ({primary}, Holm)")
    for m in order:
        rs = by_model[m]
        row = [m, str(len({r["seed"] for r in rs}))]
        for c in columns:
            cell = _fmt([r["evaluation"]["metrics"][c] for r in rs])
            row.append(f"**{cell}**" if math.isclose(means[m][c], best[c], rel_tol=0, abs_tol=1e-12) else cell)
        row.append(f"{_mean([r['timings']['fit_s'] for r in rs]):.1f}")
        if pvalues is not None:
            row.append("—" if m == order[0] else _fmt_p(pvalues[m]))
        rows.append(row)
    return header, rows


def render_markdown(records: Sequence[dict[str, Any]], *, command: str | None = None, record_dir: Path | None = None) -> str:
    """The full Markdown leaderboard: one section per dataset / protocol / target."""
    out: list[str] = []
    for (dataset, fingerprint, protocol, target), recs in sorted(group_records(records).items()):
        params = recs[0]["protocol"].get("params", {})
        split_fps = sorted({r["protocol"]["split_fingerprint"][:12] for r in recs})
        out.append(f"## {dataset} → {target} ({protocol})")
        out.append("")
        detail = ", ".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "seed")
        out.append(
            f"Dataset fingerprint `{fingerprint[:12]}`; protocol {protocol}"
            + (f" ({detail})" if detail else "")
            + f"; test users per split: {recs[0]['protocol']['n_test_users']}; split fingerprints "
            + ", ".join(f"`{s}`" for s in split_fps)
            + (
                ". SAMPLED evaluation: each relevant item is ranked among sampled negatives only; not comparable with full-ranking tables"
                if "sampled" in protocol
                else ". Metrics on the test users, full ranking over the target catalogue"
            )
            + ", mean ± sample std over seeds; best in bold."
        )
        out.append("")
        header, rows = leaderboard_table(recs, record_dir=record_dir)
        out.append(tabulate(rows, headers=header, tablefmt="github", disable_numparse=True))
        out.append("")
    if command:
        out.append(f"Reproduce: `{command}`")
        out.append("")
    return "\n".join(out)
