"""The registered models of the ``cdr`` plugin: factories (explicit keyword arguments) and search spaces.

Each factory imports its model's module when called, so registering the plugin imports no
torch. Each model family has its own tuple below, edited only by its owner; ``RECOMMENDERS``
joins them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossbench.interfaces import CategoricalParam, ComponentSpec, FloatParam, IntParam

if TYPE_CHECKING:
    from crossbench_cdr.emcdr import Emcdr
    from crossbench_cdr.ptupcdr import Ptupcdr


# --------------------------------------------------------------------------- mapping models (EMCDR, PTUPCDR)


def emcdr(
    *, objective: str = "ranking", source: str | None = None, dim: int = 10, mapping: str = "mlp", hidden: int = 0,
    lr: float = 0.01, weight_decay: float = 0.0, epochs: int = 10, map_epochs: int = 10, batch_size: int = 256,
    map_batch_size: int = 64, patience: int = 3, valid_k: int = 10,
) -> Emcdr:
    """EMCDR (Man et al., IJCAI 2017): per-domain MF, then a mapping fitted on overlapping users; see :mod:`crossbench_cdr.emcdr`."""
    from crossbench_cdr.emcdr import Emcdr

    return Emcdr(
        objective=objective, source=source, dim=dim, mapping=mapping, hidden=hidden, lr=lr, weight_decay=weight_decay,
        epochs=epochs, map_epochs=map_epochs, batch_size=batch_size, map_batch_size=map_batch_size, patience=patience,
        valid_k=valid_k,
    )


def ptupcdr(
    *, objective: str = "ranking", source: str | None = None, dim: int = 10, meta_dim: int = 50, history_length: int = 20,
    lr: float = 0.01, weight_decay: float = 0.0, epochs: int = 10, meta_epochs: int = 10, batch_size: int = 256,
    meta_batch_size: int = 128, patience: int = 3, valid_k: int = 10,
) -> Ptupcdr:
    """PTUPCDR (Zhu et al., WSDM 2022): pretrained per-domain MF, then a meta network emitting each user's bridge; see :mod:`crossbench_cdr.ptupcdr`."""
    from crossbench_cdr.ptupcdr import Ptupcdr

    return Ptupcdr(
        objective=objective, source=source, dim=dim, meta_dim=meta_dim, history_length=history_length, lr=lr,
        weight_decay=weight_decay, epochs=epochs, meta_epochs=meta_epochs, batch_size=batch_size,
        meta_batch_size=meta_batch_size, patience=patience, valid_k=valid_k,
    )


_FACTOR_SPACE = (
    CategoricalParam("dim", (10, 16, 32, 64)),
    FloatParam("lr", 1e-3, 3e-2, log=True),
    FloatParam("weight_decay", 0.0, 1e-3),
    IntParam("epochs", 5, 50, log=True),
)

MAPPING_MODELS: tuple[ComponentSpec, ...] = (
    ComponentSpec(
        "emcdr", emcdr, "EMCDR as in Man et al. 2017: per-domain MF, then an MLP mapping fitted on overlapping users (factors frozen)",
        (*_FACTOR_SPACE, CategoricalParam("mapping", ("mlp", "linear"))),
    ),
    ComponentSpec(
        "ptupcdr", ptupcdr, "PTUPCDR as in Zhu et al. 2022: pretrained MF, meta network emitting a per-user bridge, task-oriented loss",
        (*_FACTOR_SPACE, IntParam("meta_dim", 16, 128, log=True)),
    ),
)

# --------------------------------------------------------------------------- graph models (LightGCN, BiTGCF)

GRAPH_MODELS: tuple[ComponentSpec, ...] = ()

# --------------------------------------------------------------------------- SSCDR, CoNet, CMF

OTHER_MODELS: tuple[ComponentSpec, ...] = ()

#: Every model of the plugin, in the order ``crossbench list models`` shows them.
RECOMMENDERS: tuple[ComponentSpec, ...] = (*MAPPING_MODELS, *GRAPH_MODELS, *OTHER_MODELS)
