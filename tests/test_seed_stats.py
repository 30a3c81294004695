"""Comparing groups of seeds: Welch's difference, Fieller's ratio, and the compare command."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hybrid_rearec.hybrid.seed_stats import compare_means, seeds_needed
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]


def test_welch_figures_by_hand():
    # means 2 and 3, each variance 1 over 3 seeds: variance of each mean 1/3, df = (2/3)^2 / (2 (1/3)^2 / 2) = 4
    comparison = compare_means([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert comparison.degrees_of_freedom == pytest.approx(4.0)
    half_width = 2.776445 * math.sqrt(2 / 3)  # t(0.975, 4) x the standard error of the difference
    assert comparison.difference_low == pytest.approx(1 - half_width, rel=1e-5)
    assert comparison.difference_high == pytest.approx(1 + half_width, rel=1e-5)
    assert comparison.ratio == pytest.approx(1.5)
    expected_p = stats.ttest_ind([2.0, 3.0, 4.0], [1.0, 2.0, 3.0], equal_var=False).pvalue
    assert comparison.p_value == pytest.approx(expected_p)
    # base mean 2 with standard error 0.577 and t 2.78: the base is distinguishable from 0, so a bounded ratio
    assert comparison.ratio_bounded and comparison.ratio_low < 1.5 < comparison.ratio_high


@pytest.mark.parametrize(
    ("base", "other"), [([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]), ([10.0, 10.1, 10.3], [11.0, 13.0, 12.0, 15.0])]
)
def test_fieller_bounds_are_where_the_ratio_test_turns(base, other):
    """At each bound r, |mean(other) - r mean(base)| equals t sqrt(v_other + r^2 v_base): unequal variances
    make the two variances' places matter."""
    comparison = compare_means(base, other)
    t = stats.t.ppf(0.975, comparison.degrees_of_freedom)
    v_base, v_other = np.var(base, ddof=1) / len(base), np.var(other, ddof=1) / len(other)
    for r in (comparison.ratio_low, comparison.ratio_high):
        gap = abs(np.mean(other) - r * np.mean(base))
        assert gap == pytest.approx(t * math.sqrt(v_other + r**2 * v_base), rel=1e-9)
    if len(other) == 4:  # by hand: t(0.975, 3.06) = 3.15, a = 102.61, b = -258.4, c = 155.32 -> 0.991, 1.527
        assert comparison.ratio == pytest.approx(12.75 / (30.4 / 3))
        assert comparison.ratio_low == pytest.approx(0.991, abs=2e-3)
        assert comparison.ratio_high == pytest.approx(1.527, abs=2e-3)
        assert comparison.p_value > 0.05  # 1 is inside the interval


@pytest.mark.parametrize("seed", range(20))
def test_one_lies_outside_the_ratio_interval_exactly_when_welch_rejects(seed):
    import random

    rng = random.Random(seed)
    base = [rng.gauss(0.062, 0.003) for _ in range(3)]
    other = [rng.gauss(0.062 * rng.choice([1.0, 1.1, 1.2]), 0.003) for _ in range(rng.choice([3, 5]))]
    comparison = compare_means(base, other)
    assert comparison.ratio_low <= comparison.ratio <= comparison.ratio_high
    outside = not comparison.ratio_low <= 1 <= comparison.ratio_high
    assert outside == (comparison.p_value < 0.05)
    assert outside == (comparison.difference_low > 0 or comparison.difference_high < 0)


def test_ratio_is_unbounded_when_the_base_could_be_zero():
    comparison = compare_means([-1.0, 0.5, 1.0], [1.0, 1.2, 1.1])
    assert not comparison.ratio_bounded and comparison.ratio_low == -math.inf
    assert compare_means([-1.0, 0.0, 1.0], [-2.0, -3.0]).ratio == -math.inf  # base mean exactly 0
    assert math.isnan(compare_means([-1.0, 0.0, 1.0], [-1.0, 1.0]).ratio)


def test_seeds_that_all_agree_leave_the_spread_unmeasured_not_certain(tmp_path):
    """Bit-identical seeds say nothing about the spread between seeds (is the seed used?): no interval, no p."""
    comparison = compare_means([0.05, 0.05], [0.06, 0.06])
    assert comparison.ratio == pytest.approx(1.2) and not comparison.spread_measured
    assert math.isnan(comparison.ratio_low) and math.isnan(comparison.p_value)
    assert compare_means([0.05, 0.05], [0.06, 0.061]).spread_measured  # one group's spread is enough
    for group, value in (("base", 0.05), ("new", 0.06)):
        for seed in (1, 2):
            write_seed_run(tmp_path / group / f"seed-{seed}", value)
    done = run_compare("--seed_groups", str(tmp_path / "base"), str(tmp_path / "new"))
    row = next(line for line in done.stdout.splitlines() if "new" in line)
    assert "| n/a (every seed gave the same value" in row and row.endswith("| n/a |") and "<0.001" not in row


def test_too_few_seeds_and_a_bad_level_are_clear_errors():
    with pytest.raises(ValueError, match="at least 2 seeds per group"):
        compare_means([0.06], [0.07, 0.071])
    with pytest.raises(ValueError, match="confidence must be between 0 and 1"):
        compare_means([0.06, 0.061], [0.07, 0.071], confidence=95)


def write_seed_run(folder: Path, ndcg: float, protocol: str = "full ranking (test protocol)") -> None:
    folder.mkdir(parents=True)
    metrics = {"protocol": protocol, "test": {"metrics": {"ndcg@10": ndcg, "recall@10": 2 * ndcg}}}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def run_compare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compare.py"), *args], capture_output=True, text=True, cwd=ROOT
    )


def test_compare_command_on_seed_groups(tmp_path):
    for seed, value in zip((1, 2, 3), (0.060, 0.062, 0.064)):
        write_seed_run(tmp_path / "base" / f"seed-{seed}", value)
    for seed, value in zip((1, 2), (0.066, 0.068)):
        write_seed_run(tmp_path / "new" / f"seed-{seed}", value)
    write_seed_run(tmp_path / "more" / "seed-3", 0.067)
    done = run_compare("--seed_groups", str(tmp_path / "base"), f"{tmp_path / 'new'},{tmp_path / 'more'}")
    assert done.returncode == 0, done.stderr
    expected = compare_means([0.060, 0.062, 0.064], [0.066, 0.068, 0.067])
    row = next(line for line in done.stdout.splitlines() if "new" in line)
    assert f"| 3 | 0.0670 ± 0.0010 | {expected.ratio:.3f}x |" in row
    assert f"{expected.ratio_low:.3f}x - {expected.ratio_high:.3f}x" in row and f"{expected.p_value:.3f}" in row
    lonely = run_compare("--seed_groups", str(tmp_path / "base"), str(tmp_path / "more"))
    assert lonely.returncode == 2 and "holds 1 finished seed runs" in lonely.stderr
    write_seed_run(tmp_path / "other" / "seed-1", 0.05, protocol="another protocol")
    write_seed_run(tmp_path / "other" / "seed-2", 0.05, protocol="another protocol")
    mixed = run_compare("--seed_groups", str(tmp_path / "base"), str(tmp_path / "other"))
    assert mixed.returncode == 2 and "different protocols" in mixed.stderr


def test_a_folder_named_twice_in_a_group_is_refused(tmp_path):
    """Counting one folder's seeds twice would double the samples and narrow the interval without new evidence."""
    for seed, value in zip((1, 2), (0.060, 0.062)):
        write_seed_run(tmp_path / "base" / f"seed-{seed}", value)
    write_seed_run(tmp_path / "new" / "seed-1", 0.066)
    write_seed_run(tmp_path / "new" / "seed-3", 0.068)
    (tmp_path / "new" / "seed-2").mkdir()  # an unfinished run (no metrics.json) is no sample
    base, new = str(tmp_path / "base"), str(tmp_path / "new")
    twice = run_compare("--seed_groups", base, f"{new},{tmp_path}/new/")
    assert twice.returncode == 2 and "twice in group" in twice.stderr and "give each folder once" in twice.stderr
    shared = run_compare("--seed_groups", base, f"{new},{base}")  # the base's seeds again in the other group
    assert shared.returncode == 2 and f"in groups {base} and {new},{base}" in shared.stderr
    once = run_compare("--seed_groups", base, new)
    assert once.returncode == 0, once.stderr
    assert "| 2 | 0.0670 ± 0.0014 |" in next(line for line in once.stdout.splitlines() if "new" in line)


@pytest.mark.parametrize(
    ("effect", "power", "expected"), [(1.0, 0.8, 17), (0.8, 0.8, 26), (0.5, 0.8, 64), (0.2, 0.8, 394), (1.0, 0.9, 23)]
)
def test_seeds_needed_matches_the_two_sample_t_tables(effect, power, expected):
    """Equal spreads: Welch's degrees of freedom are Student's, so the published sample sizes per group hold
    (two-sided, 5 %; e.g. 64 per group for half a standard deviation at 80 % power)."""
    assert seeds_needed(1.0, 1.0, effect, power=power) == expected
    assert seeds_needed(2.0, 2.0, -2 * effect, power=power) == expected  # scale- and sign-free


def test_seeds_needed_reaches_its_power_with_unequal_spreads():
    """Simulated Welch tests at the planned n reject about ``power`` of the time; a few seeds fewer clearly less."""
    n = seeds_needed(0.003, 0.006, 0.004)
    generator = np.random.default_rng(0)

    def rejections(seeds: int) -> float:
        base = generator.normal(0.06, 0.003, (20_000, seeds))
        other = generator.normal(0.064, 0.006, (20_000, seeds))
        return float((stats.ttest_ind(other, base, axis=1, equal_var=False).pvalue < 0.05).mean())

    assert rejections(n) == pytest.approx(0.8, abs=0.02)
    assert rejections(n - 4) < 0.75


def test_seeds_needed_is_not_fooled_by_a_large_shift_at_few_degrees_of_freedom():
    """scipy's noncentral t gives NaN here (noncentrality 8 at 1.2 degrees of freedom), which read as "power
    reached" at 2 seeds; simulated Welch tests reject only about 61 % of the time at 2 seeds."""
    assert seeds_needed(0.0005, 0.00016, 0.003) == 3
    generator = np.random.default_rng(0)
    base = generator.normal(0.06, 0.0005, (20_000, 2))
    other = generator.normal(0.063, 0.00016, (20_000, 2))
    assert (stats.ttest_ind(other, base, axis=1, equal_var=False).pvalue < 0.05).mean() < 0.7


def test_seeds_needed_refuses_what_cannot_be_planned():
    with pytest.raises(ValueError, match="finite and not 0"):
        seeds_needed(1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="finite and not 0"):
        seeds_needed(1.0, 1.0, math.nan)
    with pytest.raises(ValueError, match="max_seeds must be >= 2"):
        seeds_needed(1.0, 1.0, 1.0, max_seeds=1)
    with pytest.raises(ValueError, match="not both 0"):
        seeds_needed(0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        seeds_needed(1.0, 1.0, 1.0, power=80)
    with pytest.raises(ValueError, match="more than 100 seeds"):
        seeds_needed(1.0, 1.0, 0.01, max_seeds=100)
    # the cap is a cap, not a power of two: 394 is found with exactly 394 allowed, refused with 393
    assert seeds_needed(1.0, 1.0, 0.2, max_seeds=394) == 394
    with pytest.raises(ValueError, match="more than 393 seeds"):
        seeds_needed(1.0, 1.0, 0.2, max_seeds=393)


def test_compare_command_plans_the_seeds_a_target_ratio_needs(tmp_path):
    for seed, value in zip((1, 2, 3), (0.060, 0.062, 0.064)):
        write_seed_run(tmp_path / "base" / f"seed-{seed}", value)
    for seed, value in zip((1, 2, 3), (0.063, 0.064, 0.068)):
        write_seed_run(tmp_path / "new" / f"seed-{seed}", value)
    done = run_compare("--seed_groups", str(tmp_path / "base"), str(tmp_path / "new"), "--target_ratio", "1.05")
    assert done.returncode == 0, done.stderr
    expected = seeds_needed(0.002, float(np.std([0.063, 0.064, 0.068], ddof=1)), 0.05 * 0.062)
    assert "tell 1.05x from 1x (95% test, 80% power)" in done.stdout
    assert next(line for line in done.stdout.splitlines() if "new" in line).endswith(f" {expected} |")
    groups = ("--seed_groups", str(tmp_path / "base"), str(tmp_path / "new"), "--target_ratio", "1.05")
    stricter = run_compare(*groups, "--power", "0.9", "--confidence", "0.99")
    expected = seeds_needed(0.002, float(np.std([0.063, 0.064, 0.068], ddof=1)), 0.05 * 0.062, 0.99, 0.9)
    assert next(line for line in stricter.stdout.splitlines() if "new" in line).endswith(f" {expected} |")
    assert "(99% test, 90% power)" in stricter.stdout
    hopeless = run_compare(*groups[:-1], "1.0001")  # far beyond 10,000 seeds: said in the cell, no traceback
    assert hopeless.returncode == 0 and "(more than 10000 seeds per group would be needed) |" in hopeless.stdout
    for bad in ("nan", "inf", "1", "-1.05"):
        refused = run_compare(*groups[:-1], bad)
        assert refused.returncode == 2 and "--target_ratio must be a positive ratio other than 1" in refused.stderr
    alone = run_compare(str(tmp_path / "base" / "seed-1"), "--target_ratio", "1.05")
    assert alone.returncode == 2 and "give it with --seed_groups" in alone.stderr
