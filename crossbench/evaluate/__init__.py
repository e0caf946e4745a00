"""Full-ranking evaluation."""

from crossbench.evaluate.ranking import EvalResult, evaluate, relevant_ranks

__all__ = ["EvalResult", "evaluate", "relevant_ranks"]
