"""Train one preset with several seeds and summarise test metrics as mean +/- std.

    python scripts/seeds.py --config configs/sasrec_ml100k.json --seeds 2020 2021 2022 --output runs/sasrec-seeds
    python scripts/seeds.py --summarise runs/sasrec-seeds        # only rebuild the summary of finished runs
    python scripts/seeds.py ... --keep benchmarks/quality/x_seeds   # also keep each finished run's files there

Each seed is a separate `scripts/train.py` run in OUTPUT/seed-N (finished runs are kept and skipped), so the
command can be interrupted and started again. The summary (summary.md, summary.json) is written to OUTPUT.
Run folders live on one machine; with --keep KEEP each finished run's config.json and metrics.json are also
copied to KEEP/seed-N (commit it, or copy it elsewhere), a seed kept there is not trained again (delete its
folder to retrain it), and the summary is made of KEEP's runs and written to KEEP: seeds then add up across
machines.
Extra arguments after `--` go to every run (e.g. `-- --reasoning_steps 2`). The work is done by
hybrid/studies/seeds.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hybrid_rearec.hybrid.errors import ConfigError, DataError
from hybrid_rearec.hybrid.seed_runs import finished_seed_runs
from hybrid_rearec.hybrid.studies.seeds import run_seeds, summarise


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="preset passed to every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021, 2022], help="seeds (default: %(default)s)")
    parser.add_argument("--output", help="folder of the seed runs")
    parser.add_argument("--summarise", metavar="FOLDER", help="only summarise finished runs in FOLDER")
    parser.add_argument("--keep", metavar="KEEP", help="also keep each finished run's config and metrics in KEEP")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    if not args.summarise and not args.output:
        parser.error("--output is required to run seeds")
    if not args.summarise and (
        len(set(args.seeds)) < len(args.seeds) or not 0 <= min(args.seeds) <= max(args.seeds) < 2**32
    ):
        parser.error(f"--seeds must be different whole numbers in [0, 2**32), got {args.seeds}")
    if args.summarise and not Path(args.summarise).is_dir():
        parser.error(f"--summarise {args.summarise!r} is no folder: give a seeds.py --output (or --keep) folder")
    if args.summarise and args.keep:
        parser.error("--keep goes with --output (to summarise kept runs: --summarise KEEP)")
    folder = Path(args.summarise or args.output)
    keep = Path(args.keep) if args.keep else None
    if not args.summarise and args.config and not Path(args.config).is_file():  # once, not by every seed's run
        parser.error(f"--config {args.config!r} is no file")
    failed = []
    try:
        if not args.summarise:
            failed = run_seeds(folder, args.seeds, args.config, extra, keep)
        folder = keep or folder  # the summary of every kept seed, this machine's or not
        left_out = [f"seed-{seed}" for seed in failed]  # a seed refused for other settings is not this one
        if failed and not [run for run in finished_seed_runs(folder) if run.name not in left_out]:
            print(f"error: every seed failed ({failed}); their errors are above.", file=sys.stderr)
            return 1
        print(summarise(folder, left_out))
    except (ConfigError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, or a SIGTERM passed on to the seed being trained
        print(
            "\nstopped: the same command goes on from here (finished seeds are kept, the interrupted one resumes "
            "from its latest checkpoint).",
            file=sys.stderr,
        )
        return 130
    if failed:
        print(f"seeds {failed} failed: the summary holds the others. Fix the cause and run the same command again.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
