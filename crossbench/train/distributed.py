"""Data-parallel training over several processes with PyTorch's distributed engine.

A command started by ``crossbench run/tune/reproduce --nproc N`` (:mod:`crossbench.cli.launch`)
or by ``torchrun`` runs once per process ("rank"); :func:`process_group` joins them (gloo on
CPU, NCCL on CUDA, ``env://``: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``, as torchrun and the launcher set them), and :func:`ranks` tells the code in
the process which rank it is. With one process nothing here acts: :class:`Ranks` of world size
1 hands back every batch, generator and value unchanged, so training is bit-identical to a
run that never imported this module.

What the training loops do with more than one rank (the hooks they call):

- **the same global batches as one process**: the batch order and the shuffle are drawn from a
  generator seeded alike on every rank (:meth:`Ranks.generators`), and each global batch is cut
  into contiguous per-rank parts (:meth:`Ranks.local`: rank ``r`` of ``W`` takes positions
  ``[n*r//W, n*(r+1)//W)``; batches of sequences are dealt by each one's number of targets),
  so a per-rank batch is the global one divided by ``W``; random
  draws inside a step (negatives, dropout) come from a generator seeded per rank;
- **the gradient of the global batch**: each rank's gradient of its own mean loss is weighted
  by its share of the batch's samples and summed over the ranks in one all-reduce
  (:meth:`Ranks.reduce_gradients`): the gradient of the mean loss over the global batch,
  which is what ``DistributedDataParallel`` computes (sequence training encodes the item
  catalogues block-wise over the ranks, :meth:`Ranks.catalogues`, and sums the gradients of the
  ranks' summed losses instead: the same gradient). A parameter no rank touched keeps no
  gradient (as in one process, where the optimiser then skips it). Clipping and the optimiser
  step then run identically on every rank, so the weights stay equal (they start equal: rank
  0's are broadcast first, :meth:`Ranks.same_weights`);
- **one validation decision**: the validation users are evaluated sharded over the ranks
  (:func:`validation_means`), the metric is taken once on rank 0 and broadcast
  (:meth:`Ranks.agree`), so early stopping, pruning and the reported score are the same
  everywhere; an ``on_epoch`` callback that stops the fit on one rank (tuning's pruning on
  rank 0) stops it on every rank (:meth:`Ranks.epoch_hook`);
- **one writer**: only rank 0 writes checkpoints, records and tables (:attr:`Ranks.writes`).

Every collective waits at most ``CROSSBENCH_COLLECTIVE_TIMEOUT_S`` seconds (default
:data:`DEFAULT_TIMEOUT_S`): a rank that died makes the others fail within that bound even
without a launcher watching them, with one line naming this rank and the lost contact.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from crossbench.errors import CrossbenchError

__all__ = [
    "DEFAULT_TIMEOUT_S", "TIMEOUT_ENV", "Ranks", "Stopped", "collective_timeout", "process_group", "ranks",
    "validation_means",
]

#: environment variable: seconds any collective may wait for the other ranks
TIMEOUT_ENV = "CROSSBENCH_COLLECTIVE_TIMEOUT_S"
#: the default bound on a collective's wait (a dead rank is noticed by the others within it)
DEFAULT_TIMEOUT_S = 300.0
#: seed offset of each rank's own generator (negatives, dropout): rank r draws from seed + r * offset
_RANK_SEED_STRIDE = 1_000_003


class Stopped(Exception):
    """Raised on the ranks whose fit another rank's ``on_epoch`` stopped (tuning pruned the trial)."""


def collective_timeout() -> float:
    """Seconds a collective may wait (:data:`TIMEOUT_ENV`, else :data:`DEFAULT_TIMEOUT_S`)."""
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise CrossbenchError(f"{TIMEOUT_ENV}={text!r}: give a positive number of seconds")
    return value


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes of one command; world size 1: one process, no hooks act."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def writes(self) -> bool:
        """Whether this process writes files (checkpoints, records, tables): rank 0 alone."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: ``cuda:LOCAL_RANK`` for a CUDA run of several ranks, else ``device``."""
        if self.active and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def describe(self, device: torch.device) -> dict[str, Any]:
        """What a run record says about the processes: world size, backend, each rank's device."""
        devices = [str(device)]
        if self.active:
            devices = [""] * self.world
            dist.all_gather_object(devices, str(device))
        return {"world_size": self.world, "backend": self.backend, "devices": devices}

    # -- the sampler --------------------------------------------------------------------------

    def generators(self, seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
        """``(own, shared)``: the generator of this rank's random draws and that of the batch shuffle,
        the same object in one process (seeded ``seed``, as before any of this existed)."""
        shared = torch.Generator(device=device).manual_seed(seed)
        if not self.active:
            return shared, shared
        return torch.Generator(device=device).manual_seed(seed + _RANK_SEED_STRIDE * (self.rank + 1)), shared

    def start(self, model: torch.nn.Module, seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
        """Before a fit: every rank gets rank 0's weights (:meth:`same_weights`); returns :meth:`generators`."""
        self.same_weights(model)
        return self.generators(seed, device)

    def local(self, batch: torch.Tensor, work: torch.Tensor | None = None) -> torch.Tensor:
        """This rank's part of a global batch (the whole batch in one process): its contiguous part, or,
        given each sample's ``work`` (a sequence's number of targets), the samples dealt to it in
        decreasing order of work, the ranks taking turns forwards then backwards, in batch order:
        parts of equal size (to 1) and nearly equal work, so no rank waits long for the others."""
        if not self.active:
            return batch
        n = len(batch)
        if work is None:
            return batch[n * self.rank // self.world : n * (self.rank + 1) // self.world]
        order = torch.sort(work.to("cpu"), descending=True, stable=True).indices
        turn = torch.arange(n) % (2 * self.world)
        dealt = torch.where(turn < self.world, turn, 2 * self.world - 1 - turn)  # 0 1 .. W-1 W-1 .. 1 0 0 1 ..
        return batch[torch.sort(order[dealt == self.rank]).values.to(batch.device)]

    # -- the gradient -------------------------------------------------------------------------

    def same_weights(self, module: torch.nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers (they are built from the same seed; this makes sure)."""
        if not self.active:
            return
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)

    def reduce_gradients(self, params: Sequence[torch.nn.Parameter], n_local: int, *, summed: bool = False) -> None:
        """Replace each gradient by the gradient of the global batch's mean loss: ``sum_r n_r g_r / sum_r n_r``.

        ``n_local`` is the number of samples this rank's mean loss averaged over (0: this rank
        computed no loss). One all-reduce carries the weighted gradients, which parameters have
        one on some rank, and the sample counts. ``summed``: the gradients are already those of
        the rank's summed loss (the back-propagation went through :meth:`catalogues`), so they
        are summed unweighted, an empty part's included, and divided by ``sum_r n_r``.
        """
        if not self.active or not params:
            return
        ref = params[0]
        flat, flags = [], []
        for p in params:
            grad = p.grad if n_local > 0 or summed else None  # an empty part's mean loss is NaN: it adds nothing
            flags.append(0.0 if grad is None else 1.0)
            flat.append(torch.zeros(p.numel(), device=ref.device) if grad is None else (grad.float() if summed else grad.float() * n_local).reshape(-1))
        buffer = torch.cat([*flat, torch.tensor([*flags, float(n_local)], device=ref.device)])
        dist.all_reduce(buffer)
        flags_after = buffer[-1 - len(params) :].tolist()
        buffer /= max(flags_after[-1], 1.0)
        offset = 0
        for i, p in enumerate(params):
            size = p.numel()
            if flags_after[i] > 0:
                p.grad = buffer[offset : offset + size].view_as(p).to(p.dtype)
            offset += size

    def catalogues(self, encoders: Mapping[str, Any] | torch.nn.ModuleDict, domains: Sequence[str]) -> dict[str, torch.Tensor]:
        """Every domain's item vectors ``[n_items, dim]`` (``encoders[d].all_items()``), each rank encoding
        one block of every catalogue (:meth:`ItemEncoder.block_items`, rank ``r`` items
        ``[n*r//W, n*(r+1)//W)``) and the blocks gathered in one all-gather that back-propagates.

        Why the gradients stay those of one process: rank ``r`` back-propagates its *summed* loss
        ``S_r`` (``n_r`` times its mean loss) and :meth:`reduce_gradients` then sums over the ranks
        (``summed=True``) and divides by ``N = sum_r n_r``. Write ``C_s`` for block ``s`` of the
        catalogues (encoded on rank ``s`` from the parameters ``theta``, Jacobian ``J_s``). Rank
        ``r``'s backward pass gives its direct gradient ``dS_r/dtheta`` (catalogues held fixed) and
        ``G_rs = dS_r/dC_s`` for every block; the gather's backward sends ``G_rs`` to rank ``s``,
        which back-propagates ``sum_r G_rs`` through its own encoding. So rank ``s`` holds
        ``g_s = dS_s/dtheta + J_s^T sum_r G_rs``, and ``sum_s g_s = sum_r (dS_r/dtheta + sum_s
        J_s^T G_rs) = sum_r (total derivative of S_r) = N * gradient of the global mean loss``:
        by the chain rule, exactly what one process computes on the global batch, up to the
        order of float sums (a block's rows are computed apart from the others).
        Every rank must call this at every step (it is a collective) and back-propagate once.
        """
        item_encoders: dict[str, Any] = {d: encoders[d] for d in domains}  # ItemEncoder (not imported here)
        if not self.active:
            return {d: e.all_items() for d, e in item_encoders.items()}
        parts, rows = [], []
        for d, encoder in item_encoders.items():
            n = int(encoder.n_items)
            start, stop, width = n * self.rank // self.world, n * (self.rank + 1) // self.world, -(-n // self.world)
            part = encoder.block_items(start, stop)
            if stop - start < width:  # equal shapes for the gather: pad, dropped again below
                part = torch.cat([part, part.new_zeros(width - (stop - start), *part.shape[1:])])
            parts.append(part)
            rows.append((d, n, width))
        gathered = _GatherBlocks.apply(torch.cat(parts))  # [W * sum(width), dim]
        blocks = gathered.view(self.world, -1, *gathered.shape[1:])
        out, offset = {}, 0
        for d, n, width in rows:
            sizes = [n * (s + 1) // self.world - n * s // self.world for s in range(self.world)]
            out[d] = torch.cat([blocks[s, offset : offset + size] for s, size in enumerate(sizes)])
            offset += width
        return out

    def total(self, value: int) -> int:
        """The sum of ``value`` over the ranks (``value`` in one process)."""
        if not self.active:
            return value
        on = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")
        t = torch.tensor([float(value)], dtype=torch.float64, device=on)
        dist.all_reduce(t)
        return int(t.item())

    # -- decisions ----------------------------------------------------------------------------

    def agree(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (``value`` itself in one process)."""
        if not self.active:
            return value
        box = [value if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def epoch_hook(self, on_epoch: Callable[[int, float], None] | None) -> Callable[[int, float], None] | None:
        """``on_epoch`` itself in one process; with several, a callback that calls it and, when it raised
        on any rank, stops the fit on every rank (that rank re-raises its own exception, the others
        raise :class:`Stopped`). Every rank must call the callback after each validated epoch."""
        if not self.active:
            return on_epoch

        def hook(step: int, value: float) -> None:
            raised: BaseException | None = None
            try:
                if on_epoch is not None:
                    on_epoch(step, value)
            except Exception as exc:  # noqa: BLE001 - shared with every rank, then raised
                raised = exc
            said: list[Any] = [None] * self.world
            dist.all_gather_object(said, None if raised is None else f"{type(raised).__name__}: {raised}")
            if raised is not None:
                raise raised
            stopped = [(r, s) for r, s in enumerate(said) if s is not None]
            if stopped:
                raise Stopped(f"rank {stopped[0][0]} stopped the fit ({stopped[0][1]})")

        return hook


class _GatherBlocks(torch.autograd.Function):
    """All-gather of equal-shaped blocks ``[m, ...]`` into ``[W * m, ...]`` (rank order) that back-propagates:
    each rank gets the sum over the ranks of the gradient of its own block (an all-to-all, then a
    sum in rank order; gloo has no reduce-scatter)."""

    @staticmethod
    def forward(ctx: Any, block: torch.Tensor) -> torch.Tensor:
        block = block.contiguous()
        out = block.new_empty((dist.get_world_size() * block.shape[0], *block.shape[1:]))
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # the newer name, where it exists
        gather(out, block)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        received = torch.empty_like(grad)
        dist.all_to_all_single(received, grad.contiguous())  # block r of every rank's gradient, in rank order
        return received.view(dist.get_world_size(), -1, *grad.shape[1:]).sum(0)


def ranks() -> Ranks:
    """This process's :class:`Ranks`: those of the initialised default process group, else one process."""
    if not (dist.is_available() and dist.is_initialized()):
        return Ranks()
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    return Ranks(dist.get_rank(), dist.get_world_size(), local, str(dist.get_backend()))


def validation_means(evaluate_one: Callable[..., Any], evaluate_many: Callable[..., Any], **kwargs: Any) -> Mapping[str, float]:
    """The means of an evaluation of the validation users: ``evaluate_one(**kwargs)`` in one process;
    sharded over the ranks (``evaluate_many``, :func:`crossbench.evaluate.distributed.evaluate_sharded`),
    taken once on rank 0 and broadcast, with several."""
    r = ranks()
    if not r.active:
        return dict(evaluate_one(**kwargs).means)
    result = evaluate_many(**kwargs)
    return dict(r.agree(None if result is None else {k: float(v) for k, v in result.means.items()}))


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise CrossbenchError(f"environment variable {name}={text!r} is not a whole number (set by torchrun or --nproc)") from None


@contextmanager
def process_group(device: torch.device) -> Iterator[Ranks]:
    """Join the processes of this command when ``WORLD_SIZE`` > 1 (torchrun or ``--nproc`` set it),
    gloo on CPU, NCCL on CUDA; leave them at the end. A lost rank or a timed-out collective
    becomes one error naming this rank. With no ``WORLD_SIZE`` (or 1): one process, nothing done."""
    world, rank = _env_int("WORLD_SIZE"), _env_int("RANK")
    if world is None or world <= 1:
        yield Ranks()
        return
    if rank is None or not 0 <= rank < world:
        raise CrossbenchError(f"WORLD_SIZE={world} but RANK={rank}: launch with torchrun or --nproc, which set both")
    if dist.is_initialized():  # embedded: the caller's group
        yield ranks()
        return
    local = _env_int("LOCAL_RANK") or 0
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        if local >= torch.cuda.device_count():
            raise CrossbenchError(f"rank {rank} (local rank {local}) has no CUDA device: this machine has "
                                  f"{torch.cuda.device_count()}; start at most that many processes per machine")
        torch.cuda.set_device(local)
    timeout = collective_timeout()
    try:
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world, timeout=timedelta(seconds=timeout))
    except (RuntimeError, ValueError) as exc:
        raise CrossbenchError(f"rank {rank} of {world}: could not join the other ranks within {timeout:g} s "
                              f"({type(exc).__name__}: {_first_line(exc)}); check MASTER_ADDR and MASTER_PORT") from None
    finished = False
    try:
        yield ranks()
        finished = True
    except dist.DistError as exc:
        raise CrossbenchError(f"rank {rank} of {world}: lost contact with the other ranks "
                              f"({type(exc).__name__}: {_first_line(exc)}); a rank died or stalled past {timeout:g} s") from None
    except RuntimeError as exc:
        if not _is_collective_failure(exc):
            raise
        raise CrossbenchError(f"rank {rank} of {world}: lost contact with the other ranks ({_first_line(exc)})") from None
    finally:
        try:
            if finished:  # leave together: a rank tearing down while another still uses the group can abort it
                dist.barrier()
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - the group of a failed run may be broken already
            pass


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _is_collective_failure(exc: BaseException) -> bool:
    text = str(exc)
    return any(s in text for s in ("Connection closed by peer", "Connection reset by peer", "Timed out", "[/", "gloo", "NCCL"))
