"""The kit's tiny two-domain dataset, built the way a dataset plugin builds one (``from_frames``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from crossbench.data.model import CrossDomainData
from crossbench.interfaces import BuildContext

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


def kit_context(data: CrossDomainData, cache_dir: Path) -> BuildContext:
    """What a component is built with: the training part of a cold-start split of ``data``."""
    from crossbench.data.protocols import ColdStart

    split = ColdStart(target=TARGET, seed=0).split(data)
    return BuildContext(data=split.train, target=TARGET, dim=DIM, cache_dir=Path(cache_dir))


def kit_texts(data: CrossDomainData) -> list[str]:
    """Every item text of ``data`` (e.g. to build a tiny tokenizer's vocabulary)."""
    return [t for d in data.domains.values() for t in d.item_texts()]
