"""Data-parallel sequence training with the catalogues encoded block-wise over the ranks.

With several ranks each rank encodes one block of every domain's catalogue (text adapter and
ID vectors of ``lm-attention``), the blocks are all-gathered with a gather that
back-propagates, each rank back-propagates its summed loss and the gradients are summed and
divided by the global number of targets (``Ranks.catalogues``, ``Ranks.reduce_gradients(...,
summed=True)``). The chain rule makes that the gradient of one process on the same global
batch; the tests check it on 2 gloo ranks on 127.0.0.1 against this process:

- one step's gradients of every parameter on a global batch of 64 windows, and on one of a
  single window (rank 0's part is empty: it still encodes and back-propagates its block);
- a 2-epoch fit (no random draws in the loss: ``target_history_dropout=0``): the weights; and the
  same with ``target_groups=2``, whose draws of the targets every rank makes alike.

Tolerance: ``atol=1e-6``, ``rtol=1e-4`` on the gradients (float32; the ranks sum the same terms
in another order: a block's adapter rows apart, the per-rank sums, then their sum; they
differed by at most 1.3e-8 and 1.2e-7, the largest gradients being 0.03 and 0.47) and
``atol=1e-5`` on the weights after 2 epochs of Adam (the same bound as the other
data-parallel training test), except the attention
layers' key biases: adding a constant to every key's logit leaves a softmax unchanged, so
their gradient is 0 but for float noise, and Adam, which divides by the gradient's running
size, turns that noise into steps of up to about the learning rate (1e-3); they are held to
1e-3 (they differed by 6e-5; every other weight by at most about 2e-7).
"""

from __future__ import annotations

import pickle
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import leave_quietly

from crossbench.plugin.build import make_recommender
from crossbench.plugin.interfaces import RunEnv
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench.train.distributed import Ranks, ranks
from crossbench.train.epoch_data import sequence_data
from crossbench_protocols import ColdStart
from crossbench_synthetic import SyntheticDataset
from crossbench_synthetic.generator import DOMAIN_NOUNS, FILLER, TOPICS

pytest.importorskip("transformers")

from crossbench_zoo.testing import make_tiny_bert  # noqa: E402

SETTINGS = {"dim": 16, "epochs": 2, "target_history_dropout": 0.0, "history_length": 20, "batch_size": 64}


def _model(bert: Path, cache: Path, **extra: Any) -> tuple[Any, Any, RunEnv]:
    registry = Registry(get_plugin_manager())
    data = SyntheticDataset(n_users=200, n_items=45, n_domains=3, mean_interactions=8.0, seed=0).load()
    split = ColdStart(target="movies", test_fraction=0.5, valid_fraction=0.2, seed=0).split(data).fit_view()
    rec = make_recommender(registry, "lm-attention", {"model_path": str(bert), **SETTINGS, **extra}, where="test")
    return rec, split, RunEnv(registry=registry, seed=0, progress=False, cache_dir=cache)


def _step_gradients(bert: Path, cache: Path, n_windows: int) -> dict[str, torch.Tensor]:
    """Gradients of one step on the first ``n_windows`` windows of the target domain (this rank's part of them)."""
    rec, split, env = _model(bert, cache)
    model = rec._prepare(split, env)
    dp = ranks()
    dp.same_weights(model)
    domains = model.domains_for(split.target)
    windows, _, log_probs = sequence_data(split, domains, rec.config.history_length, rec.item_counts, env.device)
    users, history = windows[split.target]
    batch = dp.local(torch.arange(n_windows))
    gen = torch.Generator().manual_seed(0)
    model.train()
    loss, n = rec._sequence_step(model, split.target, users[batch], history[batch], log_probs, gen)
    params = [p for p in model.parameters() if p.requires_grad]
    (loss * n if dp.active else loss).backward()
    dp.reduce_gradients(params, n, summed=True)
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def _fit_weights(bert: Path, cache: Path, **extra: Any) -> dict[str, torch.Tensor]:
    rec, split, env = _model(bert, cache, **extra)
    rec.fit(split, env=env)
    return {k: v.detach().clone() for k, v in rec.model.state_dict().items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, bert: str, cache: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))
    try:
        got = {"step": _step_gradients(Path(bert), Path(cache), 64), "one": _step_gradients(Path(bert), Path(cache), 1),
               "fit": _fit_weights(Path(bert), Path(cache)), "fit2": _fit_weights(Path(bert), Path(cache), target_groups=2)}
        Path(f"{out}.{rank}").write_bytes(pickle.dumps(got))
        dist.barrier()  # every rank's results are written
    except BaseException:
        dist.destroy_process_group()
        raise
    leave_quietly()


@pytest.mark.slow
def test_block_encoded_catalogues_give_one_process_gradients(tmp_path: Path) -> None:
    words = [" ".join(t) for t in TOPICS] + [" ".join(FILLER), " ".join(DOMAIN_NOUNS.values()), "a about ."]
    bert, cache = make_tiny_bert(tmp_path / "bert", words, hidden=24), tmp_path / "cache"
    torch.set_num_threads(1)
    one = {"step": _step_gradients(bert, cache, 64), "one": _step_gradients(bert, cache, 1), "fit": _fit_weights(bert, cache),
           "fit2": _fit_weights(bert, cache, target_groups=2)}  # fit2: each window listed twice an epoch, every rank drawing alike
    out = tmp_path / "rank"
    mp.spawn(_worker, args=(2, _free_port(), str(bert), str(cache), str(out)), nprocs=2, join=True)
    got = [pickle.loads(Path(f"{out}.{r}").read_bytes()) for r in range(2)]
    for case in ("step", "one"):
        ref = one[case]
        assert any(k.startswith("item_encoders.") and "adapter" in k for k in ref)  # the text adapter is trained
        for g in got:
            assert set(g[case]) == set(ref), case
            for name, grad in ref.items():
                torch.testing.assert_close(g[case][name], grad, rtol=1e-4, atol=1e-6, msg=f"{case}: {name}")
        for name in ref:  # every rank holds the same gradient, bit for bit
            assert torch.equal(got[0][case][name], got[1][case][name]), name
    for fit in ("fit", "fit2"):
        far, keys = {}, {}
        dim = SETTINGS["dim"]
        for key, value in one[fit].items():
            assert torch.equal(got[0][fit][key], got[1][fit][key]), key
            diff = (got[0][fit][key] - value).abs() if value.is_floating_point() else torch.zeros(1)
            key_bias = slice(dim, 2 * dim) if key.endswith("qkv.bias") else slice(0, dim) if key.endswith(".kv.bias") else None
            if key_bias is not None:  # attention key biases: gradient 0 but for float noise, which Adam scales to steps
                keys[key] = float(diff[key_bias].max())
                diff[key_bias] = 0.0
            far[key] = float(diff.max())
        # fit2's largest difference was 1.05e-5, in the target domain's position vectors (Adam scales the float noise of
        # their small gradients); with each rank drawing the targets from its own generator they differed by 0.012
        assert max(far.values()) <= (1e-5 if fit == "fit" else 1e-4), (fit, sorted(far.items(), key=lambda kv: -kv[1])[:4])
        assert len(keys) == 4 and max(keys.values()) <= 1e-3, (fit, keys)  # the 3 domains' user encoders and the fusion


def test_one_process_catalogues_are_every_encoders_all_items() -> None:
    encoders = {d: torch.nn.Embedding(5, 3) for d in ("a", "b")}
    for e in encoders.values():
        e.n_items = 5  # type: ignore[assignment]
        e.all_items = (lambda e=e: e.weight * 2)  # type: ignore[method-assign]
    got = Ranks().catalogues(encoders, ["b"])
    assert list(got) == ["b"] and torch.equal(got["b"], encoders["b"].weight * 2)


def test_a_block_of_items_is_those_rows_of_the_whole_catalogue() -> None:
    from crossbench_basic.components import IdItemEncoder
    from crossbench_zoo.text import TextItemEncoder

    torch.manual_seed(0)
    text = TextItemEncoder(text_vectors=torch.randn(7, 5), dim=3, n_experts=2, dropout=0.0, with_id=True)
    ids = IdItemEncoder(n_items=7, dim=3)
    for encoder in (text, ids):
        whole = encoder.all_items()
        torch.testing.assert_close(encoder.block_items(2, 5), whole[2:5], rtol=0, atol=1e-6)
        assert encoder.block_items(3, 3).shape == (0, 3)
