"""Where each model wins and loses: the recorded breakdowns of a table's runs, as Markdown, data and plots.

Every run written since breakdowns exist carries ``evaluation.breakdowns``
(:mod:`crossbench.evaluate.breakdowns`): its test users' metrics by source-history length and its
metrics judged against head, torso and tail items. Per table section this module averages each
group's values over the seeds (a group empty in a seed is left out of that mean), and renders
one Markdown table per breakdown on the section's primary metric, the same numbers in the JSON
(``breakdowns`` of each model) and one bar plot per breakdown. Records written before have none:
their section says so in one line, and their models' cells read ``not recorded``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from crossbench.files import safe_name
from crossbench.report.leaderboard import group_records, md_line, md_table, metric_columns, primary_column, rank_models, records_by_model

#: the breakdowns shown, in this order: (record key, title, what a group is)
KINDS = (
    ("source_history", "by source-history length",
     "test users binned by their training interactions in the domains other than the target"),
    ("item_popularity", "by item popularity",
     "each user's ranking judged against their relevant items of one tier only: head = the most popular items holding the "
     "first 20% of training interactions, tail = the least popular holding the last 20% (and items never taken in "
     "training, new items among them), torso = the rest; the mean is over the users with a relevant item in the tier"),
)
NOT_RECORDED = "not recorded"


def _mean(values: Sequence[float | None]) -> float | None:
    clean = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(clean) / len(clean) if clean else None


def breakdown_data(runs: Sequence[dict[str, Any]], columns: Sequence[str]) -> dict[str, Any] | None:
    """Per breakdown, per group: the mean over the runs of each column and of the counts; ``None`` when no run has one."""
    recorded = [r["evaluation"]["breakdowns"] for r in runs if r["evaluation"].get("breakdowns")]
    if not recorded:
        return None
    out: dict[str, Any] = {}
    for kind, _, _ in KINDS:
        parts = [b[kind]["groups"] for b in recorded if kind in b]
        if not parts:
            continue
        first = next(b[kind] for b in recorded if kind in b)
        names = [str(g) for g in first.get("bins") or first.get("tiers") or sorted(first["groups"])]  # JSON keeps no key order
        out[kind] = {
            g: {key: _mean([p[g].get(key) for p in parts if g in p]) for key in ("n_users", "n_items", "n_relevant", *columns)
                if any(key in p.get(g, {}) for p in parts)}
            for g in names
        }
    return out


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _count(value: float | None, what: str) -> str:
    return "" if value is None else f"{value:.0f} {what}" if float(value).is_integer() else f"{value:.1f} {what}"


def _section_table(kind: str, data: dict[str, dict[str, Any] | None], order: Sequence[str], primary: str) -> list[str] | None:
    """One breakdown's Markdown table: a row per model, a column per group, the primary metric in each cell."""
    found: dict[str, dict[str, dict[str, float | None]]] = {m: d[kind] for m in order if (d := data[m]) and kind in d}
    if not found:
        return None
    first = next(iter(found.values()))
    groups = list(first)
    header = ["model"]
    for g in groups:
        counts = ", ".join(c for c in (_count(first[g].get("n_items"), "items"), _count(first[g].get("n_users"), "users")) if c)
        header.append(f"{g} ({counts})")
    best: dict[str, float] = {}
    for g in groups:
        values = [x for table in found.values() if (x := table[g].get(primary)) is not None]
        if values:
            best[g] = max(values)
    rows = []
    for m in order:
        if m not in found:
            rows.append([m, *([NOT_RECORDED] * len(groups))])
            continue
        cells = []
        for g in groups:
            value = found[m][g].get(primary)
            bold = value is not None and g in best and math.isclose(value, best[g], rel_tol=0, abs_tol=1e-12)
            cells.append(f"**{_fmt(value)}**" if bold else _fmt(value))
        rows.append([m, *cells])
    return [md_table(rows, header), ""]


def render_breakdowns(records: Sequence[dict[str, Any]]) -> str:
    """The ``Where each model wins and loses`` part of ``leaderboard.md``: per table section, one table per breakdown."""
    sections = sorted(group_records(records).items())
    if not any(r["evaluation"].get("mode") != "rating" for r in records):
        return ""
    out = ["## Where each model wins and loses", ""]
    for (dataset, _fp, protocol, target), recs in sections:
        columns = metric_columns(recs)
        if not columns or recs[0]["evaluation"].get("mode") == "rating":
            continue
        primary = primary_column(recs, columns)
        by_model = records_by_model(recs)
        order = rank_models(by_model, primary)
        data = {m: breakdown_data(by_model[m], columns) for m in order}
        out += [md_line(f"### {dataset} → {target} ({protocol}): {primary} by group"), ""]
        if all(v is None for v in data.values()):
            out += ["No breakdown: these runs were recorded before breakdowns were; rerun them to add it.", ""]
            continue
        for kind, title, meaning in KINDS:
            table = _section_table(kind, data, order, primary)
            if table is None:
                out += [f"{title.capitalize()}: not recorded for these runs.", ""]
                continue
            out += [f"{title.capitalize()}: {meaning}. Each cell: the group's {primary}, mean over seeds (best in bold); "
                    "the header gives the group's size, mean over seeds.", "", *table]
        if any(v is None for v in data.values()):
            out += [f"`{NOT_RECORDED}`: runs recorded before breakdowns were.", ""]
    return "\n".join(out)


def breakdown_plots(section: dict[str, Any], prefix: str, png: Callable[[Callable[[Any], None], Any], Any]) -> dict[str, Any]:
    """One bar plot per breakdown of a table section (:func:`crossbench.report.exports.table_data`): the
    primary metric of each model per group. ``png(draw, data)`` renders a figure."""
    primary = section["primary"]
    out: dict[str, Any] = {}
    for kind, title, _ in KINDS:
        models = [m for m in section["models"] if (m.get("breakdowns") or {}).get(kind)]
        if not primary or not models:
            continue
        groups = list(models[0]["breakdowns"][kind])
        bars = {m["model"]: [m["breakdowns"][kind][g].get(primary) for g in groups] for m in models}

        def draw(fig: Any, bars: dict[str, list[float | None]] = bars, groups: list[str] = groups, title: str = title) -> None:
            ax = fig.add_subplot(1, 1, 1)
            width = 0.8 / max(len(bars), 1)
            for i, (label, ys) in enumerate(bars.items()):
                ax.bar([j + i * width for j in range(len(groups))], [0.0 if y is None else y for y in ys], width, label=label,
                       color=f"C{i % 10}", hatch="" if i < 10 else "//")
            ax.set_xticks([j + 0.4 - width / 2 for j in range(len(groups))], groups, fontsize=8)
            ax.set_ylabel(f"{primary} (mean over seeds)")
            ax.set_title(f"{section['dataset']}, {section['protocol']}, target {section['target']}: {title}", fontsize=9)
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))

        out[f"{prefix}-{safe_name(kind.replace('_', '-'))}.png"] = png(draw, {"kind": kind, "groups": groups, "bars": bars})
    return out
