"""The quality records' writers on made-up runs: what they read, what they write and where."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "quality" / "scientific_results.py"
METRICS = ("recall@10", "ndcg@10", "recall@50", "ndcg@50")


def scientific_results():
    spec = importlib.util.spec_from_file_location("scientific_results", RESULTS)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def write_seed(folder: Path, seed: int, test_ndcg: float, valid_ndcg: float, method: str = "erl") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"train": {"seed": seed}, "model": {"reasoning_method": method}}
    (folder / "config.json").write_text(json.dumps(config))
    test = {metric: test_ndcg * (i + 1) for i, metric in enumerate(METRICS)}
    metrics = {"protocol": "P", "valid": {"metrics": {"ndcg@10": valid_ndcg}}, "test": {"metrics": test}}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_scientific_results_reads_nothing_until_stage_two_is_complete_then_writes_every_table(tmp_path):
    script = scientific_results()
    runs, record, readme = tmp_path / "runs", tmp_path / "scientific", tmp_path / "README.md"
    record.with_suffix(".md").write_text(f"# record\n\n{script.START}\nwaiting\n{script.END}\nafter\n")
    readme.write_text(f"# readme\n{script.README_START}\nwaiting\n{script.README_END}\n## next\n")
    for n, name in enumerate(script.PRESETS):
        for seed in script.SEEDS:
            gain = 1.1 if name == "text-rearec-prl" else 1.0  # the one reasoning gain the checks should find
            write_seed(runs / name / f"seed-{seed}", seed, (0.05 + 0.001 * n + 1e-4 * seed % 7) * gain, 0.06 + n / 1e3)
    command = [sys.executable, str(RESULTS), "--runs", str(runs), "--record", str(record), "--readme", str(readme)]
    (runs / "lora-rearec" / "seed-2024" / "metrics.json").unlink()
    waiting = subprocess.run(command, capture_output=True, text=True)
    assert waiting.returncode == 1 and "1 runs missing" in waiting.stdout and "lora-rearec/seed-2024" in waiting.stdout
    assert not record.with_suffix(".json").exists() and "waiting" in readme.read_text()
    write_seed(runs / "lora-rearec" / "seed-2024", 2024, 0.06, 0.07)
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    written = json.loads(record.with_suffix(".json").read_text())
    assert sorted(written["models"]) == sorted([*script.PRESETS[:-1], "lora-rearec-erl"])
    sasrec = written["models"]["sasrec"]
    assert sasrec["config"] == "configs/scientific_sasrec.json" and [s["seed"] for s in sasrec["seeds"]] == [
        *script.SEEDS
    ]
    assert set(sasrec["seeds"][0]["test"]) == set(METRICS) and "folder" not in sasrec
    markdown, shown = record.with_suffix(".md").read_text(), readme.read_text()
    assert "waiting" not in markdown and markdown.endswith(f"{script.END}\nafter\n")
    assert "waiting" not in shown and shown.endswith(f"{script.README_END}\n## next\n")
    for text in (markdown, shown):  # every model and every published figure, in both
        assert all(f"| {name} | 5 |" in text for name in written["models"])
        assert "| VQ-Rec (VQ-Rec Table 2) (published) | | | 0.1211 | 0.0643 | 0.2369 | 0.0897 |" in text
    # rule 7: text PRL has the higher validation mean of its backbone, and the checks compare it with K = 0
    assert "- Figure 3, text-rearec-prl / text-sasrec: " in markdown and "--seed_groups" in markdown
    assert "Figure 2: the best text or hybrid model by mean validation NDCG@10 is lora-rearec-erl" in markdown
