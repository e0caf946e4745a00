"""Pretrain, then fine-tune: a composed model's item and user encoders learn next-item prediction
in every domain before the model is trained for its target.

Pretraining reads the split's training data only (``FitSplit.train``: the protocol's train view,
so no validation or test user's held-out target item is in it). For each domain the fusion
reads, that domain's training sequences are cut into windows as in all-position training
(:func:`crossbench.train.sequences.sequence_windows`); the domain's user encoder runs over each
window (``forward_all``) and the state after position ``j`` ranks the item at ``j + 1`` against
the domain's whole catalogue of item vectors (the item encoder's text + ID vectors), scored by
the model's scorer, with softmax cross-entropy. The fusion is not involved. Adam at the
model's ``lr``, ``batch_size`` windows per step, every domain's batches shuffled together,
for ``epochs`` passes (no early stopping: no validation user is read).

The pretrained weights are cached on disk, ``<cache_dir>/pretrained/<key>.pt``, where ``key``
is the sha256 of everything that determines them (:func:`pretrain_key`): the procedure's
version marker :data:`PRETRAIN_VERSION`, the torch version and device type, the components and
their hyperparameters, the training settings pretraining reads, the pretraining settings, the
seed, every trained domain's interactions (user, item, timestamp, in order) and catalogue size,
and every buffer of the model (the frozen item text embeddings among them). A second fit with
the same inputs loads the weights instead of training them; the two give identical weights.
Pretraining draws its own random numbers and leaves torch's global generator as it found it,
so fine-tuning after a cache hit is the same as after pretraining.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import FitSplit
from crossbench.errors import CrossbenchError
from crossbench.plugin.interfaces import FitReport, RunEnv
from crossbench.plugin.specs import ComponentRef
from crossbench.train.checkpoints import read_checkpoint, save_checkpoint
from crossbench.train.composed import ComposedModel
from crossbench.train.sequences import sequence_windows
from crossbench.train.settings import TrainConfig
from crossbench.train.trainer import ComposedRecommender

#: the version of the pretraining procedure: change it whenever the weights it produces change
PRETRAIN_VERSION = "next-item-per-domain/1"
#: the training settings pretraining reads (the others concern fine-tuning only)
PRETRAIN_READS = ("dim", "lr", "batch_size", "history_length")


@dataclass(frozen=True)
class PretrainSettings:
    """How long to pretrain: ``epochs`` passes over every domain's training sequences (0 = off)."""

    epochs: int = 0

    def check(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise CrossbenchError(f"pretrain_epochs must be a whole number >= 0 (0 = no pretraining), got {self.epochs!r}")


@dataclass(frozen=True)
class PretrainOutcome:
    """What pretraining did: the cache key, the seconds it took (loading, on a hit), whether
    the weights came from the cache, and the mean training loss of each epoch (when trained)."""

    key: str
    seconds: float
    cached: bool
    epochs: int
    losses: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sha_update(h: Any, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array)
    h.update(f"{array.dtype.str}{array.shape}".encode())
    h.update(array.tobytes())


def pretrain_key(
    model: ComposedModel, data: CrossDomainData, domains: list[str], *, components: dict[str, Any], config: TrainConfig,
    settings: PretrainSettings, seed: int, device: torch.device,
) -> str:
    """The sha256 of everything that determines the pretrained weights (see the module docstring)."""
    h = hashlib.sha256()
    head = {
        "version": PRETRAIN_VERSION, "torch": torch.__version__, "device": device.type, "components": components,
        "training": {k: getattr(config, k) for k in PRETRAIN_READS}, "pretraining": asdict(settings), "seed": seed,
        "domains": domains, "n_users": data.n_users,
    }
    h.update(json.dumps(head, sort_keys=True, default=str).encode())
    for d in domains:
        inter = data.domain(d).interactions
        h.update(f"|{d}|{data.domain(d).n_items}|".encode())
        for column in ("user", "item", "timestamp"):
            _sha_update(h, inter[column].to_numpy().astype(np.int64))
    for name, buf in sorted(model.named_buffers()):
        h.update(f"|{name}|".encode())
        _sha_update(h, buf.detach().cpu().float().numpy())
    return h.hexdigest()


def next_item_loss(model: ComposedModel, domain: str, users: torch.Tensor, windows: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Softmax cross-entropy of the state after each position of ``windows`` ``[B, L]`` (left-padded,
    ``-1`` padding) ranking the next item over ``domain``'s catalogue; and the number of targets."""
    mask = windows >= 0
    catalogue = model.item_encoders[domain].all_items()  # type: ignore[operator]
    states = model.user_encoders[domain].forward_all(users, catalogue[windows.clamp(min=0)], mask)  # type: ignore[operator]
    ranked = mask[:, :-1] & mask[:, 1:]  # an item with an earlier item in the window
    if not bool(ranked.any()):
        return states.sum() * 0.0, 0
    logits = model.scorer.score_all(states[:, :-1][ranked], catalogue).float()
    return F.cross_entropy(logits, windows[:, 1:][ranked]), int(ranked.sum())


def pretrain_encoders(
    model: ComposedModel, data: CrossDomainData, domains: list[str], *, config: TrainConfig, epochs: int, seed: int,
    device: torch.device,
) -> tuple[float, ...]:
    """Train ``model``'s item and user encoders of ``domains`` (and the scorer's weights, if any) on
    next-item prediction over ``data``; returns each epoch's mean loss per ranked item."""
    gen = torch.Generator(device=device).manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed)
    windows = {d: [t.to(device) for t in sequence_windows(data.domain(d).interactions, config.history_length)] for d in domains}
    modules = [m for d in domains for m in (model.item_encoders[d], model.user_encoders[d])] + [model.scorer]
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    if not params:
        return ()
    opt = torch.optim.Adam(params, lr=config.lr)
    losses = []
    model.train()
    for _ in range(epochs):
        batches = []
        for d in domains:
            perm = torch.randperm(len(windows[d][0]), generator=gen, device=device)
            batches += [(d, perm[s : s + config.batch_size]) for s in range(0, len(perm), config.batch_size)]
        total, count = 0.0, 0
        for b in torch.randperm(len(batches), generator=order_gen).tolist():
            d, idx = batches[b]
            loss, n = next_item_loss(model, d, windows[d][0][idx], windows[d][1][idx])
            if n == 0:
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count = total + float(loss.detach()) * n, count + n
        losses.append(total / max(count, 1))
    model.eval()
    return tuple(losses)


def pretrained(
    model: ComposedModel, data: CrossDomainData, domains: list[str], *, components: dict[str, Any], config: TrainConfig,
    settings: PretrainSettings, seed: int, device: torch.device, cache_dir: Path,
) -> PretrainOutcome:
    """Load ``model``'s pretrained weights from the cache, or pretrain them and store them there."""
    t0 = time.perf_counter()
    key = pretrain_key(model, data, domains, components=components, config=config, settings=settings, seed=seed, device=device)
    path = Path(cache_dir) / "pretrained" / f"{key}.pt"
    describe = {"components": components, "training": {k: getattr(config, k) for k in PRETRAIN_READS}, "key": key}
    if path.is_file():
        model.load_state_dict(read_checkpoint(path, describe=describe))
        return PretrainOutcome(key, time.perf_counter() - t0, True, settings.epochs)
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):  # dropout draws here must not shift fine-tuning's
        losses = pretrain_encoders(model, data, domains, config=config, epochs=settings.epochs, seed=seed, device=device)
    save_checkpoint(path, state=model.state_dict(), describe=describe)
    return PretrainOutcome(key, time.perf_counter() - t0, False, settings.epochs, losses)


class PretrainedRecommender(ComposedRecommender):
    """A composed recommender whose encoders are pretrained (:func:`pretrained`) before it is
    fine-tuned as usual; with ``pretraining.epochs == 0`` it is the plain composed recommender."""

    def __init__(
        self, *, item_encoder: ComponentRef | str, user_encoder: ComponentRef | str, fusion: ComponentRef | str,
        scorer: ComponentRef | str, config: TrainConfig | None = None, pretraining: PretrainSettings = PretrainSettings(),
    ) -> None:
        super().__init__(item_encoder=item_encoder, user_encoder=user_encoder, fusion=fusion, scorer=scorer, config=config)
        pretraining.check()
        self.pretraining = pretraining
        self.pretrain_outcome: PretrainOutcome | None = None

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.pretraining.epochs > 0:
            out["pretraining"] = {"settings": asdict(self.pretraining), "version": PRETRAIN_VERSION,
                                  **(self.pretrain_outcome.to_dict() if self.pretrain_outcome else {})}
        return out

    def fit(self, split: FitSplit, *, env: RunEnv) -> FitReport:
        if self.pretraining.epochs == 0:
            return super().fit(split, env=env)
        model = self._prepare(split, env)
        self.pretrain_outcome = pretrained(
            model, split.train, model.domains_for(split.target), components={k: r.to_dict() for k, r in self.refs.items()},
            config=self.config, settings=self.pretraining, seed=env.seed, device=env.device, cache_dir=env.cache_dir,
        )
        return self._train(split, env, model)
