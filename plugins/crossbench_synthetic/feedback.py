"""The planted feedback model: simulated users take shown items by the generator's own preferences."""

from __future__ import annotations

from typing import Any

import numpy as np

from crossbench.errors import CrossbenchError
from crossbench.loop.feedback import FeedbackContext, FeedbackModel, examination
from crossbench_synthetic.generator import PlantedChoice, SyntheticDataset


class Planted(FeedbackModel):
    """A shown item is taken with the generator's acceptance probability, times the examination chance of its rank."""

    def __init__(self, *, draws: float | None = None, position_bias: float = 0.0) -> None:
        if draws is not None and not draws > 0:
            raise CrossbenchError(f"feedback model 'planted': draws must be positive, got {draws}")
        examination(1, position_bias)
        self.draws, self.position_bias = draws, position_bias
        self.choice: PlantedChoice | None = None

    def check(self, *, dataset: str, where: str) -> None:
        if dataset != "synthetic":
            raise CrossbenchError(
                f"{where}: feedback model 'planted' knows the preferences of the 'synthetic' dataset only, not {dataset!r}; "
                "use feedback = \"replay\" for recorded data"
            )

    def start(self, context: FeedbackContext) -> None:
        params = context.data.meta.get("generator")
        if not isinstance(params, dict):
            raise CrossbenchError("feedback model 'planted': the dataset carries no generator parameters; it needs the 'synthetic' dataset")
        generator = SyntheticDataset(**params)
        self.choice = generator.planted(context.target)
        self.n_draws = float(self.draws if self.draws is not None else generator.mean_interactions)
        # global user and item indices -> the generator's own numbers (ids are u000017, i000042)
        self.user_number = np.array([int(str(u)[1:]) for u in context.data.user_ids], dtype=np.int64)
        items = context.data.domain(context.target).items["item_id"]
        self.item_number = np.array([int(str(i)[1:]) for i in items], dtype=np.int64)

    def respond(self, users: np.ndarray, shown: np.ndarray, *, round: int, rng: np.random.Generator) -> np.ndarray:
        if self.choice is None:
            raise CrossbenchError("feedback model 'planted': respond() called before start()")
        items = np.where(shown >= 0, self.item_number[np.maximum(shown, 0)], -1)
        p = self.choice.acceptance(self.user_number[users], items, draws=self.n_draws)
        p = p * examination(shown.shape[1], self.position_bias)[None, :]
        return (rng.random(shown.shape) < p) & (shown >= 0)

    def describe(self) -> dict[str, Any]:
        return {"draws": self.draws, "position_bias": self.position_bias}
