"""Summary statistics of episode returns, for the end of a run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = [
    "Description",
    "MIN_CI_EPISODES",
    "Summary",
    "bootstrap_ci",
    "describe",
    "iqm",
    "success_rate",
    "summarize",
    "t_quantile",
]

#: Fewer values than this get no confidence interval: a bootstrap of one
#: episode is that episode ("-30.06 to -30.06"), which reads as certainty.
MIN_CI_EPISODES = 3

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return math.nan
    if df <= len(_T95):
        return _T95[df - 1]
    # Beyond 30 the normal quantile with a first-order correction is within 0.1%.
    z = NormalDist().inv_cdf(0.975)
    return z + (z**3 + z) / (4 * df)


@dataclass(frozen=True)
class Summary:
    """Mean, standard deviation and a 95% confidence interval of the mean."""

    n: int
    mean: float
    std: float
    low: float
    high: float

    def __str__(self) -> str:
        if self.n == 0:
            return "no episodes"
        if self.n == 1:
            return f"{self.mean:.2f}"
        return f"{self.mean:.2f} ± {self.std:.2f} (95% CI {self.low:.2f} to {self.high:.2f})"


def summarize(values: Sequence[float]) -> Summary:
    """Summarize values with the sample std and a t-based 95% CI of the mean."""
    n = len(values)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = math.fsum(values) / n
    if n == 1:
        return Summary(1, mean, 0.0, mean, mean)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% (``floor(n/4)`` cut from each end,
    as ``scipy.stats.trim_mean(values, 0.25)``)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    if n == 0:
        return math.nan
    cut = int(0.25 * n)
    return float(x[cut : n - cut].mean())


def success_rate(values: Sequence[float], threshold: float | None) -> float:
    """Fraction of episodes with return >= ``threshold`` (nan without one or without episodes)."""
    if threshold is None or len(values) == 0:
        return math.nan
    return float(np.mean(np.asarray(values, dtype=np.float64) >= threshold))


def bootstrap_ci(
    groups: Sequence[Sequence[float]],
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over all values.

    Resampling is stratified: each group (one seed's episodes) is resampled
    with replacement on its own, keeping its size, as rliable does for runs.
    Seeded, so the same data gives the same interval.
    """
    arrays = [np.asarray(g, dtype=np.float64) for g in groups if len(g)]
    total = sum(len(a) for a in arrays)
    if total == 0:
        return math.nan, math.nan
    if total == 1:
        v = float(arrays[0][0])
        return v, v
    rng = np.random.default_rng(seed)
    sums = np.zeros(resamples)
    for a in arrays:
        idx = rng.integers(0, len(a), size=(resamples, len(a)))
        sums += a[idx].sum(axis=1)
    means = sums / total
    alpha = (1.0 - level) / 2
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


@dataclass(frozen=True)
class Description:
    """What ``rlcapture record`` reports for the returns of one seed or of all seeds."""

    n: int
    mean: float
    std: float
    iqm: float
    low: float
    high: float
    success: float
    threshold: float | None = None

    def __str__(self) -> str:
        """One labelled interval: ``23.40 ± 3.10 (95% bootstrap CI 20.50 to 26.80, n=20), IQM 23.10``."""
        if self.n == 0:
            return "no episodes"
        if self.n < MIN_CI_EPISODES:
            text = f"{self.mean:.2f} ± {self.std:.2f} (n={self.n}: too few episodes for a confidence interval)"
        else:
            text = f"{self.mean:.2f} ± {self.std:.2f} (95% bootstrap CI {self.low:.2f} to {self.high:.2f}, n={self.n})"
        text += f", IQM {self.iqm:.2f}"
        if self.threshold is not None:
            text += f", success {self.success:.0%} (return >= {self.threshold:g})"
        return text


def describe(
    groups: Sequence[Sequence[float]], *, threshold: float | None = None, seed: int = 0
) -> Description:
    """Describe returns given per seed (one group per seed; a single group for one seed).

    ``std`` is the sample std over all episodes; the CI is a stratified
    bootstrap of the mean (:func:`bootstrap_ci`).
    """
    values = [float(v) for g in groups for v in g]
    n = len(values)
    if n == 0:
        return Description(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, threshold)
    x = np.asarray(values)
    std = float(x.std(ddof=1)) if n > 1 else 0.0
    low, high = bootstrap_ci(groups, seed=seed)
    return Description(n, float(x.mean()), std, iqm(values), low, high, success_rate(values, threshold), threshold)
