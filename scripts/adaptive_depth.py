"""Adaptive reasoning depth on a trained ReaRec run: `python scripts/adaptive_depth.py RUN_DIR`.

Compares every fixed depth 0..K, KL-convergence halting, answer-direction (state) halting, the learned halting
head on the item distribution's features and on state features alone, the history-length depth plan, the
popularity depth plan, and the label-using ORACLE that picks each user's best depth (hybrid/studies/
halting_study.py). Each rule's setting is chosen on validation NDCG@10 (ties: fewer steps); the heads are fitted
on training (or, `--head_split valid`, validation) rows of the frozen model. Test metrics, mean steps, the share
of the best-fixed-to-oracle gap closed, and evaluation time (timed in interleaved rounds so machine noise hits
all alike) are written to RUN_DIR/analysis/adaptive_depth.{md,json}.
"""

from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import replace
from pathlib import Path

import torch
from hybrid_rearec.hybrid.evaluate import evaluate
from hybrid_rearec.hybrid.metrics import metric_means
from hybrid_rearec.hybrid.run_folder import run_configs
from hybrid_rearec.hybrid.studies.halting_report import write_study, write_timing_report
from hybrid_rearec.hybrid.studies.halting_study import (
    HaltingStudyConfig,
    history_settings,
    learned_head_data,
    load_study_inputs,
    run_study,
)

# Code that loads this command as a module (tests/test_halting.py) reads the study's pieces and evaluate here.
__all__ = ["evaluate", "history_settings", "learned_head_data", "main", "metric_means"]


def report_folder(report: Path) -> None:
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--report {report}: its folder cannot be made ({error.strerror}: {error.filename})") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--head_rows", type=int, default=20_000, help="rows the halting heads are fitted on (at most)")
    parser.add_argument(
        "--head_split",
        default="train",
        choices=("train", "valid"),
        help="rows the heads are fitted on: 'train' (the model has fitted their targets) or 'valid' (held out like "
        "test; the thresholds are then chosen on the same rows)",
    )
    parser.add_argument("--dataset", default=None, help="the data's path, when the run's own no longer resolves")
    parser.add_argument("--item_file", default=None, help="the item file's path, when the run's own no longer resolves")
    parser.add_argument("--timing_rounds", type=int, default=11, help="interleaved rounds of the evaluation timing")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--compact_ratio",
        type=float,
        default=1.0,
        help="halted users leave the batch once (halted rows) x (steps left) >= this x (rows still reasoning); "
        "0 drops them at every halt (see hybrid.halting.adaptive_user_vectors)",
    )
    parser.add_argument(
        "--report",
        default=None,
        help="also write the timing as a benchmark report PATH.{md,json} (e.g. benchmarks/halting)",
    )
    args = parser.parse_args()
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1 (leave it out for torch's choice), got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.report:  # a report that cannot be written is said now, not after minutes of study
            report_folder(Path(args.report))
        config = HaltingStudyConfig(args.head_rows, args.head_split, args.timing_rounds, args.compact_ratio)
        model, dataset = load_study_inputs(args.run_dir, args.dataset, args.item_file)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # Ranked as the run is evaluated (the rules and the heads' labels): its past items excluded when it was
    # trained with --exclude_history.
    config = replace(config, exclude_history=run_configs(args.run_dir)[1].exclude_history)
    # evaluate is looked up here, so a caller that replaces this module's evaluate sees every evaluation
    study = run_study(model, dataset, config, functools.partial(evaluate, exclude_history=config.exclude_history))
    print(write_study(study, args.run_dir))
    if args.report:
        write_timing_report(study, args.run_dir, Path(args.report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
