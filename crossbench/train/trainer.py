"""The trainer of composed models (item encoder + user encoder + fusion + scorer).

The model itself is :class:`crossbench.train.composed.ComposedModel`; its weights are saved and
read by :mod:`crossbench.train.checkpoints`; its settings are :class:`crossbench.train.settings.TrainConfig`.

Training runs over the training interactions of every domain the fusion reads (only the
target domain for target-only fusions). For a positive pair ``(u, i)`` in domain ``d`` the
user's history in ``d`` is used with ``i`` masked out, so the model never sees the item it
must rank. With probability ``target_history_dropout`` the whole history in ``d`` is hidden,
which teaches cross-domain fusions the cold-start case.

Losses:

* ``bpr``: Bayesian personalised ranking against ``negatives`` uniformly sampled items per
  positive.
* ``softmax``: sampled softmax; each positive is classified against the other positives of
  its batch (in-batch negatives; repeats of the same item are masked) plus
  ``sampled_negatives`` uniformly sampled items shared by the batch.

The optimiser is Adam (AdamW with ``weight_decay``), its learning rate warmed up and decayed per
batch (:class:`crossbench.train.composed.StepSchedule`) and the gradient clipped to
``clip_norm``; at the defaults none of these acts and training is plain Adam at ``lr``.

Model selection is early stopping on the validation ground truth; the test set is never
read here. Training is seeded and deterministic on CPU; on CUDA the forward passes can run
under bf16 autocast (``RunEnv.bf16``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from crossbench.data.protocols import FitSplit
from crossbench.errors import CrossbenchError, unknown_name_message
from crossbench.evaluate.validation import VALIDATION_METRIC
from crossbench.plugin.interfaces import BuildContext, FitReport, Recommender, RunEnv
from crossbench.plugin.modules import ItemEncoder
from crossbench.plugin.params import check_kwargs
from crossbench.plugin.specs import COMPONENT_ROLES, ComponentRef, ComponentSpec
from crossbench.progress import EpochClock, progress_bar
from crossbench.train.averaging import WeightAverage
from crossbench.train.checkpoints import read_checkpoint, save_checkpoint
from crossbench.train.composed import ComposedModel, StepSchedule, backward_step, build_histories, make_optimizer, reads_history
from crossbench.train.distributed import ranks
from crossbench.train.epoch_data import batch_windows, epoch_batches, sequence_data, training_pairs
from crossbench.train.sequences import sequence_step
from crossbench.train.settings import TrainConfig
from crossbench.train.stages_validation import validation_score

__all__ = ["ComponentRef", "ComposedModel", "ComposedRecommender", "TrainConfig", "build_histories"]


class ComposedRecommender(Recommender):
    """A recommender assembled from registered components and trained with BPR or sampled softmax."""

    def __init__(
        self,
        *,
        item_encoder: ComponentRef | str,
        user_encoder: ComponentRef | str,
        fusion: ComponentRef | str,
        scorer: ComponentRef | str,
        config: TrainConfig | None = None,
    ) -> None:
        """Components by registered name (or :class:`ComponentRef` with hyperparameters) and the training settings.

        There are no default components: the plugins that register components also register the
        named compositions of them (and their defaults) as recommenders.
        """
        as_ref = lambda r: r if isinstance(r, ComponentRef) else ComponentRef(str(r))  # noqa: E731
        self.refs = {
            "item-encoders": as_ref(item_encoder),
            "user-encoders": as_ref(user_encoder),
            "fusions": as_ref(fusion),
            "scorers": as_ref(scorer),
        }
        self.config = config if config is not None else TrainConfig()
        self.model: ComposedModel | None = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "components": {kind: ref.to_dict() for kind, ref in self.refs.items()},
            "training": asdict(self.config),
        }
        if self.model is not None:
            inputs = {d: enc.inputs() for d, enc in self.model.item_encoders.items() if isinstance(enc, ItemEncoder)}
            if any(v is not None for v in inputs.values()):
                out["item_inputs"] = {d: v for d, v in inputs.items() if v is not None}
        return out

    def components(self) -> dict[str, ComponentRef]:
        return {role: self.refs[kind] for role, kind in COMPONENT_ROLES.items()}

    def reads_source_domains(self) -> bool | None:
        return None if self.model is None else bool(self.model.fusion.cross_domain)

    def cold_users(self) -> str | None:
        if self.model is None:
            return None
        if self.model.fusion.cross_domain:
            return "from source-domain history"
        return "popularity fallback (training popularity of target items)"

    def cold_items(self) -> bool:
        """True when the target's item encoder derives vectors from more than IDs (text): asked after ``fit``."""
        encoder = None if self.model is None else self.model.item_encoders[self.target]
        return isinstance(encoder, ItemEncoder) and encoder.cold_items()

    def set_component_params(self, role: str, params: Mapping[str, Any]) -> None:
        if role not in COMPONENT_ROLES:
            raise CrossbenchError(unknown_name_message("component role", role, COMPONENT_ROLES))
        kind = COMPONENT_ROLES[role]
        ref = self.refs[kind]
        self.refs[kind] = ComponentRef(ref.name, {**ref.params, **params})

    def check(self, env: RunEnv, *, where: str) -> None:
        """Resolve every component name and hyperparameter, before any work is done."""
        self.config.check()
        for kind, ref in self.refs.items():
            spec: ComponentSpec = env.registry.get(kind, ref.name)
            check_kwargs(spec, ref.params, where=where)

    # -- building -------------------------------------------------------------------------

    def build(self, split: FitSplit, env: RunEnv) -> ComposedModel:
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

    def _prepare(self, split: FitSplit, env: RunEnv) -> ComposedModel:
        """Build the model and the per-user state that scoring needs."""
        self.check(env, where="model")
        model = self.build(split, env)
        self.model, self.target, self.device = model, split.target, env.device
        self.bf16 = bool(env.bf16) and env.device.type == "cuda"
        self.histories = {d: h.to(env.device) for d, h in build_histories(split.train, self.config.history_length).items()}
        self.counts = {
            d: torch.as_tensor(
                np.bincount(split.train.domain(d).interactions["user"].to_numpy(), minlength=split.train.n_users),
                device=env.device,
            )
            for d in split.train.domain_names
        }
        self.item_counts = {
            d: torch.as_tensor(
                np.bincount(split.train.domain(d).interactions["item"].to_numpy(), minlength=split.train.domain(d).n_items),
                device=env.device, dtype=torch.float32,
            )
            for d in split.train.domain_names
        }
        return model

    def _autocast(self) -> Any:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16) if self.bf16 else nullcontext()

    # -- fitting --------------------------------------------------------------------------

    def fit(self, split: FitSplit, *, env: RunEnv) -> FitReport:
        return self._train(split, env, self._prepare(split, env))

    def update(self, split: FitSplit, *, env: RunEnv) -> FitReport:
        """Warm-started fine-tuning: training resumes from the current weights on ``split`` (the
        same settings and early stopping on validation users); before any fit, a fit."""
        if self.model is None:
            return self.fit(split, env=env)
        weights = self.model.state_dict()
        model = self._prepare(split, env)
        model.load_state_dict(weights)
        return self._train(split, env, model)

    def _train(self, split: FitSplit, env: RunEnv, model: ComposedModel) -> FitReport:
        cfg = self.config
        domains = model.domains_for(split.target)
        sequences = cfg.training == "sequences"
        pairs = {} if sequences else training_pairs(split, domains, env.device)  # read by pair training only
        n_items = {d: split.train.domain(d).n_items for d in domains}
        params = [p for p in model.parameters() if p.requires_grad]
        opt = make_optimizer(params, cfg) if params else None
        dp = ranks()  # one process: every hook of dp below hands back what it is given
        gen, shuffle = dp.start(model, env.seed, env.device)  # one generator in one process
        order_gen = torch.Generator().manual_seed(env.seed)  # batch order is drawn on the CPU
        pair_step = self._bpr_step if cfg.loss == "bpr" else self._softmax_step
        windows, pools, log_probs = (
            sequence_data(split, domains, cfg.history_length, self.item_counts, env.device) if sequences else ({}, {}, {})
        )
        best, best_state, best_epoch, bad, history, epochs_run, train_seconds, samples, warnings = -1.0, None, 0, 0, [], 0, 0.0, 0, []
        losses: list[float] = []  # mean training loss of each epoch's steps
        average = WeightAverage(params, epochs=cfg.ema_epochs)  # validated and kept in place of the weights when on
        steps = 0  # batches so far: the step of the learning-rate schedule
        clock = EpochClock(cfg.epochs, metric=f"validation {VALIDATION_METRIC}@{cfg.valid_k}", enabled=env.progress)
        for epoch in range(1, cfg.epochs + 1):
            epochs_run = epoch
            average.training(model)
            batches = epoch_batches(domains, pools if sequences else None, pairs, cfg.batch_size, cfg.target_groups, shuffle, env.device)
            order = torch.randperm(len(batches), generator=order_gen).tolist()
            schedule = StepSchedule.of(cfg, len(batches))  # every epoch has the same number of batches
            _sync(env.device)
            t0 = time.perf_counter()
            step_losses: list[torch.Tensor] = []  # kept on the device: no synchronisation per step
            with progress_bar(order, label=f"epoch {epoch}/{cfg.epochs}", enabled=env.progress) as bar:
                for b in bar:
                    d = batches[b][0]
                    idx, targets = batch_windows(batches[b][1], windows[d][1], cfg.target_groups, shuffle, dp.local) if sequences \
                        else (dp.local(batches[b][1]), None)
                    with self._autocast():
                        if sequences:
                            loss, n_samples = self._sequence_step(model, d, windows[d][0][idx], windows[d][1][idx], log_probs, gen, targets)
                        else:
                            loss, n_samples = pair_step(model, d, pairs[d][0][idx], pairs[d][1][idx], n_items[d], gen), len(idx)
                    if opt is not None and loss.requires_grad:
                        backward_step(opt, params, loss * n_samples if sequences and dp.active else loss, config=cfg, schedule=schedule, step=steps,
                                      reduce=partial(dp.reduce_gradients, params, n_samples, summed=sequences and dp.active))  # summed: block-wise catalogues
                        average.update(steps_per_epoch=len(batches))
                        step_losses.append(loss.detach())
                    samples, steps = samples + n_samples, steps + 1
            _sync(env.device)
            train_seconds += time.perf_counter() - t0
            losses += [float(torch.stack(step_losses).float().mean())] if step_losses else []
            if split.valid.n_users == 0:
                clock.epoch(epoch)
                continue
            average.evaluating(model)
            score = validation_score(self.score, split, k=cfg.valid_k, device=env.device)  # sharded over the ranks, if several
            history.append(score)
            clock.epoch(epoch, score, then=dp.epoch_hook(env.on_epoch))
            if epoch == 1 and score == 0.0:
                warnings.append(
                    f"validation {VALIDATION_METRIC}@{cfg.valid_k} is exactly 0 after the first epoch: training stopped "
                    f"(the model ranks no validation item in its top {cfg.valid_k})"
                )
                best, best_epoch, best_state = score, epoch, copy.deepcopy(model.state_dict())
                break
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
        if env.checkpoint_dir is not None and dp.writes:
            self.save_checkpoint(Path(env.checkpoint_dir) / "model.pt")
        return FitReport(
            epochs=epochs_run, best_epoch=best_epoch, valid_score=best if history else None,
            valid_metric=f"{VALIDATION_METRIC}@{cfg.valid_k}", history=tuple(history), train_loss=tuple(losses),
            threads=torch.get_num_threads(), train_seconds=train_seconds, train_samples=dp.total(samples), warnings=tuple(warnings),
        )

    def _inputs(
        self, model: ComposedModel, domain: str, users: torch.Tensor, pos: torch.Tensor | None, gen: torch.Generator | None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Histories, masks and presence per domain for ``users`` ranking in ``domain``.

        When training (``pos`` given) the positive item is masked out of the user's history in
        ``domain`` and, for cross-domain fusions, that history is hidden entirely with
        probability ``target_history_dropout``. User encoders that do not read histories get an
        empty ``[B, 0]`` history; presence then comes from the interaction counts.
        """
        cfg = self.config
        drop = None
        if pos is not None and model.fusion.cross_domain and cfg.target_history_dropout > 0:
            drop = torch.rand(len(users), generator=gen, device=users.device) < cfg.target_history_dropout
        hists, masks, present = {}, {}, {}
        for d in model.domains_for(domain):
            if reads_history(model.user_encoders[d]):
                h = self.histories[d][users]
                m = h >= 0
                if pos is not None and d == domain:
                    m &= h != pos[:, None]
                    if drop is not None:
                        m &= ~drop[:, None]
                p = m.any(1)
            else:
                h = torch.zeros(len(users), 0, dtype=torch.long, device=users.device)
                m = torch.zeros(len(users), 0, dtype=torch.bool, device=users.device)
                p = self.counts[d][users] > (1 if pos is not None and d == domain else 0)
                if drop is not None and d == domain:
                    p &= ~drop
            hists[d], masks[d], present[d] = h, m, p
        return hists, masks, present

    def _sequence_step(
        self, model: ComposedModel, domain: str, users: torch.Tensor, target_history: torch.Tensor,
        log_probs: Mapping[str, torch.Tensor], gen: torch.Generator, targets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, int]:
        return sequence_step(
            item_encoders=model.item_encoders, user_encoders=model.user_encoders,  # type: ignore[arg-type]
            fusion=model.fusion, scorer=model.scorer, histories=self.histories, item_log_probs=log_probs,
            domains=model.domains_for(domain), target=domain, users=users, target_history=target_history, config=self.config, generator=gen,
            catalogues=ranks().catalogues(model.item_encoders, model.domains_for(domain)) if ranks().active else None,  # a block per rank
            targets=targets,
        )

    def _bpr_step(self, model: ComposedModel, domain: str, users: torch.Tensor, pos: torch.Tensor, n_items: int, gen: torch.Generator) -> torch.Tensor:
        cfg = self.config
        hists, masks, present = self._inputs(model, domain, users, pos, gen)
        u = model.user_vectors(users, hists, masks, domain, present)
        neg = torch.randint(0, n_items, (len(users), cfg.negatives), generator=gen, device=users.device)
        items = model.item_encoders[domain](torch.cat([pos[:, None], neg], dim=1))  # [B, 1+n, dim]
        s = model.scorer(u, items).float()
        loss = -F.logsigmoid(s[:, :1] - s[:, 1:]).mean()
        if cfg.l2 > 0:
            loss = loss + cfg.l2 * (u.float().pow(2).sum() + items.float().pow(2).sum()) / len(users)
        return loss

    def _softmax_step(self, model: ComposedModel, domain: str, users: torch.Tensor, pos: torch.Tensor, n_items: int, gen: torch.Generator) -> torch.Tensor:
        cfg = self.config
        hists, masks, present = self._inputs(model, domain, users, pos, gen)
        u = model.user_vectors(users, hists, masks, domain, present)
        neg = torch.randint(0, n_items, (cfg.sampled_negatives,), generator=gen, device=users.device)
        cand = torch.cat([pos, neg])  # [B + S]
        items = model.item_encoders[domain](cand)  # [B + S, dim]
        s = model.scorer.score_all(u, items).float()  # [B, B + S]
        b = len(users)
        # another row's positive (or a sampled item) equal to this row's positive is not a negative
        clash = cand[None, :] == pos[:, None]
        clash[torch.arange(b, device=users.device), torch.arange(b, device=users.device)] = False
        s = s.masked_fill(clash, float("-inf"))
        loss = F.cross_entropy(s, torch.arange(b, device=users.device))
        if cfg.l2 > 0:
            loss = loss + cfg.l2 * (u.float().pow(2).sum() + items[:b].float().pow(2).sum()) / b
        return loss

    # -- scoring --------------------------------------------------------------------------

    def score(self, users: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        if self.model is None:
            raise CrossbenchError("score() called before fit()")
        model = self.model
        users = users.to(self.device)
        with torch.no_grad(), self._autocast():
            hists, masks, present = self._inputs(model, self.target, users, None, None)
            u = model.user_vectors(users, hists, masks, self.target, present)
            encoder: ItemEncoder = model.item_encoders[self.target]  # type: ignore[assignment]
            items = encoder.all_items()
            # bf16 products cannot land in the float32 buffer; their float32 copy is a new tensor
            scores = model.scorer.score_all(u, items, out=None if self.bf16 else out).float()
            if not model.fusion.cross_domain:
                # no target history and no transfer: the training popularity of the target items
                cold = ~present[self.target]
                if bool(cold.any()):
                    scores[cold] = self.item_counts[self.target].to(scores.dtype)
            return scores

    # -- checkpoints ----------------------------------------------------------------------

    def save_checkpoint(self, path: Path) -> Path:
        """Write the fitted model's weights and description to ``path`` atomically (:mod:`crossbench.train.checkpoints`)."""
        if self.model is None:
            raise CrossbenchError("save_checkpoint() called before fit()")
        return save_checkpoint(Path(path), state=self.model.state_dict(), describe=self.describe())

    def load_checkpoint(self, path: Path, split: FitSplit, *, env: RunEnv) -> None:
        """Rebuild the model for ``split`` and load weights saved by :meth:`save_checkpoint`.

        Only tensors and primitives are read (``weights_only=True``); a checkpoint of another
        configuration is refused with the difference named.
        """
        state = read_checkpoint(Path(path), describe=self.describe())
        model = self._prepare(split, env)
        model.load_state_dict(state)
        model.eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
