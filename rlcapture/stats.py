"""Summary statistics of episode returns, for the end of a run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

__all__ = ["Summary", "summarize", "t_quantile"]

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
