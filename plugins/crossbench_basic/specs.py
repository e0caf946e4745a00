"""Factories and specs of the basic components and models.

Nothing here imports torch: each factory loads the module that defines its component
(:mod:`crossbench_basic.components`, :mod:`crossbench_basic.models`,
:mod:`crossbench.train`) when it is called, so registering the plugin stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossbench.plugin.interfaces import BuildContext
from crossbench.plugin.specs import ComponentRef, ComponentSpec, FloatParam
from crossbench.train.settings import TrainConfig, training_space, trains

if TYPE_CHECKING:
    from crossbench.train import ComposedRecommender
    from crossbench_basic.components import DotScorer, IdItemEncoder, IdUserEncoder, MeanUserEncoder, SharedFusion, TargetOnlyFusion
    from crossbench_basic.models import Popularity


# ------------------------------------------------------------------------------ components


def id_item_encoder(*, context: BuildContext, domain: str, init_std: float = 0.1) -> IdItemEncoder:
    """ID embedding of ``context.dim`` per item of ``domain``."""
    from crossbench_basic.components import IdItemEncoder

    return IdItemEncoder(n_items=context.data.domain(domain).n_items, dim=context.dim, init_std=init_std)


def mean_user_encoder(*, context: BuildContext, domain: str) -> MeanUserEncoder:
    """Mean pooling of the items a user interacted with in ``domain``."""
    from crossbench_basic.components import MeanUserEncoder

    return MeanUserEncoder()


def id_user_encoder(*, context: BuildContext, domain: str, init_std: float = 0.1) -> IdUserEncoder:
    """A user-ID embedding per domain, as in matrix factorisation."""
    from crossbench_basic.components import IdUserEncoder

    return IdUserEncoder(n_users=context.data.n_users, dim=context.dim, init_std=init_std)


def target_only_fusion(*, context: BuildContext) -> TargetOnlyFusion:
    """No fusion: the target-domain user vector."""
    from crossbench_basic.components import TargetOnlyFusion

    return TargetOnlyFusion()


def shared_fusion(*, context: BuildContext) -> SharedFusion:
    """Average of the per-domain user vectors the user has."""
    from crossbench_basic.components import SharedFusion

    return SharedFusion()


def dot_scorer(*, context: BuildContext) -> DotScorer:
    """Inner product of user and item vectors."""
    from crossbench_basic.components import DotScorer

    return DotScorer()


ID_ITEM_ENCODER = ComponentSpec(
    "id", id_item_encoder, "learned ID embedding per item",
    (FloatParam("init_std", 0.01, 0.5, log=True),), {"init_std": "standard deviation of the initial item vectors"},
)
MEAN_USER_ENCODER = ComponentSpec("mean", mean_user_encoder, "mean of the history's item vectors")
ID_USER_ENCODER = ComponentSpec(
    "user-id", id_user_encoder, "learned ID embedding per user and domain (matrix factorisation)",
    (FloatParam("init_std", 0.01, 0.5, log=True),), {"init_std": "standard deviation of the initial user vectors"},
)
TARGET_ONLY_FUSION = ComponentSpec("target-only", target_only_fusion, "target-domain user vector only (no transfer)")
SHARED_FUSION = ComponentSpec("shared", shared_fusion, "mean of the user's per-domain vectors (shared user, CMF-style)")
DOT_SCORER = ComponentSpec("dot", dot_scorer, "inner product")


# ------------------------------------------------------------------------------ models


def popularity() -> Popularity:
    """Most popular target items first, the same list for everyone."""
    from crossbench_basic.models import Popularity

    return Popularity()


def _composed(**kwargs: object) -> ComposedRecommender:
    from crossbench.train import ComposedRecommender

    return ComposedRecommender(**kwargs)  # type: ignore[arg-type]


@trains()
def composed(
    *, item_encoder: ComponentRef | str = "id", user_encoder: ComponentRef | str = "mean",
    fusion: ComponentRef | str = "shared", scorer: ComponentRef | str = "dot", config: TrainConfig,
) -> ComposedRecommender:
    """Any composition of registered components, each set by name (default: ID items, mean-pooled
    histories, shared-user fusion, dot product), with the shared training settings."""
    return _composed(item_encoder=item_encoder, user_encoder=user_encoder, fusion=fusion, scorer=scorer, config=config)


@trains()
def mf(*, init_std: float = 0.1, config: TrainConfig) -> ComposedRecommender:
    """Target-only matrix factorisation (BPR): user-ID and item-ID embeddings, dot product."""
    return _composed(
        item_encoder=ComponentRef("id", {"init_std": init_std}), user_encoder=ComponentRef("user-id", {"init_std": init_std}),
        fusion="target-only", scorer="dot", config=config,
    )


@trains()
def shared_mean(*, config: TrainConfig) -> ComposedRecommender:
    """Cross-domain: item-ID embeddings per domain, mean-pooled histories, shared-user fusion."""
    return _composed(item_encoder="id", user_encoder="mean", fusion="shared", scorer="dot", config=config)


@trains()
def shared_id(*, init_std: float = 0.1, config: TrainConfig) -> ComposedRecommender:
    """User-ID embeddings per domain averaged over the domains a user is present in (``shared`` fusion), trained
    jointly with BPR and target-history dropout. Not collective MF as Singh & Gordon define it (one user factor
    shared by both domains' weighted losses): that model is the ``cdr`` plugin's ``cmf``; this one was published
    as ``cmf`` before."""
    return _composed(
        item_encoder=ComponentRef("id", {"init_std": init_std}), user_encoder=ComponentRef("user-id", {"init_std": init_std}),
        fusion="shared", scorer="dot", config=config,
    )


#: The training settings every basic composed model tunes.
TRAINING = training_space("dim", "lr", "l2", "negatives", "batch_size")
_INIT_STD = FloatParam("init_std", 0.005, 0.2, log=True)
_DROPOUT = training_space("target_history_dropout")
_INIT_MEANING = {"init_std": "standard deviation of the initial user and item vectors"}
_COMPOSED_MEANINGS = {
    "item_encoder": "registered item encoder, by name (`crossbench list item-encoders`)",
    "user_encoder": "registered user encoder, by name (`crossbench list user-encoders`)",
    "fusion": "registered fusion, by name (`crossbench list fusions`)",
    "scorer": "registered scorer, by name (`crossbench list scorers`)",
}

RECOMMENDERS = (
    ComponentSpec("popularity", popularity, "most popular target items (non-personalised baseline)"),
    ComponentSpec("composed", composed, "any composition of registered components (set each by name)", TRAINING + _DROPOUT,
                  _COMPOSED_MEANINGS),
    ComponentSpec("mf", mf, "target-only BPR matrix factorisation", (*TRAINING, _INIT_STD), _INIT_MEANING),
    ComponentSpec("shared-mean", shared_mean, "cross-domain: mean-pooled per-domain histories, shared-user fusion", TRAINING + _DROPOUT),
    ComponentSpec(
        "shared-id", shared_id, "per-domain user IDs averaged by the shared fusion, BPR (published as 'cmf' before)",
        (*TRAINING, *_DROPOUT, _INIT_STD), _INIT_MEANING,
    ),
)
