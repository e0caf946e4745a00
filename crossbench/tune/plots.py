"""Pictures of a tuning study: its optimisation history and its parameter importances, as PNG files."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossbench.errors import CrossbenchError
from crossbench.files import atomic_write
from crossbench.report.notes import FEW_TRIALS

if TYPE_CHECKING:
    import optuna

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

def few_trials_caption(n_complete: int, *, too_few_to: str) -> str:
    """The caption of a study plot drawn from fewer than :data:`~crossbench.report.notes.FEW_TRIALS` complete trials (else empty)."""
    if n_complete >= FEW_TRIALS:
        return ""
    return f"only {n_complete} complete trial{'' if n_complete == 1 else 's'} (under {FEW_TRIALS}): too few {too_few_to}"


def plot_stem(name: str) -> str:
    """A file-name stem for ``name`` (e.g. a study name with slashes): unsafe characters become ``-``."""
    return _UNSAFE.sub("-", name).strip("-.") or "study"


def _save_png(fig: Any, path: Path) -> None:
    """Write ``fig`` to ``path`` as PNG atomically (temp file in the same folder, then ``os.replace``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # draw with Agg whatever the session's default backend
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)


def param_importances(study: optuna.Study) -> dict[str, float]:
    """Normalised parameter importances of ``study`` by Optuna's PED-ANOVA evaluator (no scikit-learn needed).

    Empty with fewer than 2 complete trials, no parameters, or an Optuna without PED-ANOVA
    (before 3.6). PED-ANOVA compares the distribution of each parameter among the best 10% of
    complete trials with its distribution among all of them (Watanabe et al., IJCAI 2023): a
    parameter whose good values are spread like all its values matters little.
    """
    import optuna

    evaluator = getattr(optuna.importance, "PedAnovaImportanceEvaluator", None)  # Optuna >= 3.6
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if evaluator is None or len(complete) < 2 or not any(t.params for t in complete):
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "too few trials" and experimental-API warnings
        raw = optuna.importance.get_param_importances(study, evaluator=evaluator(), normalize=False)
    values = {k: float(v) for k, v in raw.items() if math.isfinite(v)}
    total = sum(values.values())
    if total > 0:
        values = {k: v / total for k, v in values.items()}
    return dict(sorted(values.items(), key=lambda kv: kv[1], reverse=True))


def _history_figure(study: optuna.Study) -> Any:
    import optuna
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    state = optuna.trial.TrialState
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = study.get_trials(deepcopy=False, states=(state.COMPLETE, state.PRUNED))
    complete = [t for t in trials if t.state == state.COMPLETE and t.value is not None]
    pruned = [t for t in trials if t.state == state.PRUNED]
    fig = Figure(figsize=(7.0, 4.2))
    ax = fig.add_subplot()
    ax.scatter([t.number for t in complete], [float(t.value or 0.0) for t in complete], s=22, color="tab:blue", label="complete", zorder=3)
    with_value = [t for t in pruned if t.value is not None]
    ax.scatter([t.number for t in with_value], [float(t.value or 0.0) for t in with_value], s=28, marker="x", color="tab:gray",
               label="pruned (last reported value)", zorder=2)
    without = [t.number for t in pruned if t.value is None]
    if without:
        bottom = blended_transform_factory(ax.transData, ax.transAxes)
        ax.scatter(without, [0.02] * len(without), s=28, marker="|", color="tab:gray", transform=bottom,
                   label="pruned (no value)", zorder=2)
    if complete:
        best: list[float] = []
        for t in complete:
            v = float(t.value or 0.0)
            best.append(v if not best else (max(best[-1], v) if maximize else min(best[-1], v)))
        ax.step([t.number for t in complete], best, where="post", color="tab:red", label="best so far", zorder=4)
    ax.set_xlabel("trial number")
    ax.set_ylabel("objective value" + (" (higher is better)" if maximize else " (lower is better)"))
    ax.set_title(f"{study.study_name}: optimisation history ({len(complete)} complete, {len(pruned)} pruned)", fontsize=9)
    ax.grid(alpha=0.3)
    if trials:
        ax.legend(fontsize=8, loc="best")
    return _with_caption(fig, few_trials_caption(len(complete), too_few_to="to show a trend"))


def _with_caption(fig: Any, caption: str) -> Any:
    """Lay ``fig`` out, with ``caption`` (if any) in red under the axes."""
    if caption:
        fig.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize=8, color="tab:red")
        fig.tight_layout(rect=(0.0, 0.06, 1.0, 1.0))
    else:
        fig.tight_layout()
    return fig


def _importance_figure(study: optuna.Study, importances: dict[str, float]) -> Any:
    import optuna
    from matplotlib.figure import Figure

    names = list(importances)[::-1]  # most important at the top
    fig = Figure(figsize=(7.0, 1.2 + 0.4 * len(names)))
    ax = fig.add_subplot()
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (PED-ANOVA, normalised)")
    ax.set_ylabel("hyperparameter")
    ax.set_title(f"{study.study_name}: hyperparameter importance", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return _with_caption(fig, few_trials_caption(len(complete), too_few_to="to rank the hyperparameters by importance"))


def write_study_plots(study: optuna.Study, folder: Path, *, stem: str) -> list[Path]:
    """Draw ``study`` as PNG files in ``folder`` and return their paths.

    ``STEM-history.png``: every finished trial's value against its number (complete trials as
    dots, pruned ones as crosses at their last reported value, or ticks on the axis when they
    reported none) and the best value so far. ``STEM-importance.png``: a horizontal bar chart of
    :func:`param_importances`; skipped (not returned) with fewer than 2 complete trials or no
    parameters. A plot drawn from fewer than ``FEW_TRIALS`` complete trials says so in a
    caption (:func:`few_trials_caption`). ``stem`` is made file-name safe with :func:`plot_stem`. Files are written
    atomically; matplotlib (its Agg canvas, no display needed) is imported only here.
    """
    if len(study.directions) != 1:
        raise CrossbenchError(f"study {study.study_name!r} has {len(study.directions)} objectives; plots need a single-objective study")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = plot_stem(stem)
    written = []
    fig = _history_figure(study)
    path = folder / f"{stem}-history.png"
    _save_png(fig, path)
    written.append(path)
    importances = param_importances(study)
    if importances:
        path = folder / f"{stem}-importance.png"
        _save_png(_importance_figure(study, importances), path)
        written.append(path)
    return written
