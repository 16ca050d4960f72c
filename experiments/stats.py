"""The statistics of the result tables, in one place so that every table reads them the same way.

    welch_interval(a, b)    difference of means, its Welch t interval and Welch's t-test p-value
    mean_interval(x, mu)    one mean, its standard error and t interval, and the t-test against mu
    prediction_interval(x)  where one more draw of x falls (t prediction interval) and a value's percentile
    tost(x, target, margin) two one-sided t-tests: is mean(x) within target +- margin (equivalence)
    holm(p)                 Holm-Bonferroni adjusted p-values over one family of tests
    wilson_interval(k, n)   Wilson score interval of a proportion k / n
    variant_summary(errors) one variant's runs: how many train, median and IQR, mean +- std

Quantiles and tail probabilities come from scipy.stats (exact, for non-integer degrees of
freedom), never from a rounded table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from lenet1998.paper import LINEAR_CLASSIFIER_ERROR


@dataclass(frozen=True)
class Welch:
    """mean(a) - mean(b) with its two-sided Welch t interval and Welch's t-test."""

    diff: float
    low: float
    high: float
    df: float  # Welch-Satterthwaite, not rounded; nan when both samples have no spread
    p: float  # two-sided p-value of Welch's t-test of equal means; nan when df is


def welch_interval(a, b, confidence: float = 0.95) -> Welch | None:
    """Welch t interval of mean(a) - mean(b) at `confidence` (two-sided), df by
    Welch-Satterthwaite, with the p-value of Welch's t-test. None when either side has fewer
    than 2 values (no variance to estimate). When neither side varies the interval is the
    point diff and there is no test (df and p are nan)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(a.mean() - b.mean())
    if va + vb == 0:
        return Welch(diff, diff, diff, math.nan, math.nan)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + confidence / 2, df) * se
    p = 2 * stats.t.sf(abs(diff) / se, df)
    return Welch(diff, diff - half, diff + half, float(df), float(p))


@dataclass(frozen=True)
class Mean:
    """mean(x) with its standard error, two-sided t interval, and the one-sample t-test of mean = mu."""

    n: int
    mean: float
    std: float  # ddof=1
    se: float
    low: float
    high: float
    p: float  # two-sided p-value of the one-sample t-test against mu


def mean_interval(x, mu: float = math.nan, confidence: float = 0.95) -> Mean | None:
    """The t interval of mean(x) (n - 1 degrees of freedom) and the one-sample t-test of
    mean(x) = mu (p is nan without mu); None for fewer than 2 values."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return None
    n, m, sd = len(x), float(x.mean()), float(x.std(ddof=1))
    se = sd / math.sqrt(n)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * se
    p = 2 * stats.t.sf(abs(m - mu) / se, n - 1) if se > 0 and not math.isnan(mu) else math.nan
    return Mean(n, m, sd, se, m - half, m + half, float(p))


@dataclass(frozen=True)
class Draw:
    """Where one more draw of a sample's distribution falls, and how a given value sits in it."""

    low: float  # the two-sided t prediction interval of one new draw
    high: float
    below: float  # share of the sample at or below the value (the empirical percentile / 100)
    predictive: float  # P(new draw <= value) under the t predictive distribution


def prediction_interval(x, value: float, confidence: float = 0.95, decimals: int = 2) -> Draw | None:
    """The t prediction interval of one new draw, mean +- t(n-1) s sqrt(1 + 1/n) (normal
    draws), and where `value` sits: the share of x at or below it (x rounded to `decimals`, as
    the tables print errors) and P(new draw <= value) from the same t distribution. None for
    fewer than 2 values. Compares a single reported run (the paper's) with our seeds."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return None
    n, m, sd = len(x), float(x.mean()), float(x.std(ddof=1))
    scale = sd * math.sqrt(1 + 1 / n)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * scale
    below = float((np.round(x, decimals) <= value).mean())
    predictive = float(stats.t.cdf((value - m) / scale, n - 1)) if scale > 0 else float(value >= m)
    return Draw(m - half, m + half, below, predictive)


def tost(x, target: float, margin: float) -> float:
    """p-value of the two one-sided t-tests (TOST) of equivalence: H0 |mean(x) - target| >= margin.
    p = max of the two one-sided p-values; p < 0.05 says the mean lies within target +- margin
    (the 90% t interval inside it). nan for fewer than 2 values or no spread."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2 or x.std(ddof=1) == 0:
        return math.nan
    n, m = len(x), float(x.mean())
    se = float(x.std(ddof=1)) / math.sqrt(n)
    p_low = stats.t.sf((m - (target - margin)) / se, n - 1)  # H0: mean <= target - margin
    p_high = stats.t.cdf((m - (target + margin)) / se, n - 1)  # H0: mean >= target + margin
    return float(max(p_low, p_high))


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the order given. The family is the finite entries;
    nan entries (comparisons without a test) stay nan and do not count in it. A hypothesis is
    rejected at family-wise error rate alpha when its adjusted p-value is below alpha."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    tested = np.flatnonzero(np.isfinite(p))
    m = len(tested)
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for i, j in enumerate(order):  # i-th smallest p times (m - i), made monotone, capped at 1
        running = max(running, min(1.0, (m - i) * p[j]))
        adjusted[j] = running
    return adjusted


def fraction_test(k: int, n: int, k_base: int, n_base: int) -> float:
    """Two-sided p-value of Fisher's exact test of k of n runs training against k_base of n_base
    (scipy.stats.fisher_exact); nan where a side has no runs."""
    if n == 0 or n_base == 0:
        return math.nan
    return float(stats.fisher_exact([[k, n - k], [k_base, n_base - k_base]]).pvalue)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the proportion k / n (no continuity correction; the same as
    scipy.stats.binomtest(k, n).proportion_ci(method="wilson")). (nan, nan) for n = 0."""
    if n == 0:
        return math.nan, math.nan
    z = stats.norm.ppf(0.5 + confidence / 2)
    center = (k + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * math.sqrt(k * (n - k) / n + z * z / 4)
    low = 0.0 if k == 0 else max(0.0, center - half)  # exact ends: no rounding residue at 0 or n
    high = 1.0 if k == n else min(1.0, center + half)
    return low, high


def trains(error: float, threshold: float = LINEAR_CLASSIFIER_ERROR) -> bool:
    """A run trains when its final test error (%) beats the paper's linear classifier."""
    return bool(error < threshold)  # nan (a failed run) does not train


def variant_summary(errors, threshold: float = LINEAR_CLASSIFIER_ERROR) -> dict:
    """One variant's final test errors (%), one per run; nan for a run that failed (it counts in
    n and does not train). k of n runs train (Wilson 95% interval); median, quartiles (linear
    interpolation) and mean +- std (ddof=1) over every run with an error, and mean +- std over
    the runs that train. Statistics of fewer values than they need are nan."""
    e = np.asarray(errors, dtype=float)
    finite = e[np.isfinite(e)]
    good = finite[[trains(x, threshold) for x in finite]]
    low, high = wilson_interval(len(good), len(e))

    def mean_std(x):
        return (float(x.mean()) if len(x) else math.nan, float(x.std(ddof=1)) if len(x) > 1 else math.nan)

    q1, median, q3 = np.percentile(finite, [25, 50, 75]) if len(finite) else (math.nan,) * 3
    mean, std = mean_std(finite)
    mean_trains, std_trains = mean_std(good)
    return {
        "n_runs": len(e), "n_train": len(good), "train_ci95_low": low, "train_ci95_high": high,
        "test_error_median": float(median), "test_error_q1": float(q1), "test_error_q3": float(q3),
        "test_error_mean": mean, "test_error_std": std,
        "test_error_mean_trains": mean_trains, "test_error_std_trains": std_trains,
    }


def welch_half_width(std_a: float, n_a: int, std_b: float, n_b: int, confidence: float = 0.95) -> float:
    """Half-width of the Welch t interval of a difference of means, for given standard
    deviations and sample sizes (what an interval will be, before the data are in)."""
    va, vb = std_a**2 / n_a, std_b**2 / n_b
    if va + vb == 0:
        return 0.0
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    return float(stats.t.ppf(0.5 + confidence / 2, df) * math.sqrt(va + vb))


def seeds_needed(std: float, std_reference: float, n_reference: int, target: float = 0.10,
                 low: int = 10, high: int = 20) -> tuple[int, float]:
    """The seed count of a variant chosen from standard deviations alone (never from a
    difference, so no stopping on the result): the smallest n in low .. high whose Welch 95%
    half-width against a reference of n_reference seeds is at most `target` points, else
    `high`; returns (n, that half-width)."""
    for n in range(low, high + 1):
        width = welch_half_width(std, n, std_reference, n_reference)
        if width <= target:
            return n, width
    return high, welch_half_width(std, high, std_reference, n_reference)
