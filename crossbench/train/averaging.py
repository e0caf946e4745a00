"""An exponential moving average of the trainable weights, for validation and the kept model.

With ``TrainConfig.ema_epochs = H > 0`` the trainer keeps, beside the weights the optimiser
moves, their average ``a <- d * a + (1 - d) * w`` after every optimiser step, with
``d = 1 - 1 / (H * steps per epoch)`` (a horizon of about ``H`` epochs of steps), starting from
the weights after the first step. Each epoch's validation scores the averaged weights, and the
state early stopping keeps is the averaged one; training goes on from the optimiser's own
weights. Averaged weights smooth the step-to-step noise of the optimiser, which is what a
validation curve over a few hundred users otherwise picks up (Polyak averaging; the EMA of
weights used in the training of large sequence models).

With ``H = 0`` nothing is kept and nothing is swapped: training is exactly what it is without
this module.
"""

from __future__ import annotations

import torch


class WeightAverage:
    """The moving average of ``params`` over about ``epochs`` epochs of optimiser steps (0: off)."""

    def __init__(self, params: list[torch.nn.Parameter], *, epochs: float) -> None:
        self.params, self.epochs = params, epochs
        self.average: list[torch.Tensor] | None = None
        self.saved: list[torch.Tensor] | None = None  # the optimiser's weights while the average is in place

    def update(self, *, steps_per_epoch: int) -> None:
        """Fold the current weights in (after an optimiser step)."""
        if self.epochs <= 0:
            return
        with torch.no_grad():
            if self.average is None:
                self.average = [p.detach().clone() for p in self.params]
                return
            keep = 1.0 - 1.0 / max(self.epochs * steps_per_epoch, 1.0)
            for a, p in zip(self.average, self.params):
                a.lerp_(p.detach(), 1.0 - keep)

    def evaluating(self, model: torch.nn.Module) -> None:
        """``model.eval()`` with the averaged weights in place of the optimiser's."""
        model.eval()
        if self.average is None or self.saved is not None:
            return
        with torch.no_grad():
            self.saved = [p.detach().clone() for p in self.params]
            for p, a in zip(self.params, self.average):
                p.copy_(a)

    def training(self, model: torch.nn.Module) -> None:
        """``model.train()`` with the optimiser's own weights back in place."""
        model.train()
        if self.saved is None:
            return
        with torch.no_grad():
            for p, s in zip(self.params, self.saved):
                p.copy_(s)
        self.saved = None
