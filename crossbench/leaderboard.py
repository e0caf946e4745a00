"""Markdown leaderboards built from run records alone."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate


def _fmt(values: Sequence[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.4f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.4f} ± {std:.4f}"


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def group_records(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str, str], list[dict[str, Any]]]:
    """Records grouped by (dataset, dataset fingerprint, protocol, target): one table each."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        key = (
            rec["dataset"]["name"],
            rec["dataset"]["fingerprint"],
            rec["protocol"]["name"] + (" (sampled)" if rec["evaluation"].get("mode") == "sampled" else ""),
            rec["protocol"]["target"],
        )
        groups[key].append(rec)
    return dict(groups)


def leaderboard_table(records: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per model label, metrics as mean ± sample std over seeds, best in bold."""
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_model[rec["model"]["label"]].append(rec)
    columns: list[str] = []
    for rec in records:
        for key in rec["evaluation"].get("columns") or sorted(rec["evaluation"]["metrics"]):
            if key not in columns and all(key in r["evaluation"]["metrics"] for r in records):
                columns.append(key)
    means = {m: {c: _mean([r["evaluation"]["metrics"][c] for r in rs]) for c in columns} for m, rs in by_model.items()}
    best = {c: max(means[m][c] for m in by_model) for c in columns}
    header = ["model", "seeds", *columns, "fit s"]
    rows = []
    order = list(by_model)
    if columns:
        primary = next((c for c in columns if c.startswith("ndcg@")), columns[0])
        order = sorted(by_model, key=lambda m: -means[m][primary])
    for m in order:
        rs = by_model[m]
        row = [m, str(len({r["seed"] for r in rs}))]
        for c in columns:
            cell = _fmt([r["evaluation"]["metrics"][c] for r in rs])
            row.append(f"**{cell}**" if math.isclose(means[m][c], best[c], rel_tol=0, abs_tol=1e-12) else cell)
        row.append(f"{_mean([r['timings']['fit_s'] for r in rs]):.1f}")
        rows.append(row)
    return header, rows


def render_markdown(records: Sequence[dict[str, Any]], *, command: str | None = None) -> str:
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
            + ". Metrics on the test users, full ranking over the target catalogue, mean ± sample std over seeds; best in bold."
        )
        out.append("")
        header, rows = leaderboard_table(recs)
        out.append(tabulate(rows, headers=header, tablefmt="github", disable_numparse=True))
        out.append("")
    if command:
        out.append(f"Reproduce: `{command}`")
        out.append("")
    return "\n".join(out)
