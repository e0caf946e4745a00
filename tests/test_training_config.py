"""One training configuration: every composed model shares TrainConfig; every search space is sound and used."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest
import torch

from crossbench.errors import CrossbenchError
from crossbench.plugin.build import make_recommender
from crossbench.plugin.interfaces import BuildContext
from crossbench.plugin.registry import KINDS, Registry
from crossbench.plugin.specs import CategoricalParam, FloatParam, IntParam, Param
from crossbench.train import ComposedRecommender
from crossbench.train.settings import TRAINING_FIELDS, TRAINING_RANGES, TrainConfig, training_space, trains

#: kinds whose factories are called with a build context
COMPONENT_KINDS = ("item-encoders", "user-encoders", "fusions", "scorers")


def _in_range(param: Param, value: Any) -> bool:
    if isinstance(param, CategoricalParam):
        return value in param.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(param, IntParam) and not isinstance(value, int):
        return False
    return param.low <= value <= param.high


def _other_value(param: Param, value: Any) -> Any:
    """A value of ``param``'s range that is not ``value``."""
    if isinstance(param, CategoricalParam):
        return next(c for c in param.choices if c != value)
    if isinstance(param, IntParam):
        return param.low if value != param.low else param.high
    assert isinstance(param, FloatParam)
    return param.low if value != param.low else param.high


def _searched(registry: Registry) -> list[tuple[str, str, Param]]:
    return [(kind, e.spec.name, p) for kind in KINDS for e in registry.entries(kind) for p in getattr(e.spec, "search_space", ())]


def test_every_searched_default_lies_in_its_range(registry: Registry) -> None:
    searched = _searched(registry)
    assert len(searched) > 40  # every kind's spaces are covered, not a handful
    problems = []
    for kind, name, p in searched:
        defaults = registry.get(kind, name).hyperparameters()
        if p.name not in defaults:
            problems.append(f"{kind} {name!r}: searches {p.name!r}, which its factory does not take")
        elif defaults[p.name] is inspect.Parameter.empty:
            problems.append(f"{kind} {name!r}: searches {p.name!r}, which has no default")
        elif not _in_range(p, defaults[p.name]):
            problems.append(f"{kind} {name!r}: default {p.name}={defaults[p.name]!r} lies outside its range {p}")
    assert problems == []


def _state(obj: Any) -> Any:
    """What a built object is configured as: a module's structure, settings and (seeded) initial weights,
    a model's description, else its repr."""
    if isinstance(obj, torch.nn.Module):
        out: list[Any] = [repr(obj)]
        out += [(k, tuple(v.shape), round(float(v.double().abs().sum()), 9)) for k, v in obj.state_dict().items()]
        for path, m in obj.named_modules():
            out += [(path, k, v) for k, v in sorted(vars(m).items()) if not k.startswith("_") and isinstance(v, (bool, int, float, str))]
        return out
    if hasattr(obj, "describe"):
        return obj.describe()
    return repr(obj)


@pytest.fixture(scope="module")
def context(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> BuildContext:
    data = registry.get("datasets", "synthetic").factory(n_users=60, n_items=30, seed=1).load()
    return BuildContext(data=data, target="movies", dim=16, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def tiny_lm(context: BuildContext, tmp_path_factory: pytest.TempPathFactory) -> str:
    from crossbench_zoo.testing import make_tiny_bert

    texts = [t for d in context.data.domain_names for t in context.data.domain(d).item_texts()]
    return str(make_tiny_bert(tmp_path_factory.mktemp("lm"), texts))


def _build(registry: Registry, kind: str, name: str, params: dict[str, Any], context: BuildContext, tiny_lm: str) -> Any:
    spec = registry.get(kind, name)
    if kind in COMPONENT_KINDS:
        if "model_path" in spec.hyperparameters():
            params = {"model_path": tiny_lm, **params}
        domain = {"domain": context.target} if kind in ("item-encoders", "user-encoders") else {}
        torch.manual_seed(0)
        return spec.factory(context=context, **domain, **params)
    if kind == "recommenders":
        return make_recommender(registry, name, params, where=f"model {name!r}")
    return spec.factory(**params)


def test_every_searched_parameter_changes_what_is_built(registry: Registry, context: BuildContext, tiny_lm: str) -> None:
    unused = []
    for kind, name, p in _searched(registry):
        default = registry.get(kind, name).hyperparameters()[p.name]
        base = _state(_build(registry, kind, name, {}, context, tiny_lm))
        changed = _state(_build(registry, kind, name, {p.name: _other_value(p, default)}, context, tiny_lm))
        if base == changed:
            unused.append(f"{kind} {name!r}: {p.name}={default!r} -> {_other_value(p, default)!r} changes nothing")
    assert unused == []


def test_every_composed_model_takes_the_one_training_configuration(registry: Registry) -> None:
    composed = []
    for entry in registry.entries("recommenders"):
        model = make_recommender(registry, entry.spec.name, {}, where="test")
        if not isinstance(model, ComposedRecommender):
            continue
        composed.append(entry.spec.name)
        params = entry.spec.hyperparameters()
        assert set(TRAINING_FIELDS) <= set(params), entry.spec.name
        # the factory's defaults are the model's configuration, and each setting reaches it
        assert dataclasses.asdict(model.config) == {f: params[f] for f in TRAINING_FIELDS}
        tweaked = make_recommender(registry, entry.spec.name, {"epochs": 7, "lr": "0.25"}, where="test")
        assert isinstance(tweaked, ComposedRecommender)
        assert (tweaked.config.epochs, tweaked.config.lr) == (7, 0.25)
    assert {"composed", "mf", "shared-id", "shared-mean", "emcdr-joint", "sasrec", "lm-attention"} <= set(composed)
    assert registry.get("recommenders", "sasrec").hyperparameters()["training"] == "sequences"


def test_trains_decorator_adds_the_settings_once() -> None:
    @trains(TrainConfig(epochs=5))
    def model(*, width: int = 3, config: TrainConfig) -> tuple[int, TrainConfig]:
        return width, config

    sig = inspect.signature(model)
    assert list(sig.parameters) == ["width", *TRAINING_FIELDS]
    assert sig.parameters["epochs"].default == 5 and sig.parameters["lr"].annotation is float
    assert model(width=4, lr=0.5) == (4, TrainConfig(epochs=5, lr=0.5))
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        model(nope=1)
    with pytest.raises(TypeError, match=r"\['lr'\] are training settings"):
        trains()(lambda *, lr=0.1, config: None)


def test_training_space_shares_the_ranges() -> None:
    assert training_space("dim", "lr") == (TRAINING_RANGES["dim"], TRAINING_RANGES["lr"])
    narrow = CategoricalParam("batch_size", (64, 128))
    assert training_space("lr", batch_size=narrow) == (TRAINING_RANGES["lr"], narrow)
    with pytest.raises(CrossbenchError, match="unknown tunable training setting 'epoch'"):
        training_space("epoch")
    with pytest.raises(CrossbenchError, match="is named 'lr'"):
        training_space(batch_size=TRAINING_RANGES["lr"])


def test_lm_attention_scorer_settings_go_to_its_scorer(registry: Registry, tmp_path: Path) -> None:
    model = make_recommender(registry, "lm-attention", {"scorer": "cosine", "scorer.temperature": 0.05}, where="test")
    assert model.components()["scorer"].to_dict() == {"name": "cosine", "params": {"temperature": 0.05}}
    assert "temperature" not in registry.get("recommenders", "lm-attention").hyperparameters()
