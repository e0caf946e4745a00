"""Full-ranking evaluation, per-user results, breakdowns, sampled evaluation and statistics."""

from crossbench.evaluate.ranking import EvalResult, chunk_size_for, evaluate, group_key, relevant_ranks

__all__ = ["EvalResult", "chunk_size_for", "evaluate", "group_key", "relevant_ranks"]
