"""sasrec laid out as SASRec in RecBole: post-norm blocks against a hand-written oracle, the
normal(0.02) initialisation, the defaults, and the pre-norm layout kept for other models."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from crossbench.errors import CrossbenchError
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench.plugin.specs import ComponentRef
from crossbench_zoo.sequence import TransformerUserEncoder

REGISTRY = Registry(get_plugin_manager())


def oracle_post_norm(enc: TransformerUserEncoder, items: torch.Tensor) -> torch.Tensor:
    """One-head post-norm SASRec over ``items`` ``[L, dim]`` (no padding), written out step by step."""
    length, dim = items.shape
    ln = lambda x, norm: F.layer_norm(x, (dim,), norm.weight, norm.bias, eps=1e-12)  # noqa: E731
    x = ln(items + enc.positions.weight[:length], enc.norm)
    for block in enc.blocks:
        q, k, v = (x @ block.qkv.weight.T + block.qkv.bias).split(dim, dim=1)
        logits = q @ k.T / math.sqrt(dim) + torch.full((length, length), -math.inf).triu(1)
        att = torch.softmax(logits, dim=1) @ v
        x = ln(x + att @ block.proj.weight.T + block.proj.bias, block.norm1)
        x = ln(x + block.ffn(x), block.norm2)
    return x


def test_post_norm_matches_the_oracle_at_every_position_and_last_only() -> None:
    torch.manual_seed(0)
    enc = TransformerUserEncoder(dim=8, max_length=10, layers=2, heads=1, dropout=0.0, norm="post", init_std=0.3).eval()
    items = torch.randn(5, 8)
    want = oracle_post_norm(enc, items)
    with torch.no_grad():
        # left padding of two positions: positions count from the first kept item
        history = torch.cat([torch.zeros(2, 8), items]).unsqueeze(0)
        mask = torch.tensor([[False, False, True, True, True, True, True]])
        states = enc.forward_all(torch.zeros(1, dtype=torch.long), history, mask)[0, 2:]
        last = enc(torch.zeros(1, dtype=torch.long), history, mask)[0]
    assert torch.allclose(states, want, atol=1e-5)
    assert torch.allclose(last, want[-1], atol=1e-5)
    assert torch.allclose(want.mean(1), torch.zeros(5), atol=1e-5)  # a LayerNorm is the last operation (unit gains, zero biases)


def test_normal_initialisation_and_zero_biases() -> None:
    torch.manual_seed(1)
    enc = TransformerUserEncoder(dim=64, max_length=50, layers=2, heads=2, norm="post", init_std=0.02)
    linears = [m for m in enc.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 8 and all(torch.count_nonzero(m.bias) == 0 for m in linears)
    for m in linears:
        assert 0.018 < float(m.weight.detach().std()) < 0.022
    assert 0.018 < float(enc.positions.weight.detach().std()) < 0.022
    default = TransformerUserEncoder(dim=64, max_length=50)  # PyTorch's uniform(+-1/sqrt(64)): std 1/sqrt(3 * 64) = 0.072
    assert 0.065 < float(default.blocks[0].qkv.weight.detach().std()) < 0.08 and not default.post_norm


def test_sasrec_takes_the_recbole_layout_and_keeps_the_published_default() -> None:
    rec = REGISTRY.get("recommenders", "sasrec").factory(norm="post", init_std=0.02)
    assert rec.refs["item-encoders"] == ComponentRef("id", {"init_std": 0.02})
    assert rec.refs["user-encoders"] == ComponentRef(
        "transformer", {"layers": 2, "heads": 2, "dropout": 0.1, "norm": "post", "init_std": 0.02})
    old = REGISTRY.get("recommenders", "sasrec").factory()  # the default: the model the published boards hold
    assert old.refs["item-encoders"] == ComponentRef("id")
    assert old.refs["user-encoders"].params["norm"] == "pre"
    lm = REGISTRY.get("recommenders", "lm-attention").factory()
    assert "norm" not in lm.refs["user-encoders"].params  # the big model keeps the pre-norm layout


@pytest.mark.parametrize(("params", "fragment"), [({"norm": "mid"}, "transformer norm"), ({"init_std": -0.1}, "init_std must be >= 0")])
def test_bad_layout_refused(params: dict[str, object], fragment: str) -> None:
    with pytest.raises(CrossbenchError, match=fragment) as err:
        TransformerUserEncoder(dim=8, max_length=4, **params)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)
