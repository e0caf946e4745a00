"""The synthetic dataset: determinism, the transfer knob, popularity, topical text."""

from __future__ import annotations

import numpy as np
import pytest

from crossbench.errors import CrossbenchError
from crossbench_synthetic import synthetic
from crossbench_synthetic.generator import TOPICS


def small(**kw):
    base = dict(n_users=1500, n_items=300, seed=3)
    base.update(kw)
    return synthetic(**base).load()


def test_deterministic_from_seed():
    a, b, c = small(), small(), small(seed=4)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
    assert a.domain("books").items.equals(b.domain("books").items)


def test_shape_domains_and_overlap():
    data = small(n_domains=3, overlap=0.5)
    assert data.domain_names == ["books", "movies", "music"]
    assert data.meta["default_target"] == "movies"
    both = data.overlap("books", "movies")
    # about half of the users are active everywhere; the rest in one domain each
    assert 0.4 * 1500 < len(both) < 0.6 * 1500
    for d in data.domains.values():
        inter = d.interactions
        assert not inter.duplicated(["user", "item"]).any()
        assert inter.groupby("user").size().min() >= 3
        assert (inter["timestamp"] > 1_500_000_000).all()


def _taste_agreement(data):
    """Correlation between a user's topic profile in books and in movies (overlapping users)."""
    profiles = {}
    for name in ("books", "movies"):
        dom = data.domain(name)
        words = [t.split() for t in dom.items["title"]]
        topic_of = np.array([next(i for i, ws in enumerate(TOPICS) if w[1].lower() in ws) for w in words])
        inter = dom.interactions
        prof = np.zeros((data.n_users, len(TOPICS)))
        np.add.at(prof, (inter["user"].to_numpy(), topic_of[inter["item"].to_numpy()]), 1.0)
        profiles[name] = prof
    users = data.overlap("books", "movies")
    a = profiles["books"][users]
    b = profiles["movies"][users]
    a = a / a.sum(1, keepdims=True) - 1 / 16
    b = b / b.sum(1, keepdims=True) - 1 / 16
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_transfer_knob_controls_cross_domain_agreement():
    strong = _taste_agreement(small(transfer=0.9))
    none = _taste_agreement(small(transfer=0.0))
    assert strong > 0.3
    assert abs(none) < 0.05
    assert strong > none + 0.25


def test_popularity_is_zipf_like():
    dom = small(n_users=3000).domain("movies")
    counts = np.sort(np.bincount(dom.interactions["item"], minlength=dom.n_items))[::-1]
    top_share = counts[: dom.n_items // 10].sum() / counts.sum()
    assert top_share > 0.18  # the top 10% of items take about twice their uniform share
    assert counts[-1] < counts[0] / 5


def test_titles_and_text_carry_the_item_topics():
    dom = small().domain("books")
    texts = dom.item_texts()
    assert all(t.startswith(title) for t, title in zip(texts, dom.items["title"]))
    shares = []
    for title, text in zip(dom.items["title"], dom.items["text"]):
        topic_words = set(next(ws for ws in TOPICS if title.split()[1].lower() in ws))
        words = text.rstrip(".").split()[3:]
        assert text.startswith("A novel about")
        shares.append(sum(w in topic_words for w in words) / len(words))
    # about 55% of description words come from the main topic (out of 20 topics)
    assert 0.45 < float(np.mean(shares)) < 0.65
    assert float(np.min(shares)) > 0


@pytest.mark.slow  # generates 100,000 users
def test_sizes_from_tiny_to_large():
    tiny = synthetic(n_users=10, n_items=10, seed=0).load()
    assert tiny.n_users <= 10
    big = synthetic(n_users=100_000, n_items=2000, mean_interactions=5, seed=0).load()
    assert big.n_users > 99_000
    assert sum(d.n_interactions for d in big.domains.values()) > 500_000


def test_bad_parameters_are_named():
    with pytest.raises(CrossbenchError, match="transfer must be in"):
        synthetic(transfer=1.5).load()
    with pytest.raises(CrossbenchError, match="n_domains"):
        synthetic(n_domains=1).load()
