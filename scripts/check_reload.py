"""Check that a run's saved model folder reloads to the same model: `python scripts/check_reload.py RUN_DIR`.

Loads RUN_DIR/model with `HybridRecommender.from_pretrained` (for a LoRA run, the peft adapter in
model/adapter/ on the base language model), ranks the test set again and compares every rank with the
training run's RUN_DIR/ranks.safetensors. Exit status 0 when all ranks are equal, 1 when some differ, 2 when
the run or its data cannot be loaded, or the data read has another number of test rows than the run ranked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from hybrid_rearec.hybrid.errors import ConfigError, DataError
from hybrid_rearec.hybrid.evaluate import evaluate
from hybrid_rearec.hybrid.pretrained import ModelFileError
from hybrid_rearec.hybrid.run_folder import METRICS, MODEL, RANKS, load_model, run_configs, run_dataset
from hybrid_rearec.hybrid.seed_runs import read_run_json
from safetensors.torch import load_file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--dataset", default=None, help="the data's path, when the run's own no longer resolves")
    parser.add_argument("--item_file", default=None, help="the item file's path, when the run's own no longer resolves")
    args = parser.parse_args()
    run = Path(args.run_dir)
    try:
        data_config, train_config = run_configs(run)
        model = load_model(run)
    except (ModelFileError, ConfigError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name in (RANKS, METRICS):
        if not (run / name).exists():
            print(f"error: {run / name} is missing: is {str(run)!r} a finished training run?", file=sys.stderr)
            return 2
    try:
        dataset = run_dataset(run, data_config, model.catalogue, args.dataset, args.item_file)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    test = evaluate(model, dataset.split("test"), "test", exclude_history=train_config.exclude_history)
    try:
        saved = load_file(run / RANKS)["test"]
    except Exception as error:  # noqa: BLE001 - safetensors' own errors: a damaged file is named, not traced
        print(f"error: {run / RANKS} cannot be read ({error}): train the run again.", file=sys.stderr)
        return 2
    try:
        recorded = read_run_json(run / METRICS, ("test",))["test"]["metrics"]["ndcg@10"]
    except (DataError, KeyError, TypeError) as error:
        print(f"error: {run / METRICS} is damaged ({error}): restore it, or train the run again.", file=sys.stderr)
        return 2
    if test.ranks.shape != saved.shape:
        print(f"error: {other_rows(run, len(test.ranks), len(saved))}", file=sys.stderr)
        return 2
    equal = torch.equal(test.ranks, saved)
    print(f"reloaded {run / MODEL}: test NDCG@10 {test.metrics['ndcg@10']:.6f} (training run: {recorded:.6f})")
    print(f"test ranks equal to the training run's: {equal} ({int((test.ranks != saved).sum())} differ)")
    return 0 if equal else 1


def other_rows(run: Path, now: int, ranked: int) -> str:
    """Why the ranks cannot be compared row by row, and what to pass."""
    return (
        f"the test split read now has {now} rows, the training run ranked {ranked} ({run / RANKS}): the data "
        "changed since training, so its ranks cannot be compared. Check the run against the data it was trained "
        "on (--dataset PATH, --item_file PATH)."
    )


if __name__ == "__main__":
    sys.exit(main())
