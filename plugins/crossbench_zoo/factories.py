"""Factories of the zoo's components and whole models.

Nothing here imports torch: each factory loads the module that defines its component when
it is called, so registering the plugin (``crossbench list``, ``crossbench --help``) stays
cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossbench.plugin.interfaces import BuildContext

if TYPE_CHECKING:
    from crossbench_zoo.fusions import AttentionFusion, ConcatFusion, EmcdrFusion, GatingFusion, ItemAttentionFusion, PtupcdrFusion
    from crossbench_zoo.neighbours import EASE, ItemKNN
    from crossbench_zoo.scorers import CosineScorer, MlpScorer
    from crossbench_zoo.sequence import GruUserEncoder, TransformerUserEncoder
    from crossbench_zoo.text import TextItemEncoder


def concat_fusion(*, context: BuildContext, hidden: int = 128, dropout: float = 0.1) -> ConcatFusion:
    """Concatenate every domain's vector and presence flags, MLP, add to the target vector."""
    from crossbench_zoo.fusions import ConcatFusion

    return ConcatFusion(domains=context.data.domain_names, dim=context.dim, hidden=hidden, dropout=dropout)


def gating_fusion(*, context: BuildContext) -> GatingFusion:
    """Element-wise learned gate between the target vector and the mapped source vectors."""
    from crossbench_zoo.fusions import GatingFusion

    return GatingFusion(domains=context.data.domain_names, dim=context.dim)


def attention_fusion(*, context: BuildContext, heads: int = 4, dropout: float = 0.1) -> AttentionFusion:
    """Cross-domain multi-head attention from the target domain over every domain's user vector."""
    from crossbench_zoo.fusions import AttentionFusion

    return AttentionFusion(domains=context.data.domain_names, dim=context.dim, heads=heads, dropout=dropout)


def item_attention_fusion(
    *, context: BuildContext, heads: int = 2, layers: int = 1, dropout: float = 0.0, source_mean: bool = False
) -> ItemAttentionFusion:
    """Item-level cross-domain attention: the target query attends over the user's individual items."""
    from crossbench_zoo.fusions import ItemAttentionFusion

    return ItemAttentionFusion(
        domains=context.data.domain_names, dim=context.dim, heads=heads, layers=layers, dropout=dropout, source_mean=source_mean
    )


def emcdr_fusion(*, context: BuildContext, hidden: int = 128, dropout: float = 0.0) -> EmcdrFusion:
    """EMCDR-style MLP mapping from source to target user vectors, for users cold in the target."""
    from crossbench_zoo.fusions import EmcdrFusion

    return EmcdrFusion(domains=context.data.domain_names, dim=context.dim, hidden=hidden, dropout=dropout)


def ptupcdr_fusion(*, context: BuildContext, hidden: int = 64) -> PtupcdrFusion:
    """PTUPCDR-style bridge generated per user by a meta network from the source history's encoding."""
    from crossbench_zoo.fusions import PtupcdrFusion

    return PtupcdrFusion(domains=context.data.domain_names, dim=context.dim, hidden=hidden)


def gru_user_encoder(*, context: BuildContext, domain: str, layers: int = 1, dropout: float = 0.1) -> GruUserEncoder:
    """GRU over the user's history in ``domain`` (GRU4Rec-style)."""
    from crossbench_zoo.sequence import GruUserEncoder

    return GruUserEncoder(dim=context.dim, layers=layers, dropout=dropout)


def transformer_user_encoder(
    *, context: BuildContext, domain: str, layers: int = 2, heads: int = 2, dropout: float = 0.1, max_length: int = 200,
    norm: str = "pre", init_std: float = 0.0,
) -> TransformerUserEncoder:
    """Causal Transformer with positions over the user's history in ``domain`` (SASRec-style)."""
    from crossbench_zoo.sequence import TransformerUserEncoder

    return TransformerUserEncoder(dim=context.dim, max_length=max_length, layers=layers, heads=heads, dropout=dropout, norm=norm,
                                  init_std=init_std)


def cosine_scorer(*, context: BuildContext, temperature: float = 0.1) -> CosineScorer:
    """Cosine similarity divided by ``temperature``."""
    from crossbench_zoo.scorers import CosineScorer

    return CosineScorer(temperature=temperature)


def mlp_scorer(*, context: BuildContext, hidden: int = 64) -> MlpScorer:
    """MLP over user and item vectors and their product, plus the dot product; chunked full ranking."""
    from crossbench_zoo.scorers import MlpScorer

    return MlpScorer(dim=context.dim, hidden=hidden)


def text_item_encoder(
    *, context: BuildContext, domain: str, model_path: str | None = None, pooling: str = "mean", max_length: int = 128,
    n_experts: int = 8, dropout: float = 0.1,
) -> TextItemEncoder:
    """Frozen pretrained text embeddings (default all-MiniLM-L6-v2) through a whitening + MoE adapter."""
    from crossbench_zoo.text import TextItemEncoder, text_vectors

    vecs, embedder = text_vectors(context, domain, model_path=model_path, pooling=pooling, max_length=max_length)
    return TextItemEncoder(text_vectors=vecs, dim=context.dim, n_experts=n_experts, dropout=dropout, with_id=False, report=embedder.report)


def text_id_item_encoder(
    *, context: BuildContext, domain: str, model_path: str | None = None, pooling: str = "mean", max_length: int = 128,
    n_experts: int = 8, dropout: float = 0.1, init_std: float = 0.02,
) -> TextItemEncoder:
    """Adapted frozen text embeddings plus a learned ID embedding per item."""
    from crossbench_zoo.text import TextItemEncoder, text_vectors

    vecs, embedder = text_vectors(context, domain, model_path=model_path, pooling=pooling, max_length=max_length)
    return TextItemEncoder(text_vectors=vecs, dim=context.dim, n_experts=n_experts, dropout=dropout, with_id=True, init_std=init_std,
                           report=embedder.report)


def itemknn(*, k: int = 2000, shrink: float = 0.0, alpha: float = 0.65, domains: str = "all") -> ItemKNN:
    """Item-based nearest neighbours (asymmetric cosine with shrinkage; ``alpha=0.5`` is the cosine);
    ``domains='all'`` links source items to target items."""
    from crossbench_zoo.neighbours import ItemKNN

    return ItemKNN(k=k, shrink=shrink, alpha=alpha, domains=domains)


def ease(*, l2: float = 3000.0, domains: str = "all") -> EASE:
    """EASE (Steck 2019), closed form; ``domains='all'`` learns source-to-target item weights too."""
    from crossbench_zoo.neighbours import EASE

    return EASE(l2=l2, domains=domains)
