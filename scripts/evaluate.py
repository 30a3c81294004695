"""Evaluate a trained run: `python scripts/evaluate.py RUN_DIR [--split test] [--steps K] [--analysis]`.

Prints the metrics under the evaluation protocol. `--analysis` adds the ReaRec paper's analyses (metrics of
each reasoning step, the label-using ORACLE ceiling, user and item subgroups) as Markdown tables and PNG
plots written to RUN_DIR/analysis/.
"""

import argparse
import sys
from pathlib import Path

from hybrid_rearec.hybrid.analysis import analyse, load_run, write_report
from hybrid_rearec.hybrid.evaluate import evaluate, format_groups, format_table
from hybrid_rearec.hybrid.run_folder import run_dataset
from transformers.hf_argparser import string_to_bool


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run folder written by scripts/train.py (runs/NAME)")
    parser.add_argument("--split", default="test", choices=("valid", "test"), help="split (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=None, help="reasoning steps at inference (<= trained K)")
    parser.add_argument(
        "--exclude_history",
        type=string_to_bool,
        nargs="?",
        const=True,
        default=None,
        help="mask the user's past items (true/false; default: as the run was trained)",
    )
    parser.add_argument("--dataset", default=None, help="the data's path, when the run's own no longer resolves")
    parser.add_argument("--item_file", default=None, help="the item file's path, when the run's own no longer resolves")
    parser.add_argument("--analysis", action="store_true", help="per-step, oracle and subgroup analysis")
    # Spelled as scripts/train.py spells it: --progress false, or --no_progress.
    parser.add_argument(
        "--progress",
        type=string_to_bool,
        nargs="?",
        const=True,
        default=True,
        help="progress bars (default: %(default)s)",
    )
    parser.add_argument("--no_progress", dest="progress", action="store_false", help="same as --progress false")
    args = parser.parse_args()
    try:
        model, data_config, model_config, train_config = load_run(args.run_dir)
        model.reasoning.check_steps(args.steps)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        dataset = run_dataset(args.run_dir, data_config, model.catalogue, args.dataset, args.item_file)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    exclude_history = train_config.exclude_history if args.exclude_history is None else args.exclude_history
    if args.steps is not None:  # the depth user_vectors (and the analysis's "model" row) run at
        model.config.inference_steps = args.steps
    result = evaluate(
        model,
        dataset.split(args.split),
        args.split,
        exclude_history=exclude_history,
        split_protocol=data_config.split,
        cold_items=dataset.untrained_items(),  # warm- and cold-target groups, as training reports them
        progress=args.progress,
        select_on=train_config.select_on,
    )
    print(f"protocol: {result.protocol}")
    trained = model_config.reasoning_steps
    ran = trained if model.config.inference_steps is None else model.config.inference_steps
    depth = f", {ran} of {trained} reasoning steps" if trained else ""
    print(format_table({f"{Path(args.run_dir).name} {args.split}{depth}": result.metrics}))
    groups = format_groups(result, args.split)
    if groups:
        print(groups)
    if args.analysis:
        text = write_report(
            analyse(model, dataset, args.split, args.progress, exclude_history),
            Path(args.run_dir) / "analysis",
            result.protocol,
            args.split,
        )
        print(text)
        print(f"written to {Path(args.run_dir) / 'analysis' / f'analysis-{args.split}.md'} (and .json, a plot)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
