"""Stage 2 of benchmarks/quality/scientific.md: seeds 2020-2024 of every chosen Scientific preset, in
runs/scientific-seeds/NAME, all five trained with the same code (seed 2020 is trained again, not taken from
stage 1, whose runs predate the fused optimizer and the length-grouped training rows). scripts/seeds.py skips
finished seeds and resumes an interrupted one. The summaries hold test figures: they are written, not printed.

    python benchmarks/quality/scientific_stage2.py sasrec text_sasrec ...     # preset names without scientific_
    python benchmarks/quality/scientific_stage2.py lora_rearec --seeds 2023 2024  # some seeds (two lanes)

Two lanes may share a preset's seeds only by disjoint --seeds lists: an unfinished seed is resumed by whichever
lane reaches it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

STAGE2 = Path("runs/scientific-seeds")
SEEDS = ["2020", "2021", "2022", "2023", "2024"]


def run_preset(name: str, seeds: list[str]) -> None:
    preset = Path(f"configs/scientific_{name}.json")
    if not preset.exists():
        raise SystemExit(f"{preset} not found: name a preset of configs/ without its scientific_ prefix")
    output = STAGE2 / name.replace("_", "-")
    command = [sys.executable, "scripts/seeds.py", "--config", str(preset), "--seeds", *seeds, "--output", str(output)]
    subprocess.run([*command, "--", "--num_threads", "1"], check=True, stdout=subprocess.DEVNULL)
    print(f"{name}: seeds {', '.join(seeds)} finished in {output}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="+", help="preset names, e.g. sasrec text_rearec_erl")
    parser.add_argument("--seeds", nargs="+", choices=SEEDS, default=SEEDS, help="seeds to run (default: all)")
    args = parser.parse_args()
    for name in args.presets:
        run_preset(name, args.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
