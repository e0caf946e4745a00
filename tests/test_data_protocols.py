"""Protocols: hand-computed splits, seeds, fingerprints across processes, errors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from crossbench.data.audit import audit_split
from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import resolve_targets
from crossbench.errors import CrossbenchError
from crossbench.plugin.build import make_protocol
from crossbench.plugin.registry import Registry
from crossbench_protocols import ColdStart, Warm

WARM_ROWS = [
    # domain, user, item, timestamp
    ("tgt", "a", "i1", 10), ("tgt", "a", "i2", 20), ("tgt", "a", "i3", 30), ("tgt", "a", "i4", 50), ("tgt", "a", "i5", 60),
    ("tgt", "b", "i1", 15), ("tgt", "b", "i2", 55),
    ("tgt", "c", "i3", 5), ("tgt", "c", "i6", 40), ("tgt", "c", "i3", 45),
    ("tgt", "d", "i2", 52),
    ("src", "a", "s1", 10), ("src", "a", "s2", 70), ("src", "b", "s1", 50), ("src", "c", "s3", 1),
]


def warm_data() -> CrossDomainData:
    frame = pd.DataFrame(WARM_ROWS, columns=["domain", "user", "item", "timestamp"])
    return CrossDomainData.from_frames("toy", frame, domain_order=["src", "tgt"])


def pairs(data: CrossDomainData, domain: str) -> set[tuple[str, str]]:
    d = data.domain(domain)
    u = data.user_ids[d.interactions["user"].to_numpy()]
    i = d.items["item_id"].to_numpy()[d.interactions["item"].to_numpy()]
    return set(zip(u, i))


def truth_pairs(data: CrossDomainData, truth, domain: str) -> set[tuple[str, str]]:
    items = data.domain(domain).items["item_id"].to_numpy()
    return {(data.user_ids[u], items[i]) for j, u in enumerate(truth.users) for i in truth.items_of(j)}


def test_warm_hand_computed_case() -> None:
    data = warm_data()
    split = Warm(target="tgt", cut_time=50).split(data)
    # a: valid = last item before the cut (i3), test = first item at/after the cut (i4)
    # b: one item before the cut -> no validation, stays warm; test i2
    # c: i3 twice and i6 before the cut: the last is i3 -> valid i3, every i3 row leaves training; no item after
    # d: nothing before the cut -> not warm, not evaluated
    assert truth_pairs(data, split.test, "tgt") == {("a", "i4"), ("b", "i2")}
    assert truth_pairs(data, split.valid, "tgt") == {("a", "i3"), ("c", "i3")}
    assert pairs(split.train, "tgt") == {("a", "i1"), ("a", "i2"), ("b", "i1"), ("c", "i6")}
    # every domain is cut: s2 (70) and b's s1 (at 50) are in the future
    assert pairs(split.train, "src") == {("a", "s1"), ("c", "s3")}
    assert split.cut_time == 50 and split.params == {"cut_quantile": 0.9, "cut_time": 50}
    assert not split.cold
    assert "after-cut-in-train" in audit_split(split).checks


def test_warm_cut_from_quantile_and_seed_independence() -> None:
    data = warm_data()
    ts = np.sort(data.domain("tgt").interactions["timestamp"].to_numpy())  # 5 10 15 20 30 40 45 50 52 55 60
    split = Warm(target="tgt", cut_quantile=0.7).split(data)
    assert split.cut_time == ts[int(np.floor(0.7 * len(ts)))] == 50
    assert Warm(target="tgt", cut_quantile=0.7, seed=5).split(data).fingerprint() == split.fingerprint()
    with pytest.raises(CrossbenchError, match="no target interaction of 'tgt' before it"):
        Warm(target="tgt", cut_time=5).split(data)
    with pytest.raises(CrossbenchError, match="no user of 'tgt' has target history before the cut"):
        Warm(target="tgt", cut_time=61).split(data)


def cold_data(n_overlap: int = 10) -> CrossDomainData:
    rows = []
    for u in range(n_overlap):
        rows += [("src", f"u{u}", f"s{u % 3}", u), ("tgt", f"u{u}", f"t{u % 4}", u), ("tgt", f"u{u}", f"t{(u + 1) % 4}", u + 1)]
    rows += [("tgt", "only-target", "t0", 0), ("src", "only-source", "s0", 0)]
    return CrossDomainData.from_frames("cold", pd.DataFrame(rows, columns=["domain", "user", "item", "timestamp"]))


@pytest.mark.parametrize(("fraction", "n_test"), [(0.2, 2), (0.5, 5), (0.8, 8)])
def test_cold_start_fractions_and_hidden_target_interactions(fraction: float, n_test: int) -> None:
    data = cold_data()
    split = ColdStart(target="tgt", test_fraction=fraction, valid_fraction=0.1, seed=3).split(data)
    test_users = set(data.user_ids[split.test.users])
    valid_users = set(data.user_ids[split.valid.users])
    assert len(test_users) == n_test and len(valid_users) == 1 and not test_users & valid_users
    assert "only-target" not in test_users | valid_users  # only overlapping users are held out
    # all of a test user's target interactions are ground truth and none is in training
    full = pairs(data, "tgt")
    assert truth_pairs(data, split.test, "tgt") == {p for p in full if p[0] in test_users}
    assert truth_pairs(data, split.valid, "tgt") == {p for p in full if p[0] in valid_users}
    assert pairs(split.train, "tgt") == {p for p in full if p[0] not in test_users | valid_users}
    assert pairs(split.train, "src") == pairs(data, "src")  # source history stays
    assert split.cold and audit_split(split).checks[-1] == "cold-user-target-in-train"


def test_cold_start_seeds() -> None:
    data = cold_data(40)
    a = ColdStart(target="tgt", seed=1).split(data)
    assert a.fingerprint() == ColdStart(target="tgt", seed=1).split(data).fingerprint()
    b = ColdStart(target="tgt", seed=2).split(data)
    assert a.fingerprint() != b.fingerprint()
    assert not np.array_equal(a.test.users, b.test.users)


FINGERPRINT_SCRIPT = """
import numpy as np, pandas as pd
from crossbench.data.model import CrossDomainData
from crossbench.plugin.build import make_protocol
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
registry = Registry(get_plugin_manager())
rng = np.random.default_rng(7)
n = 3000
frame = pd.DataFrame({
    "domain": rng.choice(["books", "movies", "music"], n),
    "user": [f"user{u}" for u in rng.integers(0, 300, n)],
    "item": [f"item{i}" for i in rng.integers(0, 200, n)],
    "timestamp": rng.integers(0, 10**6, n),
})
data = CrossDomainData.from_frames("fp", frame)
for name in ("cold-start", "warm"):
    for target in data.domain_names:
        print(name, target, make_protocol(registry, name, target=target, seed=11).split(data).fingerprint())
"""


@pytest.mark.slow  # fresh interpreters
def test_fingerprints_identical_across_processes() -> None:
    outputs = []
    for hashseed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        done = subprocess.run([sys.executable, "-c", FINGERPRINT_SCRIPT], capture_output=True, text=True, env=env, check=True)
        outputs.append(done.stdout)
    local: dict[str, object] = {}
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(FINGERPRINT_SCRIPT, local)  # noqa: S102 - the same code in this process
    assert outputs[0] == outputs[1] == buf.getvalue()
    lines = buf.getvalue().split()
    assert len(lines) == 18 and len(set(lines[2::3])) == 6  # six distinct splits, each a sha256
    assert all(len(h) == 64 for h in lines[2::3])


def test_make_protocol_names_and_params(registry: Registry) -> None:
    assert set(registry.names("protocols")) == {"cold-start", "warm", "cold-start-rating", "loo", "loo-999", "loo-100", "new-items"}
    assert registry.plugin_of("protocols", "cold-start") == "protocols"
    proto = make_protocol(registry, "cold-start", target="tgt", seed=4, test_fraction=0.8)
    assert (proto.target, proto.seed, proto.test_fraction) == ("tgt", 4, 0.8)
    with pytest.raises(CrossbenchError, match=r"unknown protocol 'cold_start'; did you mean 'cold-start'"):
        make_protocol(registry, "cold_start", target="tgt", seed=0)
    with pytest.raises(CrossbenchError, match=r"has no parameter 'test_frac'; did you mean 'test_fraction'"):
        make_protocol(registry, "cold-start", target="tgt", seed=0, test_frac=0.2)
    with pytest.raises(CrossbenchError, match=r"protocol 'warm' has no parameter 'cut'; did you mean 'cut_time'"):
        make_protocol(registry, "warm", target="tgt", seed=0, cut=3)


def test_resolve_targets_for_dual_and_multi_target() -> None:
    data = cold_data()
    assert resolve_targets(data, "all") == ["src", "tgt"]
    assert resolve_targets(data, "tgt,src") == ["tgt", "src"]
    assert resolve_targets(data, None) == ["tgt"]  # no default_target in meta: the last domain
    with pytest.raises(CrossbenchError, match=r"unknown domain .* 'tg'; did you mean 'tgt'"):
        resolve_targets(data, ["tg"])
