"""The model zoo: text item encoders, sequence user encoders, fusions, scorers, CDR baselines.

Item encoders ``text`` and ``text-id``; user encoders ``gru`` and ``transformer``; fusions
``concat``, ``gating``, ``attention``, ``emcdr-joint`` and ``ptupcdr-joint``; scorers ``cosine`` and
``mlp``; whole models ``itemknn`` and ``ease``; named compositions ``emcdr-joint``, ``ptupcdr-joint``
(EMCDR- and PTUPCDR-style fusions trained jointly, end to end; the papers' procedures are the
``cdr`` plugin's ``emcdr`` and ``ptupcdr``),
``cd-concat``, ``cd-gating``, ``cd-attention``, ``sasrec`` and the reference big model
``lm-attention``.

Registering the plugin imports no torch: the factories (:mod:`crossbench_zoo.factories`,
:mod:`crossbench_zoo.models`) load their modules when a component is built.
"""

from __future__ import annotations

from crossbench import hookimpl
from crossbench.plugin.specs import CategoricalParam, ComponentSpec, FloatParam, IntParam
from crossbench_zoo import factories as f
from crossbench_zoo import models

_ADAPTER = (IntParam("n_experts", 1, 16, log=True), FloatParam("dropout", 0.0, 0.3))

#: Meaning of each text item encoder hyperparameter (``text`` and ``text-id``).
_TEXT_MEANINGS = {
    "model_path": "local Hugging Face model folder that embeds item text (None: the packaged default model)",
    "pooling": "how token states become one text vector: 'mean' or 'cls'",
    "max_length": "most tokens of an item's text the language model reads",
    "n_experts": "experts of the whitening + mixture-of-experts adapter over the frozen text vectors",
    "dropout": "dropout inside the adapter",
}


@hookimpl
def crossbench_item_encoders() -> list[ComponentSpec]:
    return [
        ComponentSpec("text", f.text_item_encoder, "frozen pretrained LM text embeddings (cached) + whitening/MoE adapter", _ADAPTER,
                      _TEXT_MEANINGS),
        ComponentSpec("text-id", f.text_id_item_encoder, "adapted LM text embeddings plus an ID embedding", _ADAPTER,
                      {**_TEXT_MEANINGS, "init_std": "standard deviation of the ID embedding's normal initialisation"}),
    ]


@hookimpl
def crossbench_user_encoders() -> list[ComponentSpec]:
    return [
        ComponentSpec("gru", f.gru_user_encoder, "GRU over the history (GRU4Rec-style)", (IntParam("layers", 1, 2), FloatParam("dropout", 0.0, 0.5)),
                      {"layers": "stacked GRU layers", "dropout": "dropout on the history's item vectors and between GRU layers"}),
        ComponentSpec(
            "transformer", f.transformer_user_encoder, "causal Transformer with positions (SASRec-style)",
            (IntParam("layers", 1, 3), CategoricalParam("heads", (1, 2, 4)), FloatParam("dropout", 0.0, 0.5)),
            {"layers": "Transformer layers", "heads": "attention heads per layer", "dropout": "dropout of the Transformer layers",
             "max_length": "size of the learned position table (later positions share its last entry)",
             "norm": "block layout: pre (LayerNorm before each sub-layer, one at the end) or post (SASRec/BERT: after each residual sum, input normalised)",
             "init_std": "normal initialisation std of the linear layers and positions, biases zero (0: PyTorch's default)"},
        ),
    ]


@hookimpl
def crossbench_fusions() -> list[ComponentSpec]:
    return [
        ComponentSpec("concat", f.concat_fusion, "concatenate per-domain vectors, MLP", (IntParam("hidden", 32, 256, log=True),),
                      {"hidden": "hidden width of each domain's fusion MLP", "dropout": "dropout inside the fusion MLP"}),
        ComponentSpec("gating", f.gating_fusion, "element-wise gate between target and mapped source vectors"),
        ComponentSpec(
            "attention", f.attention_fusion, "cross-domain multi-head attention (target query over all domains)",
            (CategoricalParam("heads", (1, 2, 4)),),
            {"heads": "attention heads of the cross-domain attention", "dropout": "dropout on the attention weights"},
        ),
        ComponentSpec(
            "item-attention", f.item_attention_fusion,
            "item-level cross-domain attention (target query over the user's individual items of every domain)",
            (CategoricalParam("heads", (1, 2, 4)), IntParam("layers", 1, 2), FloatParam("dropout", 0.0, 0.3)),
            {"heads": "attention heads", "layers": "stacked attention layers", "dropout": "dropout of the attention layers",
             "source_mean": "add a projection of the mean of the user's source items to the target query"},
        ),
        ComponentSpec(
            "emcdr-joint", f.emcdr_fusion, "EMCDR-style MLP mapping source -> target for cold users (joint training)", (IntParam("hidden", 32, 256, log=True),),
            {"hidden": "hidden width of the source-to-target mapping MLP", "dropout": "dropout inside the mapping MLP"},
        ),
        ComponentSpec(
            "ptupcdr-joint", f.ptupcdr_fusion, "PTUPCDR-style bridge from a meta network (joint training)", (IntParam("hidden", 16, 128, log=True),),
            {"hidden": "hidden width of the meta network that emits each user's dim x dim bridge"},
        ),
    ]


@hookimpl
def crossbench_scorers() -> list[ComponentSpec]:
    return [
        ComponentSpec("cosine", f.cosine_scorer, "cosine similarity / temperature", (FloatParam("temperature", 0.02, 1.0, log=True),),
                      {"temperature": "the cosine similarity is divided by it (smaller: sharper scores)"}),
        ComponentSpec("mlp", f.mlp_scorer, "MLP over [u, i, u*i] plus dot; chunked full ranking", (IntParam("hidden", 16, 256, log=True),),
                      {"hidden": "hidden width of the MLP over [u, i, u*i]"}),
    ]


@hookimpl
def crossbench_recommenders() -> list[ComponentSpec]:
    return [
        ComponentSpec(
            "itemknn", f.itemknn, "item-based kNN (cosine, shrinkage) over all domains' items",
            (IntParam("k", 10, 2000, log=True), FloatParam("shrink", 0.0, 100.0), FloatParam("alpha", 0.0, 1.0),
             CategoricalParam("domains", ("all", "target"))),
            {"k": "nearest neighbour items kept per scored item", "shrink": "shrinkage added to the similarity denominator",
             "alpha": "asymmetric-cosine exponent: history item count^alpha x scored item count^(1 - alpha)",
             "domains": "items the model reads: 'all' domains' or the 'target' domain's only"},
        ),
        ComponentSpec(
            "ease", f.ease, "EASE closed-form item-item model over all domains' items",
            (FloatParam("l2", 1.0, 5000.0, log=True), CategoricalParam("domains", ("all", "target"))),
            {"l2": "L2 weight added to the Gram matrix's diagonal before inversion",
             "domains": "items the model reads: 'all' domains' or the 'target' domain's only"},
        ),
        *models.RECOMMENDERS,
    ]
