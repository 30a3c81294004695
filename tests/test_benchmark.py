import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_suite(tmp_path, suite: str) -> None:
    command = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--suite", suite, "--threads", "1"]
    done = subprocess.run(
        command + ["--repeats", "1", "--output_dir", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_prl_suite_writes_its_table(tmp_path):
    """The benchmark script runs end to end (one round) and writes the Markdown and JSON it promises."""
    run_suite(tmp_path, "prl")
    results = json.loads((tmp_path / "prl_training.json").read_text())
    assert len(results["seconds"]) == 4 and all(value > 0 for value in results["seconds"].values())
    text = (tmp_path / "prl_training.md").read_text()
    assert "noisy view 'reasoning'" in text and "| 1.00x |" in text and results["command"] in text


def test_precision_suite_times_fp32_and_bf16_for_every_model(tmp_path):
    run_suite(tmp_path, "precision")
    results = json.loads((tmp_path / "precision.json").read_text())
    assert len(results["seconds"]) == 4
    assert all(row["fp32"] > 0 and row["bf16"] > 0 for row in results["seconds"].values())
    assert "| BERT4Rec (cloze 0.2) |" in (tmp_path / "precision.md").read_text()
