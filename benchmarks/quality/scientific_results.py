"""Write the results of benchmarks/quality/scientific.md from its stage-2 runs, once every preset has its five
seeds: benchmarks/quality/scientific.json (``{"models": {name: {"config": path, "seeds": [{"seed", "valid":
{metric: value}, "test": {metric: value}}]}}}``), the tables between the RESULTS markers of scientific.md (test
figures as mean ± std over seeds beside the published ones, and rule 7's comparisons by
`scripts/compare.py --seed_groups`), the issue's checks, and the README's table between its SCIENTIFIC
markers. Until stage 2 is complete it reads no figure and says which runs are missing (the record reads test
figures only then), with one exception declared in the record before any stage-2 test figure was read: once
every preset but LoRA-MiniLM (LATE, seeds of hours each) has its five seeds, it writes the record without it,
figure 2 and the LoRA comparison pending, and writes it again whole when LoRA's seeds are in.

    python benchmarks/quality/scientific_results.py [--runs benchmarks/quality/scientific_seeds]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from hybrid_rearec.hybrid.seed_runs import finished_seed_runs
from hybrid_rearec.hybrid.seed_stats import compare_means
from hybrid_rearec.hybrid.studies.compare import compare_seed_groups, ratio_interval

RECORD = Path("benchmarks/quality/scientific")  # .md and .json
KEPT = Path("benchmarks/quality/scientific_seeds")  # stage 2's kept runs (scientific_stage2.py)
SEEDS = (2020, 2021, 2022, 2023, 2024)
BACKBONES = {"id": "", "text": "text-", "hybrid": "hybrid-"}  # backbone: the prefix of its run names
PRESETS = [
    "sasrec",
    "bert4rec",
    "rearec-erl",
    "rearec-prl",
    "text-sasrec",
    "text-rearec-erl",
    "text-rearec-prl",
    "hybrid-sasrec",
    "hybrid-rearec-erl",
    "hybrid-rearec-prl",
    "lora-rearec",
]  # stage 2's run folders
METRICS = ("recall@10", "ndcg@10", "recall@50", "ndcg@50")
PUBLISHED = {  # Recall@10, NDCG@10, Recall@50, NDCG@50 on this split (quoted, never mixed into our means)
    "SASRec (UniSRec / VQ-Rec Table 2)": (0.1080, 0.0553, 0.2042, 0.0760),
    "text-only SASRec (UniSRec Table 2)": (0.0994, 0.0561, 0.2162, 0.0815),
    "UniSRec, text, pre-trained on five other Amazon domains (UniSRec Table 2)": (0.1188, 0.0641, 0.2394, 0.0903),
    "UniSRec, text + ID (UniSRec Table 2)": (0.1235, 0.0634, 0.2473, 0.0904),
    "VQ-Rec (VQ-Rec Table 2)": (0.1211, 0.0643, 0.2369, 0.0897),
}
LATE = "lora-rearec"  # the preset whose seeds may come after the others' figures are read
START, END = "<!-- RESULTS START -->", "<!-- RESULTS END -->"
README_START, README_END = "<!-- SCIENTIFIC START -->", "<!-- SCIENTIFIC END -->"  # the README's table


def missing_runs(runs: Path, presets: list[str] = PRESETS) -> list[str]:
    """The stage-2 runs not finished yet (only their metrics files' presence is looked at), and any seed folder
    that is a link to another run (stage 2 trains all its seeds with one code, none taken from stage 1)."""
    folders = [runs / name / f"seed-{seed}" for name in presets for seed in SEEDS]
    return [f"{folder} (a link: retrain it)" if folder.is_symlink() else str(folder) for folder in folders
            if folder.is_symlink() or not (folder / "metrics.json").exists()]  # fmt: skip


def model_name(folder: Path) -> str:
    """The record's name of a preset's runs: the LoRA preset's says its reasoning method."""
    if folder.name != "lora-rearec":
        return folder.name
    model = json.loads((folder / f"seed-{SEEDS[0]}" / "config.json").read_text())["model"]
    return f"lora-rearec-{model['reasoning_method']}"


def collect(runs: Path, presets: list[str] = PRESETS) -> dict:
    """Every finished seed of every preset (the five of stage 2, and any added later: the same runs that
    compare.py --seed_groups reads)."""
    models = {}
    for name in presets:
        seeds = []
        for run in finished_seed_runs(runs / name):
            metrics = json.loads((run / "metrics.json").read_text())
            seed = int(run.name.removeprefix("seed-"))
            seeds.append({"seed": seed, "valid": metrics["valid"]["metrics"], "test": metrics["test"]["metrics"]})
        config = f"configs/scientific_{name.replace('-', '_')}.json"
        models[model_name(runs / name)] = {"config": config, "folder": str(runs / name), "seeds": seeds}
    return {"models": models}


def mean(model: dict, split: str, metric: str = "ndcg@10") -> float:
    return statistics.fmean(s[split][metric] for s in model["seeds"])


def spread(model: dict, metric: str) -> str:
    values = [s["test"][metric] for s in model["seeds"]]
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def results_table(record: dict) -> list[str]:
    lines = ["| model | seeds | valid NDCG@10 | Recall@10 | NDCG@10 | Recall@50 | NDCG@50 |",
             "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, model in record["models"].items():
        cells = " | ".join(spread(model, metric) for metric in METRICS)
        lines.append(f"| {name} | {len(model['seeds'])} | {mean(model, 'valid'):.4f} | {cells} |")
    for name, figures in PUBLISHED.items():
        lines.append(f"| {name} (published) | | | {' | '.join(f'{v:.4f}' for v in figures)} |")
    return lines


def better_reasoning(record: dict, prefix: str) -> str:
    """Rule 7: of a backbone's ERL and PRL presets, the one with the higher mean validation NDCG@10."""
    erl, prl = (record["models"][f"{prefix}rearec-{method}"] for method in ("erl", "prl"))
    return f"{prefix}rearec-erl" if mean(erl, "valid") >= mean(prl, "valid") else f"{prefix}rearec-prl"


def comparisons(record: dict) -> list[tuple[str, str]]:
    """Rule 7's pairs (base, other): each backbone at K = 0 against its better reasoning method, and the LoRA
    model against the frozen-text model with the same head (issue 29, figure 4)."""
    pairs = [(f"{prefix}sasrec", better_reasoning(record, prefix)) for prefix in BACKBONES.values()]
    lora = [name for name in record["models"] if name.startswith("lora-")]  # none while LATE is pending
    return pairs + [(f"text-{name.removeprefix('lora-')}", name) for name in lora]


def comparison_text(record: dict) -> list[str]:
    lines = []
    for base, other in comparisons(record):
        folders = [record["models"][name]["folder"] for name in (base, other)]
        lines += [f"`python scripts/compare.py --seed_groups {' '.join(folders)}`:", "", "```",
                  compare_seed_groups(folders, "ndcg@10", 0.95), "```", ""]  # fmt: skip
    return lines


def figure_two(models: dict) -> str:
    """Rule 7's best text or hybrid model (LoRA-MiniLM is text too), once all of them are in."""
    if not any(name.startswith("lora-") for name in models):
        return "- Figure 2: pending until LoRA-MiniLM's five seeds are in (rule 7 counts it among the text models)."
    text_or_hybrid = [n for n in models if n.startswith(("text-", "hybrid-", "lora-"))]
    best = max(text_or_hybrid, key=lambda n: mean(models[n], "valid"))
    best_test = mean(models[best], "test")
    return (
        f"- Figure 2: the best text or hybrid model by mean validation NDCG@10 is {best}, mean test NDCG@10 "
        f"{best_test:.4f} against 0.0643: {'met' if best_test >= 0.0643 else 'NOT met'}."
    )


def checks(record: dict) -> list[str]:
    """Issue 28's figures 1-3 as the record states them."""
    models = record["models"]
    sasrec = mean(models["sasrec"], "test")
    lines = [
        f"- Figure 1: SASRec (ID) mean test NDCG@10 {sasrec:.4f} against the published 0.0553: "
        f"{'met' if sasrec >= 0.0553 else 'NOT met'}.",
        figure_two(models),
    ]
    intervals = []
    for base, other in comparisons(record)[:3]:
        c = compare_means(*([s["test"]["ndcg@10"] for s in models[n]["seeds"]] for n in (base, other)))
        intervals.append(c)
        lines.append(f"- Figure 3, {other} / {base}: {c.ratio:.3f}x, 95 % interval {ratio_interval(c)}.")
    gain = any(c.ratio >= 1.05 and c.ratio_low > 1.0 for c in intervals)
    settled = gain or all(c.ratio_high < 1.05 for c in intervals)
    verdict = "a gain of 5 % or more shown" if gain else ("settled: every upper bound below 1.05" if settled else
              "NOT settled: add seeds until every upper bound is below 1.05")  # fmt: skip
    return lines + [f"- Figure 3 verdict: {verdict}."]


def write_between(markdown: Path, start: str, end: str, lines: list[str]) -> None:
    """Replace what lies between the markers start and end of markdown with lines."""
    text = markdown.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{markdown} lacks the {start} / {end} markers the results go between")
    markdown.write_text(
        text[: text.index(start)] + "\n".join([start, "", *lines, end]) + text[text.index(end) + len(end) :]
    )


def readme_table(record: dict, path: Path) -> list[str]:
    """The README's Scientific table: the record's table, with where it comes from."""
    return [
        f"Amazon Scientific (UniSRec's split, full ranking against all 4,385 items; `{path.with_suffix('.md')}`, "
        "settings chosen on validation only): test figures, mean ± std over seeds, beside the published ones.",
        "",
        *results_table(record),
        "",
    ]


def write(record: dict, path: Path, readme: Path | None = None) -> list[str]:
    public = {"models": {n: {k: v for k, v in m.items() if k != "folder"} for n, m in record["models"].items()}}
    path.with_suffix(".json").write_text(json.dumps(public, indent=2) + "\n")
    body = [*results_table(record), "", *checks(record), "", *comparison_text(record)]
    write_between(path.with_suffix(".md"), START, END, body)
    if readme is not None:
        write_between(readme, README_START, README_END, readme_table(record, path))
    return body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=KEPT, help="stage 2's kept runs")
    parser.add_argument("--record", type=Path, default=RECORD, help="the record's path without .md / .json")
    parser.add_argument("--readme", type=Path, default=Path("README.md"), help="the README whose table it writes")
    args = parser.parse_args()
    runs = args.runs
    presets = [name for name in PRESETS if name != LATE or not missing_runs(runs, [LATE])]
    missing = missing_runs(runs, presets)
    if missing:  # every preset but LATE must be complete
        missing = missing_runs(runs)
        print(
            f"stage 2 is not complete ({len(missing)} runs missing); no figure read. Missing:\n  "
            + "\n  ".join(missing)
        )
        return 1
    print("\n".join(write(collect(runs, presets), args.record, args.readme)))
    if len(presets) < len(PRESETS):
        print(f"written without {LATE} (not all five seeds in yet): run this again once they are")
    return 0


if __name__ == "__main__":
    sys.exit(main())
