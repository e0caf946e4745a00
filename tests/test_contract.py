"""One contract for every registered item encoder, user encoder, fusion and scorer.

Shapes, gradients, masking (what is absent must not matter), determinism on CPU, and the
same numbers on CUDA where a GPU is present. The parameter lists are read from the
registry, so a newly registered component is tested without editing this file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crossbench.interfaces import BuildContext
from crossbench.plugins import get_plugin_manager
from crossbench.registry import Registry
from crossbench_protocols import ColdStart
from crossbench_synthetic import SyntheticDataset
from crossbench_synthetic.generator import DOMAIN_NOUNS, FILLER, TOPICS

REGISTRY = Registry(get_plugin_manager())
DIM = 16
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


def names(kind: str) -> list[str]:
    return REGISTRY.names(kind)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from crossbench_zoo.testing import make_tiny_bert

    words = [" ".join(t) for t in TOPICS] + [" ".join(FILLER), " ".join(DOMAIN_NOUNS.values()), "a about ."]
    return make_tiny_bert(tmp_path_factory.mktemp("bert"), words)


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> BuildContext:
    data = SyntheticDataset(n_users=80, n_items=30, seed=3).load()
    split = ColdStart(target="movies", seed=0).split(data)
    return BuildContext(data=split.train, target="movies", dim=DIM, cache_dir=tmp_path_factory.mktemp("cache"))


def params_for(kind: str, name: str, request: pytest.FixtureRequest) -> dict[str, object]:
    """Hyperparameters a component needs in a test (a local model instead of the shipped one)."""
    if kind == "item-encoders" and name.startswith("text"):
        return {"model_path": str(request.getfixturevalue("tiny_bert"))}
    return {}


def build(kind: str, name: str, context: BuildContext, request: pytest.FixtureRequest, *, seed: int = 0) -> torch.nn.Module:
    spec = REGISTRY.get(kind, name)
    extra = {"domain": "movies"} if kind in ("item-encoders", "user-encoders") else {}
    params = params_for(kind, name, request)
    torch.manual_seed(seed)
    module = spec.factory(context=context, **extra, **params)
    assert isinstance(module, torch.nn.Module), f"{kind} {name!r} must be a torch module"
    return module


def grads_reach(module: torch.nn.Module, *inputs: torch.Tensor) -> bool:
    """True if some parameter or some input got a non-zero gradient."""
    grads = [p.grad for p in module.parameters() if p.requires_grad] + [x.grad for x in inputs]
    return any(g is not None and bool(g.abs().sum() > 0) for g in grads)


# --------------------------------------------------------------------------- item encoders


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", names("item-encoders"))
def test_item_encoder_contract(name: str, device: str, context: BuildContext, request: pytest.FixtureRequest) -> None:
    n_items = context.data.domain("movies").n_items
    enc = build("item-encoders", name, context, request).to(device).train()
    items = torch.tensor([[0, 1, 2, 3, 4], [n_items - 1, 0, 0, 5, 7], [9, 8, 7, 6, 5]], device=device)
    out = enc(items)
    assert out.shape == (3, 5, DIM) and out.dtype == torch.float32
    assert enc.all_items().shape == (n_items, DIM)
    out.pow(2).sum().backward()
    assert grads_reach(enc), f"no gradient reaches item encoder {name!r}"
    enc.eval()
    with torch.no_grad():  # one item's vector does not depend on what it is batched with
        torch.testing.assert_close(enc(items)[1, 0], enc.all_items()[n_items - 1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(enc(items[:1, :2]), enc.all_items()[:2].unsqueeze(0), rtol=1e-5, atol=1e-5)
    if device == "cpu":
        again = build("item-encoders", name, context, request).eval()
        with torch.no_grad():
            assert torch.equal(again(items), enc(items)), f"item encoder {name!r} is not deterministic on CPU"
    else:
        cpu = build("item-encoders", name, context, request).eval()
        cpu.load_state_dict({k: v.cpu() for k, v in enc.state_dict().items()})
        with torch.no_grad():
            torch.testing.assert_close(enc(items).cpu(), cpu(items.cpu()), rtol=1e-3, atol=1e-4)


# --------------------------------------------------------------------------- user encoders


def history_batch(device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
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


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", names("user-encoders"))
def test_user_encoder_contract(name: str, device: str, context: BuildContext, request: pytest.FixtureRequest) -> None:
    enc = build("user-encoders", name, context, request).to(device).train()
    users, hist, mask = history_batch(device)
    torch.manual_seed(1)
    out = enc(users, hist, mask)
    assert out.shape == (5, DIM)
    assert torch.isfinite(out).all()
    out.pow(2).sum().backward()
    assert grads_reach(enc, hist), f"no gradient reaches user encoder {name!r}"
    enc.eval()
    reads = getattr(enc, "uses_history", True)
    with torch.no_grad():
        base = enc(users, hist, mask)
        noisy = hist.detach().clone()
        noisy[~mask] = 123.0  # masked positions must not matter
        torch.testing.assert_close(enc(users, noisy, mask), base, rtol=1e-5, atol=1e-5)
        if reads:
            assert torch.all(base[2] == 0), f"user encoder {name!r} must give an empty history zeros"
            changed = hist.detach().clone()
            changed[1, -1] += torch.linspace(-1.0, 1.0, DIM, device=device)  # the most recent item matters
            assert not torch.allclose(enc(users, changed, mask)[1], base[1])
        # all-position states equal forward() on every prefix (left-padded histories)
        g = torch.Generator().manual_seed(3)
        seq = torch.randn(3, 5, DIM, generator=g).to(device)
        left = torch.tensor([[False, False, True, True, True], [True] * 5, [False] * 5], device=device)
        u = torch.arange(3, device=device)
        states = enc.forward_all(u, seq, left)
        assert states.shape == (3, 5, DIM)
        prefix = torch.stack([enc(u, seq[:, : j + 1], left[:, : j + 1]) for j in range(5)], dim=1)
        torch.testing.assert_close(states, prefix, rtol=1e-5, atol=1e-5)
    if device == "cpu":
        again = build("user-encoders", name, context, request).eval()
        with torch.no_grad():
            assert torch.equal(again(users, hist.detach(), mask), base)
    else:
        cpu = build("user-encoders", name, context, request).eval()
        cpu.load_state_dict({k: v.cpu() for k, v in enc.state_dict().items()})
        with torch.no_grad():
            torch.testing.assert_close(base.cpu(), cpu(users.cpu(), hist.detach().cpu(), mask.cpu()), rtol=1e-3, atol=1e-4)


# --------------------------------------------------------------------------- fusions


def fusion_batch(device: str, domains: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    vectors = {d: torch.randn(4, DIM, generator=g).to(device).requires_grad_(True) for d in domains}
    # users: in both domains / target only / source only / neither
    present = {
        "movies": torch.tensor([True, True, False, False], device=device),
        "books": torch.tensor([True, False, True, False], device=device),
    }
    return vectors, present


def fusion_items(device: str, present: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Item vectors ``[4, 3, DIM]`` per domain, left-padded: a present user has 2 items, an absent one none."""
    g = torch.Generator().manual_seed(1)
    items = {d: torch.randn(4, 3, DIM, generator=g).to(device).requires_grad_(True) for d in present}
    masks = {d: p.unsqueeze(1) & torch.tensor([False, True, True], device=device) for d, p in present.items()}
    return items, masks


def call_fusion(fusion, vectors, present, target, items, masks):  # type: ignore[no-untyped-def]
    if fusion.item_level:
        return fusion(vectors, present, target, items=items, item_masks=masks)
    return fusion(vectors, present, target)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", names("fusions"))
def test_fusion_contract(name: str, device: str, context: BuildContext, request: pytest.FixtureRequest) -> None:
    fusion = build("fusions", name, context, request).to(device).train()
    vectors, present = fusion_batch(device, context.data.domain_names)
    items, masks = fusion_items(device, present)
    torch.manual_seed(1)
    out = call_fusion(fusion, vectors, present, "movies", items, masks)
    assert out.shape == (4, DIM) and torch.isfinite(out).all()
    out.pow(2).sum().backward()
    inputs = [*vectors.values(), *items.values()]
    assert grads_reach(fusion, *inputs), f"no gradient reaches fusion {name!r}"
    if fusion.cross_domain:  # a cold user (source only) is served by the source domain
        src = items["books"] if fusion.item_level else vectors["books"]
        assert src.grad is not None and src.grad[2].abs().sum() > 0
    fusion.eval()
    with torch.no_grad():
        base = call_fusion(fusion, vectors, present, "movies", items, masks)
        moved = {d: v.detach().clone() for d, v in vectors.items()}
        moved["books"][~present["books"]] += 5.0  # an absent source domain must not matter
        moved_items = {d: v.detach().clone() for d, v in items.items()}
        for d in moved_items:  # nor an absent domain's items, nor padding (random: a constant vanishes in a layer norm)
            moved_items[d][~masks[d]] += 3 * torch.randn(int((~masks[d]).sum()), DIM, generator=torch.Generator().manual_seed(5)).to(device)
        torch.testing.assert_close(call_fusion(fusion, moved, present, "movies", moved_items, masks), base, rtol=1e-5, atol=1e-5)
        assert call_fusion(fusion, vectors, present, "books", items, masks).shape == (4, DIM)  # every domain can be the target
    if device == "cpu":
        again = build("fusions", name, context, request).eval()
        with torch.no_grad():
            detached = {d: v.detach() for d, v in vectors.items()}
            assert torch.equal(call_fusion(again, detached, present, "movies", items, masks), base)
    else:
        cpu = build("fusions", name, context, request).eval()
        cpu.load_state_dict({k: v.cpu() for k, v in fusion.state_dict().items()})
        with torch.no_grad():
            got = call_fusion(
                cpu, {d: v.detach().cpu() for d, v in vectors.items()}, {d: p.cpu() for d, p in present.items()}, "movies",
                {d: v.detach().cpu() for d, v in items.items()}, {d: m.cpu() for d, m in masks.items()},
            )
            torch.testing.assert_close(base.cpu(), got, rtol=1e-3, atol=1e-4)


# --------------------------------------------------------------------------- scorers


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", names("scorers"))
def test_scorer_contract(name: str, device: str, context: BuildContext, request: pytest.FixtureRequest) -> None:
    scorer = build("scorers", name, context, request).to(device).train()
    g = torch.Generator().manual_seed(0)
    users = torch.randn(3, DIM, generator=g).to(device).requires_grad_(True)
    catalogue = torch.randn(7, DIM, generator=g).to(device).requires_grad_(True)
    pairs = catalogue[torch.tensor([[0, 1, 2, 3], [4, 5, 6, 0], [1, 1, 2, 2]], device=device)]
    out = scorer(users, pairs)
    assert out.shape == (3, 4)
    out.sum().backward()
    assert grads_reach(scorer, users, catalogue), f"no gradient reaches scorer {name!r}"
    scorer.eval()
    with torch.no_grad():
        full = scorer.score_all(users, catalogue)
        assert full.shape == (3, 7)
        torch.testing.assert_close(full[0, :4], scorer(users, pairs)[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(full[2, [1, 1, 2, 2]], scorer(users, pairs)[2], rtol=1e-5, atol=1e-5)
        # the evaluator's reusable buffer: written into or ignored, the scores are the same
        buffer = torch.full((3, 7), float("nan"), device=device)
        into = scorer.score_all(users, catalogue, out=buffer)
        assert torch.equal(into, full)
    if device == "cpu":
        again = build("scorers", name, context, request).eval()
        with torch.no_grad():
            assert torch.equal(again.score_all(users.detach(), catalogue.detach()), full)


def test_every_kind_has_components() -> None:
    """The parametrisation above reads the registry; make sure it is not silently empty."""
    assert {"id", "text", "text-id"} <= set(names("item-encoders"))
    assert {"mean", "user-id", "gru", "transformer"} <= set(names("user-encoders"))
    assert {"target-only", "shared", "concat", "gating", "attention", "emcdr", "ptupcdr"} <= set(names("fusions"))
    assert {"dot", "cosine", "mlp"} <= set(names("scorers"))
