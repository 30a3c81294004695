"""Issue 28's point 4: the per-step, oracle and subgroup tables of the Scientific ReaRec runs, beside the same
backbone at K = 0, as means over the seeds of stage 2 (kept in benchmarks/quality/scientific_seeds/NAME/seed-N). Runs
`scripts/evaluate.py RUN --split SPLIT --analysis` where a run's analysis of that split is missing, then writes
benchmarks/quality/scientific_analysis.md (and .json; scientific_analysis_valid.* for --split valid). The test
split waits for stage 2 to be complete (it holds test figures; LoRA-MiniLM's section waits for its own five
seeds, as the record declares); validation can be read at any time.

    python benchmarks/quality/scientific_analysis.py                 # test split, every backbone with runs
    python benchmarks/quality/scientific_analysis.py --split valid   # the same tables on validation
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from hybrid_rearec.hybrid.analysis import GROUPING
from scientific_results import KEPT as SEEDS  # this script's folder: stage 2's kept runs
from scientific_results import LATE, PRESETS, missing_runs  # the same list of stage-2 runs

BACKBONES = {"id": "", "text": "text-", "hybrid": "hybrid-"}  # backbone -> prefix of its stage-2 folders
LORA = "lora-rearec"  # LoRA-MiniLM's only stage-2 preset (with rule 6's reasoning method)
METRIC = "ndcg@10"
ORACLE = "ORACLE (best step per row, uses the label)"
GROUPINGS = (  # (title, key of analysis.json)
    ("Users by history length (quintile 1 = shortest)", "by_history"),
    (
        "Targets by training popularity (times the item is a training target; quintile 1 = least popular)",
        "by_popularity",
    ),
)
# Equal values share a quintile (analysis.GROUPING): one held by more than a fifth of the rows fills the next ones too.
MERGED = "a missing quintile's rows are in the one before it, whose values they share"


def analysis(run: Path, split: str) -> dict:
    """The run's analysis-SPLIT.json, made by scripts/evaluate.py when missing or grouped otherwise than
    analysis.GROUPING."""
    kept = run / "analysis" / f"analysis-{split}.json"
    if not kept.exists() or json.loads(kept.read_text()).get("grouping") != GROUPING:  # missing, or older groups
        if not (run / "config.json").exists() or not (run / "model").is_dir():  # a kept run: files, no model
            raise SystemExit(f"{kept} is missing or grouped otherwise, and {run} holds no model to make it again")
        command = [sys.executable, "scripts/evaluate.py", str(run), "--split", split, "--analysis", "--no_progress"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads(kept.read_text())


def seed_runs(name: str, root: Path = SEEDS) -> list[Path]:
    return sorted(p for p in (root / name).glob("seed-*") if (p / "metrics.json").exists())


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def steps_table(name: str, runs: list[dict]) -> list[str]:
    """NDCG@10 of the model, of each step alone and of the label-using oracle (mean ± std over seeds)."""
    rows = [key for key in runs[0]["overall"]]
    lines = [f"**{name}** ({len(runs)} seeds): NDCG@10", "", "| read-out | NDCG@10 |", "|---|---:|"]
    lines += [f"| {row} | {mean_std([r['overall'][row][METRIC] for r in runs])} |" for row in rows]
    return [*lines, ""]


def groups_table(title: str, key: str, base: list[dict], reasoning: dict[str, list[dict]]) -> list[str]:
    """Per quintile: the K = 0 model's NDCG@10 and each ReaRec model's, with the ratio of their means."""
    names = list(reasoning)
    sizes = base[0]["group_sizes"][key.removeprefix("by_")]  # the same rows in every run of the data
    lines = [f"{title}: NDCG@10 (mean ± std over seeds; ratio of means against K = 0; {MERGED})", ""]
    lines.append("| quintile | rows | K = 0 | " + " | ".join(f"{n} | ratio" for n in names) + " |")
    lines.append("|---|---:|---:|" + "---:|---:|" * len(names))
    for group in base[0][key]:
        zero = [r[key][group]["model"][METRIC] for r in base]
        cells = [str(sizes[int(group) - 1]), mean_std(zero)]
        for name in names:
            values = [r[key][group]["model"][METRIC] for r in reasoning[name]]
            ratio = statistics.mean(values) / statistics.mean(zero) if statistics.mean(zero) else float("nan")
            cells += [mean_std(values), f"{ratio:.3f}"]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def steps_by_group_table(title: str, key: str, runs: list[dict]) -> list[str]:
    """Per quintile: NDCG@10 of the model, of each step alone and of the label-using oracle (means over seeds)."""
    groups = list(runs[0][key])
    readouts = list(runs[0][key][groups[0]])
    header = ["oracle" if readout == ORACLE else readout for readout in readouts]
    lines = [f"{title}: NDCG@10 of each read-out (mean over seeds)", ""]
    lines += ["| quintile | " + " | ".join(header) + " |", "|---|" + "---:|" * len(readouts)]
    for group in groups:
        cells = [f"{statistics.mean(r[key][group][readout][METRIC] for r in runs):.4f}" for readout in readouts]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def lora_section(split: str, root: Path) -> tuple[list[str], dict]:
    """LoRA-MiniLM has no K = 0 preset: its read-outs per step, overall and per quintile, show what the steps add."""
    runs = [analysis(run, split) for run in seed_runs(LORA, root)]
    if not runs:
        return [], {}
    lines = ["## LoRA-MiniLM backbone (no K = 0 model: step 0 is this model read before reasoning)", ""]
    lines += steps_table(LORA, runs)
    for title, key in GROUPINGS:
        lines += steps_by_group_table(f"{LORA}: {title}", key, runs)
    return lines, {"reasoning": {LORA: runs}}


def backbone_section(backbone: str, prefix: str, split: str, root: Path) -> tuple[list[str], dict]:
    base_name = f"{prefix}sasrec" if prefix else "sasrec"
    base = [analysis(run, split) for run in seed_runs(base_name, root)]
    reasoning = {}
    for method in ("erl", "prl"):
        name = f"{prefix}rearec-{method}"
        runs = [analysis(run, split) for run in seed_runs(name, root)]
        if runs:
            reasoning[name] = runs
    if not base or not reasoning:
        return [], {}
    lines = [f"## {backbone} backbone", ""]
    for name, runs in reasoning.items():
        lines += steps_table(name, runs)
    for title, key in GROUPINGS:
        lines += groups_table(title, key, base, reasoning)
        for name, runs in reasoning.items():
            lines += steps_by_group_table(f"{name}: {title}", key, runs)
    return lines, {"base": {base_name: base}, "reasoning": reasoning}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=["valid", "test"], default="test")
    parser.add_argument("--output", help="PATH of PATH.md/.json (default: scientific_analysis[_valid])")
    parser.add_argument("--runs", default=str(SEEDS), help="folder of the stage-2 seed folders (kept runs by default)")
    args = parser.parse_args()
    split, root = args.split, Path(args.runs)
    late_missing = bool(missing_runs(root, [LATE]))  # LoRA-MiniLM's seeds may come after the others (record)
    output = Path(args.output or f"benchmarks/quality/scientific_analysis{'' if split == 'test' else '_valid'}")
    missing = missing_runs(root, [name for name in PRESETS if name != LATE])
    if split == "test" and missing:  # the record reads no test figure before stage 2 is complete but for LATE
        print(f"stage 2 is not complete ({len(missing)} runs missing, e.g. {missing[0]}); --split valid works now")
        return 1
    lines = [f"# Amazon Scientific: what the reasoning steps do ({split} split)", ""]
    lines += [f"`python benchmarks/quality/scientific_analysis.py --split {split}` over the stage-2 seed runs.", ""]
    record = {}
    for backbone, prefix in BACKBONES.items():
        section, figures = backbone_section(backbone, prefix, split, root)
        lines += section
        if figures:
            record[backbone] = figures
    section, figures = lora_section(split, root) if split == "valid" or not late_missing else ([], {})
    lines += section
    if figures:
        record["lora"] = figures
    if not record:
        print(f"no backbone has both K = 0 and ReaRec seed runs under {root}: run stage 2 first")
        return 1
    output.with_suffix(".md").write_text("\n".join(lines))
    output.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {output}.md and {output}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
