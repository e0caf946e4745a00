"""Tables and curves of simulation records: per-round Markdown, PNG curves and the leaderboard.

The leaderboard has one row per model (mean ± std over seeds) with, at the last round R,
the primary accuracy of all, cold and warm users, catalogue coverage and exposure Gini; the
area under the per-round accuracy curve (trapezoids over rounds 0..R, divided by R: the
curve's mean height); and the rounds cold users need to reach the accuracy warm users had
before any feedback (round 0), ``-`` where they never do within R rounds. Exposure Gini is
the Gini of how often each target item was shown in the round; interaction Gini that of the
target items' interaction counts in the training data after the round's feedback (the
popularity the next model learns from).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from crossbench.files import atomic_write, write_text_atomic


def curve(record: dict[str, Any], group: str = "all") -> list[float | None]:
    """The primary accuracy of ``group`` at rounds 0..R."""
    key = record["settings"]["primary"]
    return [r["accuracy"][group].get(key) for r in record["rounds"]]


def area(values: Sequence[float | None]) -> float | None:
    """Trapezoid area under ``values`` over rounds 0..R, divided by R (``None`` with a gap or one point)."""
    if len(values) < 2 or any(v is None for v in values):
        return None
    y = np.asarray(values, dtype=np.float64)
    return float(((y[1:] + y[:-1]) / 2).sum() / (len(y) - 1))


def rounds_to_reach(record: dict[str, Any]) -> int | None:
    """First round whose cold-user accuracy is at least the warm users' accuracy at round 0."""
    cold, warm = curve(record, "cold"), curve(record, "warm")
    if not warm or warm[0] is None:
        return None
    for r, value in enumerate(cold):
        if value is not None and value >= warm[0]:
            return r
    return None


def summary(record: dict[str, Any]) -> dict[str, float | None]:
    """The leaderboard's numbers of one simulation."""
    key = record["settings"]["primary"]
    last = record["rounds"][-1]
    exposure = last.get("exposure") or {}
    reach = rounds_to_reach(record)
    return {
        f"{key} R": last["accuracy"]["all"].get(key),
        f"{key} cold R": last["accuracy"]["cold"].get(key),
        f"{key} warm R": last["accuracy"]["warm"].get(key),
        f"AUC {key}": area(curve(record)),
        f"AUC {key} cold": area(curve(record, "cold")),
        "rounds cold→warm": None if reach is None else float(reach),
        "coverage R": exposure.get("coverage"),
        "exposure Gini R": exposure.get("gini"),
        "interaction Gini R": exposure.get("interaction_gini"),
    }


def _fmt(values: list[float | None], digits: int = 4) -> str:
    ok = [v for v in values if v is not None]
    if not ok:
        return "-"
    mean = float(np.mean(ok))
    text = f"{mean:.{digits}f}"
    if len(ok) > 1:
        text += f" ± {float(np.std(ok, ddof=1)):.{digits}f}"
    return text + ("" if len(ok) == len(values) else f" ({len(ok)}/{len(values)} seeds)")


def _groups(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, list[dict[str, Any]]]]:
    out: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for rec in sorted(records, key=lambda r: (r["target"], r["model"]["label"], r["seed"])):
        out.setdefault((rec["dataset"]["name"], rec["target"]), {}).setdefault(rec["model"]["label"], []).append(rec)
    return out


def render_leaderboard(records: Sequence[dict[str, Any]], *, command: str | None = None) -> str:
    """The simulations leaderboard in Markdown: models as rows."""
    lines = ["# Simulations", ""]
    for (dataset, target), by_model in _groups(records).items():
        first = next(iter(by_model.values()))[0]
        s = first["settings"]
        lines += [f"## {dataset} → {target}", "",
                  f"{s['rounds']} rounds, top {s['k']} shown, feedback {s['feedback']} {s['feedback_params'] or ''}".rstrip()
                  + f"; {first['population']['cold']} cold and {first['population']['warm']} warm users; "
                  f"accuracy on held-out probe items (never taken).", ""]
        keys = list(summary(first))
        rows = []
        for label, recs in by_model.items():
            sums = [summary(r) for r in recs]
            digits = {"rounds cold→warm": 1}
            rows.append([label, len(recs)] + [_fmt([x[k] for x in sums], digits.get(k, 4)) for k in keys])
        area_key = f"AUC {s['primary']}"
        rows.sort(key=lambda row: -float(str(row[2 + keys.index(area_key)]).split(" ")[0]) if row[2 + keys.index(area_key)] != "-" else 0.0)
        lines += [tabulate(rows, headers=["model", "seeds", *keys], tablefmt="github"), ""]
    if command:
        lines += [f"Reproduce: `{command}`", ""]
    return "\n".join(lines)


def render_rounds(records: Sequence[dict[str, Any]]) -> str:
    """Per-round means over seeds, one table per (target, model)."""
    lines = ["# Simulation rounds", ""]
    for (dataset, target), by_model in _groups(records).items():
        for label, recs in by_model.items():
            key = recs[0]["settings"]["primary"]
            rows = []
            for r in range(max(len(x["rounds"]) for x in recs)):
                at = [x["rounds"][r] for x in recs if r < len(x["rounds"])]
                exp = [a.get("exposure") or {} for a in at]
                rows.append([r, *(_fmt([a["accuracy"][g].get(key) for a in at]) for g in ("all", "cold", "warm")),
                             _fmt([e.get("coverage") for e in exp]), _fmt([e.get("gini") for e in exp]),
                             _fmt([e.get("interaction_gini") for e in exp]),
                             _fmt([float(a["taken"]) for a in at], 1)])
            lines += [f"## {dataset} → {target}: {label}", "",
                      tabulate(rows, headers=["round", f"{key} all", f"{key} cold", f"{key} warm", "coverage", "exposure Gini",
                                                     "interaction Gini", "taken"],
                               tablefmt="github"), ""]
    return "\n".join(lines)


def plot_curves(records: Sequence[dict[str, Any]], folder: Path) -> list[Path]:
    """One PNG per target: accuracy (all, cold, warm), coverage and exposure Gini per round, a line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from crossbench.files import safe_name

    paths = []
    for (_, target), by_model in _groups(records).items():
        key = next(iter(by_model.values()))[0]["settings"]["primary"]
        fig, axes = plt.subplots(1, 5, figsize=(22, 4))
        for label, recs in by_model.items():
            for ax, group in zip(axes[:2], ("cold", "warm")):
                ax.plot(_mean_curve([curve(r, group) for r in recs]), marker="o", label=label)
                ax.set_title(f"{key}, {group} users")
            titles = {"coverage": "catalogue coverage", "gini": "exposure Gini", "interaction_gini": "interaction Gini"}
            for ax, (what, title) in zip(axes[2:], titles.items()):
                ys = [[(x.get("exposure") or {}).get(what) for x in r["rounds"]] for r in recs]
                ax.plot(_mean_curve(ys), marker="o", label=label)
                ax.set_title(title)
        for ax in axes:
            ax.set_xlabel("round")
            ax.grid(alpha=0.3)
        axes[0].legend()
        fig.tight_layout()
        path = folder / f"simulation-{safe_name(target)}.png"
        with atomic_write(path) as f:
            fig.savefig(f, format="png", dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def _mean_curve(curves: list[list[float | None]]) -> list[float]:
    out = []
    for i in range(max(len(c) for c in curves)):
        values = [float(v) for c in curves if i < len(c) and (v := c[i]) is not None]
        out.append(float(np.mean(values)) if values else float("nan"))
    return out


def write_reports(records: Sequence[dict[str, Any]], folder: Path, *, command: str | None = None) -> list[Path]:
    """``simulations.md``, ``simulation-rounds.md`` and the curves in ``folder``."""
    board, rounds = folder / "simulations.md", folder / "simulation-rounds.md"
    write_text_atomic(board, render_leaderboard(records, command=command))
    write_text_atomic(rounds, render_rounds(records))
    return [board, rounds, *plot_curves(records, folder)]
