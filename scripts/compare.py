"""Finished runs side by side: `python scripts/compare.py RUN_DIR [RUN_DIR ...]`.

Prints the evaluation protocol, one row of test metrics per run (with its best epoch and seconds per epoch),
and each run's NDCG@10 relative to the first run. All runs must share the protocol.
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid.evaluate import format_table  # noqa: E402


def label(run: Path, taken: dict) -> str:
    """The run's run_name (from its config.json), else its folder name; made unique with the path."""
    config = run / "config.json"
    name = json.loads(config.read_text()).get("train", {}).get("run_name") if config.exists() else None
    name = name or run.name
    return name if name not in taken else str(run)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories holding metrics.json")
    args = parser.parse_args()
    results = {}
    for run in map(Path, args.runs):
        if not (run / "metrics.json").exists():
            print(f"error: {run / 'metrics.json'} is missing: did the run finish?", file=sys.stderr)
            return 2
        results[label(run, results)] = json.loads((run / "metrics.json").read_text())
    protocols = {r["protocol"] for r in results.values()}
    if len(protocols) > 1:
        print("error: the runs were evaluated under different protocols:\n" + "\n".join(protocols), file=sys.stderr)
        return 2
    print(f"protocol: {protocols.pop()}\n")
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
