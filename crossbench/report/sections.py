"""Which records share a table: one section per dataset, dataset fingerprint, protocol (with how it
evaluates) and target.

Sampled runs carry the sample of negatives they were ranked against (``evaluation.sampling``).
Each seed's split draws its own sample, so the runs of one split share a table when they all used
one sample — every model of a seed is then judged on the same negatives — and the table averages
over seeds as any other. Runs of one split that used different samples (another draw, another
strategy) never share a table: each sample then gets its own section, named by its sha256.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

Key = tuple[str, str, str, str]


def evaluation_label(rec: dict[str, Any], *, sample: bool = False) -> str:
    """What follows the protocol's name in a section's key: ``""`` (full ranking), ``", rating"``, or
    ``", sampled: N STRATEGY negatives"`` (with ``", sample SHA"`` when ``sample``)."""
    ev = rec["evaluation"]
    if ev.get("mode") == "rating":  # the rating task (MAE, RMSE) never shares a table with rankings
        return ", rating"
    if ev.get("mode") != "sampled":
        return ""
    s = ev.get("sampling", {})
    text = f", sampled: {s.get('n_negatives')} {s.get('strategy')} negatives"
    return text + (f", sample {str(s.get('sha256', ''))[:12]}" if sample else "")


def _key(rec: dict[str, Any], *, sample: bool) -> Key:
    return (rec["dataset"]["name"], rec["dataset"]["fingerprint"], rec["protocol"]["name"] + evaluation_label(rec, sample=sample),
            rec["protocol"]["target"])


def group_records(records: Sequence[dict[str, Any]]) -> dict[Key, list[dict[str, Any]]]:
    """Records grouped by (dataset, dataset fingerprint, protocol, target): one table each."""
    groups: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        groups[_key(rec, sample=False)].append(rec)
    out: dict[Key, list[dict[str, Any]]] = {}
    for key, recs in groups.items():
        samples: dict[str, set[str | None]] = defaultdict(set)
        for rec in recs:
            samples[rec["protocol"].get("split_fingerprint", "")].add(rec["evaluation"].get("sampling", {}).get("sha256"))
        one_per_split = all(len(shas) == 1 for shas in samples.values())
        for rec in recs:
            out.setdefault(key if one_per_split else _key(rec, sample=True), []).append(rec)
    return out


def sample_fingerprints(recs: Sequence[dict[str, Any]]) -> list[str]:
    """The short sha256 of every sample of negatives a section's runs were ranked against (none when not sampled)."""
    return sorted({str(r["evaluation"]["sampling"]["sha256"])[:12] for r in recs if r["evaluation"].get("mode") == "sampled"})
