"""Markdown leaderboards and pairwise significance tables built from run records alone.

Significance is tested over test users, never over (user, seed) pairs: in the cold-start
protocol every seed splits the same users anew, so one user can be a test user in several
seeds. Each user's per-user values are first averaged over the seeds whose test set holds
them (:func:`crossbench.evaluate.stats.user_means_over_seeds`), then two models are compared
by a paired t-test over users, Holm-adjusted over the table's comparisons.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from crossbench.evaluate.peruser import PerUserFiles
from crossbench.evaluate.stats import holm, paired_ttest, paired_users, user_means_over_seeds
from crossbench.report.notes import (
    NEW_ITEMS_COLUMN,
    PEAK_COLUMN,
    SOURCES_COLUMN,
    declares_behaviour,
    held_out_items,
    model_notes,
    new_items_cell,
    new_items_text,
    peak_cell,
    peak_text,
    sources_cell,
    tuned_cell,
    tuning_text,
)
from crossbench.report.sections import group_records, sample_fingerprints

TEST_TEXT = (
    "two-sided paired t-test over test users, each user's values averaged over the seeds whose test set "
    "holds them (each user counted once)"
)


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def md_line(text: object) -> str:
    """``text`` on one Markdown line: line breaks and other control characters become one space each run.

    Labels are refused at input, but records made elsewhere (or edited) may hold anything.
    """
    return _CONTROL.sub(" ", str(text))


def md_cell(text: object) -> str:
    """``text`` as one Markdown table cell: on one line (:func:`md_line`) with ``|`` escaped."""
    return md_line(text).replace("|", "\\|")


def md_table(rows: Sequence[Sequence[object]], header: Sequence[object]) -> str:
    """A GitHub Markdown table whose cells cannot break it (:func:`md_cell`)."""
    return tabulate([[md_cell(c) for c in row] for row in rows], headers=[md_cell(h) for h in header], tablefmt="github",
                    disable_numparse=True)


def _fmt(values: Sequence[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.4f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.4f} ± {std:.4f}"


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _fmt_p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def records_by_model(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_model[rec["model"]["label"]].append(rec)
    return dict(by_model)


def metric_columns(records: Sequence[dict[str, Any]]) -> list[str]:
    """Metric keys every record has, in the records' column order."""
    columns: list[str] = []
    for rec in records:
        for key in rec["evaluation"].get("columns") or sorted(rec["evaluation"]["metrics"]):
            if key not in columns and all(key in r["evaluation"]["metrics"] for r in records):
                columns.append(key)
    return columns


#: Records written before the primary metric was recorded are ranked as tables ranked them then:
#: on the first column of this metric, else on the first column.
LEGACY_PRIMARY = "ndcg@"


def primary_column(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """The metric rows are ranked and tested on: the one the records name (``evaluation.primary``,
    the experiment's primary metric) when they agree on one of ``columns``; for records from before
    that field, the first :data:`LEGACY_PRIMARY` column, else the first column."""
    named = {r["evaluation"].get("primary") for r in records}
    if len(named) == 1 and (primary := named.pop()) in columns:
        return str(primary)
    return next((c for c in columns if c.startswith(LEGACY_PRIMARY)), columns[0])


def rank_models(by_model: dict[str, list[dict[str, Any]]], key: str) -> list[str]:
    """Model labels by their mean of ``key`` over seeds, best first (lowest first for an error such as MAE)."""
    means = {m: _mean([r["evaluation"]["metrics"][key] for r in rs]) for m, rs in by_model.items()}
    sign = 1.0 if any(key in r["evaluation"].get("lower_is_better", []) for rs in by_model.values() for r in rs) else -1.0
    return sorted(by_model, key=lambda m: sign * means[m])


# --------------------------------------------------------------------------- per-user values


def _per_user(rec: dict[str, Any], key: str, record_dir: Path | None, files: PerUserFiles | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The run's ``(users, values)`` of ``key`` from its per-user file; ``None`` when it has none."""
    info = rec["evaluation"].get("per_user")
    base = record_dir or (Path(rec["_path"]).parent if "_path" in rec else None)
    if not info or base is None or not (base / info["path"]).exists():
        return None
    result = (files or PerUserFiles()).read(base / info["path"], sha256=info.get("sha256"))
    if key not in result.per_user:
        return None
    return result.users, result.per_user[key]


def matched_user_means(
    runs_a: Sequence[dict[str, Any]],
    runs_b: Sequence[dict[str, Any]],
    key: str,
    *,
    record_dir: Path | None = None,
    files: PerUserFiles | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(users, means of A, means of B)`` of ``key``, one entry per test user, users sorted.

    Only seeds where both models have a run on the same split (same split fingerprint) are
    used; within each, users are lined up by id and a user undefined (``NaN``) in either run
    is dropped for that seed. Each user's values are then averaged, for A and for B, over
    the same seeds: those whose test set holds the user. ``None`` when a per-user file is
    missing; empty arrays when the two models share no split.
    """
    b_by_seed = {r["seed"]: r for r in runs_b}
    seeds_a: list[tuple[np.ndarray, np.ndarray]] = []
    seeds_b: list[tuple[np.ndarray, np.ndarray]] = []
    for ra in runs_a:
        rb = b_by_seed.get(ra["seed"])
        if rb is None or rb["protocol"]["split_fingerprint"] != ra["protocol"]["split_fingerprint"]:
            continue
        a, b = _per_user(ra, key, record_dir, files), _per_user(rb, key, record_dir, files)
        if a is None or b is None:
            return None
        users, x, y = paired_users(a[0], a[1], b[0], b[1])
        seeds_a.append((users, x))
        seeds_b.append((users, y))
    if not seeds_a:
        empty = np.empty(0)
        return empty.astype(np.int64), empty, empty
    users, mean_a = user_means_over_seeds(seeds_a)
    _, mean_b = user_means_over_seeds(seeds_b)
    return users, mean_a, mean_b


def significance(
    by_model: dict[str, list[dict[str, Any]]],
    best: str,
    key: str,
    record_dir: Path | None,
    files: PerUserFiles | None = None,
) -> dict[str, float] | None:
    """Holm-adjusted p-values of each model against ``best`` on ``key`` (see :func:`matched_user_means`).

    A paired t-test over test users of the per-user means over seeds, Holm-adjusted over the
    models compared with the best. ``None`` when a per-user file is missing or a model shares
    fewer than 2 test users with the best.
    """
    raw: dict[str, float] = {}
    for label, runs in by_model.items():
        if label == best:
            continue
        matched = matched_user_means(by_model[best], runs, key, record_dir=record_dir, files=files)
        if matched is None or matched[0].size < 2:
            return None
        raw[label] = paired_ttest(matched[1], matched[2]).pvalue
    adjusted = holm(list(raw.values()))
    return dict(zip(raw, (float(p) for p in adjusted)))


# --------------------------------------------------------------------------- tables


def leaderboard_table(
    records: Sequence[dict[str, Any]], *, record_dir: Path | None = None, files: PerUserFiles | None = None
) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per model label, metrics as mean ± sample std over seeds, best in bold.

    When the records carry the models' declarations (records written before the runner
    recorded them do not), a ``sources`` column after the model says whether it reads the
    source domains (:func:`~crossbench.report.notes.sources_cell`). After the fit time and the
    peak memory (:func:`~crossbench.report.notes.peak_cell`) comes how the row was tuned (:func:`tuned_cell`), and last, when every run has its
    per-user file, the Holm-adjusted p-value of each model against the best one
    on the primary metric (:func:`primary_column`) by
    :func:`significance`.
    """
    by_model = records_by_model(records)
    columns = metric_columns(records)
    means = {m: {c: _mean([r["evaluation"]["metrics"][c] for r in rs]) for c in columns} for m, rs in by_model.items()}
    lower = {c for r in records for c in r["evaluation"].get("lower_is_better", [])}
    best = {c: (min if c in lower else max)(means[m][c] for m in by_model) for c in columns}
    sources = declares_behaviour(records)
    held = held_out_items(records) is not None  # new items: whether each model can score them
    header = ["model", *([SOURCES_COLUMN] if sources else []), *([NEW_ITEMS_COLUMN] if held else []), "seeds", *columns,
              "fit s", PEAK_COLUMN, "tuned"]
    order = list(by_model)
    pvalues = None
    if columns:
        primary = primary_column(records, columns)
        order = rank_models(by_model, primary)
        if len(order) > 1:
            pvalues = significance(by_model, order[0], primary, record_dir, files)
        if pvalues is not None:
            header.append(f"p vs best ({primary}, Holm)")
    rows = []
    for m in order:
        rs = by_model[m]
        row = [m, *([sources_cell(rs)] if sources else []), *([new_items_cell(rs)] if held else []), str(len({r["seed"] for r in rs}))]
        for c in columns:
            cell = _fmt([r["evaluation"]["metrics"][c] for r in rs])
            row.append(f"**{cell}**" if math.isclose(means[m][c], best[c], rel_tol=0, abs_tol=1e-12) else cell)
        row.append(f"{_mean([r['timings']['fit_s'] for r in rs]):.1f}")
        row.append(peak_cell(rs))
        row.append(tuned_cell(rs))
        if pvalues is not None:
            row.append("—" if m == order[0] else _fmt_p(pvalues[m]))
        rows.append(row)
    return header, rows


@dataclass(frozen=True)
class PairwiseTable:
    """The square table of one section: its metric, header, rows and the number of pairs tested."""

    primary: str
    header: list[str]
    rows: list[list[str]]
    n_pairs: int


def pairwise_table(
    records: Sequence[dict[str, Any]], *, record_dir: Path | None = None, files: PerUserFiles | None = None
) -> PairwiseTable | None:
    """The square table of every pair of models; ``None`` without a common metric or every per-user file.

    Row model against column model: the mean over test users of (row − column) of the
    per-user means over seeds (:func:`matched_user_means`), and the p-value of a paired
    t-test over those users, Holm-adjusted over all pairs of the table. Models are in
    leaderboard order; ``n/a`` where two models share fewer than 2 test users.
    """
    by_model = records_by_model(records)
    columns = metric_columns(records)
    if not columns:
        return None
    primary = primary_column(records, columns)
    order = rank_models(by_model, primary)
    diffs: dict[tuple[str, str], float] = {}
    raw: dict[tuple[str, str], float] = {}
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            matched = matched_user_means(by_model[a], by_model[b], primary, record_dir=record_dir, files=files)
            if matched is None:
                return None
            users, mean_a, mean_b = matched
            if users.size >= 2:
                diffs[(a, b)] = float(np.mean(mean_a - mean_b))
                raw[(a, b)] = paired_ttest(mean_a, mean_b).pvalue
    adjusted = dict(zip(raw, (float(p) for p in holm(list(raw.values())))))
    rows = []
    for a in order:
        row = [a]
        for b in order:
            if a == b:
                row.append("—")
                continue
            pair, sign = ((a, b), 1.0) if (a, b) in diffs else ((b, a), -1.0)
            row.append(f"{sign * diffs[pair]:+.4f} (p {_fmt_p(adjusted[pair])})" if pair in diffs else "n/a")
        rows.append(row)
    return PairwiseTable(primary=primary, header=["model", *order], rows=rows, n_pairs=len(raw))


def _intro(dataset: str, fingerprint: str, protocol: str, target: str, recs: Sequence[dict[str, Any]]) -> list[str]:
    """A section's heading and the sentence saying what its numbers were measured on."""
    params = recs[0]["protocol"].get("params", {})
    split_fps = sorted({r["protocol"]["split_fingerprint"][:12] for r in recs})
    samples = sample_fingerprints(recs)  # one per split for a sampled table
    detail = ", ".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "seed")
    return [
        md_line(f"## {dataset} → {target} ({protocol})"),
        "",
        f"Dataset fingerprint `{fingerprint[:12]}`; protocol {protocol}"
        + (f" ({detail})" if detail else "")
        + f"; test users per split: {recs[0]['protocol']['n_test_users']}; split fingerprints "
        + ", ".join(f"`{s}`" for s in split_fps)
        + ("; samples of negatives " + ", ".join(f"`{s}`" for s in samples) if samples else "")
        + (
            ". SAMPLED evaluation: each relevant item is ranked among sampled negatives only; not comparable with full-ranking tables"
            if "sampled" in protocol
            else ". RATING task: MAE and RMSE of the predicted ratings over all held-out ratings of the test users, lower is better"
            if protocol.endswith(", rating")
            else ". Metrics on the test users, ranked over the new items held out for the test only (see the note below)"
            if any(r["protocol"].get("candidates_only") for r in recs)
            else ". Metrics on the test users, full ranking over the target catalogue"
        ),
    ]


def render_markdown(records: Sequence[dict[str, Any]], *, command: str | None = None, record_dir: Path | None = None,
                    files: PerUserFiles | None = None) -> str:
    """The full Markdown leaderboard: one section per dataset / protocol / target."""
    files = files or PerUserFiles()
    out: list[str] = []
    for (dataset, fingerprint, protocol, target), recs in sorted(group_records(records).items()):
        intro = _intro(dataset, fingerprint, protocol, target, recs)
        header, rows = leaderboard_table(recs, record_dir=record_dir, files=files)
        text = intro[-1] + ", mean ± sample std over seeds; best in bold."
        if header[-1].startswith("p vs best"):
            text += f" p: {TEST_TEXT}, Holm-adjusted over the {len(rows) - 1} models compared with the best."
        out += [*intro[:-1], text, "", md_table(rows, header), ""]
        if SOURCES_COLUMN in header:
            out += model_notes(records_by_model(recs), [row[0] for row in rows])
        out += new_items_text(recs)
        out += [tuning_text(recs), "", peak_text(recs), ""]
    if command:
        out += [f"Reproduce: `{command}`", ""]
    return "\n".join(out)


def render_pairwise(records: Sequence[dict[str, Any]], *, record_dir: Path | None = None, files: PerUserFiles | None = None) -> str:
    """Markdown of every pair of models per dataset / protocol / target (see :func:`pairwise_table`)."""
    files = files or PerUserFiles()
    out: list[str] = []
    for (dataset, fingerprint, protocol, target), recs in sorted(group_records(records).items()):
        intro = _intro(dataset, fingerprint, protocol, target, recs)
        out += [*intro[:-1], intro[-1] + ".", ""]
        n_models = len(records_by_model(recs))
        table = pairwise_table(recs, record_dir=record_dir, files=files) if n_models > 1 else None
        if n_models < 2:
            out += ["One model only: there is no pair to compare.", ""]
        elif table is None:
            out += ["No pairwise table: it needs every run's per-user file and a metric common to every run.", ""]
        else:
            out += [
                f"Each cell: row model − column model on {table.primary}, the mean over test users of the difference of "
                "each user's values averaged over the seeds whose test set holds them (each user counted once), "
                f"and its p: two-sided paired t-test over those users, Holm-adjusted over all {table.n_pairs} pairs of this table.",
                "",
                md_table(table.rows, table.header),
                "",
            ]
    return "\n".join(out)
