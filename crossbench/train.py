"""Composed models (item encoder + user encoder + fusion + scorer) and their trainer.

Training is BPR with sampled negatives over the training interactions of every domain the
fusion reads (only the target domain for target-only fusions). For a positive pair
``(u, i)`` in domain ``d`` the user's history in ``d`` is used with ``i`` masked out, so the
model never sees the item it must rank. With probability ``target_history_dropout`` the
whole history in ``d`` is hidden, which teaches cross-domain fusions the cold-start case.
Model selection is early stopping on the validation ground truth; the test set is never
read here.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import GroundTruth, Split
from crossbench.errors import CrossbenchError
from crossbench.evaluate.ranking import evaluate
from crossbench.interfaces import (
    BuildContext,
    ComponentSpec,
    FitReport,
    Fusion,
    ItemEncoder,
    Recommender,
    RunEnv,
    Scorer,
    UserEncoder,
    check_kwargs,
)
from crossbench.progress import progress_bar


@dataclass(frozen=True)
class ComponentRef:
    """A component by registered name, with its hyperparameters."""

    name: str
    params: Mapping[str, Any] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.params is None:
            object.__setattr__(self, "params", {})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}


@dataclass(frozen=True)
class TrainConfig:
    """Trainer settings; every field is a hyperparameter of composed models."""

    dim: int = 64
    epochs: int = 30
    batch_size: int = 1024
    lr: float = 5e-3
    l2: float = 1e-6
    negatives: int = 4
    history_length: int = 50
    target_history_dropout: float = 0.5
    patience: int = 3
    valid_metric: str = "ndcg"
    valid_k: int = 10


def build_histories(data: CrossDomainData, length: int) -> dict[str, torch.Tensor]:
    """Per domain, ``[n_users, length]`` item indices (most recent last, ``-1`` padding on the left)."""
    out: dict[str, torch.Tensor] = {}
    for name, dom in data.domains.items():
        inter = dom.interactions.sort_values(["user", "timestamp"], kind="stable")
        users = inter["user"].to_numpy()
        items = inter["item"].to_numpy()
        hist = np.full((data.n_users, length), -1, dtype=np.int64)
        if len(users):
            ends = np.searchsorted(users, users, side="right")
            pos_from_end = ends - 1 - np.arange(len(users))  # 0 for the most recent
            keep = pos_from_end < length
            hist[users[keep], length - 1 - pos_from_end[keep]] = items[keep]
        out[name] = torch.from_numpy(hist)
    return out


def train_items(data: CrossDomainData, domain: str) -> GroundTruth:
    """The training items of every user in ``domain``, for masking at evaluation."""
    inter = data.domain(domain).interactions
    return GroundTruth.from_pairs(inter["user"].to_numpy(), inter["item"].to_numpy())


class ComposedModel(nn.Module):
    """Item encoders and user encoders per domain, one fusion, one scorer."""

    def __init__(
        self,
        *,
        item_encoders: Mapping[str, ItemEncoder],
        user_encoders: Mapping[str, UserEncoder],
        fusion: Fusion,
        scorer: Scorer,
    ) -> None:
        super().__init__()
        self.item_encoders = nn.ModuleDict(dict(item_encoders))
        self.user_encoders = nn.ModuleDict(dict(user_encoders))
        self.fusion = fusion
        self.scorer = scorer

    def domains_for(self, target: str) -> list[str]:
        return list(self.item_encoders) if self.fusion.cross_domain else [target]

    def user_vectors(self, users: torch.Tensor, histories: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor], target: str) -> torch.Tensor:
        vectors, present = {}, {}
        for d, hist in histories.items():
            item_vecs = self.item_encoders[d](hist.clamp(min=0))
            vectors[d] = self.user_encoders[d](users, item_vecs, masks[d])
            present[d] = masks[d].any(1)
        return self.fusion(vectors, present, target)


class ComposedRecommender(Recommender):
    """A recommender assembled from registered components and trained with BPR."""

    def __init__(
        self,
        *,
        item_encoder: ComponentRef | str = "id",
        user_encoder: ComponentRef | str = "mean",
        fusion: ComponentRef | str = "shared",
        scorer: ComponentRef | str = "dot",
        dim: int = 64,
        epochs: int = 30,
        batch_size: int = 1024,
        lr: float = 5e-3,
        l2: float = 1e-6,
        negatives: int = 4,
        history_length: int = 50,
        target_history_dropout: float = 0.5,
        patience: int = 3,
    ) -> None:
        as_ref = lambda r: r if isinstance(r, ComponentRef) else ComponentRef(str(r))  # noqa: E731
        self.refs = {
            "item-encoders": as_ref(item_encoder),
            "user-encoders": as_ref(user_encoder),
            "fusions": as_ref(fusion),
            "scorers": as_ref(scorer),
        }
        self.config = TrainConfig(
            dim=dim, epochs=epochs, batch_size=batch_size, lr=lr, l2=l2, negatives=negatives,
            history_length=history_length, target_history_dropout=target_history_dropout, patience=patience,
        )
        self.model: ComposedModel | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "components": {kind: ref.to_dict() for kind, ref in self.refs.items()},
            "training": asdict(self.config),
        }

    def check(self, env: RunEnv, *, where: str) -> None:
        """Resolve every component name and hyperparameter, before any work is done."""
        for kind, ref in self.refs.items():
            spec: ComponentSpec = env.registry.get(kind, ref.name)
            check_kwargs(spec, ref.params, where=where)

    # -- building -------------------------------------------------------------------------

    def build(self, split: Split, env: RunEnv) -> ComposedModel:
        torch.manual_seed(env.seed)
        ctx = BuildContext(data=split.train, target=split.target, dim=self.config.dim, cache_dir=env.cache_dir)
        reg = env.registry
        make = lambda kind, **kw: reg.get(kind, self.refs[kind].name).factory(context=ctx, **kw, **self.refs[kind].params)  # noqa: E731
        domains = split.train.domain_names
        model = ComposedModel(
            item_encoders={d: make("item-encoders", domain=d) for d in domains},
            user_encoders={d: make("user-encoders", domain=d) for d in domains},
            fusion=make("fusions"),
            scorer=make("scorers"),
        )
        return model.to(env.device)

    # -- fitting --------------------------------------------------------------------------

    def fit(self, split: Split, *, env: RunEnv) -> FitReport:
        cfg = self.config
        self.check(env, where="model")
        model = self.build(split, env)
        self.model, self.target, self.device = model, split.target, env.device
        self.histories = {d: h.to(env.device) for d, h in build_histories(split.train, cfg.history_length).items()}
        domains = model.domains_for(split.target)
        pairs = {
            d: (
                torch.as_tensor(split.train.domain(d).interactions["user"].to_numpy().copy(), device=env.device),
                torch.as_tensor(split.train.domain(d).interactions["item"].to_numpy().copy(), device=env.device),
            )
            for d in domains
        }
        n_items = {d: split.train.domain(d).n_items for d in domains}
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=cfg.lr) if params else None
        gen = torch.Generator(device=env.device).manual_seed(env.seed)
        metric = env.registry.metrics([cfg.valid_metric])
        exclude = train_items(split.train, split.target)
        n_target = split.train.domain(split.target).n_items
        best, best_state, best_epoch, bad, history = -1.0, None, 0, 0, []
        epochs_run = 0
        for epoch in range(1, cfg.epochs + 1):
            epochs_run = epoch
            model.train()
            batches = []
            for d in domains:
                n = len(pairs[d][0])
                perm = torch.randperm(n, generator=gen, device=env.device)
                batches += [(d, perm[s : s + cfg.batch_size]) for s in range(0, n, cfg.batch_size)]
            order = torch.randperm(len(batches), generator=gen, device="cpu").tolist()
            with progress_bar(order, label=f"epoch {epoch:>3}", enabled=env.progress) as bar:
                for b in bar:
                    d, idx = batches[b]
                    loss = self._bpr_step(model, d, pairs[d][0][idx], pairs[d][1][idx], n_items[d], gen)
                    if opt is not None and loss.requires_grad:
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
            if split.valid.n_users == 0:
                continue
            model.eval()
            res = evaluate(
                self.score, split.valid, n_items=n_target, metrics=metric, ks=[cfg.valid_k],
                exclude=exclude, device=env.device,
            )
            score = res.means[f"{cfg.valid_metric}@{cfg.valid_k}"]
            history.append(score)
            if score > best:
                best, best_epoch, bad = score, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        return FitReport(
            epochs=epochs_run, best_epoch=best_epoch, valid_score=best if history else None,
            valid_metric=f"{cfg.valid_metric}@{cfg.valid_k}", history=tuple(history),
        )

    def _bpr_step(self, model: ComposedModel, domain: str, users: torch.Tensor, pos: torch.Tensor, n_items: int, gen: torch.Generator) -> torch.Tensor:
        cfg = self.config
        hists, masks = {}, {}
        for d in model.domains_for(domain):
            h = self.histories[d][users]
            m = h >= 0
            if d == domain:
                m &= h != pos[:, None]
                if model.fusion.cross_domain and cfg.target_history_dropout > 0:
                    drop = torch.rand(len(users), generator=gen, device=users.device) < cfg.target_history_dropout
                    m &= ~drop[:, None]
            hists[d], masks[d] = h, m
        u = model.user_vectors(users, hists, masks, domain)
        neg = torch.randint(0, n_items, (len(users), cfg.negatives), generator=gen, device=users.device)
        items = model.item_encoders[domain](torch.cat([pos[:, None], neg], dim=1))  # [B, 1+n, dim]
        s = model.scorer(u, items)
        loss = -F.logsigmoid(s[:, :1] - s[:, 1:]).mean()
        if cfg.l2 > 0:
            loss = loss + cfg.l2 * (u.pow(2).sum() + items.pow(2).sum()) / len(users)
        return loss

    # -- scoring --------------------------------------------------------------------------

    def score(self, users: torch.Tensor) -> torch.Tensor:
        if self.model is None:
            raise CrossbenchError("score() called before fit()")
        model = self.model
        users = users.to(self.device)
        with torch.no_grad():
            hists = {d: self.histories[d][users] for d in model.domains_for(self.target)}
            masks = {d: h >= 0 for d, h in hists.items()}
            u = model.user_vectors(users, hists, masks, self.target)
            items = model.item_encoders[self.target].all_items()
            return model.scorer.score_all(u, items).float()
