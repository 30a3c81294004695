"""How sure a comparison of seed means is: Welch's interval for a difference, Fieller's for a ratio.

The unit is the seed: each training run's test metric is one sample, because what varies between runs (the
initialisation, the data order, where early stopping lands) is what a claim like "1.05x the baseline" must
hold across. Three seeds give two degrees of freedom per group, so the intervals are wide; that is the
honest answer for a three-seed comparison. The users of one test set are not independent draws of a model's
quality across seeds, so they are not used as samples here.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import integrate, stats


@dataclass(frozen=True)
class MeanComparison:
    base_mean: float
    other_mean: float
    ratio: float  # other_mean / base_mean
    ratio_low: float  # Fieller's interval of the ratio of the true means; -inf/inf when unbounded, NaN unmeasured
    ratio_high: float
    difference_low: float  # Welch's interval of other - base
    difference_high: float
    degrees_of_freedom: float  # Welch-Satterthwaite
    p_value: float  # Welch's two-sided test of equal means; NaN when no seed varied (nothing to test)
    confidence: float

    @property
    def ratio_bounded(self) -> bool:
        return math.isfinite(self.ratio_low) and math.isfinite(self.ratio_high)

    @property
    def spread_measured(self) -> bool:
        """False when every seed of both groups gave the same value: the spread between seeds is unknown (is
        the seed used at all?), which is no certainty."""
        return not math.isnan(self.p_value)


def compare_means(base: Sequence[float], other: Sequence[float], confidence: float = 0.95) -> MeanComparison:
    """Compare the mean of ``other`` with the mean of ``base`` (one value per seed each).

    The ratio's interval is Fieller's: every r with |mean(other) - r mean(base)| <= t sqrt(v_other + r^2 v_base)
    (v = variance of a mean), with Welch's degrees of freedom. When it is bounded, 1 lies outside it exactly
    when Welch's test rejects equal means at 1 - ``confidence``. When the base mean itself is not
    distinguishable from 0 no bounded interval exists (the set is the whole line or two rays); it is then
    reported as (-inf, inf), and only the difference's interval and the p-value say whether the means differ.
    """
    if len(base) < 2 or len(other) < 2:
        raise ValueError(
            f"comparing seed means needs at least 2 seeds per group (got {len(base)} and {len(other)}): "
            "train more seeds (scripts/seeds.py --seeds ...)"
        )
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    base_mean, other_mean = statistics.fmean(base), statistics.fmean(other)
    base_var, other_var = statistics.variance(base) / len(base), statistics.variance(other) / len(other)
    difference = other_mean - base_mean
    ratio = other_mean / base_mean if base_mean else (math.copysign(math.inf, other_mean) if other_mean else math.nan)
    if base_var + other_var == 0:  # identical seeds within each group: the spread is unmeasured, not zero
        nan = math.nan
        return MeanComparison(base_mean, other_mean, ratio, nan, nan, nan, nan, nan, nan, confidence)
    dof = (base_var + other_var) ** 2 / (
        base_var**2 / (len(base) - 1) + other_var**2 / (len(other) - 1)
    )  # Welch-Satterthwaite
    t = float(stats.t.ppf(0.5 + confidence / 2, dof))
    spread = t * math.sqrt(base_var + other_var)
    p_value = float(2 * stats.t.sf(abs(difference) / math.sqrt(base_var + other_var), dof))
    # Fieller: a r^2 + b r + c <= 0
    a = base_mean**2 - t**2 * base_var
    b = -2 * base_mean * other_mean
    c = other_mean**2 - t**2 * other_var
    if a <= 0:
        low, high = -math.inf, math.inf
    else:
        root = math.sqrt(b**2 - 4 * a * c)  # >= 0 whenever a > 0
        low, high = (-b - root) / (2 * a), (-b + root) / (2 * a)
    return MeanComparison(
        base_mean, other_mean, ratio, low, high, difference - spread, difference + spread, dof, p_value, confidence
    )


def seeds_needed(
    base_std: float,
    other_std: float,
    difference: float,
    confidence: float = 0.95,
    power: float = 0.8,
    max_seeds: int = 10_000,
) -> int:
    """Seeds per group for Welch's two-sided test at 1 - ``confidence`` to detect a true ``difference`` of
    means with probability ``power``, when the seeds of each group scatter with these standard deviations.

    Both groups get n seeds; the power of n is the noncentral t's (Welch-Satterthwaite degrees of freedom,
    noncentrality difference / sqrt((base_std^2 + other_std^2) / n)). Returns the smallest n >= 2 that reaches
    ``power``. Use it to plan: the stds measured on a few seeds are themselves rough, and below 4 seeds with
    unequal spreads the answer is optimistic (the degrees of freedom are taken at the true spreads, while the
    test uses the sampled ones).
    """
    if not 0 < confidence < 1 or not 0 < power < 1:
        raise ValueError(f"confidence and power must be between 0 and 1, got {confidence} and {power}")
    if base_std < 0 or other_std < 0 or base_std + other_std == 0:
        raise ValueError(f"the seeds' standard deviations must be >= 0 and not both 0, got {base_std}, {other_std}")
    if difference == 0 or not math.isfinite(difference):
        raise ValueError(f"the difference to detect must be finite and not 0, got {difference}")
    if max_seeds < 2:
        raise ValueError(f"max_seeds must be >= 2 (Welch's test needs 2 seeds per group), got {max_seeds}")
    base_var, other_var = base_std**2, other_std**2

    def power_of(n: int) -> float:
        dof = (base_var + other_var) ** 2 / ((base_var**2 + other_var**2) / (n - 1))
        t = stats.t.ppf(0.5 + confidence / 2, dof)
        shift = abs(difference) / math.sqrt((base_var + other_var) / n)
        value = float(stats.nct.sf(t, dof, shift) + stats.nct.cdf(-t, dof, shift))
        return value if math.isfinite(value) else noncentral_t_power(t, dof, shift)

    low, high = 2, 2
    while power_of(high) < power:  # double until reached (at most max_seeds), then bisect: power grows with n
        if high == max_seeds:
            raise ValueError(f"more than {max_seeds} seeds per group would be needed")
        low, high = high + 1, min(high * 2, max_seeds)
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if power_of(middle) < power else (low, middle)
    return high


def noncentral_t_power(t: float, dof: float, shift: float) -> float:
    """P(|T| > t) for T noncentral t (``dof``, noncentrality ``shift``), by integrating the normal part over the
    chi-square's quantiles: scipy's nct gives NaN for large shifts at few degrees of freedom (a NaN power would
    read as "reached")."""

    def given(u: float) -> float:  # u: a quantile of the chi-square in T = (Z + shift) / sqrt(V / dof)
        scale = t * math.sqrt(stats.chi2.ppf(u, dof) / dof)
        return float(stats.norm.sf(scale - shift) + stats.norm.cdf(-scale - shift))

    return float(integrate.quad(given, 0.0, 1.0, limit=200)[0])
