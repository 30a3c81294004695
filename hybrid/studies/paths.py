"""Where the checkout's commands and benchmark files are: studies that measure a whole training run start
scripts/train.py in a separate process, so the OS can measure it alone and a crash cannot take the study down."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = REPO_ROOT / "scripts" / "train.py"
SCALE_SCRIPT = REPO_ROOT / "scripts" / "benchmark_scale.py"  # measures one catalogue size per process
BENCHMARKS = REPO_ROOT / "benchmarks"
