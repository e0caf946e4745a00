"""Named compositions of zoo components, and the reference attention-fusion big model.

Each factory takes explicit keyword arguments and returns a :class:`ComposedRecommender`
(trained by crossbench's trainer), so every method is tuned and trained the same way.
"""

from __future__ import annotations

from crossbench.errors import CrossbenchError, unknown_name_message
from crossbench.interfaces import CategoricalParam, ComponentSpec, FloatParam, IntParam
from crossbench.train import ComponentRef, ComposedRecommender

TRAINING_SPACE = (
    CategoricalParam("dim", (16, 32, 64, 128)),  # powers of two: every attention head count divides them
    FloatParam("lr", 1e-4, 3e-2, log=True),
    FloatParam("l2", 1e-8, 1e-3, log=True),
    IntParam("negatives", 1, 16, log=True),
    CategoricalParam("batch_size", (256, 512, 1024, 2048)),
    FloatParam("target_history_dropout", 0.0, 0.9),
)


def _id_composition(
    fusion: ComponentRef, user_encoder: ComponentRef | str, *, dim: int, epochs: int, batch_size: int, lr: float, l2: float,
    negatives: int, history_length: int, target_history_dropout: float, patience: int,
) -> ComposedRecommender:
    return ComposedRecommender(
        item_encoder="id", user_encoder=user_encoder, fusion=fusion, scorer="dot", dim=dim, epochs=epochs,
        batch_size=batch_size, lr=lr, l2=l2, negatives=negatives, history_length=history_length,
        target_history_dropout=target_history_dropout, patience=patience,
    )


def emcdr(
    *, dim: int = 64, hidden: int = 128, epochs: int = 30, batch_size: int = 1024, lr: float = 5e-3, l2: float = 1e-6,
    negatives: int = 4, history_length: int = 50, target_history_dropout: float = 0.5, patience: int = 3,
) -> ComposedRecommender:
    """EMCDR-style: per-domain user vectors, an MLP maps source to target vectors for cold users."""
    return _id_composition(
        ComponentRef("emcdr", {"hidden": hidden}), "mean", dim=dim, epochs=epochs, batch_size=batch_size, lr=lr,
        l2=l2, negatives=negatives, history_length=history_length, target_history_dropout=target_history_dropout, patience=patience,
    )


def ptupcdr(
    *, dim: int = 64, hidden: int = 64, epochs: int = 30, batch_size: int = 1024, lr: float = 5e-3, l2: float = 1e-6,
    negatives: int = 4, history_length: int = 50, target_history_dropout: float = 0.5, patience: int = 3,
) -> ComposedRecommender:
    """PTUPCDR-style: a meta network generates each user's source-to-target bridge from their source history."""
    return _id_composition(
        ComponentRef("ptupcdr", {"hidden": hidden}), "mean", dim=dim, epochs=epochs, batch_size=batch_size, lr=lr,
        l2=l2, negatives=negatives, history_length=history_length, target_history_dropout=target_history_dropout, patience=patience,
    )


def cd_concat(
    *, dim: int = 64, hidden: int = 128, epochs: int = 30, batch_size: int = 1024, lr: float = 5e-3, l2: float = 1e-6,
    negatives: int = 4, history_length: int = 50, target_history_dropout: float = 0.5, patience: int = 3,
) -> ComposedRecommender:
    """Mean-pooled per-domain histories, concatenated and fused by an MLP."""
    return _id_composition(
        ComponentRef("concat", {"hidden": hidden}), "mean", dim=dim, epochs=epochs, batch_size=batch_size, lr=lr,
        l2=l2, negatives=negatives, history_length=history_length, target_history_dropout=target_history_dropout, patience=patience,
    )


def cd_gating(
    *, dim: int = 64, epochs: int = 30, batch_size: int = 1024, lr: float = 5e-3, l2: float = 1e-6,
    negatives: int = 4, history_length: int = 50, target_history_dropout: float = 0.5, patience: int = 3,
) -> ComposedRecommender:
    """Mean-pooled per-domain histories fused by a learned element-wise gate."""
    return _id_composition(
        ComponentRef("gating"), "mean", dim=dim, epochs=epochs, batch_size=batch_size, lr=lr,
        l2=l2, negatives=negatives, history_length=history_length, target_history_dropout=target_history_dropout, patience=patience,
    )


def cd_attention(
    *, dim: int = 64, heads: int = 4, epochs: int = 30, batch_size: int = 1024, lr: float = 5e-3, l2: float = 1e-6,
    negatives: int = 4, history_length: int = 50, target_history_dropout: float = 0.5, patience: int = 3,
) -> ComposedRecommender:
    """Mean-pooled per-domain ID histories fused by cross-domain multi-head attention (no text)."""
    return _id_composition(
        ComponentRef("attention", {"heads": heads}), "mean", dim=dim, epochs=epochs, batch_size=batch_size, lr=lr,
        l2=l2, negatives=negatives, history_length=history_length, target_history_dropout=target_history_dropout, patience=patience,
    )


def sasrec(
    *, dim: int = 64, layers: int = 2, heads: int = 2, dropout: float = 0.1, epochs: int = 30, batch_size: int = 128,
    lr: float = 2e-3, l2: float = 0.0, negatives: int = 4, history_length: int = 50, patience: int = 3,
    loss: str = "full-softmax", training: str = "sequences",
) -> ComposedRecommender:
    """Target-only causal Transformer over ID histories (SASRec-style), trained on every position
    of each sequence at once with softmax cross-entropy over the catalogue. Users without
    target history get the popularity fallback."""
    return ComposedRecommender(
        item_encoder="id", user_encoder=ComponentRef("transformer", {"layers": layers, "heads": heads, "dropout": dropout}),
        fusion="target-only", scorer="dot", dim=dim, epochs=epochs, batch_size=batch_size, lr=lr, l2=l2,
        negatives=negatives, history_length=history_length, target_history_dropout=0.0, patience=patience,
        loss=loss, training=training,
    )


SASREC_SPACE = (
    CategoricalParam("dim", (16, 32, 64, 128)),
    FloatParam("lr", 1e-4, 1e-2, log=True),
    IntParam("layers", 1, 3),
    FloatParam("dropout", 0.0, 0.5),
    CategoricalParam("batch_size", (64, 128, 256)),
    CategoricalParam("history_length", (20, 50, 100)),
)


def lm_attention(
    *,
    model_path: str | None = None,
    item_text: bool = True,
    item_ids: bool = True,
    dim: int = 64,
    n_experts: int = 4,
    adapter_dropout: float = 0.0,
    user_encoder: str = "transformer",
    layers: int = 1,
    heads: int = 2,
    fusion: str = "items",
    fusion_heads: int = 2,
    fusion_layers: int = 1,
    source_mean: bool = False,
    dropout: float = 0.0,
    scorer: str = "dot",
    temperature: float = 0.1,
    loss: str = "full-softmax",
    sampled_negatives: int = 256,
    negative_sampling: str = "popularity",
    training: str = "sequences",
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 1e-3,
    l2: float = 0.0,
    negatives: int = 4,
    history_length: int = 50,
    target_history_dropout: float = 0.8,
    patience: int = 3,
) -> ComposedRecommender:
    """The reference big model: frozen language-model item text embeddings through a whitening +
    MoE adapter (plus an item-ID embedding when ``item_ids``), a causal Transformer user encoder
    per domain (``user_encoder="gru"`` or ``"mean"`` swap it; ``item_text=False``: ID vectors
    only), cross-domain attention fusion at
    the level of items (``fusion="domains"``: over one pooled vector per domain), a dot (or
    cosine, with ``temperature``) scorer, trained on all positions of every user sequence
    (``training="pairs"``: one interaction per sample) with softmax cross-entropy over the
    catalogue (``loss="softmax"``: sampled, ``"bpr"``)."""
    text = {"model_path": model_path, "n_experts": n_experts, "dropout": adapter_dropout}
    score = ComponentRef("cosine", {"temperature": temperature}) if scorer == "cosine" else ComponentRef(scorer)
    sequence = {"transformer": {"layers": layers, "heads": heads, "dropout": dropout}, "gru": {"layers": layers, "dropout": dropout}}
    if user_encoder not in (*sequence, "mean"):
        raise CrossbenchError(unknown_name_message("lm-attention user_encoder", user_encoder, (*sequence, "mean")))
    fusions = {
        "items": ComponentRef(
            "item-attention", {"heads": fusion_heads, "layers": fusion_layers, "dropout": dropout, "source_mean": source_mean}
        ),
        "domains": ComponentRef("attention", {"heads": fusion_heads, "dropout": dropout}),
    }
    if fusion not in fusions:
        raise CrossbenchError(unknown_name_message("lm-attention fusion", fusion, fusions))
    if not item_text and not item_ids:
        raise CrossbenchError("lm-attention: item_text=False and item_ids=False leave the items without any vector; keep one")
    item = ComponentRef("text-id" if item_ids else "text", text) if item_text else ComponentRef("id", {"init_std": 0.02})
    return ComposedRecommender(
        item_encoder=item,
        user_encoder=ComponentRef(user_encoder, sequence.get(user_encoder, {})),
        fusion=fusions[fusion], scorer=score, dim=dim, epochs=epochs, batch_size=batch_size, lr=lr, l2=l2,
        negatives=negatives, history_length=history_length, target_history_dropout=target_history_dropout,
        patience=patience, loss=loss, sampled_negatives=sampled_negatives, training=training,
        negative_sampling=negative_sampling,
    )


LM_ATTENTION_SPACE = (
    CategoricalParam("dim", (32, 64, 128)),
    FloatParam("lr", 3e-4, 1e-2, log=True),
    IntParam("layers", 1, 2),
    IntParam("n_experts", 2, 8, log=True),
    FloatParam("dropout", 0.0, 0.3),
    CategoricalParam("item_ids", (True, False)),
    CategoricalParam("batch_size", (64, 128, 256)),
    FloatParam("target_history_dropout", 0.1, 0.9),
)

RECOMMENDERS = (
    ComponentSpec("emcdr", emcdr, "EMCDR-style source-to-target MLP mapping for cold users (trained jointly)", TRAINING_SPACE),
    ComponentSpec("ptupcdr", ptupcdr, "PTUPCDR-style personalised bridge from a meta network (trained jointly)", TRAINING_SPACE),
    ComponentSpec("cd-concat", cd_concat, "per-domain mean-pooled histories, concat + MLP fusion", TRAINING_SPACE),
    ComponentSpec("cd-gating", cd_gating, "per-domain mean-pooled histories, gated fusion", TRAINING_SPACE),
    ComponentSpec("cd-attention", cd_attention, "per-domain mean-pooled ID histories, cross-domain attention fusion", TRAINING_SPACE),
    ComponentSpec("sasrec", sasrec, "target-only causal Transformer over ID histories (SASRec-style, all-position training)", SASREC_SPACE),
    ComponentSpec(
        "lm-attention", lm_attention,
        "reference big model: LM text + ID item vectors, Transformer per domain, item-level cross-domain attention",
        LM_ATTENTION_SPACE,
    ),
)
