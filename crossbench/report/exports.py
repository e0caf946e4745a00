"""Every published form of a leaderboard: Markdown, CSV, JSON and PNG plots, built from run records.

:func:`artefacts` returns each file a table folder holds, as bytes, keyed by its path relative
to the folder: ``leaderboard.md``, ``pairwise.md``, ``leaderboard.csv``, ``leaderboard.json``,
and per section (dataset / protocol / target) ``plots/SECTION-METRIC-at-k.png`` (each model's
mean metric over the cut-offs) and ``plots/SECTION-user-groups.png`` (the primary metric by
user group: cold or warm, source overlap, history length), and ``plots/SECTION-source-history.png``
and ``plots/SECTION-item-popularity.png`` for runs that record breakdowns (see
:mod:`crossbench.report.breakdowns`, which also adds its tables to ``leaderboard.md``).

PNG bytes depend on the matplotlib build, so a plot is not compared byte for byte: it carries
the sha256 of the numbers it draws in a PNG text chunk, and :func:`stale` compares that.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import struct
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossbench.errors import CrossbenchError
from crossbench.evaluate.peruser import PerUserFiles
from crossbench.files import safe_name
from crossbench.report.agreement import agreements, render_agreement
from crossbench.report.breakdowns import breakdown_data, breakdown_plots, render_breakdowns
from crossbench.report.leaderboard import group_records, metric_columns, primary_column, rank_models, records_by_model, render_markdown, render_pairwise

#: the PNG text key that holds the sha256 of a plot's data
PLOT_KEY = "crossbench-data-sha256"
#: the largest table, CSV, JSON or plot file compared by :func:`stale`
MAX_ARTEFACT_BYTES = 64 << 20
#: user groups drawn, in this order, when any run has them
GROUP_ORDER = ("cold", "warm", "overlap", "no-overlap", "history 0")


@dataclass(frozen=True)
class Artefact:
    """One output file: its bytes, and for a plot the hash of the data it draws."""

    content: bytes
    data_sha256: str | None = None


def _stats(values: Sequence[float]) -> tuple[float, float | None]:
    clean = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return math.nan, None
    mean = sum(clean) / len(clean)
    if len(clean) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in clean) / (len(clean) - 1))


def _peak(runs: Sequence[dict[str, Any]]) -> float | None:
    """The largest peak resident memory (MiB) of the runs; ``None`` when none records one."""
    peaks = [float(r["timings"]["peak_rss_mb"]) for r in runs if r.get("timings", {}).get("peak_rss_mb") is not None]
    return max(peaks) if peaks else None


def table_data(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The leaderboard as plain data: one entry per section, each model's per-seed values, mean and std."""
    sections = []
    for (dataset, fingerprint, protocol, target), recs in sorted(group_records(records).items()):
        by_model = records_by_model(recs)
        columns = metric_columns(recs)
        order = rank_models(by_model, primary_column(recs, columns)) if columns else sorted(by_model)
        models = []
        for label in order:
            rs = sorted(by_model[label], key=lambda r: r["seed"])
            metrics = {}
            for c in columns:
                values = [r["evaluation"]["metrics"][c] for r in rs]
                mean, std = _stats(values)
                metrics[c] = {"mean": mean, "std": std, "per_seed": values}
            models.append({"model": label, "name": rs[0]["model"]["name"], "seeds": [r["seed"] for r in rs],
                           "fit_s": _stats([r["timings"]["fit_s"] for r in rs])[0], "peak_rss_mb": _peak(rs), "metrics": metrics,
                           "user_groups": _groups(rs, columns), "breakdowns": breakdown_data(rs, columns)})
        sections.append({"dataset": dataset, "dataset_fingerprint": fingerprint, "protocol": protocol, "target": target,
                         "columns": columns, "primary": primary_column(recs, columns) if columns else None, "models": models})
    return sections


def _group_rank(name: str) -> tuple[int, float, str]:
    """Named groups in :data:`GROUP_ORDER`, then history buckets by their lower bound."""
    if name in GROUP_ORDER:
        return GROUP_ORDER.index(name), 0.0, name
    lower = name.removeprefix("history [").split(",", 1)[0]
    return len(GROUP_ORDER), float(lower) if lower.isdigit() else math.inf, name


def _groups(runs: Sequence[dict[str, Any]], columns: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean over seeds of each user group's value of every column (groups every run has)."""
    names = set.intersection(*(set(r["evaluation"].get("user_groups") or {}) for r in runs)) if runs else set()
    out = {}
    for g in sorted(names, key=_group_rank):
        vals = {c: _stats([r["evaluation"]["user_groups"][g].get(c) for r in runs])[0] for c in columns}
        vals["n_users"] = _stats([r["evaluation"]["user_groups"][g].get("n_users", 0) for r in runs])[0]
        out[g] = vals
    return out


def _json_bytes(payload: Any) -> bytes:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return (json.dumps(clean(payload), indent=2, sort_keys=True) + "\n").encode("utf-8")


def _csv_bytes(sections: Sequence[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["dataset", "protocol", "target", "model", "seeds", "column", "mean", "std"])
    for s in sections:
        for m in s["models"]:
            for c, v in m["metrics"].items():
                writer.writerow([s["dataset"], s["protocol"], s["target"], m["model"], len(m["seeds"]), c,
                                 repr(v["mean"]), "" if v["std"] is None else repr(v["std"])])
    return buf.getvalue().encode("utf-8")


def _ks_of(columns: Sequence[str]) -> dict[str, list[tuple[int, str]]]:
    """Metric name -> [(K, column)] for the plain ``name@K`` columns."""
    out: dict[str, list[tuple[int, str]]] = {}
    for c in columns:
        name, _, k = c.partition("@")
        if k.isdigit():
            out.setdefault(name, []).append((int(k), c))
    return {name: sorted(pairs) for name, pairs in out.items()}


def _png(draw: Any, data: Any) -> Artefact:
    """Render a figure with ``draw(fig)`` and tag it with the sha256 of ``data``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    digest = hashlib.sha256(_json_bytes(data)).hexdigest()
    fig = Figure(figsize=(8.0, 4.0), dpi=100)
    FigureCanvasAgg(fig)  # Agg whatever the session's backend; no pyplot state is touched
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # glyphs missing from the font, labels too long for tight margins
        draw(fig)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None, PLOT_KEY: digest})
    return Artefact(buf.getvalue(), digest)


def _plots(section: dict[str, Any], folder: str) -> dict[str, Artefact]:
    prefix = f"{folder}/" + safe_name(f"{section['dataset']}-{section['protocol']}-{section['target']}")
    out = {}
    for name, pairs in _ks_of(section["columns"]).items():
        curves = {m["model"]: [m["metrics"][c]["mean"] for _, c in pairs] for m in section["models"]}
        ks = [k for k, _ in pairs]

        def draw(fig: Any, curves: dict[str, list[float]] = curves, ks: list[int] = ks, name: str = name) -> None:
            ax = fig.add_subplot(1, 1, 1)
            for i, (label, ys) in enumerate(curves.items()):
                # ten colours, then the same colours dashed with other markers: every model stays distinct
                ax.plot(ks, ys, marker="osD^v<>ph*"[i % 10], linestyle="-" if i < 10 else "--", color=f"C{i % 10}", label=label)
            ax.set_xlabel("K")
            ax.set_ylabel(f"{name}@K (mean over seeds)")
            ax.set_xticks(ks)
            ax.set_title(f"{section['dataset']}, {section['protocol']}, target {section['target']}", fontsize=9)
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
            ax.grid(alpha=0.3)

        out[f"{prefix}-{safe_name(name)}-at-k.png"] = _png(draw, {"ks": ks, "curves": curves})
    primary = section["primary"]
    groups = [g for g in section["models"][0]["user_groups"] if all(g in m["user_groups"] for m in section["models"])] if primary else []
    if groups:
        bars = {m["model"]: [m["user_groups"][g][primary] for g in groups] for m in section["models"]}

        def draw_groups(fig: Any) -> None:
            ax = fig.add_subplot(1, 1, 1)
            width = 0.8 / max(len(bars), 1)
            for i, (label, ys) in enumerate(bars.items()):
                ax.bar([j + i * width for j in range(len(groups))], [0.0 if math.isnan(y) else y for y in ys], width, label=label,
                       color=f"C{i % 10}", hatch="" if i < 10 else "//")
            ax.set_xticks([j + 0.4 - width / 2 for j in range(len(groups))], groups, rotation=20, fontsize=8)
            ax.set_ylabel(f"{primary} (mean over seeds)")
            ax.set_title(f"{section['dataset']}, target {section['target']}: by user group", fontsize=9)
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))

        out[f"{prefix}-user-groups.png"] = _png(draw_groups, {"groups": groups, "bars": bars})
    out.update(breakdown_plots(section, prefix, _png))
    return out


def artefacts(records: Sequence[dict[str, Any]], *, command: str | None = None, record_dir: Path | None = None,
              stem: str = "leaderboard", files: PerUserFiles | None = None) -> dict[str, Artefact]:
    """Every output file of a table, by path relative to its folder.

    The table ``STEM.md`` comes with ``STEM.csv`` and ``STEM.json``; for the stem
    ``leaderboard`` (a results folder) the pairwise table is ``pairwise.md`` and the plots are
    in ``plots/``, for another stem ``STEM.pairwise.md`` and ``STEM-plots/``.
    """
    sections = table_data(records)
    plain = stem == "leaderboard"
    files = files or PerUserFiles()  # the records' per-user files, read once for both tables
    agreed = agreements(records)  # a paper protocol's table beside a full-ranking one: their orders compared
    markdown = render_markdown(records, command=command, record_dir=record_dir, files=files)
    wins = render_breakdowns(records)
    markdown += "\n" + wins if wins else ""
    out = {f"{stem}.md": Artefact((markdown + ("\n" + render_agreement(agreed) if agreed else "")).encode("utf-8"))}
    out["pairwise.md" if plain else f"{stem}.pairwise.md"] = Artefact(
        render_pairwise(records, record_dir=record_dir, files=files).encode("utf-8"))
    out[f"{stem}.csv"] = Artefact(_csv_bytes(sections))
    out[f"{stem}.json"] = Artefact(_json_bytes({"sections": sections, **({"agreement": [a.to_dict() for a in agreed]} if agreed else {})}))
    for section in sections:
        out.update(_plots(section, "plots" if plain else f"{stem}-plots"))
    return out


def write_artefacts(folder: Path, files: dict[str, Artefact]) -> None:
    """Write each file atomically under ``folder``.

    Nothing is written through a symbolic link inside ``folder`` (a ``plots/`` that is a link is
    refused before the first file); a place that cannot be written (a full or read-only disk,
    ``/proc``) is one line naming the path.
    """
    from crossbench.files import write_bytes_atomic
    from crossbench.records.safe import check_not_link

    for rel in files:
        for sub in Path(rel).parents[:-1]:
            check_not_link(folder / sub, what="output folder")
    for rel, art in files.items():
        try:
            write_bytes_atomic(folder / rel, art.content)
        except OSError as exc:
            raise CrossbenchError(f"cannot write {folder / rel}: {exc.strerror or exc}; choose another output "
                                  "place (or free space there)") from None


def png_text(data: bytes) -> dict[str, str]:
    """The ``tEXt`` chunks of a PNG file."""
    out: dict[str, str] = {}
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return out
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"tEXt" and b"\x00" in body:
            key, _, value = body.partition(b"\x00")
            out[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt" and b"\x00" in body:
            key, _, rest = body.partition(b"\x00")
            out[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        pos += 12 + length
    return out


def stale(folder: Path, files: dict[str, Artefact]) -> list[str]:
    """Files of ``folder`` that are missing or differ from ``files`` (plots: by the hash of their data)."""
    from crossbench.records.safe import read_regular

    out = []
    for rel, art in files.items():
        path = folder / rel
        if not os.path.lexists(path):
            out.append(f"{rel} (missing)")
            continue
        try:
            current = read_regular(path, what="table file", limit=MAX_ARTEFACT_BYTES)
        except CrossbenchError:
            out.append(f"{rel} (not a regular file crossbench wrote)")
            continue
        if art.data_sha256 is not None:
            if png_text(current).get(PLOT_KEY) != art.data_sha256:
                out.append(f"{rel} (plots other numbers)")
        elif current != art.content:
            out.append(rel)
    return out
