"""The ``cdrib`` model's registration: its factory (explicit keyword arguments), search space and meanings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossbench.plugin.specs import CategoricalParam, ComponentSpec, FloatParam

if TYPE_CHECKING:
    from crossbench_cdr.cdrib import CDRIB


def cdrib(
    *, dim: int = 128, layers: int = 3, dropout: float = 0.3, leaky: float = 0.1, beta: float = 1.5, margin: float = 0.3,
    critic: str = "hinge", lr: float = 1e-3, weight_decay: float = 5e-4, batch_size: int = 1024, user_batch_size: int = 64,
    epochs: int = 100, patience: int | None = None, source: str | None = None,
) -> CDRIB:
    """CDRIB (Cao et al., ICDE 2022) as the authors' code trains it: variational graph encoders per domain,
    cross-domain and in-domain information bottlenecks, a contrastive critic; see :mod:`crossbench_cdr.cdrib`."""
    from crossbench_cdr.cdrib import CDRIB

    return CDRIB(
        dim=dim, layers=layers, dropout=dropout, leaky=leaky, beta=beta, margin=margin, critic=critic, lr=lr,
        weight_decay=weight_decay, batch_size=batch_size, user_batch_size=user_batch_size, epochs=epochs,
        patience=patience, source=source,
    )


CDRIB_MODELS: tuple[ComponentSpec, ...] = (
    ComponentSpec(
        "cdrib", cdrib,
        "CDRIB as in Cao et al. 2022, trained as the authors' code does: a variational graph encoder per domain, "
        "overlapping users' latents predict the other domain, KL and contrastive regularisers; cold users scored "
        "through their source latent",
        (
            CategoricalParam("dim", (64, 128)),
            FloatParam("beta", 0.1, 2.0),
            FloatParam("dropout", 0.0, 0.5),
            FloatParam("lr", 1e-4, 1e-2, log=True),
        ),
        {
            "dim": "embedding size of users and items in each domain (every encoder layer keeps it)",
            "layers": "encoder layers per domain (the last one variational); a node's representation concatenates all",
            "dropout": "dropout on the users' and items' inputs of every encoder layer",
            "leaky": "negative slope of the LeakyReLU after every graph convolution",
            "beta": "weight of the users' KL term (the items' term has weight 1) in each domain",
            "margin": "margin of the critic's hinge between a user's own pair and a mixed pair (sigmoid scores)",
            "critic": "the critic's loss: 'hinge' (the authors' default) or 'bce' (log-loss)",
            "lr": "Adam learning rate",
            "weight_decay": "Adam weight decay (L2 on every parameter)",
            "batch_size": "training interactions (of both domains together) per batch",
            "user_batch_size": "overlapping users whose pairs the critic sees per batch",
            "epochs": "most training epochs",
            "patience": "epochs without a better validation score before training stops early; None: epochs (never early)",
            "source": "the one non-target domain to transfer from; None pools every non-target domain as one source",
        },
    ),
)
