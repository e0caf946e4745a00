"""Run crossbench's conformance kit on every component of this plugin."""

import math

import pytest

crossbench_plugins = ["example"]


@pytest.fixture(scope="session")
def crossbench_oracles():
    """dcg@k by its definition, from the full ranking (best first) and the relevant items."""
    return {"dcg": lambda ranked, relevant, k: sum(1 / math.log2(p + 2) for p, i in enumerate(ranked[:k]) if i in relevant)}
