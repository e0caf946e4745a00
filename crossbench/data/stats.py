"""Dataset statistics: per-domain sizes, overlap between domains, cold users under each protocol."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

from tabulate import tabulate

from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import ColdStart, make_protocol
from crossbench.errors import CrossbenchError

COLD_FRACTIONS = (0.2, 0.5, 0.8)


def domain_stats(data: CrossDomainData) -> list[dict[str, Any]]:
    """Users, items, interactions and density (interactions / (users * items)) per domain."""
    rows = []
    for name, d in data.domains.items():
        users = len(d.users())
        rows.append(
            {
                "domain": name, "users": users, "items": d.n_items, "interactions": d.n_interactions,
                "density": d.n_interactions / (users * d.n_items) if users and d.n_items else 0.0,
            }
        )
    return rows


def overlap_stats(data: CrossDomainData) -> list[dict[str, Any]]:
    """Users active in both domains, for every pair of domains."""
    rows = []
    for a, b in combinations(data.domain_names, 2):
        n = len(data.overlap(a, b))
        rows.append({"domains": f"{a} & {b}", "overlap users": n,
                     f"share of {a}": n / max(1, len(data.domain(a).users())),
                     f"share of {b}": n / max(1, len(data.domain(b).users()))})
    return rows


def protocol_stats(
    data: CrossDomainData,
    *,
    targets: Sequence[str] | None = None,
    protocol: str | None = None,
    seed: int = 0,
    params: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Held-out users per target: cold-start at 20/50/80% and warm, or only the given ``protocol``."""
    rows: list[dict[str, Any]] = []
    for t in targets or data.domain_names:
        runs: list[tuple[str, Any]] = []
        if protocol is not None:
            runs.append((protocol, make_protocol(protocol, target=t, seed=seed, **(params or {}))))
        else:
            runs += [(f"cold-start {f:.0%}", ColdStart(target=t, test_fraction=f, seed=seed)) for f in COLD_FRACTIONS]
            runs.append(("warm", make_protocol("warm", target=t, seed=seed)))
        for label, proto in runs:
            try:
                split = proto.split(data)
            except CrossbenchError as exc:
                rows.append({"target": t, "protocol": label, "cold users": "-", "test users": "-", "valid users": "-",
                             "test pairs": "-", "note": str(exc)[:80]})
                continue
            cold = split.test.n_users + split.valid.n_users if split.cold else 0
            rows.append({"target": t, "protocol": label, "cold users": cold, "test users": split.test.n_users,
                         "valid users": split.valid.n_users, "test pairs": len(split.test.items),
                         "note": f"split {split.fingerprint()[:12]}"})
    return rows


def render(data: CrossDomainData, *, targets: Sequence[str] | None = None, protocol: str | None = None,
           seed: int = 0, params: dict[str, Any] | None = None) -> str:
    """The three tables as Markdown-ish text."""
    parts = [
        f"dataset {data.name!r}: {data.n_users} users, fingerprint {data.fingerprint()[:12]}",
        tabulate(domain_stats(data), headers="keys", floatfmt=".6f"),
    ]
    if len(data.domains) > 1:
        parts.append(tabulate(overlap_stats(data), headers="keys", floatfmt=".3f"))
    parts.append(tabulate(protocol_stats(data, targets=targets, protocol=protocol, seed=seed, params=params), headers="keys"))
    return "\n\n".join(parts)
