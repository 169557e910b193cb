"""The report's statistics, pure functions over numbers.

- **Difference of means, Welch's t interval.** For each user the outcome is one number (their change after
  exposure, app/experiments/outcomes.py); users are independent, so a variant's mean change is a mean of
  independent values. The difference between two variants' means, d = m_b − m_a, has standard error
  se = sqrt(s_a²/n_a + s_b²/n_b) and the interval d ± t(1 − α/2; ν)·se with the Welch–Satterthwaite degrees of
  freedom ν = se⁴ / ((s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1)). It does not assume equal variances (a
  variant that helps some typists more than others spreads its changes) and, by the central limit theorem, holds for
  skewed changes at the sample sizes an experiment runs at; the A/A check in tests/unit/test_experiment_stats.py
  measures its false-positive rate on skewed simulated changes.
- **Sample-ratio mismatch.** If assignment or exposure recording is broken, the variants' user counts stray from
  the configured weights, and every comparison is suspect. Pearson's chi-square statistic
  Σ (observed − expected)² / expected against the weights' shares, k − 1 degrees of freedom; p < 0.001 is flagged
  (the usual threshold: at that level a healthy experiment checked daily for years is rarely flagged by chance).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95
SRM_ALPHA = 0.001


@dataclass(frozen=True)
class Summary:
    """Mean, standard deviation and count of one variant's outcomes."""

    n: int
    mean: float
    sd: float


def summarize(values: Sequence[float] | np.ndarray) -> Summary:
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return Summary(0, math.nan, math.nan)
    return Summary(int(x.size), float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan)


@dataclass(frozen=True)
class Difference:
    """m_b − m_a with its interval; `low`/`high` are NaN when either side has fewer than two values."""

    estimate: float
    low: float
    high: float
    se: float
    df: float
    p_value: float
    confidence: float = CONFIDENCE

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)


def welch_difference(a: Summary, b: Summary, confidence: float = CONFIDENCE) -> Difference:
    """The difference of b's mean over a's with Welch's interval (module docstring)."""
    estimate = b.mean - a.mean
    if a.n < 2 or b.n < 2:
        return Difference(estimate, math.nan, math.nan, math.nan, math.nan, math.nan, confidence)
    va, vb = a.sd**2 / a.n, b.sd**2 / b.n
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(estimate, estimate, estimate, 0.0, math.inf, 0.0 if estimate else 1.0, confidence)
    df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    half = float(sps.t.ppf(0.5 + confidence / 2, df)) * se
    p_value = float(2 * sps.t.sf(abs(estimate) / se, df))
    return Difference(estimate, estimate - half, estimate + half, se, df, p_value, confidence)


@dataclass(frozen=True)
class SampleRatio:
    """Observed users per variant against the weights' shares."""

    observed: tuple[int, ...]
    expected: tuple[float, ...]
    chi2: float
    p_value: float
    flagged: bool


def sample_ratio_check(observed: Sequence[int], shares: Sequence[float], alpha: float = SRM_ALPHA) -> SampleRatio:
    """Pearson's chi-square goodness of fit of the counts to the shares (module docstring). No users: not flagged."""
    counts = np.asarray(observed, dtype=np.float64)
    weights = np.asarray(shares, dtype=np.float64)
    if counts.shape != weights.shape or counts.size < 2:
        raise ValueError("one count and one share per variant, at least two variants")
    total = counts.sum()
    expected = total * weights / weights.sum()
    if total == 0:
        return SampleRatio(tuple(int(c) for c in counts), tuple(expected.tolist()), 0.0, 1.0, False)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    p_value = float(sps.chi2.sf(chi2, counts.size - 1))
    return SampleRatio(tuple(int(c) for c in counts), tuple(expected.tolist()), chi2, p_value, p_value < alpha)


def per_variant(values: Mapping[str, Sequence[float]], order: Sequence[str]) -> dict[str, Summary]:
    """A Summary per variant in `order` (a variant without values gets an empty one)."""
    return {name: summarize(values.get(name, ())) for name in order}
