"""The registered ``disencdr`` model of the ``cdr`` plugin: its factory (explicit keyword arguments), meanings and search space.

The factory imports the model's module when called, so registering the plugin imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossbench.plugin.specs import CategoricalParam, ComponentSpec, FloatParam

if TYPE_CHECKING:
    from crossbench_cdr.disencdr import DisenCDR


def disencdr(
    *, dim: int = 128, hidden: int = 128, layers: int = 2, dropout: float = 0.3, leaky: float = 0.1, beta: float = 0.9,
    share_rate: float | None = None, lr: float = 1e-3, batch_size: int = 1024, epochs: int = 50, warmup_epochs: int = 9,
    patience: int = 10, valid_k: int = 10, source: str | None = None,
) -> DisenCDR:
    """DisenCDR (Cao et al., SIGIR 2022) as the authors' code trains it; see :mod:`crossbench_cdr.disencdr`."""
    from crossbench_cdr.disencdr import DisenCDR

    return DisenCDR(
        dim=dim, hidden=hidden, layers=layers, dropout=dropout, leaky=leaky, beta=beta, share_rate=share_rate, lr=lr,
        batch_size=batch_size, epochs=epochs, warmup_epochs=warmup_epochs, patience=patience, valid_k=valid_k, source=source,
    )


DISENTANGLED_MODELS: tuple[ComponentSpec, ...] = (
    ComponentSpec(
        "disencdr", disencdr,
        "DisenCDR as in Cao et al. 2022, trained as the authors' code does: variational graph encoders for domain-specific "
        "and domain-shared users, mutual-information KL regularisers, BCE with one uniform negative per domain",
        (
            CategoricalParam("dim", (32, 64, 128)),
            FloatParam("lr", 1e-4, 1e-2, log=True),
            FloatParam("dropout", 0.0, 0.5),
            FloatParam("beta", 0.5, 0.99),
        ),
        {
            "dim": "size of every user and item embedding and of the encoders' outputs",
            "hidden": "width of each graph convolution's first (users-to-items or items-to-users) hop",
            "layers": "layers of each variational graph encoder (the last one is the variational layer)",
            "dropout": "dropout on the embeddings entering each encoder layer",
            "leaky": "negative slope of the leaky ReLU after each graph convolution",
            "beta": "weight of the two KL terms pulling the shared posterior towards each domain's own; "
                    "1 - beta weighs its KL to the prior",
            "share_rate": "one source weight for every user's shared representation; None weighs each user by the "
                          "source share of their training interactions",
            "lr": "Adam learning rate",
            "batch_size": "training interactions (of both domains) per batch",
            "epochs": "most training epochs",
            "warmup_epochs": "first epochs that train the domain-specific encoders alone (no shared part, no shared KL)",
            "patience": "epochs without a better validation score before training stops early",
            "valid_k": "cut-off k of the validation NDCG@k that early stopping reads",
            "source": "the one non-target domain to transfer from; None pools every non-target domain as one source",
        },
    ),
)
