"""Train one preset with several seeds and summarise test metrics as mean +/- std.

    python scripts/seeds.py --config configs/sasrec_ml100k.json --seeds 2020 2021 2022 --output runs/sasrec-seeds
    python scripts/seeds.py --summarise runs/sasrec-seeds        # only rebuild the summary of finished runs

Each seed is a separate `scripts/train.py` run in OUTPUT/seed-N (finished runs are kept and skipped), so the
command can be interrupted and started again. The summary (summary.md, summary.json) is written to OUTPUT.
Extra arguments after `--` go to every run (e.g. `-- --reasoning_steps 2`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid.metrics import metric_keys  # noqa: E402
from hybrid.seed_runs import finished_seed_runs  # noqa: E402


def summarise(folder: Path) -> str:
    runs = finished_seed_runs(folder)
    if not runs:
        raise SystemExit(f"no finished runs under {folder}")
    metrics = {run.name: json.loads((run / "metrics.json").read_text()) for run in runs}
    keys = metric_keys()
    lines = [
        "| run | best epoch | valid ndcg@10 | " + " | ".join(f"test {k}" for k in keys) + " |",
        "|---|---:|---:|" + "---:|" * len(keys),
    ]
    for name, result in metrics.items():
        lines.append(
            f"| {name} | {result['best_epoch']} | {result['valid']['metrics']['ndcg@10']:.4f} | "
            + " | ".join(f"{result['test']['metrics'][k]:.4f}" for k in keys)
            + " |"
        )

    def spread(values: list[float]) -> str:
        deviation = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} ± {deviation:.4f}"

    valid = [r["valid"]["metrics"]["ndcg@10"] for r in metrics.values()]
    lines.append(
        f"| **mean ± std ({len(runs)} seeds)** | | {spread(valid)} | "
        + " | ".join(spread([r["test"]["metrics"][k] for r in metrics.values()]) for k in keys)
        + " |"
    )
    protocol = next(iter(metrics.values()))["protocol"]
    text = f"# {folder.name}\n\nProtocol: {protocol}\n\n" + "\n".join(lines) + "\n"
    groups = group_metrics(metrics)
    if groups:
        group_keys = ("recall@10", "ndcg@10", "ndcg@20", "mrr@10")
        rows = ["| group | run | rows | " + " | ".join(f"test {k}" for k in group_keys) + " |"]
        rows.append("|---|---|---:|" + "---:|" * len(group_keys))
        for group, runs_of_group in groups.items():
            for name, (count, values) in runs_of_group.items():
                rows.append(
                    f"| {group} | {name} | {count} | " + " | ".join(f"{values[k]:.4f}" for k in group_keys) + " |"
                )
            rows.append(
                f"| {group} | **mean ± std** | | "
                + " | ".join(spread([v[k] for _, v in runs_of_group.values()]) for k in group_keys)
                + " |"
            )
        for name, values in next(iter(metrics.values()))["test"].get("random_ranking", {}).items():
            rows.append(
                f"| random ranking of {name} | expected | | "
                + " | ".join(f"{values[k]:.4f}" for k in group_keys)
                + " |"
            )
        text += "\nTest metrics by target group (cold targets: no training interactions):\n\n" + "\n".join(rows) + "\n"
    summary = {
        "runs": {
            name: {"best_epoch": r["best_epoch"], "valid": r["valid"]["metrics"], "test": r["test"]["metrics"]}
            for name, r in metrics.items()
        },
        "mean_test": {k: statistics.mean(r["test"]["metrics"][k] for r in metrics.values()) for k in keys},
        "mean_valid_ndcg@10": statistics.mean(valid),
        "protocol": protocol,
        "groups": {
            group: {
                "runs": {name: {"rows": count, "test": values} for name, (count, values) in runs_of_group.items()},
                "mean_test": {k: statistics.mean(v[k] for _, v in runs_of_group.values()) for k in keys},
            }
            for group, runs_of_group in groups.items()
        },
    }
    (folder / "summary.md").write_text(text)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return text


def group_metrics(metrics: dict[str, dict]) -> dict[str, dict[str, tuple[int, dict[str, float]]]]:
    """Per target group (e.g. cold targets), each run's (row count, test metrics); groups every run has."""
    groups: dict[str, dict[str, tuple[int, dict[str, float]]]] = {}
    for name, result in metrics.items():
        for group, entry in result["test"].get("groups", {}).items():
            groups.setdefault(group, {})[name] = (entry["rows"], entry["metrics"])
    return {group: runs for group, runs in groups.items() if len(runs) == len(metrics)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="preset passed to every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021, 2022])
    parser.add_argument("--output", help="folder of the seed runs")
    parser.add_argument("--summarise", metavar="FOLDER", help="only summarise finished runs in FOLDER")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    if args.summarise:
        print(summarise(Path(args.summarise)))
        return
    if not args.output:
        parser.error("--output is required to run seeds")
    folder = Path(args.output)
    for seed in args.seeds:
        run = folder / f"seed-{seed}"
        if (run / "metrics.json").exists():
            print(f"seed {seed}: finished earlier, kept ({run})")
            continue
        command = [
            sys.executable,
            str(ROOT / "scripts" / "train.py"),
            "--seed",
            str(seed),
            "--output_dir",
            str(run),
            "--progress",
            "false",
            *(["--config", args.config] if args.config else []),
            *extra,
        ]
        if (run / "checkpoints").exists():
            command += ["--resume", "latest"]
        print("running:", " ".join(command), flush=True)
        subprocess.run(command, check=True)
    print(summarise(folder))


if __name__ == "__main__":
    main()
