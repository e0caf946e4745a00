"""The built-in synthetic cross-domain dataset and its planted feedback model.

The generator (numpy, pandas) is imported when the dataset is built, not when the plugin registers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crossbench import hookimpl
from crossbench.plugin.specs import ComponentSpec

if TYPE_CHECKING:
    from crossbench_synthetic.feedback import Planted
    from crossbench_synthetic.generator import SyntheticDataset


def synthetic(
    *,
    n_users: int = 6000,
    n_items: int = 1500,
    n_domains: int = 2,
    n_topics: int = 16,
    transfer: float = 0.8,
    overlap: float = 0.6,
    mean_interactions: float = 20.0,
    zipf_exponent: float = 0.8,
    taste_strength: float = 4.0,
    seed: int = 0,
) -> SyntheticDataset:
    """Synthetic cross-domain data; ``transfer`` in [0, 1] is how strongly one domain predicts another."""
    from crossbench_synthetic.generator import SyntheticDataset

    return SyntheticDataset(
        n_users=n_users, n_items=n_items, n_domains=n_domains, n_topics=n_topics, transfer=transfer,
        overlap=overlap, mean_interactions=mean_interactions, zipf_exponent=zipf_exponent,
        taste_strength=taste_strength, seed=seed,
    )


def planted(*, draws: float | None = None, position_bias: float = 0.0) -> Planted:
    """The synthetic generator's planted preferences (``draws``: choices per user, default its mean_interactions)."""
    from crossbench_synthetic.feedback import Planted

    return Planted(draws=draws, position_bias=position_bias)


@hookimpl
def crossbench_datasets() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            "synthetic",
            synthetic,
            "generated users with tastes shared across domains (knob: transfer), Zipf popularity, topical item text",
            meanings={
                "n_users": "users generated", "n_items": "items per domain", "n_domains": "domains generated",
                "n_topics": "latent taste topics shared by every domain",
                "transfer": "how strongly a user's taste in one domain predicts another (0: not at all; 1: the same taste)",
                "overlap": "share of users active in every domain (the rest are active in one domain each)",
                "mean_interactions": "mean items a user takes in a domain they are active in",
                "zipf_exponent": "exponent of the items' Zipf popularity weights",
                "taste_strength": "how much the taste-topic match outweighs popularity when a user draws items",
                "seed": "random seed of the generator (same seed, same data)",
            },
        )
    ]


@hookimpl
def crossbench_feedback_models() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            "planted", planted,
            "synthetic data only: a shown item is taken with the generator's own acceptance probability (seeded; optional position bias)",
            meanings={
                "draws": "draws from the planted choice distribution; a shown item is taken if any picks it (None: mean_interactions)",
                "position_bias": "exponent of the examination chance 1 / (rank + 1) ** position_bias of a shown item (0: every rank looked at)",
            },
        )
    ]


def __getattr__(name: str) -> Any:
    if name == "SyntheticDataset":
        from crossbench_synthetic.generator import SyntheticDataset

        return SyntheticDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SyntheticDataset", "synthetic"]
