"""Dataset statistics: per-domain sizes, overlap between domains, cold users under each protocol."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from crossbench.errors import CrossbenchError
from crossbench.plugin.build import make_protocol

if TYPE_CHECKING:
    from crossbench.data.model import CrossDomainData
    from crossbench.plugin.registry import Registry


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
    registry: Registry,
    targets: Sequence[str] | None = None,
    protocol: str | None = None,
    seed: int = 0,
    params: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Held-out users per target under every registered protocol's presets, or only the given ``protocol``."""
    rows: list[dict[str, Any]] = []
    for t in targets or data.domain_names:
        runs: list[tuple[str, Any]] = []
        if protocol is not None:
            runs.append((protocol, make_protocol(registry, protocol, target=t, seed=seed, **(params or {}))))
        else:
            for entry in registry.entries("protocols"):
                spec = entry.spec
                for label, preset in spec.presets or ((spec.name, {}),):
                    runs.append((label, make_protocol(registry, spec.name, target=t, seed=seed, **preset)))
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


def render(data: CrossDomainData, *, registry: Registry, targets: Sequence[str] | None = None, protocol: str | None = None,
           seed: int = 0, params: dict[str, Any] | None = None) -> str:
    """The three tables as Markdown-ish text."""
    parts = [
        f"dataset {data.name!r}: {data.n_users} users, fingerprint {data.fingerprint()[:12]}",
        tabulate(domain_stats(data), headers="keys", floatfmt=".6f"),
    ]
    if len(data.domains) > 1:
        parts.append(tabulate(overlap_stats(data), headers="keys", floatfmt=".3f"))
    parts.append(tabulate(protocol_stats(data, registry=registry, targets=targets, protocol=protocol, seed=seed, params=params), headers="keys"))
    return "\n\n".join(parts)
