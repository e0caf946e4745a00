"""A generated two-domain dataset, built from raw ids with ``CrossDomainData.from_frames``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crossbench.data.model import CrossDomainData
from crossbench.plugin.interfaces import Dataset

GENRES = ("jazz", "folk", "crime", "travel", "poetry", "science")


class ExampleShop(Dataset):
    """Customers of a book shop and a music shop; a customer's genre drives both."""

    def __init__(self, *, n_users: int, n_items: int, seed: int) -> None:
        self.n_users, self.n_items, self.seed = n_users, n_items, seed

    def load(self) -> CrossDomainData:
        rng = np.random.default_rng(self.seed)
        rows = []
        for u in range(self.n_users):
            taste = int(rng.integers(len(GENRES)))
            for domain in ("books", "music"):
                liked = [i for i in range(self.n_items) if i % len(GENRES) == taste]
                pool = rng.permutation(sorted({*liked, *rng.choice(self.n_items, size=3).tolist()}))[: int(rng.integers(2, 7))]
                for t, item in enumerate(pool):
                    # raw ids of any type; `timestamp` integer (here: days), `rating` optional
                    rows.append((domain, f"customer-{u}", f"{domain}-{item}", 100 * u % 997 + 7 * t, 1.0))
        interactions = pd.DataFrame(rows, columns=["domain", "user", "item", "timestamp", "rating"])
        items = pd.DataFrame(
            [(d, f"{d}-{i}", f"{GENRES[i % len(GENRES)]} {d[:-1]} {i}", "") for d in ("books", "music") for i in range(self.n_items)],
            columns=["domain", "item", "title", "text"],
        )
        # meta["default_target"] names the domain `crossbench run` ranks when no --target is given
        return CrossDomainData.from_frames("example-shop", interactions, items, meta={"default_target": "music"})


def example_shop(*, n_users: int = 120, n_items: int = 30, seed: int = 0) -> ExampleShop:
    """The dataset factory: keyword hyperparameters only, each with a default."""
    return ExampleShop(n_users=n_users, n_items=n_items, seed=seed)
