"""Statistics against scipy (used here as the oracle only)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special
from scipy import stats as sp

from crossbench.errors import CrossbenchError
from crossbench.evaluate import stats


def test_t_and_normal_tails_match_scipy():
    for df in (1, 2, 3, 7.5, 30, 299, 5000):
        for t in (0.0, 0.01, 0.5, 1.0, 1.96, 3.3, 8.0, 40.0, -2.5):
            assert stats.student_t_sf(t, df) == pytest.approx(sp.t.sf(t, df), rel=1e-10, abs=1e-300)
    for z in (-8.0, -3.0, -1.0, 0.0, 0.7, 2.5):
        assert stats.normal_cdf(z) == pytest.approx(sp.norm.cdf(z), rel=1e-12)
    for a, b, x in ((0.5, 0.5, 0.3), (10, 0.5, 0.99), (200, 0.5, 0.5), (2.0, 3.0, 0.9)):
        assert stats.betainc(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-11)


def test_paired_ttest_matches_scipy():
    rng = np.random.default_rng(0)
    for n in (2, 5, 40, 3000):
        a = rng.random(n)
        b = a + rng.normal(0.02, 0.1, n)
        ours = stats.paired_ttest(a, b)
        ref = sp.ttest_rel(a, b)
        assert ours.statistic == pytest.approx(ref.statistic, rel=1e-10)
        assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
        assert ours.n == n and ours.mean_difference == pytest.approx(float(np.mean(a - b)))


def test_wilcoxon_matches_scipy_exact_and_normal():
    rng = np.random.default_rng(1)
    for n in (5, 12, 30, 50):  # no ties: exact distribution
        a, b = rng.random(n), rng.random(n) + 0.1
        ours, ref = stats.wilcoxon(a, b), sp.wilcoxon(a, b, method="exact")
        assert ours.statistic == ref.statistic and ours.pvalue == pytest.approx(ref.pvalue, rel=1e-12)
    for n in (60, 500, 4000):  # per-user metric values: many ties and zeros
        a = rng.integers(0, 5, n) / 4
        b = np.clip(a + rng.integers(-1, 2, n) / 4 * (rng.random(n) < 0.5), 0, 1)
        ours, ref = stats.wilcoxon(a, b), sp.wilcoxon(a, b, method="approx", zero_method="wilcox", correction=False)
        assert ours.statistic == ref.statistic and ours.pvalue == pytest.approx(ref.pvalue, rel=1e-10)
        assert ours.n == int((a != b).sum())


def test_holm_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, 0.5]
    # sorted 0.005, 0.01, 0.03, 0.04, 0.5 times 5, 4, 3, 2, 1 -> .025 .04 .09 .08->.09 .5
    np.testing.assert_allclose(stats.holm(p), [0.04, 0.09, 0.09, 0.025, 0.5], rtol=0, atol=1e-15)
    np.testing.assert_allclose(stats.holm([0.3, 0.6]), [0.6, 0.6])
    assert stats.holm([]).size == 0


def test_mean_std_and_bootstrap():
    ms = stats.mean_std([0.1, 0.2, 0.4])
    assert ms.mean == pytest.approx(0.7 / 3) and ms.std == pytest.approx(np.std([0.1, 0.2, 0.4], ddof=1)) and ms.n == 3
    assert np.isnan(stats.mean_std([0.3]).std)
    rng = np.random.default_rng(2)
    v = rng.normal(0.3, 1.0, 4000)
    lo, hi = stats.bootstrap_ci(v, n_resamples=4000, seed=5)
    half = 1.959964 * v.std(ddof=1) / np.sqrt(v.size)
    assert lo == pytest.approx(v.mean() - half, abs=0.005) and hi == pytest.approx(v.mean() + half, abs=0.005)
    assert stats.bootstrap_ci(v, n_resamples=4000, seed=5) == (lo, hi)
    ref = sp.bootstrap((v,), np.mean, n_resamples=4000, method="percentile", random_state=0).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.004) and hi == pytest.approx(ref.high, abs=0.004)


def test_paired_values_align_by_user_and_refuse_other_splits():
    a, b = stats.paired_values(np.array([3, 1, 2]), np.array([0.3, 0.1, np.nan]), np.array([1, 2, 3]), np.array([1.0, 2.0, 3.0]))
    assert a.tolist() == [0.1, 0.3] and b.tolist() == [1.0, 3.0]
    with pytest.raises(CrossbenchError, match="different users"):
        stats.paired_values(np.array([1, 2]), np.zeros(2), np.array([1, 5]), np.zeros(2))


def test_paired_users_keeps_the_ids_in_order():
    users, a, b = stats.paired_users(np.array([3, 1, 2]), np.array([0.3, 0.1, np.nan]), np.array([2, 3, 1]), np.array([2.0, 3.0, 1.0]))
    assert users.tolist() == [1, 3] and a.tolist() == [0.1, 0.3] and b.tolist() == [1.0, 3.0]


def test_user_means_over_seeds_by_hand():
    # three seeds whose test sets overlap: user 1 in all three, 2 in seeds 0 and 2, 3 only in
    # seed 1, 4 in seeds 1 and 2 with a NaN in seed 1 (dropped there only), 5 NaN everywhere
    runs = [
        (np.array([2, 1, 5]), np.array([0.5, 0.2, np.nan])),
        (np.array([1, 3, 4]), np.array([0.4, 0.9, np.nan])),
        (np.array([4, 1, 2]), np.array([0.7, 0.6, 0.0])),
    ]
    users, means = stats.user_means_over_seeds(runs)
    assert users.tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(means, [(0.2 + 0.4 + 0.6) / 3, (0.5 + 0.0) / 2, 0.9, 0.7], rtol=0, atol=1e-15)
    one_u, one_m = stats.user_means_over_seeds([(np.array([7, 3]), np.array([1.0, 2.0]))])
    assert one_u.tolist() == [3, 7] and one_m.tolist() == [2.0, 1.0]
    with pytest.raises(CrossbenchError, match="more than once"):
        stats.user_means_over_seeds([(np.array([1, 1]), np.zeros(2))])
    with pytest.raises(CrossbenchError, match="equal length"):
        stats.user_means_over_seeds([(np.array([1, 2]), np.zeros(3))])
    with pytest.raises(CrossbenchError, match="at least one run"):
        stats.user_means_over_seeds([])
