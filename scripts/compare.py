"""Finished runs side by side: `python scripts/compare.py RUN_DIR [RUN_DIR ...]`.

Prints the evaluation protocol, one row of test metrics per run (with its best epoch and seconds per epoch),
and each run's NDCG@10 relative to the first run. All runs must share the protocol.

Groups of seeds (each a `scripts/seeds.py` output folder holding seed-*/metrics.json):
`python scripts/compare.py --seed_groups runs/sasrec-seeds runs/erl-seeds [--metric ndcg@10]` prints each
group's mean +/- std and, against the first group, the ratio of the means with its confidence interval
(Fieller's, Welch's degrees of freedom) and Welch's p-value, seeds as the samples (hybrid/seed_stats.py).
`--target_ratio 1.05` adds how many seeds per group Welch's test would need to tell that ratio from 1x with
80 % power (`--power`), given the spread the groups' seeds show.
"""

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid.evaluate import format_table  # noqa: E402
from hybrid.metrics import metric_keys  # noqa: E402
from hybrid.seed_runs import finished_seed_runs  # noqa: E402
from hybrid.seed_stats import compare_means, seeds_needed  # noqa: E402


def label(run: Path, taken: dict) -> str:
    """The run's run_name (from its config.json), else its folder name; made unique with the path."""
    config = run / "config.json"
    name = json.loads(config.read_text()).get("train", {}).get("run_name") if config.exists() else None
    name = name or run.name
    return name if name not in taken else str(run)


def shared_protocol(results: list[dict]) -> str | None:
    """The one evaluation protocol of all ``results`` (metrics.json contents), or None after saying they differ."""
    protocols = {r["protocol"] for r in results}
    if len(protocols) > 1:
        print("error: the runs were evaluated under different protocols:\n" + "\n".join(protocols), file=sys.stderr)
        return None
    return protocols.pop()


def interval(comparison) -> str:
    if not comparison.ratio_bounded:
        return "unbounded (the base mean is not distinguishable from 0)"
    return f"{comparison.ratio_low:.3f}x - {comparison.ratio_high:.3f}x"


def markdown_row(cells: list[str]) -> str:
    """``| a | b |``; an empty cell prints as ``| |``."""
    return "|" + "".join(f" {cell} |" if cell else " |" for cell in cells)


def planned_seeds(base: list[float], group: list[float], target_ratio: float, confidence: float, power: float) -> str:
    """Seeds per group to tell ``target_ratio`` x the base mean from it, at these groups' spread; or why not."""
    difference = (target_ratio - 1) * statistics.fmean(base)
    try:
        return str(seeds_needed(statistics.stdev(base), statistics.stdev(group), difference, confidence, power))
    except ValueError as error:
        return f"({error})"


def compare_seed_groups(
    folders: list[str], metric: str, confidence: float, target_ratio: float | None = None, power: float = 0.8
) -> int:
    """Each folder's seeds as one group; every group against the first. With ``target_ratio``, also the seeds
    per group needed to show that ratio of means at ``power``."""
    groups, seen = {}, {}  # seen: each run (resolved) -> (index, name) of the group that took it
    for index, folder in enumerate(folders):  # "a,b": the seeds of both folders as one group
        runs = [run for part in str(folder).split(",") for run in finished_seed_runs(part)]
        for run, key in ((run, run.resolve()) for run in runs):
            # A run counted twice would narrow the interval falsely; one shared by two groups breaks Welch's
            # independent samples.
            if key in seen:
                earlier, name = seen[key]
                where = f"twice in group {folder}" if earlier == index else f"in groups {name} and {folder}"
                print(f"error: the seed run {run} is named more than once ({where}): give each folder once, in "
                      "one group", file=sys.stderr)  # fmt: skip
                return 2
            seen[key] = index, str(folder)
        if len(runs) < 2:
            print(f"error: {folder} holds {len(runs)} finished seed runs (seed-*/metrics.json); a group needs at "
                  "least 2: train more seeds with scripts/seeds.py", file=sys.stderr)  # fmt: skip
            return 2
        groups[str(folder)] = [json.loads((run / "metrics.json").read_text()) for run in runs]
    protocol = shared_protocol([r for results in groups.values() for r in results])
    if protocol is None:
        return 2
    values = {name: [r["test"]["metrics"][metric] for r in results] for name, results in groups.items()}
    base_name, base = next(iter(values.items()))
    level = f"{confidence:.0%}"
    print(f"protocol: {protocol}\nseeds are the samples; test {metric}\n")
    plan = (
        [f"seeds per group to tell {target_ratio}x from 1x ({level} test, {power:.0%} power)"] if target_ratio else []
    )
    print(markdown_row(["group", "seeds", f"test {metric}, mean ± std", f"vs {base_name}",
                        f"{level} interval of the ratio", "Welch p", *plan]))  # fmt: skip
    print("|" + "|".join(["---", "---:", "---:", "---:", "---", "---:"] + ["---:"] * len(plan)) + "|")
    for name, group in values.items():
        spread = f"{statistics.fmean(group):.4f} ± {statistics.stdev(group):.4f}"
        if name == base_name:
            print(markdown_row([name, str(len(group)), spread, "1", "", "", *[""] * len(plan)]))
            continue
        comparison = compare_means(base, group, confidence)
        needed = [planned_seeds(base, group, target_ratio, confidence, power)] if plan else []
        print(markdown_row([name, str(len(group)), spread, f"{comparison.ratio:.3f}x", interval(comparison),
                            f"{comparison.p_value:.3f}", *needed]))  # fmt: skip
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help="run directories holding metrics.json")
    parser.add_argument(
        "--seed_groups",
        nargs="+",
        default=None,
        help="seeds.py output folders to compare as groups of seeds ('A,B' joins two folders into one group)",
    )
    parser.add_argument("--metric", default="ndcg@10", choices=metric_keys(), help="test metric of --seed_groups")
    parser.add_argument(
        "--confidence", type=float, default=0.95, help="level of the ratio interval (and of --target_ratio's test)"
    )
    parser.add_argument(
        "--target_ratio", type=float, default=None, help="with --seed_groups: seeds per group needed to show this ratio"
    )
    parser.add_argument("--power", type=float, default=0.8, help="power for --target_ratio's seed count")
    args = parser.parse_args()
    if not 0 < args.confidence < 1:
        parser.error(f"--confidence must be between 0 and 1 (e.g. 0.95), got {args.confidence}")
    if not 0 < args.power < 1:
        parser.error(f"--power must be between 0 and 1 (e.g. 0.8), got {args.power}")
    if args.target_ratio is not None and not (math.isfinite(args.target_ratio) and 0 < args.target_ratio != 1):
        parser.error(f"--target_ratio must be a positive ratio other than 1 (e.g. 1.05), got {args.target_ratio}")
    if args.target_ratio is not None and not args.seed_groups:
        parser.error("--target_ratio plans seeds for --seed_groups; give it with --seed_groups")
    if args.seed_groups:
        if args.runs:
            parser.error("give run directories or --seed_groups, not both")
        return compare_seed_groups(args.seed_groups, args.metric, args.confidence, args.target_ratio, args.power)
    if not args.runs:
        parser.error("give run directories to compare, or --seed_groups FOLDER [FOLDER ...]")
    results = {}
    for run in map(Path, args.runs):
        if not (run / "metrics.json").exists():
            print(f"error: {run / 'metrics.json'} is missing: did the run finish?", file=sys.stderr)
            return 2
        results[label(run, results)] = json.loads((run / "metrics.json").read_text())
    protocol = shared_protocol(list(results.values()))
    if protocol is None:
        return 2
    print(f"protocol: {protocol}\n")
    print(format_table({f"{name} test": r["test"]["metrics"] for name, r in results.items()}))
    base_run, base = next(iter(results.items()))
    print()
    for run, result in results.items():
        ndcg = result["test"]["metrics"]["ndcg@10"]
        change = ndcg / base["test"]["metrics"]["ndcg@10"] - 1 if base["test"]["metrics"]["ndcg@10"] else 0.0
        print(
            f"{run}: test ndcg@10 {ndcg:.4f} ({change:+.1%} vs {base_run}), best epoch "
            f"{result['best_epoch']} of {result['epochs_run']}, {result['seconds_per_epoch']:.1f} s/epoch"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
