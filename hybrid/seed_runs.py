"""The finished runs of a seed folder (`scripts/seeds.py --output FOLDER`): FOLDER/seed-N/metrics.json."""

from __future__ import annotations

from pathlib import Path


def finished_seed_runs(folder: str | Path) -> list[Path]:
    """The seed-* runs of ``folder`` that wrote their metrics.json, sorted by name (unfinished runs are skipped)."""
    return sorted(run for run in Path(folder).glob("seed-*") if (run / "metrics.json").exists())
