"""Sharded evaluation and sharded top-K lists against one process.

The multi-process tests spawn 2 and 3 processes joined by gloo on 127.0.0.1. The scores are
small integers, so most items tie, relevant items tie with non-relevant ones and ties cross
the cut-offs; some items are excluded (``-inf``). Per-user values must be bit-identical to
one process (``np.array_equal`` on float64), means and catalogue values equal with ``==``,
and the sharded top-K lists equal to the unsharded ones, item for item.
"""

from __future__ import annotations

import ast
import os
import pickle
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import leave_quietly

from crossbench.data.protocols import GroundTruth
from crossbench.errors import CrossbenchError
from crossbench.evaluate import evaluate
from crossbench.evaluate.distributed import block, evaluate_sharded, merge_topk, sharded_top_lists, sharded_topk
from crossbench.evaluate.lists import lists_of, top_lists
from crossbench_basic.metrics import METRICS as BASIC
from crossbench_metrics.measures import METRICS as MORE

SPECS = {m.name: m for m in (*BASIC, *MORE)}
KS = [1, 5, 10, 50]
N_USERS, N_ITEMS = 61, 97


def _data(seed: int = 7) -> tuple[np.ndarray, GroundTruth, GroundTruth, np.ndarray, np.ndarray]:
    """Tied integer scores, held-out items (1 to 11 per user, one user with 30), training items, grades, popularity."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=(N_USERS, N_ITEMS)).astype(np.float32)
    tu, ti, eu, ei = [], [], [], []
    for u in range(N_USERS):
        p = rng.permutation(N_ITEMS)
        r = 30 if u == N_USERS - 3 else int(rng.integers(1, 12))  # the longest row, in the last block: the
        # other blocks need padding to its width (without it, NDCG@50 of some users differs in the last bit)
        e = int(rng.integers(0, 25))
        tu += [u] * r
        ti += p[:r].tolist()
        eu += [u] * e
        ei += p[r : r + e].tolist()
    truth = GroundTruth.from_pairs(np.array(tu), np.array(ti))
    exclude = GroundTruth.from_pairs(np.array(eu), np.array(ei))
    grades = rng.integers(1, 5, size=len(truth.items)).astype(np.float64)
    popularity = rng.integers(0, 50, size=N_ITEMS).astype(np.float64)
    return scores, truth, exclude, grades, popularity


def _kwargs(truth: GroundTruth, exclude: GroundTruth, grades: np.ndarray, popularity: np.ndarray) -> dict[str, object]:
    return {"n_items": N_ITEMS, "metrics": SPECS, "ks": KS, "exclude": exclude, "grades": grades,
            "item_popularity": popularity, "item_groups": {"head": popularity >= 25, "tail": popularity < 25}}


def _first_users(truth: GroundTruth, grades: np.ndarray, n: int) -> tuple[GroundTruth, np.ndarray]:
    end = int(truth.indptr[n])
    return GroundTruth(truth.users[:n], truth.indptr[: n + 1], truth.items[:end]), grades[:end]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    """One rank: sharded evaluation, sharded lists, a raw sharded top-K and a failing rank; rank 0 saves."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=300))
    try:
        scores, truth, exclude, grades, popularity = _data()
        t = torch.as_tensor(scores)
        result = evaluate_sharded(lambda u: t[u], truth, chunk_size=7, **_kwargs(truth, exclude, grades, popularity))
        everywhere = evaluate_sharded(lambda u: t[u], truth, everywhere=True, **_kwargs(truth, exclude, grades, popularity))
        lists = sharded_top_lists(lambda u, a, b: t[u][:, a:b], truth.users, n_items=N_ITEMS, k=12, exclude=exclude,
                                  chunk_size=16)
        small, small_grades = _first_users(truth, grades, 2)  # with 3 ranks, one evaluates nobody
        tiny = evaluate_sharded(lambda u: t[u], small, everywhere=True, **_kwargs(small, exclude, small_grades, popularity))
        start, stop = block(N_ITEMS, rank, world)
        raw = sharded_topk(t[:, start:stop], item_start=start, k=N_ITEMS + 3)
        nan = t.clone()
        nan[N_USERS - 1] = float("nan")
        try:  # only the last rank scores the last user, and only its score function returns NaN: every rank raises
            evaluate_sharded(lambda u: (nan if rank == world - 1 else t)[u], truth, **_kwargs(truth, exclude, grades, popularity))
            failure = "nothing raised"
        except CrossbenchError as exc:
            failure = str(exc)
        try:  # the last rank's block scores have the wrong width: every rank raises
            sharded_top_lists(lambda u, a, b: t[u][:, a : b - (rank == world - 1)], truth.users, n_items=N_ITEMS, k=5)
            failure += " | nothing raised"
        except CrossbenchError as exc:
            failure += f" | {exc}"
        if rank == 0:
            assert result is not None and everywhere is not None
            saved = {"per_user": dict(result.per_user), "means": result.means, "catalog": dict(result.catalog),
                     "users": result.users, "everywhere": dict(everywhere.per_user), "lists": lists,
                     "raw": (raw[0].numpy(), raw[1].numpy()), "failure": failure,
                     "tiny": (dict(tiny.per_user), tiny.catalog)}
            Path(out).write_bytes(pickle.dumps(saved))
        else:
            assert result is None and everywhere is not None
            Path(f"{out}.{rank}").write_text(failure)
        dist.barrier()  # every rank's results are written
    except BaseException:
        dist.destroy_process_group()
        raise
    leave_quietly()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_sharded_evaluation_and_lists_equal_one_process(world: int, tmp_path: Path) -> None:
    out = tmp_path / "rank0.pkl"
    mp.spawn(_worker, args=(world, _free_port(), str(out)), nprocs=world, join=True)
    got = pickle.loads(out.read_bytes())

    scores, truth, exclude, grades, popularity = _data()
    t = torch.as_tensor(scores)
    one = evaluate(lambda u: t[u], truth, **_kwargs(truth, exclude, grades, popularity))  # type: ignore[arg-type]
    assert np.array_equal(got["users"], truth.users)
    assert list(got["per_user"]) == list(one.per_user)
    for key, values in one.per_user.items():
        assert got["per_user"][key].dtype == np.float64
        assert np.array_equal(got["per_user"][key], values, equal_nan=True), key
        assert np.array_equal(got["everywhere"][key], values, equal_nan=True), key
    assert got["catalog"] == one.catalog and set(one.catalog) == {f"{m}@{k}" for m in ("coverage", "gini") for k in KS}
    means = one.means
    assert got["means"].keys() == means.keys()
    for key, value in means.items():
        assert got["means"][key] == value or (np.isnan(value) and np.isnan(got["means"][key])), key

    small, small_grades = _first_users(truth, grades, 2)
    tiny = evaluate(lambda u: t[u], small, **_kwargs(small, exclude, small_grades, popularity))  # type: ignore[arg-type]
    assert got["tiny"][0].keys() == tiny.per_user.keys() and got["tiny"][1] == tiny.catalog
    for key, values in tiny.per_user.items():
        assert np.array_equal(got["tiny"][0][key], values, equal_nan=True), key

    plain = top_lists(lambda u: t[u], truth.users, n_items=N_ITEMS, k=12, exclude=exclude)
    assert np.array_equal(got["lists"].items, plain.items)
    assert np.array_equal(got["lists"].scores, plain.scores)
    items, values = lists_of(t.clone(), N_ITEMS)
    assert np.array_equal(got["raw"][0][:, :N_ITEMS], items.numpy())
    assert np.array_equal(got["raw"][1][:, :N_ITEMS], values.numpy())
    assert (got["raw"][0][:, N_ITEMS:] == -1).all()  # k past the catalogue: padded

    assert got["failure"].startswith(f"rank {world - 1} of the evaluation failed: CrossbenchError: ")
    assert "NaN" in got["failure"].split(" | ")[0]
    assert got["failure"].split(" | ")[1].startswith(f"rank {world - 1} of the evaluation failed: CrossbenchError: "
                                                      "the score function returned shape")
    for r in range(1, world):
        assert (tmp_path / f"rank0.pkl.{r}").read_text() == got["failure"]


def test_blocks_are_contiguous_ordered_and_cover_everything() -> None:
    assert [block(10, r, 3) for r in range(3)] == [(0, 3), (3, 6), (6, 10)]
    assert [block(2, r, 3) for r in range(3)] == [(0, 0), (0, 1), (1, 2)]
    with pytest.raises(CrossbenchError, match="rank 3 is not a rank of a group of 3"):
        block(10, 3, 3)


def test_merging_block_lists_gives_the_whole_catalogues_list() -> None:
    # hand case: items 1, 2, 4 tie at 3 across two blocks [0, 3) and [3, 6); item 5 excluded
    s = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0, float("-inf")]])
    lists = [lists_of(s[:, a:b].clone(), 4) for a, b in ((0, 3), (3, 6))]
    items = torch.cat([lists[0][0], torch.where(lists[1][0] >= 0, lists[1][0] + 3, lists[1][0])], dim=1)
    top, values = merge_topk(torch.cat([lists[0][1], lists[1][1]], dim=1), items, 6)
    assert top.tolist() == [[1, 2, 4, 0, 3, -1]]
    assert values.tolist() == [[3.0, 3.0, 3.0, 1.0, 0.0, float("-inf")]]
    # random tied scores over 4 uneven blocks: the merge equals the unsharded list
    scores = _data()[0]
    t = torch.as_tensor(scores)
    t[t == 0] = float("-inf")
    for k in (1, 10, N_ITEMS):
        parts = [(a, lists_of(t[:, a:b].clone(), k)) for a, b in (block(N_ITEMS, r, 4) for r in range(4))]
        cand = torch.cat([torch.where(i >= 0, i + a, i) for a, (i, _) in parts], dim=1)
        merged = merge_topk(torch.cat([v for _, (_, v) in parts], dim=1), cand, k)
        whole = lists_of(t.clone(), k)
        assert torch.equal(merged[0], whole[0]) and torch.equal(merged[1], whole[1]), k


def test_without_a_process_group_the_error_says_what_to_do() -> None:
    scores, truth, exclude, grades, popularity = _data()
    with pytest.raises(CrossbenchError, match="init_process_group"):
        evaluate_sharded(lambda u: torch.as_tensor(scores)[u], truth, **_kwargs(truth, exclude, grades, popularity))  # type: ignore[arg-type]


@pytest.mark.slow
def test_scaling_guides_example_under_torchrun_gives_one_process_means(tmp_path: Path) -> None:
    """docs/scaling.md's script, launched by torchrun with 2 processes, prints one process's means."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "scaling.md").read_text(encoding="utf-8")
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "eval_sharded.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    printed = ast.literal_eval(run.stdout.strip().splitlines()[0])

    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 50, 400), rng.integers(0, 300, 400)
    truth = GroundTruth.from_pairs(users, items)
    scores = torch.as_tensor(rng.random((50, 300), dtype=np.float32))
    one = evaluate(lambda u: scores[u], truth, n_items=300, metrics={m.name: m for m in BASIC}, ks=[10])
    assert printed == one.means and printed["hr@10"] > 0
