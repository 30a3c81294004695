"""What every benchmark report shares: its settings, the machine header, the Markdown text and the two files.

A report is a JSON of the figures plus a Markdown page that says what was measured, on which machine, when,
and by which command, so a committed figure can be traced and rerun.
"""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from .paths import BENCHMARKS


@dataclass
class BenchmarkConfig:
    """Settings of the benchmark suites (the flags of scripts/benchmark.py)."""

    epochs: int = 3  # timed training epochs (foundation)
    threads: int = 2  # CPU threads (RecBole's reference figure used 2)
    rss_epochs: int = 2  # epochs of the separate peak-memory run (foundation)
    repeats: int = 15  # timed repeats, or interleaved rounds (reasoning, prl, precision)
    sizes: list[int] = field(default_factory=lambda: [1_000, 10_000, 100_000, 1_000_000])  # scale: catalogues
    users: int = 10_000  # scale: synthetic users (all evaluated)
    mean_length: float = 6.0  # scale: interactions per user
    output_dir: Path = BENCHMARKS

    def __post_init__(self):
        self.output_dir = Path(self.output_dir)
        counts = {"epochs": self.epochs, "threads": self.threads, "rss_epochs": self.rss_epochs,
                  "repeats": self.repeats, "users": self.users, "sizes": min(self.sizes, default=0),
                  "mean_length": self.mean_length}  # fmt: skip
        low = [f"--{name} {value}" for name, value in counts.items() if not value >= 1]  # NaN too
        if low:  # checked before a suite runs, not when it reaches the value
            raise ValueError(f"benchmark settings must be >= 1, got {', '.join(low)}")
        if min(self.sizes) < 2 or not 3 <= self.mean_length < float("inf"):  # the scale suite's synthetic data
            raise ValueError(
                f"--sizes must be >= 2 and --mean_length in [3, inf), got {self.sizes}, {self.mean_length}"
            )


def cpu_name() -> str:
    """The CPU's model name, so figures from different machines are not compared unknowingly."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def header(threads: int) -> dict:
    """The command that ran (this process's arguments), the date and the machine."""
    return {
        "command": "python " + " ".join(sys.argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu": cpu_name(),
            "threads": threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }


def report_text(title: str, results: dict, body: str, explanation: str) -> str:
    """A benchmark's Markdown: title, setting, machine, date, the command, its table and what it means, then
    any later note on the record (``results['note']``, added by hand, e.g. when the suite changed since)."""
    machine = results["machine"]
    note = f"\n{results['note']}\n" if results.get("note") else ""
    return (
        f"# {title}\n\n{results['setting']}.\n\n"
        f"Machine: {machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}. "
        f"Date: {results['date']}.\n\nCommand: `{results['command']}`\n\n{body}\n\n{explanation}\n{note}"
    )


def write(results: dict, text: str, path: Path) -> None:
    """PATH.json (the figures) and PATH.md (the text), and the text on stdout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    path.with_suffix(".md").write_text(text)
    print(text)
