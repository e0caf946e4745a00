"""The kit's tiny two-domain dataset, built the way a dataset plugin builds one (``from_frames``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from crossbench.data.model import CrossDomainData
from crossbench.plugin.interfaces import BuildContext

if TYPE_CHECKING:
    from crossbench.data.protocols import Split

#: The words of the kit's item texts (a text encoder's test vocabulary needs no more).
WORDS = ("space", "war", "love", "crime", "city", "sea", "robot", "king", "ghost", "music", "storm", "garden")
DOMAINS = ("books", "movies")
TARGET = "movies"
DIM = 16


def kit_data(*, n_users: int = 40, n_items: int = 14, seed: int = 0) -> CrossDomainData:
    """Users with 2-7 interactions per domain (some in one domain only), items with short texts."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for d, domain in enumerate(DOMAINS):
            if (u + d) % 7 == 0:  # every seventh user misses one domain
                continue
            items = rng.choice(n_items, size=int(rng.integers(2, 8)), replace=False)
            for t, i in enumerate(items):
                rows.append((domain, f"u{u:03d}", f"{domain[0]}{i:02d}", 1000 + 10 * t + d, float(rng.integers(1, 6))))
    interactions = pd.DataFrame(rows, columns=["domain", "user", "item", "timestamp", "rating"])
    items = pd.DataFrame(
        [
            (domain, f"{domain[0]}{i:02d}", f"{WORDS[i % len(WORDS)]} {domain}", f"a {WORDS[(3 * i) % len(WORDS)]} story")
            for domain in DOMAINS
            for i in range(n_items)
        ],
        columns=["domain", "item", "title", "text"],
    )
    return CrossDomainData.from_frames("crossbench-kit", interactions, items, meta={"default_target": TARGET})


def kit_split(data: CrossDomainData, *, seed: int = 0) -> Split:
    """A cold-start split of ``data`` made by the kit itself (no protocol plugin needed).

    Among users active in :data:`TARGET` and another domain, a seeded half become test users and
    a tenth validation users; all their target interactions leave training.
    """
    from crossbench.data.protocols import GroundTruth, Split

    target = data.domain(TARGET)
    others = np.unique(np.concatenate([data.domain(d).users() for d in data.domain_names if d != TARGET]))
    overlap = np.random.default_rng(seed).permutation(np.intersect1d(target.users(), others))
    n_test, n_valid = max(1, round(0.5 * len(overlap))), round(0.1 * len(overlap))
    test_users, valid_users = overlap[:n_test], overlap[n_test : n_test + n_valid]
    inter = target.interactions
    users, items = inter["user"].to_numpy(), inter["item"].to_numpy()
    is_test, is_valid = np.isin(users, test_users), np.isin(users, valid_users)
    domains = dict(data.domains)
    domains[TARGET] = type(target)(name=target.name, interactions=inter[~(is_test | is_valid)].reset_index(drop=True), items=target.items)
    return Split(
        protocol="kit-cold-start", target=TARGET, train=data.with_domains(domains),
        valid=GroundTruth.from_pairs(users[is_valid], items[is_valid]), test=GroundTruth.from_pairs(users[is_test], items[is_test]),
        params={"seed": seed}, cold=True,
    )


def kit_context(data: CrossDomainData, cache_dir: Path) -> BuildContext:
    """What a component is built with: the training part of the kit's cold-start split of ``data``."""
    return BuildContext(data=kit_split(data).train, target=TARGET, dim=DIM, cache_dir=Path(cache_dir))


def kit_texts(data: CrossDomainData) -> list[str]:
    """Every item text of ``data`` (e.g. to build a tiny tokenizer's vocabulary)."""
    return [t for d in data.domains.values() for t in d.item_texts()]
