"""The contract tests of the conformance kit, parametrised by the components of the plugins named
in a conftest (see :mod:`crossbench.testing`). Each failure message names the component and the
part of its contract it broke.

- datasets: a :class:`~crossbench.plugin.interfaces.Dataset` whose ``load`` gives valid data (schema,
  dtypes, unique ids, integer timestamps, a default target that is a domain) and the same data twice;
- item and user encoders, fusions, scorers: shapes, gradients, masking of padding and absent
  domains, chunk-independent scoring, determinism on CPU and the same numbers on CUDA where present
  (:mod:`crossbench.testing.modules`);
- recommenders: fit on a tiny split, score shapes, chunk-independent scores, and scores that do not
  change when only the test users' held-out interactions do;
- metrics: the evaluator's values equal ``compute`` on brute-force ranks user by user, do not
  depend on the order of the ranks or on padding, and match an oracle where one is given
  (:mod:`crossbench.testing.metrics`);
- protocols: a deterministic, leak-free split of the target;
- feedback models: only shown items taken, one flag per shown item, the same feedback for the
  same seed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from crossbench.data.model import INTERACTION_COLUMNS, ITEM_COLUMNS, CrossDomainData
from crossbench.errors import CrossbenchError
from crossbench.plugin.interfaces import Dataset, FitReport, Recommender, RunEnv
from crossbench.plugin.registry import KINDS
from crossbench.testing.metrics import check_metric
from crossbench.testing.modules import (
    DEVICES,
    check_fusion,
    check_item_encoder,
    check_scorer,
    check_user_encoder,
)
from crossbench.testing.registry import components, kit_registry, params_for, spec_of


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    kind = getattr(metafunc.function, "crossbench_kind", None)
    plugins = getattr(metafunc.definition.parent, "crossbench_plugins", ())
    if "plugin" in metafunc.fixturenames:
        metafunc.parametrize("plugin", list(plugins))
    if kind is None:
        return
    found = components(metafunc.config, plugins, kind)
    if not found:  # one clear skip instead of an empty parameter set
        none = pytest.param(None, marks=pytest.mark.skip(reason=f"{', '.join(plugins)} register(s) no {kind}"))
        metafunc.parametrize("name", [none], ids=[f"no-{kind}"])
    else:
        metafunc.parametrize("name", [name for _, name in found], ids=[f"{plugin}:{name}" for plugin, name in found])
    if "device" in metafunc.fixturenames:
        metafunc.parametrize("device", DEVICES if found else ["cpu"])


def kind(name: str) -> Any:
    def mark(f: Any) -> Any:
        f.crossbench_kind = name
        return pytest.mark.crossbench_kit(f)

    return mark


@pytest.mark.crossbench_kit
def test_plugin_loads(plugin: str, request: pytest.FixtureRequest) -> None:
    registry = kit_registry(request.config)
    for failure in registry.failures():
        if failure.plugin == plugin:
            pytest.fail(failure.line(), pytrace=False)
    installed = {name for name, _, _ in registry.pm.plugin_distributions()}  # type: ignore[attr-defined]
    assert plugin in installed, f"plugin {plugin!r} is not installed (installed: {', '.join(sorted(installed))})"
    provided = [k for k in KINDS for e in registry.entries(k) if e.plugin == plugin]
    assert provided, f"plugin {plugin!r} registers no component"
    for kind_, name in registry.conflicts:
        assert plugin not in registry.conflicts[(kind_, name)], registry.conflict_line(kind_, name)


# --------------------------------------------------------------------------- datasets


@kind("datasets")
def test_dataset(name: str, request: pytest.FixtureRequest) -> None:
    spec = spec_of(request, "datasets", name)
    params = params_for(request, "datasets", name)
    where = f"dataset {name!r}"
    dataset = spec.factory(**params)
    assert isinstance(dataset, Dataset), f"{where}: the factory returned {type(dataset).__name__}, not a crossbench.plugin.interfaces.Dataset"
    data = dataset.load()
    assert isinstance(data, CrossDomainData), f"{where}: load() returned {type(data).__name__}, not a CrossDomainData"
    try:
        data.validate()
    except CrossbenchError as exc:
        pytest.fail(f"{where}: {exc}", pytrace=False)
    ids = np.asarray(data.user_ids)
    assert len(set(map(str, ids))) == len(ids), f"{where}: user_ids repeat a user"
    seen = np.zeros(data.n_users, dtype=bool)
    for d in data.domains.values():
        w = f"{where}, domain {d.name!r}"
        for col in INTERACTION_COLUMNS:
            assert d.interactions[col].dtype == np.int64, f"{w}: column {col!r} is {d.interactions[col].dtype}, expected int64"
        if "rating" in d.interactions.columns:
            assert d.interactions["rating"].dtype == np.float64, f"{w}: column 'rating' is {d.interactions['rating'].dtype}, expected float64"
        assert list(d.items.columns[:3]) == list(ITEM_COLUMNS) or set(ITEM_COLUMNS) <= set(d.items.columns), f"{w}: item table lacks {ITEM_COLUMNS}"
        assert d.items["item_id"].is_unique, f"{w}: item_id repeats an item"
        assert all(isinstance(x, str) for x in d.items["item_id"]), f"{w}: item_id holds non-str raw ids"
        assert (d.interactions["timestamp"] >= 0).all(), f"{w}: negative timestamps (use seconds since the epoch or a sequence number)"
        seen[d.users()] = True
    assert seen.all(), f"{where}: {int((~seen).sum())} user(s) have no interaction in any domain"
    target = data.meta.get("default_target")
    assert target is None or target in data.domains, f"{where}: meta['default_target'] {target!r} is not a domain ({data.domain_names})"
    again = spec.factory(**params).load()
    assert again.fingerprint() == data.fingerprint(), f"{where}: two loads with the same parameters give different data"


# --------------------------------------------------------------------------- modules


@kind("item-encoders")
def test_item_encoder(name: str, device: str, request: pytest.FixtureRequest) -> None:
    check_item_encoder(request, name, device)


@kind("user-encoders")
def test_user_encoder(name: str, device: str, request: pytest.FixtureRequest) -> None:
    check_user_encoder(request, name, device)


@kind("fusions")
def test_fusion(name: str, device: str, request: pytest.FixtureRequest) -> None:
    check_fusion(request, name, device)


@kind("scorers")
def test_scorer(name: str, device: str, request: pytest.FixtureRequest) -> None:
    check_scorer(request, name, device)


# --------------------------------------------------------------------------- recommenders


@kind("recommenders")
def test_recommender(name: str, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    from crossbench.testing.data import TARGET, kit_split

    where = f"model {name!r}"
    data: CrossDomainData = request.getfixturevalue("crossbench_kit_data")
    split = kit_split(data)
    users = torch.as_tensor(split.test.users)
    n_items = data.domain(TARGET).n_items
    scores, report = _fit_and_score(request, name, split.fit_view(), users, tmp_path / "a")
    assert isinstance(report, FitReport), f"{where}: fit() returned {type(report).__name__}, not a FitReport"
    assert tuple(scores.shape) == (len(users), n_items), f"{where}: score() gave shape {tuple(scores.shape)}, expected {(len(users), n_items)}"
    assert scores.dtype == torch.float32, f"{where}: score() gave {scores.dtype}, expected float32"
    assert torch.isfinite(scores).all(), f"{where}: score() gave non-finite scores"

    # the held-out test interactions of the test users never reach the model
    changed = _with_other_test_items(data, split.test.users)
    split2 = kit_split(changed)
    assert split2.train.fingerprint() == split.train.fingerprint()
    again, _ = _fit_and_score(request, name, split2.fit_view(), users, tmp_path / "b")
    torch.testing.assert_close(again, scores, rtol=1e-5, atol=1e-5,
                               msg=lambda m: f"{where}: scores changed when only the test users' held-out items did "
                                             f"(or fitting is not deterministic for a seed): {m}")


def _fit_and_score(request: pytest.FixtureRequest, name: str, fit: Any, users: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
    from crossbench.evaluate.ranking import accepts_out

    where = f"model {name!r}"
    spec = spec_of(request, "recommenders", name)
    model = spec.factory(**params_for(request, "recommenders", name))
    assert isinstance(model, Recommender), f"{where}: the factory returned {type(model).__name__}, not a crossbench.plugin.interfaces.Recommender"
    env = RunEnv(registry=kit_registry(request.config), seed=0, progress=False, cache_dir=cache)
    model.check(env, where=where)
    assert not hasattr(fit, "test"), "the kit must hand a FitSplit without a test set"
    report = model.fit(fit, env=env)
    with torch.no_grad():
        scores = model.score(users).detach().clone()
        head = model.score(users[:2]).detach().clone()
        torch.testing.assert_close(head, scores[:2], rtol=1e-5, atol=1e-5,
                                   msg=lambda m: f"{where}: scores of a user depend on the other users scored with them: {m}")
        if accepts_out(model.score):
            buffer = torch.full_like(scores, math.nan)
            into = model.score(users, out=buffer)
            torch.testing.assert_close(into, scores, msg=lambda m: f"{where}: score(users, out=buffer) differs from score(users): {m}")
    return scores, report


def _with_other_test_items(data: CrossDomainData, test_users: np.ndarray) -> CrossDomainData:
    from crossbench.testing.data import TARGET

    target = data.domain(TARGET)
    inter = target.interactions.copy()
    rows = inter["user"].isin(test_users).to_numpy()
    inter.loc[rows, "item"] = (inter.loc[rows, "item"] + 1) % target.n_items
    domains = dict(data.domains)
    domains[TARGET] = type(target)(name=target.name, interactions=inter, items=target.items)
    return data.with_domains(domains)


# --------------------------------------------------------------------------- metrics


@kind("metrics")
def test_metric(name: str, request: pytest.FixtureRequest) -> None:
    spec = spec_of(request, "metrics", name)
    oracles = request.getfixturevalue("crossbench_oracles")
    check_metric(spec, oracle=oracles.get(name) if hasattr(oracles, "get") else None)


# --------------------------------------------------------------------------- protocols


@kind("protocols")
def test_protocol(name: str, request: pytest.FixtureRequest) -> None:
    """A protocol splits the kit's data into a :class:`Split` for the target, deterministically, with no leak."""
    from crossbench.data.audit import audit_split
    from crossbench.data.protocols import Protocol, Split
    from crossbench.testing.data import TARGET

    spec = spec_of(request, "protocols", name)
    data: CrossDomainData = request.getfixturevalue("crossbench_kit_data")
    where = f"protocol {name!r}"
    protocol = spec.factory(target=TARGET, seed=0)
    assert isinstance(protocol, Protocol), f"{where}: the factory returned {type(protocol).__name__}, not a crossbench Protocol"
    split = protocol.split(data)
    assert isinstance(split, Split), f"{where}: split() returned {type(split).__name__}, not a Split"
    assert (split.target, split.protocol) == (TARGET, name), f"{where}: the split says target {split.target!r}, protocol {split.protocol!r}"
    assert split.test.n_users > 0, f"{where}: no test user on the kit's data"
    audit_split(split)  # raises on any leak of held-out interactions into training
    again = spec.factory(target=TARGET, seed=0).split(data)
    assert again.fingerprint() == split.fingerprint(), f"{where}: the same seed gave another split"


# --------------------------------------------------------------------------- feedback models


@kind("feedback-models")
def test_feedback_model(name: str, request: pytest.FixtureRequest) -> None:
    """A feedback model takes only shown items, answers in the shape shown, and is deterministic for a seed.

    A model that refuses the kit's data in ``check`` (one that knows a dataset's hidden
    preferences, say) is skipped with its own refusal as the reason.
    """
    from crossbench.loop.feedback import FeedbackContext, FeedbackModel, check_taken
    from crossbench.testing.data import TARGET, kit_split

    spec = spec_of(request, "feedback-models", name)
    data: CrossDomainData = request.getfixturevalue("crossbench_kit_data")
    where = f"feedback model {name!r}"
    split = kit_split(data)
    n_items = data.domain(TARGET).n_items

    def answer(shown: np.ndarray) -> np.ndarray:
        model = spec.factory(**params_for(request, "feedback-models", name))
        assert isinstance(model, FeedbackModel), f"{where}: the factory returned {type(model).__name__}, not a crossbench FeedbackModel"
        try:
            model.check(dataset=data.name, where=where)
        except CrossbenchError as exc:
            pytest.skip(f"refuses the kit's data: {exc}")
        model.start(FeedbackContext(data=data, target=TARGET, future=split.test, seed=0))
        taken = model.respond(np.asarray(split.test.users, dtype=np.int64), shown, round=1, rng=np.random.default_rng(7))
        try:
            return check_taken(taken, shown, name=name)
        except CrossbenchError as exc:
            pytest.fail(f"{where}: {exc}", pytrace=False)

    rng = np.random.default_rng(0)
    k = min(5, n_items)
    shown = np.stack([rng.permutation(n_items)[:k] for _ in split.test.users]).astype(np.int64)
    shown[0, k - 2 :] = -1  # a user shown fewer than K items
    taken = answer(shown)
    assert not taken[shown < 0].any(), f"{where}: took an item where none was shown"
    assert np.array_equal(answer(shown), taken), f"{where}: the same seed and lists gave other feedback"
