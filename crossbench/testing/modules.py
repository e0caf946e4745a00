"""Contract checks of the torch components: item and user encoders, fusions and scorers.

Each check builds the component twice from its factory (same seed), on the kit's tiny training
data, and checks shapes, that gradients flow, that what is absent (padding, a domain without
history) does not change the output, chunk-independent scoring, determinism on CPU, and, on a
CUDA device, the same numbers as on CPU.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from crossbench.plugin.interfaces import BuildContext
from crossbench.testing.data import DIM, TARGET
from crossbench.testing.registry import params_for, spec_of

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]
SOURCE = "books"


def build(request: pytest.FixtureRequest, kind: str, name: str, *, seed: int = 0) -> Any:
    context: BuildContext = request.getfixturevalue("crossbench_kit_context")
    spec = spec_of(request, kind, name)
    extra = {"domain": TARGET} if kind in ("item-encoders", "user-encoders") else {}
    params = params_for(request, kind, name)  # first: making them may draw random numbers
    torch.manual_seed(seed)
    module = spec.factory(context=context, **extra, **params)
    assert isinstance(module, torch.nn.Module), f"{kind} {name!r}: the factory returned {type(module).__name__}, not a torch module"
    return module


def grads_reach(module: torch.nn.Module, *inputs: torch.Tensor) -> bool:
    """True if some parameter or some input got a non-zero gradient."""
    grads = [p.grad for p in module.parameters() if p.requires_grad] + [x.grad for x in inputs]
    return any(g is not None and bool(g.abs().sum() > 0) for g in grads)


def same_on_cpu(request: pytest.FixtureRequest, kind: str, name: str, module: torch.nn.Module) -> Any:
    """A CPU copy of ``module`` (same weights) to compare a CUDA run against."""
    cpu = build(request, kind, name).eval()
    cpu.load_state_dict({k: v.cpu() for k, v in module.state_dict().items()})
    return cpu


# --------------------------------------------------------------------------- item encoders


def check_item_encoder(request: pytest.FixtureRequest, name: str, device: str) -> None:
    where = f"item encoder {name!r}"
    n_items = request.getfixturevalue("crossbench_kit_context").data.domain(TARGET).n_items
    enc = build(request, "item-encoders", name).to(device).train()
    items = torch.tensor([[0, 1, 2, 3, 4], [n_items - 1, 0, 0, 5, 7], [9, 8, 7, 6, 5]], device=device)
    out = enc(items)
    assert out.shape == (3, 5, DIM) and out.dtype == torch.float32, f"{where}: forward gave {tuple(out.shape)} {out.dtype}, expected (3, 5, {DIM}) float32"
    assert enc.all_items().shape == (n_items, DIM), f"{where}: all_items() gave {tuple(enc.all_items().shape)}, expected {(n_items, DIM)}"
    out.pow(2).sum().backward()
    assert grads_reach(enc), f"{where}: no gradient reaches its parameters"
    enc.eval()
    with torch.no_grad():
        torch.testing.assert_close(enc(items)[1, 0], enc.all_items()[n_items - 1], rtol=1e-5, atol=1e-5,
                                   msg=lambda m: f"{where}: an item's vector depends on what it is batched with: {m}")
        base = enc(items)
    if device == "cpu":
        again = build(request, "item-encoders", name).eval()
        with torch.no_grad():
            assert torch.equal(again(items), base), f"{where}: two builds with the same seed differ on CPU"
    else:
        with torch.no_grad():
            cpu = same_on_cpu(request, "item-encoders", name, enc)
            torch.testing.assert_close(base.cpu(), cpu(items.cpu()), rtol=1e-3, atol=1e-4)


# --------------------------------------------------------------------------- user encoders


def history_batch(device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    users = torch.tensor([0, 1, 2, 3, 4])
    hist = torch.randn(5, 6, DIM, generator=g)
    mask = torch.tensor(
        [
            [0, 0, 1, 1, 1, 1],  # left-padded
            [1, 1, 1, 1, 1, 1],  # full
            [0, 0, 0, 0, 0, 0],  # empty
            [0, 1, 1, 0, 1, 1],  # a masked item inside (the item being ranked)
            [0, 0, 0, 0, 0, 1],  # one item
        ],
        dtype=torch.bool,
    )
    return users.to(device), hist.to(device).requires_grad_(True), mask.to(device)


def check_user_encoder(request: pytest.FixtureRequest, name: str, device: str) -> None:
    where = f"user encoder {name!r}"
    enc = build(request, "user-encoders", name).to(device).train()
    users, hist, mask = history_batch(device)
    torch.manual_seed(1)
    out = enc(users, hist, mask)
    assert out.shape == (5, DIM), f"{where}: forward gave {tuple(out.shape)}, expected (5, {DIM})"
    assert torch.isfinite(out).all(), f"{where}: non-finite output (an empty history must give a finite vector)"
    out.pow(2).sum().backward()
    assert grads_reach(enc, hist), f"{where}: no gradient reaches its parameters or the history"
    enc.eval()
    reads = getattr(enc, "uses_history", True)
    with torch.no_grad():
        base = enc(users, hist, mask)
        noisy = hist.detach().clone()
        noisy[~mask] = 123.0
        torch.testing.assert_close(enc(users, noisy, mask), base, rtol=1e-5, atol=1e-5,
                                   msg=lambda m: f"{where}: masked positions (padding) change the output: {m}")
        if reads:
            assert torch.all(base[2] == 0), f"{where}: an empty history must give zeros"
            changed = hist.detach().clone()
            changed[1, -1] += torch.linspace(-1.0, 1.0, DIM, device=device)
            assert not torch.allclose(enc(users, changed, mask)[1], base[1]), f"{where}: the most recent item does not matter"
        g = torch.Generator().manual_seed(3)
        seq = torch.randn(3, 5, DIM, generator=g).to(device)
        left = torch.tensor([[False, False, True, True, True], [True] * 5, [False] * 5], device=device)
        u = torch.arange(3, device=device)
        states = enc.forward_all(u, seq, left)
        assert states.shape == (3, 5, DIM), f"{where}: forward_all gave {tuple(states.shape)}, expected (3, 5, {DIM})"
        prefix = torch.stack([enc(u, seq[:, : j + 1], left[:, : j + 1]) for j in range(5)], dim=1)
        torch.testing.assert_close(states, prefix, rtol=1e-5, atol=1e-5,
                                   msg=lambda m: f"{where}: forward_all differs from forward on each prefix: {m}")
    if device == "cpu":
        again = build(request, "user-encoders", name).eval()
        with torch.no_grad():
            assert torch.equal(again(users, hist.detach(), mask), base), f"{where}: two builds with the same seed differ on CPU"
    else:
        cpu = same_on_cpu(request, "user-encoders", name, enc)
        with torch.no_grad():
            torch.testing.assert_close(base.cpu(), cpu(users.cpu(), hist.detach().cpu(), mask.cpu()), rtol=1e-3, atol=1e-4)


# --------------------------------------------------------------------------- fusions


def fusion_batch(device: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Users in both domains / the target only / the source only / neither, with 2 items per present domain."""
    g = torch.Generator().manual_seed(0)
    vectors = {d: torch.randn(4, DIM, generator=g).to(device).requires_grad_(True) for d in (SOURCE, TARGET)}
    present = {
        TARGET: torch.tensor([True, True, False, False], device=device),
        SOURCE: torch.tensor([True, False, True, False], device=device),
    }
    g = torch.Generator().manual_seed(1)
    items = {d: torch.randn(4, 3, DIM, generator=g).to(device).requires_grad_(True) for d in present}
    masks = {d: p.unsqueeze(1) & torch.tensor([False, True, True], device=device) for d, p in present.items()}
    return vectors, present, items, masks


def call_fusion(fusion: Any, vectors: Any, present: Any, target: str, items: Any, masks: Any) -> torch.Tensor:
    if fusion.item_level:
        return fusion(vectors, present, target, items=items, item_masks=masks)  # type: ignore[no-any-return]
    return fusion(vectors, present, target)  # type: ignore[no-any-return]


def check_fusion(request: pytest.FixtureRequest, name: str, device: str) -> None:
    where = f"fusion {name!r}"
    fusion = build(request, "fusions", name).to(device).train()
    vectors, present, items, masks = fusion_batch(device)
    torch.manual_seed(1)
    out = call_fusion(fusion, vectors, present, TARGET, items, masks)
    assert out.shape == (4, DIM), f"{where}: forward gave {tuple(out.shape)}, expected (4, {DIM})"
    assert torch.isfinite(out).all(), f"{where}: non-finite output (a user with no history anywhere must get a finite vector)"
    out.pow(2).sum().backward()
    assert grads_reach(fusion, *vectors.values(), *items.values()), f"{where}: no gradient reaches its parameters or inputs"
    if fusion.cross_domain:
        src = items[SOURCE] if fusion.item_level else vectors[SOURCE]
        assert src.grad is not None and src.grad[2].abs().sum() > 0, \
            f"{where}: declares cross_domain but a user with source history only gets nothing from it"
    fusion.eval()
    with torch.no_grad():
        base = call_fusion(fusion, vectors, present, TARGET, items, masks)
        moved = {d: v.detach().clone() for d, v in vectors.items()}
        moved[SOURCE][~present[SOURCE]] += 5.0
        moved_items = {d: v.detach().clone() for d, v in items.items()}
        for d in moved_items:  # random: a constant shift would vanish in a layer norm
            noise = torch.randn(int((~masks[d]).sum()), DIM, generator=torch.Generator().manual_seed(5)).to(device)
            moved_items[d][~masks[d]] += 3 * noise
        torch.testing.assert_close(call_fusion(fusion, moved, present, TARGET, moved_items, masks), base, rtol=1e-5, atol=1e-5,
                                   msg=lambda m: f"{where}: an absent domain or padding changes the output: {m}")
        other = call_fusion(fusion, vectors, present, SOURCE, items, masks)
        assert other.shape == (4, DIM), f"{where}: with {SOURCE!r} as target it gave {tuple(other.shape)}; every domain can be the target"
    if device == "cpu":
        again = build(request, "fusions", name).eval()
        with torch.no_grad():
            detached = {d: v.detach() for d, v in vectors.items()}
            assert torch.equal(call_fusion(again, detached, present, TARGET, items, masks), base), f"{where}: two builds with the same seed differ on CPU"
    else:
        cpu = same_on_cpu(request, "fusions", name, fusion)
        with torch.no_grad():
            got = call_fusion(cpu, {d: v.detach().cpu() for d, v in vectors.items()}, {d: p.cpu() for d, p in present.items()}, TARGET,
                              {d: v.detach().cpu() for d, v in items.items()}, {d: m.cpu() for d, m in masks.items()})
            torch.testing.assert_close(base.cpu(), got, rtol=1e-3, atol=1e-4)


# --------------------------------------------------------------------------- scorers


def check_scorer(request: pytest.FixtureRequest, name: str, device: str) -> None:
    where = f"scorer {name!r}"
    scorer = build(request, "scorers", name).to(device).train()
    g = torch.Generator().manual_seed(0)
    users = torch.randn(3, DIM, generator=g).to(device).requires_grad_(True)
    catalogue = torch.randn(7, DIM, generator=g).to(device).requires_grad_(True)
    pick = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 0], [1, 1, 2, 2]], device=device)
    pairs = catalogue[pick]
    out = scorer(users, pairs)
    assert out.shape == (3, 4), f"{where}: forward gave {tuple(out.shape)}, expected (3, 4)"
    out.sum().backward()
    assert grads_reach(scorer, users, catalogue), f"{where}: no gradient reaches its parameters or inputs"
    scorer.eval()
    with torch.no_grad():
        full = scorer.score_all(users, catalogue)
        assert full.shape == (3, 7), f"{where}: score_all gave {tuple(full.shape)}, expected (3, 7)"
        torch.testing.assert_close(full.gather(1, pick), scorer(users, pairs), rtol=1e-5, atol=1e-5,
                                   msg=lambda m: f"{where}: score_all disagrees with forward on the same pairs: {m}")
        chunks = torch.cat([scorer.score_all(users[:1], catalogue), scorer.score_all(users[1:], catalogue)])
        torch.testing.assert_close(chunks, full, rtol=1e-5, atol=1e-5,
                                   msg=lambda m: f"{where}: scores depend on how users are chunked: {m}")
        buffer = torch.full((3, 7), float("nan"), device=device)
        assert torch.equal(scorer.score_all(users, catalogue, out=buffer), full), f"{where}: score_all(out=buffer) differs"
    if device == "cpu":
        again = build(request, "scorers", name).eval()
        with torch.no_grad():
            assert torch.equal(again.score_all(users.detach(), catalogue.detach()), full), f"{where}: two builds with the same seed differ on CPU"
    else:
        cpu = same_on_cpu(request, "scorers", name, scorer)
        with torch.no_grad():
            torch.testing.assert_close(full.cpu(), cpu.score_all(users.detach().cpu(), catalogue.detach().cpu()), rtol=1e-3, atol=1e-4)
