"""Leaderboard cells and notes that describe the models rather than measure them.

* how each row was tuned (:func:`tuned_cell`, and the sentence under every table);
* the peak memory of each row's runs (:func:`peak_cell`, and the sentence saying what it is);
* whether a model reads the source domains (:func:`sources_cell`, the ``sources`` column)
  and how it scores users with no target-domain history (:func:`model_notes`), both as the
  run records' ``model`` entry declares them (``reads_source_domains``, ``cold_users``).

Records written before the runner recorded the two declarations lack them: a section made
only of such records has no ``sources`` column and no notes, so older published tables
regenerate unchanged.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

TUNING_TEXT = (
    "Tuning: each tuned row was tuned per split on that split's validation users with the budget "
    "shown; `defaults` rows were not tuned."
)
LEGACY_TUNING_TEXT = (
    " Cells marked `*` come from records of the earlier tuner, which tuned once, on one split's "
    "validation users, and used the result for every seed."
)
#: Below this many complete trials a study is too small to rely on: a table or plot drawn from one says so.
#: (Optuna's TPE sampler starts with random trials; crossbench's first trial is the defaults.)
FEW_TRIALS = 5
#: The cold-user behaviour that needs no note: the point of a cross-domain model.
FROM_SOURCES = "from source-domain history"
SOURCES_COLUMN = "sources"
SOURCES_TEXT = (
    "`sources`: whether scoring a user reads their history in domains other than the target "
    "(`yes` / `no`; `?` where the model does not declare it)."
)


# --------------------------------------------------------------------------- tuning


@dataclass(frozen=True)
class Tuning:
    """One tuning study as a leaderboard cell reads it."""

    study: str
    budget: str
    pruned: int
    failed: int
    sampler: str
    legacy: bool


def read_tuning(tuning: Any) -> Tuning | None:
    """The study a record's ``model.tuning`` describes; ``None`` when the run was not tuned."""
    if not isinstance(tuning, dict) or not tuning or tuning.get("tuned") is False:
        return None
    sampler = str(tuning.get("sampler") or "").removeprefix("optuna ").removesuffix("Sampler")
    identity = json.dumps(tuning, sort_keys=True, default=str)
    if "budget" not in tuning and "tuned" not in tuning:  # the earlier flat form: "trials" were completed
        return Tuning(identity, f"{int(tuning.get('trials') or 0)} trials", 0, 0, sampler, legacy=True)
    budget = tuning.get("budget") or {}
    parts = []
    if budget.get("trials") is not None:
        parts.append(f"{int(budget['trials'])} trials")
    if budget.get("timeout_s") is not None:
        parts.append(f"{float(budget['timeout_s']):g} s")
    text = " or ".join(parts) or f"{int(tuning.get('trials_complete') or 0)} trials"
    if tuning.get("study"):
        identity = f"{tuning.get('storage')}|{tuning['study']}"
    return Tuning(
        identity, text, int(tuning.get("trials_pruned") or 0), int(tuning.get("trials_failed") or 0), sampler, legacy=False
    )


def tuned_cell(runs: Sequence[dict[str, Any]]) -> str:
    """How one model row was tuned: ``defaults``, or the budget, pruned/failed trials and sampler.

    Seeds that share one study (the same tuning) count once; several studies show their
    count, e.g. ``3×20 trials (5 pruned), TPE``, with the pruned and failed trials summed.
    """
    studies: dict[str, Tuning] = {}
    untuned = 0
    for rec in runs:
        t = read_tuning(rec["model"].get("tuning"))
        if t is None:
            untuned += 1
        else:
            studies.setdefault(t.study, t)
    if not studies:
        return "defaults"
    counts: dict[str, int] = defaultdict(int)
    for t in studies.values():
        counts[t.budget] += 1
    text = " + ".join(b if len(studies) == 1 else f"{n}×{b}" for b, n in counts.items())
    pruned, failed = sum(t.pruned for t in studies.values()), sum(t.failed for t in studies.values())
    notes = [f"{pruned} pruned"] * (pruned > 0) + [f"{failed} failed"] * (failed > 0)
    if notes:
        text += f" ({', '.join(notes)})"
    samplers = sorted({t.sampler for t in studies.values() if t.sampler})
    if samplers:
        text += ", " + "/".join(samplers)
    if any(t.legacy for t in studies.values()):
        text += "*"
    if untuned:
        text += f"; defaults for {untuned} seed{'s' * (untuned > 1)}"
    return text


def tuning_text(records: Sequence[dict[str, Any]]) -> str:
    """The sentences under a table on how its rows were tuned, and which rows rest on very few trials."""
    legacy = any(t is not None and t.legacy for t in (read_tuning(r["model"].get("tuning")) for r in records))
    return TUNING_TEXT + (LEGACY_TUNING_TEXT if legacy else "") + few_trials_text(records)


def few_trials_text(records: Sequence[dict[str, Any]]) -> str:
    """A sentence naming the rows tuned by a study with fewer than :data:`FEW_TRIALS` complete trials (else empty)."""
    fewest: dict[str, int] = {}
    for rec in records:
        tuning = rec["model"].get("tuning")
        if isinstance(tuning, dict) and tuning.get("tuned") and isinstance(tuning.get("trials_complete"), int):
            label = rec["model"]["label"]
            fewest[label] = min(fewest.get(label, tuning["trials_complete"]), tuning["trials_complete"])
    few = {label: n for label, n in fewest.items() if n < FEW_TRIALS}
    if not few:
        return ""
    if len(few) == len(fewest) and len(set(few.values())) == 1:
        rows = f"every tuned row's studies finished {next(iter(few.values()))} complete trials on some split"
    else:
        rows = "the studies of " + ", ".join(f"{label} ({n})" for label, n in sorted(few.items())) + \
            f" finished fewer than {FEW_TRIALS} complete trials on some split (the fewest in brackets)"
    return f" Few trials: {rows}, too few for tuning to do much more than try the defaults and a few random settings."


# --------------------------------------------------------------------------- peak memory

PEAK_COLUMN = "peak MiB"
PEAK_TEXT = (
    "`fit s`: mean over seeds of the fit's seconds; `peak MiB`: the largest over seeds of the run's peak "
    "resident memory (the records' `timings.peak_rss_mb`)."
)
PROCESS_PEAK_TEXT = (
    " Cells marked `‡` hold a peak of the whole process up to that run (records written before the peak "
    "was reset for each run), which may include runs before it in the same process."
)


def _is_process_peak(rec: dict[str, Any]) -> bool:
    return rec.get("timings", {}).get("peak_rss_scope") != "run"


def peak_cell(runs: Sequence[dict[str, Any]]) -> str:
    """The largest peak resident memory (MiB, rounded) of the row's runs; ``—`` when none records one.

    Marked `` ‡`` when a run's peak is its process's rather than its own (scope other than ``run``).
    """
    rs = [r for r in runs if r.get("timings", {}).get("peak_rss_mb") is not None]
    if not rs:
        return "—"
    cell = f"{max(float(r['timings']['peak_rss_mb']) for r in rs):.0f}"
    return cell + (" ‡" if any(_is_process_peak(r) for r in rs) else "")


def peak_text(records: Sequence[dict[str, Any]]) -> str:
    """The sentence under a table on its ``fit s`` and ``peak MiB`` columns."""
    process = any(r.get("timings", {}).get("peak_rss_mb") is not None and _is_process_peak(r) for r in records)
    return PEAK_TEXT + (PROCESS_PEAK_TEXT if process else "") + processes_text(records)


def processes_text(records: Sequence[dict[str, Any]]) -> str:
    """A sentence naming the rows fitted data-parallel on several processes, with their world size,
    backend and devices (the records' ``distributed``); empty when every run used one process."""
    rows: dict[str, set[str]] = {}
    for rec in records:
        d = rec.get("distributed")
        if isinstance(d, dict) and isinstance(d.get("world_size"), int) and d["world_size"] > 1:
            devices = ", ".join(sorted({str(x) for x in d.get("devices") or []}))
            rows.setdefault(rec["model"]["label"], set()).add(f"{d['world_size']} processes, {d.get('backend')}, on {devices}")
    if not rows:
        return ""
    return " Fitted data-parallel (`fit s`: the wall time of rank 0, which waits for the others at every step): " + "; ".join(
        f"{label} ({' / '.join(sorted(how))})" for label, how in sorted(rows.items())) + "."


# --------------------------------------------------------------------------- declared behaviour


def declares_behaviour(records: Sequence[dict[str, Any]]) -> bool:
    """Whether any record carries the declarations (written by a runner that records them)."""
    return any("reads_source_domains" in r["model"] or "cold_users" in r["model"] for r in records)


def sources_cell(runs: Sequence[dict[str, Any]]) -> str:
    """``yes`` / ``no`` when every run of the row declares the same, ``?`` when none declares, else ``mixed``."""
    values = {r["model"].get("reads_source_domains") for r in runs}
    if values == {True}:
        return "yes"
    if values == {False}:
        return "no"
    if values == {None}:
        return "?"
    return "mixed"


def cold_users_text(runs: Sequence[dict[str, Any]]) -> str:
    """How the row's model scores users with no target-domain history (``not declared`` when unknown)."""
    texts = sorted({str(r["model"].get("cold_users") or "not declared") for r in runs})
    return " / ".join(texts)


def model_notes(by_model: dict[str, list[dict[str, Any]]], order: Sequence[str]) -> list[str]:
    """The notes under a table with a ``sources`` column: what it means, every model whose
    users with no target-domain history are not scored from their source-domain history, and
    the rows that are identical (:func:`identical_rows_text`)."""
    others = [(label, cold_users_text(by_model[label])) for label in order]
    others = [(label, text) for label, text in others if text != FROM_SOURCES]
    same = identical_rows_text(by_model, order)
    if not others:
        return [SOURCES_TEXT + " Every model scores users with no target-domain history " + FROM_SOURCES + ".", "", *same]
    return [
        SOURCES_TEXT + " Users with no target-domain history are scored " + FROM_SOURCES + ", except by:",
        "",
        *[" ".join(f"- {label}: {text}".split()) for label, text in others],  # one line, whatever the label holds
        "",
        *same,
    ]


def identical_rows_text(by_model: dict[str, list[dict[str, Any]]], order: Sequence[str]) -> list[str]:
    """A note naming the rows whose runs have the same value in every metric on every (target, seed):
    one row of each such group would otherwise hide the others in the plots. Empty when there are none."""
    groups: dict[str, list[str]] = defaultdict(list)
    for label in order:
        runs = sorted((str(r["protocol"]["target"]), int(r["seed"]), sorted(r["evaluation"]["metrics"].items())) for r in by_model[label])
        groups[json.dumps(runs, default=str)].append(label)
    same = [labels for labels in groups.values() if len(labels) > 1]
    if not same:
        return []
    names = "; ".join(", ".join(f"`{label}`" for label in labels[:-1]) + f" and `{labels[-1]}`" for labels in same)
    return [
        f"Identical rows: {names} have the same value in every metric on every seed, so in the plots one line covers the other.",
        "",
    ]


# --------------------------------------------------------------------------- new items

NEW_ITEMS_COLUMN = "new items"
#: what the ``new items`` column says of a model whose ``cold_items()`` is false
CANNOT_SCORE = "cannot score new items"


def held_out_items(records: Sequence[dict[str, Any]]) -> int | None:
    """How many target items the section's split held out with all their interactions (``None``: none)."""
    counts = {r["protocol"].get("held_out_items") for r in records}
    counts.discard(None)
    return max(counts) if counts else None


def new_items_cell(runs: Sequence[dict[str, Any]]) -> str:
    """``from text`` when every run's model scores new items, :data:`CANNOT_SCORE` when none does, ``?`` undeclared."""
    values = {r["model"].get("cold_items") for r in runs}
    if values == {True}:
        return "from text"
    if values == {False}:
        return CANNOT_SCORE
    return "?" if values == {None} else "mixed"


def new_items_text(records: Sequence[dict[str, Any]]) -> list[str]:
    """The note under a table whose split held items out (new items)."""
    n = held_out_items(records)
    if n is None:
        return []
    only = any(r["protocol"].get("candidates_only") for r in records)
    ranked = ", ranked among those new items only (old items are not ranked)" if only else ""
    return [
        f"New items: {n} target items per split were held out of training with every interaction of every user "
        "(the test's and, apart from them, the validation's new items); the ground truth is the test users' "
        f"interactions with the test's new items{ranked}. `{NEW_ITEMS_COLUMN}`: whether the model scores an item nobody took "
        f"from its text; `{CANNOT_SCORE}` rows (ID-only models) give new items no learned score, so their "
        "numbers show only where ties and fallbacks put them.",
        "",
    ]
