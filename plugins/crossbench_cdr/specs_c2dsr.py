"""The registered ``c2dsr`` model: its factory (explicit keyword arguments), meanings and search space.

The factory imports the model's module when called, so registering the plugin imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossbench.plugin.specs import CategoricalParam, ComponentSpec, FloatParam

if TYPE_CHECKING:
    from crossbench_cdr.c2dsr import C2DSR


def c2dsr(
    *, dim: int = 256, blocks: int = 2, heads: int = 1, gnn_layers: int = 1, dropout: float = 0.2, lam: float = 0.7,
    maxlen: int = 15, lr: float = 1e-3, batch_size: int = 256, epochs: int = 100, patience: int = 100,
    source: str | None = None,
) -> C2DSR:
    """C2DSR (Cao et al., CIKM 2022) as the authors' code trains it: mixed-sequence and single-domain encoders over
    item-transition graphs, next-item losses and cross-domain infomax; see :mod:`crossbench_cdr.c2dsr`."""
    from crossbench_cdr.c2dsr import C2DSR

    return C2DSR(dim=dim, blocks=blocks, heads=heads, gnn_layers=gnn_layers, dropout=dropout, lam=lam, maxlen=maxlen, lr=lr,
                 batch_size=batch_size, epochs=epochs, patience=patience, source=source)


C2DSR_MODELS: tuple[ComponentSpec, ...] = (
    ComponentSpec(
        "c2dsr", c2dsr,
        "C2DSR as in Cao et al. 2022, trained as the authors' code does: self-attention encoders over each user's mixed "
        "source/target sequence and its two single-domain parts, item-transition graphs, next-item cross-entropies and "
        "a contrastive cross-domain infomax term",
        (
            CategoricalParam("dim", (64, 128, 256)),
            FloatParam("lr", 1e-4, 1e-2, log=True),
            FloatParam("lam", 0.1, 0.9),
            FloatParam("dropout", 0.0, 0.5),
        ),
        {
            "dim": "size of the item embeddings and of every encoder's states",
            "blocks": "self-attention blocks of each sequence encoder",
            "heads": "attention heads per block (must divide dim)",
            "gnn_layers": "propagation layers of each item-transition graph encoder",
            "dropout": "dropout on the item tables before each graph layer, on the sequence inputs, attention weights and feed-forward layers",
            "lam": "weight of the four next-item cross-entropies; the infomax log-losses get 1 - lam",
            "maxlen": "encoder positions: training windows hold maxlen items, a scored history its maxlen - 1 most recent items",
            "lr": "Adam learning rate",
            "batch_size": "training sequences per batch",
            "epochs": "most training epochs",
            "patience": "epochs without a better validation score before training stops early (the default, equal to epochs, never stops)",
            "source": "the one non-target domain to transfer from; None pools every non-target domain as one source",
        },
    ),
)
