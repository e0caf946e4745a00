"""Validation curves of the runs beside their records: the metric per epoch, and the training loss.

A trainer-based run records the validation metric of every epoch (``fit.history``, under
``fit.valid_metric``) and, where its trainer keeps it, the mean training loss of every epoch
(``fit.train_loss``). :func:`curve_plots` draws, per table section (dataset / protocol /
target) and model, one PNG with every seed's validation curve (the best epoch marked) and,
when any of those runs recorded it, a second panel with the training loss per epoch. Runs
without a curve (closed-form and count models) get no plot, and a model none of whose runs
has one gets no file.

:func:`largest_drop` is the number the stability target speaks of: the largest relative fall
of the metric between consecutive epochs, counted from a given epoch on (after warm-up).

The plots are built from the records alone, like the other plots of a table
(:mod:`crossbench.report.exports`), and carry the sha256 of the numbers they draw in the same
PNG text chunk; they are written beside the table by ``crossbench run`` and
``crossbench leaderboard --output``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import warnings
from collections.abc import Sequence
from typing import Any

from crossbench.files import safe_name
from crossbench.report.exports import PLOT_KEY, Artefact
from crossbench.report.leaderboard import group_records, records_by_model


def _numbers(values: Any) -> list[float]:
    """Finite floats of a recorded sequence (``None`` and NaN dropped as NaN, so epochs keep their place)."""
    if not isinstance(values, (list, tuple)):
        return []
    out = []
    for v in values:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        out.append(float(v) if ok else math.nan)
    return out


def run_curve(record: dict[str, Any]) -> dict[str, Any] | None:
    """The recorded curves of one run: seed, metric name, validation values, training losses, best epoch."""
    fit = record.get("fit") or {}
    valid, loss = _numbers(fit.get("history")), _numbers(fit.get("train_loss"))
    if not valid and not loss:
        return None
    return {"seed": record.get("seed"), "metric": fit.get("valid_metric") or "validation metric", "valid": valid,
            "train_loss": loss, "best_epoch": fit.get("best_epoch") or None}


def largest_drop(values: Sequence[float], *, after: int = 0) -> tuple[float, int] | None:
    """The largest relative fall ``(v[e-1] - v[e]) / v[e-1]`` between consecutive epochs ``e-1 -> e``
    (epochs counted from 1) with ``e - 1 >= after + 1``, i.e. both epochs after the first
    ``after``; returns ``(fall, e)``, a fall of 0 when the metric never falls, or ``None`` with
    fewer than two such epochs."""
    best: tuple[float, int] | None = None
    for e in range(after + 2, len(values) + 1):
        prev, cur = values[e - 2], values[e - 1]
        if not (math.isfinite(prev) and math.isfinite(cur)) or prev <= 0:
            continue
        fall = max((prev - cur) / prev, 0.0)
        if best is None or fall > best[0]:
            best = (fall, e)
    return best


def _png(draw: Any, data: Any, *, panels: int) -> Artefact:
    """Render ``draw(fig)`` with Agg, tagged with the sha256 of ``data`` (as the table's other plots)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    digest = hashlib.sha256(json.dumps(data, sort_keys=True, allow_nan=True).encode("utf-8")).hexdigest()
    fig = Figure(figsize=(5.0 * panels + 1.5, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        draw(fig)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None, PLOT_KEY: digest})
    return Artefact(buf.getvalue(), digest)


def _model_plot(title: str, curves: list[dict[str, Any]]) -> Artefact:
    with_loss = any(c["train_loss"] for c in curves)
    panels = 2 if with_loss else 1

    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, panels, 1)
        for i, c in enumerate(curves):
            if not c["valid"]:
                continue
            epochs = list(range(1, len(c["valid"]) + 1))
            ax.plot(epochs, c["valid"], marker="o", markersize=3, color=f"C{i % 10}", label=f"seed {c['seed']}")
            best = c["best_epoch"]
            if best and 1 <= best <= len(c["valid"]):
                ax.plot([best], [c["valid"][best - 1]], marker="*", markersize=11, color=f"C{i % 10}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"validation {curves[0]['metric']}")
        ax.set_title(f"{title} (star: kept epoch)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        if with_loss:
            lx = fig.add_subplot(1, panels, 2)
            for i, c in enumerate(curves):
                if c["train_loss"]:
                    lx.plot(range(1, len(c["train_loss"]) + 1), c["train_loss"], marker=".", color=f"C{i % 10}", label=f"seed {c['seed']}")
            lx.set_xlabel("epoch")
            lx.set_ylabel("training loss (mean over the epoch's steps)")
            lx.grid(alpha=0.3)
            lx.legend(fontsize=7)

    return _png(draw, {"title": title, "curves": curves}, panels=panels)


def curve_plots(records: Sequence[dict[str, Any]], *, folder: str = "plots") -> dict[str, Artefact]:
    """``FOLDER/SECTION-MODEL-curves.png`` per table section and model with at least one recorded curve."""
    out: dict[str, Artefact] = {}
    for (dataset, _, protocol, target), recs in sorted(group_records(records).items()):
        prefix = safe_name(f"{dataset}-{protocol}-{target}")
        for label, runs in sorted(records_by_model(recs).items()):
            curves = [c for r in sorted(runs, key=lambda r: r.get("seed", 0)) if (c := run_curve(r)) is not None]
            if curves:
                title = f"{label}: {dataset}, {protocol}, target {target}"
                out[f"{folder}/{prefix}-{safe_name(label)}-curves.png"] = _model_plot(title, curves)
    return out
