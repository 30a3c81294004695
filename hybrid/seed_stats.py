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

from scipy import stats


@dataclass(frozen=True)
class MeanComparison:
    base_mean: float
    other_mean: float
    ratio: float  # other_mean / base_mean
    ratio_low: float  # Fieller's interval of the ratio of the true means; -inf/inf when unbounded
    ratio_high: float
    difference_low: float  # Welch's interval of other - base
    difference_high: float
    degrees_of_freedom: float  # Welch-Satterthwaite
    p_value: float  # Welch's two-sided test of equal means
    confidence: float

    @property
    def ratio_bounded(self) -> bool:
        return math.isfinite(self.ratio_low) and math.isfinite(self.ratio_high)


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
    if base_var + other_var == 0:  # identical seeds within each group: nothing is uncertain
        same = difference == 0
        return MeanComparison(base_mean, other_mean, ratio, ratio, ratio, difference, difference, math.inf,
                              1.0 if same else 0.0, confidence)  # fmt: skip
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
