"""Finished runs side by side: `python scripts/compare.py RUN_DIR [RUN_DIR ...]`.

Prints the evaluation protocol, one row of test metrics per run (with its best epoch and seconds per epoch),
and each run's NDCG@10 relative to the first run. All runs must share the protocol.

Groups of seeds (each a `scripts/seeds.py` output folder holding seed-*/metrics.json):
`python scripts/compare.py --seed_groups runs/sasrec-seeds runs/erl-seeds [--metric ndcg@10]` prints each
group's mean +/- std and, against the first group, the ratio of the means with its confidence interval
(Fieller's, Welch's degrees of freedom) and Welch's p-value, seeds as the samples (hybrid/seed_stats.py).
`--target_ratio 1.05` adds how many seeds per group Welch's test would need to tell that ratio from 1x with
80 % power (`--power`), given the spread the groups' seeds show. The work is done by hybrid/studies/compare.py.
"""

import argparse
import math
import sys

from hybrid_rearec.hybrid.errors import DataError
from hybrid_rearec.hybrid.metrics import metric_keys
from hybrid_rearec.hybrid.studies.compare import compare_runs, compare_seed_groups


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help="run directories holding metrics.json")
    parser.add_argument(
        "--seed_groups",
        nargs="+",
        default=None,
        help="seeds.py output folders to compare as groups of seeds ('A,B' joins two folders into one group)",
    )
    parser.add_argument(
        "--metric", default="ndcg@10", choices=metric_keys(), help="test metric of --seed_groups (default: %(default)s)"
    )
    parser.add_argument(
        "--confidence",
        type=float,
        default=0.95,
        help="level of the ratio interval (and of --target_ratio's test; default: %(default)s)",
    )
    parser.add_argument(
        "--target_ratio", type=float, default=None, help="with --seed_groups: seeds per group needed to show this ratio"
    )
    parser.add_argument(
        "--power", type=float, default=0.8, help="power for --target_ratio's seed count (default: %(default)s)"
    )
    args = parser.parse_args()
    if not 0 < args.confidence < 1:
        parser.error(f"--confidence must be between 0 and 1 (e.g. 0.95), got {args.confidence}")
    if not 0 < args.power < 1:
        parser.error(f"--power must be between 0 and 1 (e.g. 0.8), got {args.power}")
    if args.target_ratio is not None and not (math.isfinite(args.target_ratio) and 0 < args.target_ratio != 1):
        parser.error(f"--target_ratio must be a positive ratio other than 1 (e.g. 1.05), got {args.target_ratio}")
    if args.target_ratio is not None and not args.seed_groups:
        parser.error("--target_ratio plans seeds for --seed_groups; give it with --seed_groups")
    if args.seed_groups and args.runs:
        parser.error("give run directories or --seed_groups, not both")
    if not args.seed_groups and not args.runs:
        parser.error("give run directories to compare, or --seed_groups FOLDER [FOLDER ...]")
    return args


def main() -> int:
    args = parse_args()
    try:
        if args.seed_groups:
            text = compare_seed_groups(args.seed_groups, args.metric, args.confidence, args.target_ratio, args.power)
        else:
            text = compare_runs(args.runs)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
