"""Finished runs side by side, and groups of seeds compared with their uncertainty (scripts/compare.py is its
command line).

A group is one or more seed folders (scripts/seeds.py outputs holding seed-*/metrics.json); the seeds are the
samples (hybrid/seed_stats.py says why), so every group is compared with the first by the ratio of the means
with Fieller's interval and Welch's p-value, and optionally by how many seeds would show a target ratio.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from ..errors import DataError
from ..evaluate import format_table
from ..seed_runs import finished_seed_runs, mixed_seed_runs, read_run_json
from ..seed_stats import MeanComparison, compare_means, seeds_needed
from ..tables import markdown_table

METRIC_KEYS = ("test", "protocol", "best_epoch", "epochs_run", "seconds_per_epoch")  # what compare_runs reads
# What decides a run's evaluation rows beyond the protocol line (which names the split, the catalogue's and the
# rows' sizes): the split's settings, and the data's own counts as metrics.json records them.
SPLIT_SETTINGS = ("split", "k_core", "min_rating", "valid_time", "test_time", "cold_fraction", "cold_selection",
                  "cold_seed")  # fmt: skip
SPLIT_STATS = ("users", "items", "interactions", "valid_rows", "test_rows")


def run_label(run: Path, taken: dict) -> str:
    """The run's run_name (from its config.json), else its folder name; made unique with the path."""
    config = run / "config.json"
    name = read_run_json(config).get("train", {}).get("run_name") if config.exists() else None
    name = name or run.name
    return name if name not in taken else str(run)


def shared_protocol(results: Sequence[dict]) -> str:
    """The one evaluation protocol of all ``results`` (metrics.json contents): figures under different
    protocols cannot be compared."""
    protocols = {r["protocol"] for r in results}
    if len(protocols) > 1:
        raise DataError("the runs were evaluated under different protocols:\n" + "\n".join(protocols))
    return protocols.pop()


def split_of(run: Path) -> dict[str, object]:
    """A run's split settings (config.json) and data counts (metrics.json), those it records."""
    config = run / "config.json"
    data = read_run_json(config).get("data", {}) if config.exists() else {}
    stats = read_run_json(run / "metrics.json").get("data") or {}
    settings = {f"data.{key}": data[key] for key in SPLIT_SETTINGS if key in data}
    return settings | {f"{key} (metrics.json data)": stats[key] for key in SPLIT_STATS if key in stats}


def shared_split(runs: Sequence[Path]) -> None:
    """Refuse runs whose test rows differ where the protocol line cannot show it (a cold_items split with other
    cold items, another dataset of the same size). A key some runs do not record is compared among the others."""
    found: dict[str, dict[str, list[Path]]] = {}
    for run in runs:
        for key, value in split_of(run).items():
            found.setdefault(key, {}).setdefault(json.dumps(value), []).append(run)
    differ = [
        f"{key}: " + "; ".join(f"{value} in {holders[0]}" for value, holders in values.items())
        for key, values in found.items()
        if len(values) > 1
    ]
    if differ:
        raise DataError("the runs were not evaluated on the same rows: " + " / ".join(differ[:3]))


def unchecked_settings(runs: Sequence[Path]) -> str:
    """A note on runs without config.json, whose settings could not be compared ('' when every run has one)."""
    lacking = [str(run) for run in runs if not (run / "config.json").exists()]
    if not lacking:
        return ""
    return f"note: {len(lacking)} run(s) have no config.json (e.g. {lacking[0]}): their settings were not compared\n"


def percent(fraction: float) -> str:
    """0.95 -> '95%', 0.975 -> '97.5%' (never rounded into another level)."""
    return f"{fraction * 100:g}%"


def p_text(p_value: float) -> str:
    if math.isnan(p_value):
        return "n/a"
    return "<0.001" if p_value < 0.0005 else f"{p_value:.3f}"


def ratio_interval(comparison: MeanComparison) -> str:
    """The ratio's interval as the table prints it."""
    if not comparison.spread_measured:
        return "n/a (every seed gave the same value: no spread to judge by; does the seed change the run?)"
    if not comparison.ratio_bounded:
        return "unbounded (the base mean is not distinguishable from 0)"
    return f"{comparison.ratio_low:.3f}x - {comparison.ratio_high:.3f}x"


def planned_seeds(base: list[float], group: list[float], target_ratio: float, confidence: float, power: float) -> str:
    """Seeds per group to tell ``target_ratio`` x the base mean from it, at these groups' spread; or why not."""
    difference = (target_ratio - 1) * statistics.fmean(base)
    try:
        return str(seeds_needed(statistics.stdev(base), statistics.stdev(group), difference, confidence, power))
    except ValueError as error:
        return f"({error})"


def read_seed_groups(folders: Sequence[str]) -> tuple[dict[str, list[dict]], list[Path]]:
    """Each folder's finished seed runs' metrics.json as one group ("a,b": the seeds of both folders), and the
    runs. A run counted twice would narrow the interval falsely, and one shared by two groups breaks Welch's
    independent samples, so both are refused; so is a group of fewer than 2 seeds."""
    groups, seen = {}, {}  # seen: each run (resolved) -> (index, name) of the group that took it
    for index, folder in enumerate(folders):
        missing = [part for part in str(folder).split(",") if not Path(part).is_dir()]
        if missing:
            raise DataError(f"seed folder {missing[0]!r} does not exist: give a folder written by scripts/seeds.py")
        runs = [run for part in str(folder).split(",") for run in finished_seed_runs(part)]
        for run in runs:
            key = run.resolve()
            if key in seen:
                earlier, name = seen[key]
                where = f"twice in group {folder}" if earlier == index else f"in groups {name} and {folder}"
                raise DataError(
                    f"the seed run {run} is named more than once ({where}): give each folder once, in one group"
                )
            seen[key] = index, str(folder)
        mixed = mixed_seed_runs(runs)
        if mixed:
            raise DataError(
                f"{folder} is not one setting trained with several seeds ({'; '.join(mixed[:3])}): a group's runs "
                "must differ in their seed only. Retrain the odd runs, or give them as their own group."
            )
        if len(runs) < 2:
            raise DataError(
                f"{folder} holds {len(runs)} finished seed runs (seed-*/metrics.json); a group needs at least 2: "
                "train more seeds with scripts/seeds.py"
            )
        groups[str(folder)] = [read_run_json(run / "metrics.json", ("test", "protocol")) for run in runs]
    return groups, [Path(run) for run in seen]


def seed_group_table(
    values: dict[str, list[float]],
    metric: str,
    confidence: float,
    target_ratio: float | None = None,
    power: float = 0.8,
) -> str:
    """Each group's mean ± std and, against the first, the ratio with its interval and Welch's p (and with
    ``target_ratio``, the seeds per group needed to show that ratio at ``power``)."""
    base_name, base = next(iter(values.items()))
    level = percent(confidence)
    plan = (
        [f"seeds per group to tell {target_ratio}x from 1x ({level} test, {percent(power)} power)"]
        if target_ratio
        else []
    )
    rows = []
    for name, group in values.items():
        spread = f"{statistics.fmean(group):.4f} ± {statistics.stdev(group):.4f}"
        if name == base_name:
            rows.append([name, str(len(group)), spread, "1", "", "", *[""] * len(plan)])
            continue
        comparison = compare_means(base, group, confidence)
        needed = [planned_seeds(base, group, target_ratio, confidence, power)] if plan else []
        rows.append([name, str(len(group)), spread, f"{comparison.ratio:.3f}x", ratio_interval(comparison),
                     p_text(comparison.p_value), *needed])  # fmt: skip
    columns = ["group", "seeds", f"test {metric}, mean ± std", f"vs {base_name}", f"{level} interval of the ratio",
               "Welch p", *plan]  # fmt: skip
    return markdown_table(columns, rows, "lrrrlr" + "r" * len(plan))


def compare_seed_groups(
    folders: Sequence[str], metric: str, confidence: float, target_ratio: float | None = None, power: float = 0.8
) -> str:
    """The comparison of seed groups as printed: protocol, what the samples are, the table."""
    groups, runs = read_seed_groups(folders)
    protocol = shared_protocol([r for results in groups.values() for r in results])
    shared_split(runs)
    lacking = [(name, sorted(r["test"]["metrics"])) for name, results in groups.items() for r in results
               if metric not in r["test"]["metrics"]]  # fmt: skip
    if lacking:
        name, has = lacking[0]
        raise DataError(f"a run of {name} has no test {metric} (it has {', '.join(has)}): choose one of those")
    values = {name: [r["test"]["metrics"][metric] for r in results] for name, results in groups.items()}
    table = seed_group_table(values, metric, confidence, target_ratio, power)
    return f"protocol: {protocol}\n{unchecked_settings(runs)}seeds are the samples; test {metric}\n\n{table}"


def compare_runs(run_dirs: Sequence[str | Path]) -> str:
    """Finished runs side by side as printed: protocol, a metrics table, and each run's NDCG@10 against the
    first with its best epoch and seconds per epoch."""
    runs = [Path(run) for run in run_dirs]
    repeated = sorted({str(run) for run in runs if [r.resolve() for r in runs].count(run.resolve()) > 1})
    if repeated:
        raise DataError(f"{repeated[0]} is given more than once: name each run to compare once.")
    results = {}
    for run in runs:
        if not run.is_dir():
            raise DataError(f"{run} is no folder: give the run folders (runs/NAME) to compare.")
        if not (run / "metrics.json").exists():
            raise DataError(
                f"{run / 'metrics.json'} is missing: did the run finish? (A folder of seed-N runs goes with "
                "--seed_groups; a saved model/ folder holds no results: give its run folder.)"
            )
        results[run_label(run, results)] = read_run_json(run / "metrics.json", METRIC_KEYS)
    protocol = shared_protocol(list(results.values()))
    shared_split(runs)
    table = format_table({f"{name} test": r["test"]["metrics"] for name, r in results.items()})
    base_run, base = next(iter(results.items()))
    base_ndcg = base["test"]["metrics"]["ndcg@10"]
    lines = []
    for run, result in results.items():
        ndcg = result["test"]["metrics"]["ndcg@10"]
        change = f"{ndcg / base_ndcg - 1:+.1%}" if base_ndcg else "n/a: its ndcg@10 is 0"
        lines.append(
            f"{run}: test ndcg@10 {ndcg:.4f} ({change} vs {base_run}), best epoch "
            f"{result['best_epoch']} of {result['epochs_run']}, {result['seconds_per_epoch']:.1f} s/epoch"
        )
    return f"protocol: {protocol}\n\n{table}\n\n" + "\n".join(lines)
