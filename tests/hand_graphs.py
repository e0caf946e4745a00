"""A hand-checked two-domain split shared by the graph models' tests.

Target 'films': u0-f0, u0-f1, u1-f0 (a four-node graph); source 'books': u0-b0, u2-b0. u0 is the
only shared user (source degree 1, target degree 2); u1 is in films only; u2 is in books only, a
cold user of the target reached in the merged graph through b0 and u0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import FitSplit, GroundTruth
from crossbench.plugin.interfaces import RunEnv


def tiny_split() -> FitSplit:
    """The split described in this module's docstring, with no validation users."""
    rows = [("films", "u0", "f0", 1), ("films", "u0", "f1", 2), ("films", "u1", "f0", 3),
            ("books", "u0", "b0", 4), ("books", "u2", "b0", 5)]
    frame = pd.DataFrame(rows, columns=["domain", "user", "item", "timestamp"])
    data = CrossDomainData.from_frames("tiny", frame, domain_order=["films", "books"])
    empty = GroundTruth.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64))
    return FitSplit(protocol="hand", target="films", train=data, valid=empty)


def env() -> RunEnv:
    """A run environment without a registry (the models under test never look one up)."""
    return RunEnv(registry=None, seed=0, progress=False)  # type: ignore[arg-type]
