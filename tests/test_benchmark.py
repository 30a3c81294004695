import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_prl_suite_writes_its_table(tmp_path):
    """The benchmark script runs end to end (one round) and writes the Markdown and JSON it promises."""
    command = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--suite", "prl", "--threads", "1"]
    done = subprocess.run(
        command + ["--repeats", "1", "--output_dir", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "prl_training.json").read_text())
    assert len(results["seconds"]) == 4 and all(value > 0 for value in results["seconds"].values())
    text = (tmp_path / "prl_training.md").read_text()
    assert "noisy view 'reasoning'" in text and "| 1.00x |" in text and results["command"] in text
