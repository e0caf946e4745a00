"""The ``unicdr`` model's registration: its factory (explicit keyword arguments), search space and meanings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossbench.plugin.specs import CategoricalParam, ComponentSpec, FloatParam

if TYPE_CHECKING:
    from crossbench_cdr.unicdr import UniCDR


def unicdr(
    *, dim: int = 128, aggregator: str = "mean", lambda_a: float = 0.5, lambda_loss: float = 0.4, dropout: float = 0.3,
    negatives: int = 10, history_length: int = 10, eval_history: int = 50, mask_rate: float = 0.1, lr: float = 1e-3,
    weight_decay: float = 1e-5, batch_size: int = 512, steps: int = 500, epochs: int = 100, patience: int = 10,
) -> UniCDR:
    """UniCDR (Cao et al., WSDM 2023) as the authors' code trains it: domain-specific and domain-shared user views; see :mod:`crossbench_cdr.unicdr`."""
    from crossbench_cdr.unicdr import UniCDR

    return UniCDR(
        dim=dim, aggregator=aggregator, lambda_a=lambda_a, lambda_loss=lambda_loss, dropout=dropout, negatives=negatives,
        history_length=history_length, eval_history=eval_history, mask_rate=mask_rate, lr=lr, weight_decay=weight_decay,
        batch_size=batch_size, steps=steps, epochs=epochs, patience=patience,
    )


UNICDR_MODELS: tuple[ComponentSpec, ...] = (
    ComponentSpec(
        "unicdr", unicdr,
        "UniCDR as in Cao et al. 2023, trained as the authors' code does: per-domain and shared user views over masked "
        "histories, a contrastive critic between them, log-loss with sampled negatives (cold users: the shared view)",
        (CategoricalParam("dim", (32, 64, 128)), FloatParam("lr", 1e-4, 1e-2, log=True), FloatParam("lambda_loss", 0.1, 0.9),
         CategoricalParam("aggregator", ("mean", "user_attention"))),
        {
            "dim": "embedding size of every user and item table",
            "aggregator": "how a view pools the user's items: 'mean' or 'user_attention' (attention queried by the user's id embedding)",
            "lambda_a": "weight of the user's id embedding in each view; the pooled items get 1 - lambda_a",
            "lambda_loss": "weight of the recommendation log-loss in each domain's loss; the critic loss gets 1 - lambda_loss",
            "dropout": "dropout on both user views and on the scored item embeddings (and the attention weights)",
            "negatives": "uniformly sampled negative items per training interaction, drawn once before training",
            "history_length": "most items of a user per domain in a training sample's contexts",
            "eval_history": "most items of a user per domain read when scoring (a seeded random sample)",
            "mask_rate": "share of a user's items per domain left out of each training sample's contexts",
            "lr": "Adam learning rate",
            "weight_decay": "Adam weight decay (L2 on every parameter)",
            "batch_size": "training interactions per domain in each step (one step takes a batch of every domain)",
            "steps": "optimiser steps per epoch",
            "epochs": "most training epochs",
            "patience": "epochs without a better validation score before training stops early",
        },
    ),
)
