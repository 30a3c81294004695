"""Write the cold-start record of Amazon Scientific from its runs: benchmarks/quality/cold_start_scientific.json
(``{"models": {name: {"seeds": [{"split_seed", "cold_targets", "warm_targets", "random_cold_targets",
"cold_among_cold", "random_cold_among_cold"}]}}}``, metrics keyed like ``ndcg@10``) and the Markdown table of
cold_start_scientific.md between its RESULTS markers, with issue 29's checks.

    bash benchmarks/quality/scientific_grid.sh cold             # the runs (split seeds 0, 1, 2)
    python benchmarks/quality/cold_start_scientific.py          # this record
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

RUNS = Path("benchmarks/quality/cold_seeds")  # the kept runs (config.json, metrics.json): scientific_grid.sh cold
RECORD = Path("benchmarks/quality/cold_start_scientific")
BACKBONES = ("id", "text", "hybrid", "lora")
SPLITS = (0, 1, 2)
START, END = "<!-- RESULTS START -->", "<!-- RESULTS END -->"


def split_figures(metrics: dict, split_seed: int, run: Path) -> dict:
    """One run's test figures by target group, with the random-ranking expectations beside them."""
    test = metrics["test"]
    groups = test["groups"]
    if "cold targets" not in groups or "warm targets" not in groups:
        raise SystemExit(
            f"{run}: its test rows hold no cold or no warm target (groups: {sorted(groups)}); is it a cold split?"
        )
    random = test["random_ranking"]
    among = next(name for name in groups if name.startswith("cold targets among"))
    all_items = next(name for name in random if name.startswith("all "))
    cold_items = next(name for name in random if name.endswith(" cold items"))
    return {
        "split_seed": split_seed,
        "cold_targets": groups["cold targets"]["metrics"] | {"rows": groups["cold targets"]["rows"]},
        "warm_targets": groups["warm targets"]["metrics"] | {"rows": groups["warm targets"]["rows"]},
        "random_cold_targets": random[all_items],
        "cold_among_cold": groups[among]["metrics"],
        "random_cold_among_cold": random[cold_items] | {"items": int(cold_items.split()[0])},
    }


PROTOCOL = {  # what every run of the record was trained with (cold_start_scientific.md)
    ("data", "split"): "cold_items",
    ("data", "cold_selection"): "random",
    ("data", "cold_fraction"): 0.1,
    ("train", "select_on"): "warm_targets",
}


def check_protocol(run: Path, config: dict, split_seed: int) -> None:
    """Refuse a run trained otherwise than the record declares (another split, or selection on every row)."""
    expected = PROTOCOL | {("data", "cold_seed"): split_seed}  # the folder's name says the split seed
    wrong = [f"{section}.{key} {config.get(section, {}).get(key)!r} (the record's: {value!r})"
             for (section, key), value in expected.items() if config.get(section, {}).get(key) != value]  # fmt: skip
    if wrong:
        raise SystemExit(f"{run} was not trained by the record's protocol: {'; '.join(wrong)}. Train it again.")


def model_name(run: Path) -> str:
    model = json.loads((run / "config.json").read_text())["model"]
    backbone = {"id": "id", "text": "text", "hybrid": "hybrid", "lm_lora": "lora"}[model["item_encoder"]]
    steps = model.get("reasoning_steps", 0)
    return f"{backbone}-rearec-{model['reasoning_method']}" if steps else backbone


def collect() -> dict:
    models: dict[str, dict] = {}
    for backbone in BACKBONES:
        for split in SPLITS:
            run = RUNS / f"{backbone}-split{split}" / "seed-2020"
            if not (run / "metrics.json").exists():
                continue
            check_protocol(run, json.loads((run / "config.json").read_text()), split)
            entry = models.setdefault(model_name(run), {"config": f"configs/scientific_cold_{backbone}.json"})
            figures = split_figures(json.loads((run / "metrics.json").read_text()), split, run)
            entry.setdefault("seeds", []).append(figures)
    return {"models": models}


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def table(record: dict) -> list[str]:
    lines = [
        "| model | splits | warm NDCG@10 | cold NDCG@10 (all items) | random, all items | cold / random | "
        "cold / warm | cold NDCG@10 among cold items | random among cold |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, model in record["models"].items():
        seeds = model["seeds"]
        warm = [s["warm_targets"]["ndcg@10"] for s in seeds]
        cold = [s["cold_targets"]["ndcg@10"] for s in seeds]
        random = [s["random_cold_targets"]["ndcg@10"] for s in seeds]
        among = [s["cold_among_cold"]["ndcg@10"] for s in seeds]
        random_among = [s["random_cold_among_cold"]["ndcg@10"] for s in seeds]
        lines.append(
            f"| {name} | {len(seeds)} | {mean_std(warm)} | {mean_std(cold)} | {statistics.mean(random):.4f} | "
            f"{statistics.mean(cold) / statistics.mean(random):.1f}x | "
            f"{statistics.mean(cold) / statistics.mean(warm):.2f} | {mean_std(among)} | "
            f"{statistics.mean(random_among):.4f} |"
        )
    return lines


def checks(record: dict) -> list[str]:
    """Issue 29's figure 1, per model, on the means over the split seeds."""
    models = record["models"]
    mean = lambda name, group: statistics.mean(s[group]["ndcg@10"] for s in models[name]["seeds"])  # noqa: E731
    lines = []
    for name in models:
        if name.startswith(("text", "hybrid", "lora")):
            ratio = mean(name, "cold_targets") / mean(name, "random_cold_targets")
            share = mean(name, "cold_targets") / mean(name, "warm_targets")
            lines.append(
                f"- {name}: cold NDCG@10 {ratio:.1f}x random ({'met' if ratio >= 10 else 'NOT met'}: at least 10x); "
                f"{share:.2f} of its warm NDCG@10 ({'met' if share >= 1 / 3 else 'NOT met'}: at least 1/3)."
            )
    ids = [name for name in models if name.startswith("id")]
    for name in (n for n in models if n.startswith("hybrid")):
        if ids:
            ratio = mean(name, "warm_targets") / mean(ids[0], "warm_targets")
            verdict = "met" if ratio >= 0.97 else "NOT met"
            lines.append(f"- {name} warm NDCG@10 / {ids[0]}'s: {ratio:.3f} ({verdict}: at least 0.97).")
    return lines


def main() -> int:
    record = collect()
    if not record["models"]:
        print(f"no finished runs under {RUNS}: run `bash benchmarks/quality/scientific_grid.sh cold` first")
        return 1
    RECORD.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    markdown = RECORD.with_suffix(".md")
    text = markdown.read_text()
    if START not in text or END not in text:
        print(f"{markdown} lacks the {START} / {END} markers the results go between")
        return 1
    results = "\n".join([START, "", *table(record), "", *checks(record), "", END])
    markdown.write_text(text[: text.index(START)] + results + text[text.index(END) + len(END) :])
    print("\n".join(table(record) + checks(record)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
