"""The rating task: MAE and RMSE of predicted ratings over held-out ratings (EMCDR, PTUPCDR).

A rating protocol (``cold-start-rating``) holds out the test users' target ratings in a
:class:`~crossbench.data.protocols.GroundTruth` with ``values``. :func:`evaluate_rating` asks
the model for a rating of each held-out (user, item) pair and reports, as the papers do, the
error over all held-out ratings (each rating counted once, not averaged per user first):

    MAE  = mean |r - r̂|          RMSE = sqrt(mean (r - r̂)²)

The result's ``mode`` is ``"rating"``; its two values are catalogue-level (one number per run),
lower is better, and ranking metrics never appear beside them. Only models that declare
``predicts_ratings()`` (see :class:`~crossbench.plugin.interfaces.Recommender`) are evaluated:
:func:`check_task` refuses the others, by name, before any work.

Model selection under the rating task reads the validation users' held-out ratings the same
way: :func:`validation_rmse` (RMSE, lower is better) is what early stopping and tuning compare.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from crossbench.data.protocols import Evaluation, GroundTruth
from crossbench.errors import CrossbenchError
from crossbench.evaluate.ranking import EvalResult

#: the rating task's columns, in table order; both are errors (lower is better)
RATING_COLUMNS = ("mae", "rmse")
#: what model selection (early stopping, tuning) reads under the rating task: the validation
#: users' RMSE, lower is better (RMSE rather than MAE: the rating models train by squared error)
RATING_VALIDATION_METRIC = "rmse"


def predicts_ratings(model: Any) -> bool:
    """Whether ``model`` declares that it predicts ratings (a model without the method does not)."""
    declare = getattr(model, "predicts_ratings", None)
    return bool(declare()) if callable(declare) else False


def check_task(evaluation: Evaluation, models: Mapping[str, Any], *, protocol: str, sampled_negatives: int = 0) -> None:
    """Refuse, before any work, a model or option the protocol's task cannot use.

    Under a rating protocol every model must predict ratings, and ``--sampled`` does not apply;
    a sampled paper protocol fixes its own negatives, so ``--sampled`` must not change them.
    """
    if evaluation.kind == "rating":
        ranking_only = [label for label, model in models.items() if not predicts_ratings(model)]
        if ranking_only:
            raise CrossbenchError(
                f"protocol {protocol!r} is a rating task (MAE, RMSE) but model(s) {', '.join(map(repr, ranking_only))} only rank "
                "items (they do not declare predicts_ratings(); e.g. cmf, emcdr and ptupcdr do with objective=\"rating\"); "
                "drop them or use a ranking protocol"
            )
    if sampled_negatives and evaluation.kind != "full":
        raise CrossbenchError(
            f"protocol {protocol!r} evaluates by {evaluation.label}; sampled_negatives (--sampled) {sampled_negatives} "
            "does not apply to it: drop it"
        )


def rating_errors(truth: GroundTruth, predicted: np.ndarray) -> dict[str, float]:
    """MAE and RMSE of ``predicted`` (aligned with ``truth.items``) against ``truth.values``."""
    if truth.values is None:
        raise CrossbenchError("the ground truth holds no ratings; a rating task needs a rating protocol (e.g. cold-start-rating)")
    if len(truth.values) == 0:
        raise CrossbenchError("the ground truth holds no ratings to predict (no test pairs)")
    err = np.asarray(predicted, dtype=np.float64) - np.asarray(truth.values, dtype=np.float64)
    if not np.isfinite(err).all():
        raise CrossbenchError(f"{int((~np.isfinite(err)).sum())} predicted rating(s) are not finite numbers")
    return {"mae": float(np.abs(err).mean()), "rmse": math.sqrt(float((err**2).mean()))}


def evaluate_rating(
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    truth: GroundTruth,
    *,
    chunk_size: int = 65536,
    device: torch.device | str = "cpu",
) -> EvalResult:
    """Predict every held-out (user, item) pair of ``truth`` with ``predict(users, items)`` and
    return MAE and RMSE (see the module docstring) as a ``"rating"`` result."""
    users = np.repeat(truth.users, np.diff(truth.indptr)).astype(np.int64)
    items = truth.items.astype(np.int64)
    device = torch.device(device)
    parts = []
    for start in range(0, len(users), chunk_size):
        u = torch.as_tensor(users[start : start + chunk_size], device=device)
        i = torch.as_tensor(items[start : start + chunk_size], device=device)
        out = predict(u, i)
        if tuple(out.shape) != (len(u),):
            raise CrossbenchError(f"predict_ratings returned shape {tuple(out.shape)} for {len(u)} (user, item) pairs; return one rating per pair")
        parts.append(out.detach().to(torch.float64).cpu().numpy())
    predicted = np.concatenate(parts) if parts else np.zeros(0)
    return EvalResult(users=truth.users.copy(), per_user={}, catalog=rating_errors(truth, predicted), mode="rating")


def validation_rmse(
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], valid: GroundTruth, *, device: torch.device | str = "cpu"
) -> float:
    """RMSE of ``predict`` over the validation users' held-out ratings (``valid.values``): the
    rating task's model-selection value, lower is better (see :data:`RATING_VALIDATION_METRIC`)."""
    return evaluate_rating(predict, valid, device=device).catalog[RATING_VALIDATION_METRIC]
