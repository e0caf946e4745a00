"""EMCDR (Man et al., IJCAI 2017) as the cdr plugin trains it: its defining mechanisms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossbench.errors import CrossbenchError
from crossbench.plugin.interfaces import RunEnv
from crossbench.testing.data import TARGET, kit_data, kit_split
from crossbench.train.stages import run_stage, run_stages
from crossbench_cdr.emcdr import Emcdr

SOURCE = "books"


@pytest.fixture(scope="module")
def split():
    return kit_split(kit_data(n_users=60)).fit_view()


def env(registry) -> RunEnv:
    return RunEnv(registry=registry, seed=0, progress=False)


def built(rec, split, registry):
    e = env(registry)
    torch.manual_seed(0)
    rec.env = e
    model = rec.build(split, e)
    rec.model = model
    return model, list(rec.stages(split, model, e)), e


def overlap_by_hand(split) -> list[int]:
    src = set(split.train.domain(SOURCE).interactions["user"])
    tgt = set(split.train.domain(TARGET).interactions["user"])
    return sorted(src & tgt)


@pytest.mark.parametrize("objective", ["ranking", "rating"])
def test_the_mapping_sees_only_overlapping_users_and_leaves_the_factors_unchanged(split, registry, objective):
    rec = Emcdr(objective=objective, dim=8, epochs=2, map_epochs=3)
    model, stages, e = built(rec, split, registry)
    assert [s.name for s in stages] == ["target-factors", "source-factors", "mapping"]
    run_stages(model, stages[:2], split=split, env=e, score=rec.score)
    factors = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("source.", "target."))}
    mapping = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("mapping.")}
    seen = []
    inner = stages[2].loss

    def spy(m, batch, gen):
        seen.append(batch["user"].clone())
        return inner(m, batch, gen)

    report = run_stage(model, type(stages[2])(**{**stages[2].__dict__, "loss": spy}), split=split, env=e, score=rec.score)
    users = torch.cat(seen).tolist()
    assert sorted(set(users)) == overlap_by_hand(split)
    assert not set(users) & set(split.valid.users.tolist()), "no validation user reaches the mapping"
    assert len(users) == report.epochs * len(overlap_by_hand(split))
    after = model.state_dict()
    for k, v in factors.items():
        assert torch.equal(after[k], v), f"{k} changed while fitting the mapping"
    assert any(not torch.equal(after[k], v) for k, v in mapping.items()), "the mapping did not train"
    assert report.trained_parameters == sum(v.numel() for v in mapping.values())


def test_a_linear_mapping_recovers_a_planted_map(split, registry):
    """Target factors of overlapping users = source factors @ A: the fitted linear map is A (hand-made oracle)."""
    rec = Emcdr(mapping="linear", dim=3, map_epochs=400, map_batch_size=1024, lr=0.05, patience=400)
    model, stages, e = built(rec, split, registry)
    a = torch.tensor([[0.5, -1.0, 0.0], [2.0, 0.25, 1.0], [0.0, 1.5, -0.5]])
    with torch.no_grad():
        model.target.user.weight.copy_(model.source.user.weight @ a)
    run_stage(model, stages[2].__class__(**{**stages[2].__dict__, "stop": None}), split=split, env=e, score=rec.score)
    # nn.Linear computes x @ W.T, so W.T is the planted A
    torch.testing.assert_close(model.mapping.weight.detach().T, a, atol=2e-3, rtol=0)


def test_a_cold_user_gets_the_mapped_source_vector_and_a_warm_user_their_own(split, registry):
    rec = Emcdr(dim=8, epochs=2, map_epochs=2)
    rec.fit(split, env=env(registry))
    model = rec.model
    cold = torch.as_tensor(split.valid.users)
    warm = torch.as_tensor(np.array(overlap_by_hand(split)[:5]))
    with torch.no_grad():
        torch.testing.assert_close(model.user_vectors(cold), model.mapping(model.source.user(cold)), rtol=0, atol=0)
        torch.testing.assert_close(model.user_vectors(warm), model.target.user(warm), rtol=0, atol=0)
        expected = model.mapping(model.source.user(cold)) @ model.target.item.weight.T
    scores = rec.score(cold)
    torch.testing.assert_close(scores, expected)
    assert scores.shape == (len(cold), split.train.domain(TARGET).n_items)
    assert len({tuple(r.tolist()) for r in scores}) == len(cold), "cold users are scored individually"
    assert rec.cold_users() == "from source-domain history" and rec.reads_source_domains()


def test_rating_objective_predicts_ratings_and_ranking_needs_none(split, registry):
    rec = Emcdr(objective="rating", dim=8, epochs=40, batch_size=8, map_epochs=2, lr=0.03)
    report = rec.fit(split, env=env(registry))
    assert [s.name for s in report.stages] == ["target-factors", "source-factors", "mapping"]
    inter = split.train.domain(TARGET).interactions
    pred = rec.predict(inter["user"].to_numpy(), inter["item"].to_numpy())
    rmse = float(torch.sqrt(((pred - torch.tensor(inter["rating"].to_numpy(), dtype=torch.float32)) ** 2).mean()))
    spread = float(inter["rating"].std(ddof=0))
    assert rmse < 0.5 * spread, f"training RMSE {rmse:.3f} vs rating spread {spread:.3f}"
    unrated = split.train.with_domains({d: type(dom)(dom.name, dom.interactions.drop(columns="rating"), dom.items)
                                        for d, dom in split.train.domains.items()})
    from dataclasses import replace

    no_ratings = replace(split, train=unrated)
    with pytest.raises(CrossbenchError, match="objective 'rating' needs ratings"):
        Emcdr(objective="rating", epochs=1, map_epochs=1).fit(no_ratings, env=env(registry))
    Emcdr(objective="ranking", dim=4, epochs=1, map_epochs=1).fit(no_ratings, env=env(registry))


def test_bad_settings_are_named():
    with pytest.raises(CrossbenchError, match="unknown mapping 'mpl'"):
        Emcdr(mapping="mpl")
    with pytest.raises(CrossbenchError, match="unknown objective 'mse'"):
        Emcdr(objective="mse")
    with pytest.raises(CrossbenchError, match="source unknown domain 'film'"):
        Emcdr(source="film").fit(kit_split(kit_data()).fit_view(), env=RunEnv(registry=None, progress=False))  # type: ignore[arg-type]
