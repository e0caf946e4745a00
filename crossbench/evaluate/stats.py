"""Statistics across runs, in plain numpy (no scipy at run time).

- :func:`mean_std`: mean and sample standard deviation (``ddof=1``) of one metric over seeds.
- :func:`paired_ttest`: two-sided paired t-test over users of two runs on the same split.
- :func:`wilcoxon`: two-sided Wilcoxon signed-rank test over the same pairs (zero
  differences dropped; exact null distribution for up to 50 pairs without ties, otherwise
  the normal approximation with tie correction and no continuity correction — scipy's
  defaults).
- :func:`holm`: Holm's step-down adjustment of a table's p-values.
- :func:`bootstrap_ci`: percentile bootstrap confidence interval of a mean (pass ``a - b``
  for a paired difference).

Use :func:`paired_values` to line up two runs' per-user values by user id first. When the
runs of several seeds split the same users (the cold-start protocol draws its test users
anew per seed, so a user can be a test user in more than one seed), line each seed up with
:func:`paired_users` and average each user over the seeds with :func:`user_means_over_seeds`
before testing, so that each user is one pair, not one pair per seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crossbench.errors import CrossbenchError

_EXACT_MAX_N = 50


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation (``nan`` for a single value) of ``n`` values."""

    mean: float
    std: float
    n: int


@dataclass(frozen=True)
class TestResult:
    """A two-sided paired test: its statistic, p-value, number of pairs used, and ``mean(a - b)``."""

    statistic: float
    pvalue: float
    n: int
    mean_difference: float


def mean_std(values: Sequence[float] | np.ndarray) -> MeanStd:
    """Mean and sample standard deviation (``ddof=1``) of ``values`` (e.g. one metric over seeds)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise CrossbenchError("mean_std needs at least one value")
    std = float(v.std(ddof=1)) if v.size > 1 else float("nan")
    return MeanStd(mean=float(v.mean()), std=std, n=int(v.size))


def paired_users(
    users_a: np.ndarray, a: np.ndarray, users_b: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """User ids (sorted) and ``a`` and ``b`` reordered to them; both runs must cover exactly the same users.

    Users whose value is ``NaN`` in either run (a metric undefined for them) are dropped.
    """
    ua, ub = np.asarray(users_a), np.asarray(users_b)
    if ua.shape != ub.shape or not np.array_equal(np.sort(ua), np.sort(ub)):
        raise CrossbenchError(
            "the two runs were evaluated on different users; paired tests need the same split "
            f"({len(ua)} vs {len(ub)} users): compare runs of the same dataset, protocol and seed of the split"
        )
    ia, ib = np.argsort(ua, kind="stable"), np.argsort(ub, kind="stable")
    x, y = np.asarray(a, dtype=np.float64)[ia], np.asarray(b, dtype=np.float64)[ib]
    ok = ~(np.isnan(x) | np.isnan(y))
    return ua[ia][ok], x[ok], y[ok]


def paired_values(users_a: np.ndarray, a: np.ndarray, users_b: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` reordered to the same users (see :func:`paired_users`, which also returns the ids)."""
    _, x, y = paired_users(users_a, a, users_b, b)
    return x, y


def user_means_over_seeds(runs: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Each user's mean value over the runs (seeds) that hold the user: ``(users sorted, means)``.

    ``runs`` holds one ``(users, values)`` pair per seed, the values aligned with the user
    ids. A ``NaN`` value is dropped for that user and seed only; a user with no finite
    value in any run is left out. Every user appears once in the result, however many
    seeds' test sets held them.
    """
    if not runs:
        raise CrossbenchError("user_means_over_seeds needs at least one run (users, values)")
    all_users, all_values = [], []
    for i, (users, values) in enumerate(runs):
        u, v = np.asarray(users, dtype=np.int64), np.asarray(values, dtype=np.float64)
        if u.ndim != 1 or u.shape != v.shape:
            raise CrossbenchError(
                f"run {i}: users and values must be 1-d arrays of equal length, got shapes {u.shape} and {v.shape}"
            )
        if np.unique(u).size != u.size:
            raise CrossbenchError(f"run {i}: a user id occurs more than once; pass one value per user and seed")
        ok = ~np.isnan(v)
        all_users.append(u[ok])
        all_values.append(v[ok])
    users, inverse = np.unique(np.concatenate(all_users), return_inverse=True)
    sums = np.bincount(inverse, weights=np.concatenate(all_values), minlength=users.size)
    counts = np.bincount(inverse, minlength=users.size)
    return users, sums / counts


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise CrossbenchError(f"paired tests need two 1-d arrays of equal length, got shapes {x.shape} and {y.shape}")
    return x - y


def paired_ttest(a: np.ndarray, b: np.ndarray) -> TestResult:
    """Two-sided paired t-test of ``mean(a - b) == 0``.

    With zero variance of the differences: p = 1 if they are all zero, else p = 0.
    """
    d = _diff(a, b)
    n = d.size
    if n < 2:
        raise CrossbenchError(f"a paired t-test needs at least 2 pairs, got {n}")
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return TestResult(0.0 if mean == 0 else math.copysign(math.inf, mean), 1.0 if mean == 0 else 0.0, n, mean)
    t = mean / (sd / math.sqrt(n))
    return TestResult(t, min(1.0, 2.0 * student_t_sf(abs(t), n - 1)), n, mean)


def wilcoxon(a: np.ndarray, b: np.ndarray) -> TestResult:
    """Two-sided Wilcoxon signed-rank test of the differences ``a - b``; the statistic is ``min(R+, R-)``."""
    d = _diff(a, b)
    mean = float(d.mean()) if d.size else 0.0
    d = d[d != 0]
    n = d.size
    if n == 0:
        return TestResult(0.0, 1.0, 0, mean)
    ranks, tie_sizes = _average_ranks(np.abs(d))
    r_plus = float(ranks[d > 0].sum())
    r_minus = float(ranks[d < 0].sum())
    stat = min(r_plus, r_minus)
    if n <= _EXACT_MAX_N and not (tie_sizes > 1).any():
        counts = _signed_rank_counts(n)
        p = 2.0 * float(counts[: int(stat) + 1].sum()) / float(counts.sum())
        return TestResult(stat, min(1.0, p), n, mean)
    mu = n * (n + 1) / 4.0
    var = n * (n + 1) * (2 * n + 1) / 24.0 - float((tie_sizes**3 - tie_sizes).sum()) / 48.0
    if var <= 0:
        return TestResult(stat, 1.0, n, mean)
    z = (stat - mu) / math.sqrt(var)
    return TestResult(stat, min(1.0, 2.0 * normal_cdf(z)), n, mean)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values, in the input order: ``max over j <= i of min(1, (m - j + 1) p_(j))``."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.maximum.accumulate(scaled)
    out = np.empty(m)
    out[order] = adjusted
    return out


def bootstrap_ci(
    values: np.ndarray, *, confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement, seeded)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        raise CrossbenchError("bootstrap_ci needs at least one value")
    if not 0 < confidence < 1:
        raise CrossbenchError(f"confidence must lie in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    block = max(1, 4_000_000 // v.size)
    for s in range(0, n_resamples, block):
        e = min(s + block, n_resamples)
        means[s:e] = v[rng.integers(0, v.size, size=(e - s, v.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- distributions


def normal_cdf(z: float) -> float:
    """Standard normal CDF."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def student_t_sf(t: float, df: float) -> float:
    """Survival function ``P(T > t)`` of Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    x = df / (df + t * t)
    tail = 0.5 * betainc(df / 2.0, 0.5, x)
    return tail if t >= 0 else 1.0 - tail


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function ``I_x(a, b)`` (continued fraction, modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b


def _beta_cf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)), -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return h


def _average_ranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks of ``x`` with ties given their average rank, and the size of each tie group."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.flatnonzero(np.concatenate([[True], xs[1:] != xs[:-1]]))
    sizes = np.diff(np.concatenate([starts, [x.size]]))
    avg = starts + (sizes + 1) / 2.0
    ranks = np.empty(x.size)
    ranks[order] = np.repeat(avg, sizes)
    return ranks, sizes.astype(np.float64)


def _signed_rank_counts(n: int) -> np.ndarray:
    """Number of subsets of ``{1..n}`` with each sum ``0..n(n+1)/2`` (the exact null of ``R+``)."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    return counts
