"""Full-ranking evaluation, per-user results, breakdowns, sampled evaluation and statistics.

The names below load :mod:`crossbench.evaluate.ranking` (and torch) on first use, so that
the torch-free submodules (per-user files, statistics) can be imported on their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crossbench.evaluate.ranking import EvalResult, chunk_size_for, evaluate, group_key, relevant_ranks

__all__ = ["EvalResult", "chunk_size_for", "evaluate", "group_key", "relevant_ranks"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from crossbench.evaluate import ranking

        return getattr(ranking, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
