"""How a stage's epochs are judged on the validation users (:mod:`crossbench.train.stages`).

The split's task decides (``split.evaluation.kind``):

- ranking protocols: NDCG@``k`` of the model's ``score`` on the validation users, full
  ranking with their training items excluded, the core validation metric the composed trainer
  uses too (:data:`crossbench.evaluate.validation.VALIDATION_SPEC`); higher is better;
- the rating task (``cold-start-rating``): the RMSE of the model's ``predict_ratings`` over the
  validation users' held-out ratings (:func:`crossbench.evaluate.rating.validation_rmse`), the
  error the run reports on the test users; lower is better.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from crossbench.data.protocols import FitSplit, exclude_for_validation
from crossbench.errors import CrossbenchError
from crossbench.evaluate.distributed import evaluate_sharded
from crossbench.evaluate.ranking import evaluate
from crossbench.evaluate.rating import RATING_VALIDATION_METRIC, validation_rmse
from crossbench.evaluate.validation import VALIDATION_METRIC, VALIDATION_SPEC
from crossbench.train.distributed import validation_means

__all__ = ["PredictFn", "Validator", "validation_score", "validator"]

#: ``predict(users, items)``: one predicted rating per aligned (user, target item) pair (the rating task).
PredictFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

def validation_score(score: Callable[..., torch.Tensor], split: FitSplit, *, k: int, device: torch.device) -> float:
    """The core validation metric: NDCG@``k`` of ``score`` on the validation users (training items excluded)."""
    n_target = split.train.domain(split.target).n_items
    means = validation_means(  # sharded over the ranks of data-parallel training, if any
        evaluate, evaluate_sharded, score_fn=score, truth=split.valid, n_items=n_target,
        metrics={VALIDATION_METRIC: VALIDATION_SPEC}, ks=[k], exclude=exclude_for_validation(split), device=device,
    )
    return float(means[f"{VALIDATION_METRIC}@{k}"])


@dataclass(frozen=True)
class Validator:
    """How a stage's epochs are judged on the validation users: ``metric`` (its name in fit
    reports), ``measure()`` (its value now) and whether lower values are better."""

    metric: str
    measure: Callable[[], float]
    lower_is_better: bool = False

    def better(self, value: float, best: float | None) -> bool:
        """Whether ``value`` beats ``best`` (``None``: nothing measured yet) strictly."""
        if best is None:
            return True
        return value < best if self.lower_is_better else value > best


def validator(
    split: FitSplit, *, k: int, score: Callable[..., torch.Tensor], predict: PredictFn | None, device: torch.device
) -> Validator:
    """The split's validation measure: RMSE of ``predict`` on the validation users' held-out ratings
    under the rating task (lower is better), NDCG@``k`` of ``score`` otherwise (higher is better)."""
    if split.evaluation.kind == "rating":
        if predict is None:
            raise CrossbenchError(
                f"protocol {split.protocol!r} is a rating task: early stopping reads the validation users' ratings, "
                "so the model must predict ratings (declare predicts_ratings() and answer predict_ratings)"
            )
        return Validator(RATING_VALIDATION_METRIC, lambda: validation_rmse(predict, split.valid, device=device), True)
    return Validator(f"{VALIDATION_METRIC}@{k}", lambda: validation_score(score, split, k=k, device=device))
