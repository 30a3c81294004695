"""Check that a run's saved model folder reloads to the same model: `python scripts/check_reload.py RUN_DIR`.

Loads RUN_DIR/model with `HybridRecommender.from_pretrained` (for a LoRA run, the peft adapter in
model/adapter/ on the base language model), ranks the test set again and compares every rank with the
training run's RUN_DIR/ranks.safetensors. Exit status 0 when all ranks are equal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid.config import DataConfig  # noqa: E402
from hybrid.data import load_dataset  # noqa: E402
from hybrid.evaluate import evaluate  # noqa: E402
from hybrid.model import HybridRecommender  # noqa: E402
from hybrid.train import PRETRAINED  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    args = parser.parse_args()
    run = Path(args.run_dir)
    for name in ("config.json", "ranks.safetensors", "metrics.json", PRETRAINED):
        if not (run / name).exists():
            print(f"error: {run / name} is missing: is {str(run)!r} a finished training run?", file=sys.stderr)
            return 2
    model = HybridRecommender.from_pretrained(run / PRETRAINED).eval()
    config = json.loads((run / "config.json").read_text())
    exclude_history = config["train"].get("exclude_history", False)
    test = evaluate(
        model, load_dataset(DataConfig(**config["data"])).split("test"), "test", exclude_history=exclude_history
    )
    saved = load_file(run / "ranks.safetensors")["test"]
    recorded = json.loads((run / "metrics.json").read_text())["test"]["metrics"]["ndcg@10"]
    equal = torch.equal(test.ranks, saved)
    print(f"reloaded {run / PRETRAINED}: test NDCG@10 {test.metrics['ndcg@10']:.6f} (training run: {recorded:.6f})")
    print(f"test ranks equal to the training run's: {equal} ({int((test.ranks != saved).sum())} differ)")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
