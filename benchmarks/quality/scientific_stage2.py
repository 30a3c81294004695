"""Stage 2 of benchmarks/quality/scientific.md: seeds 2020-2024 of every chosen Scientific preset, in
runs/scientific-seeds/NAME. Seed 2020 is the stage-1 run whose settings equal the preset's (linked, not
trained twice; the settings are compared key by key); the other seeds are trained by scripts/seeds.py, which
skips finished seeds and resumes an interrupted one. The summaries hold test figures: they are written, not
printed.

    python benchmarks/quality/scientific_stage2.py sasrec text_sasrec ...     # preset names without scientific_
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict, fields
from pathlib import Path

from hybrid_rearec.hybrid.config import DataConfig, ModelConfig, TrainConfig, load_preset

STAGE1 = Path("runs/scientific")
STAGE2 = Path("runs/scientific-seeds")
SEEDS = ["2020", "2021", "2022", "2023", "2024"]
IGNORED = {"run_name", "seed", "output_dir", "num_threads", "progress", "resume", "report_to"}


def full_settings(preset_path: Path) -> dict[str, dict]:
    """The preset's data and model settings with every default filled in, as a run's config.json holds them,
    and the training settings it names."""
    values = load_preset(preset_path)
    pick = lambda config_class: {k: v for k, v in values.items() if k in {f.name for f in fields(config_class)}}  # noqa: E731
    return {
        "data": asdict(DataConfig(**pick(DataConfig))),
        "model": asdict(ModelConfig(**pick(ModelConfig))),
        "train": pick(TrainConfig),
    }


def same_settings(preset: dict[str, dict], run_config: dict) -> bool:
    """Every data and model setting, and every training setting the preset names, has the same value in the
    run (names that only label a run excluded)."""
    return all(
        run_config.get(section, {}).get(key) == value
        for section, values in preset.items()
        for key, value in values.items()
        if key not in IGNORED
    )


def stage1_twin(preset_path: Path) -> Path | None:
    """The finished stage-1 seed-2020 run trained with exactly the preset's settings, if there is one."""
    preset = full_settings(preset_path)
    for config in sorted(STAGE1.glob("*/seed-2020/config.json")):
        if (config.parent / "metrics.json").exists() and same_settings(preset, json.loads(config.read_text())):
            return config.parent
    return None


def run_preset(name: str) -> None:
    preset = Path(f"configs/scientific_{name}.json")
    if not preset.exists():
        raise SystemExit(f"{preset} not found: name a preset of configs/ without its scientific_ prefix")
    output = STAGE2 / name.replace("_", "-")
    output.mkdir(parents=True, exist_ok=True)
    twin = stage1_twin(preset)
    if twin is not None and not (output / "seed-2020").exists():
        (output / "seed-2020").symlink_to(twin.resolve(), target_is_directory=True)
        print(f"{name}: seed 2020 is the stage-1 run {twin}")
    command = [sys.executable, "scripts/seeds.py", "--config", str(preset), "--seeds", *SEEDS, "--output", str(output)]
    subprocess.run([*command, "--", "--num_threads", "1"], check=True, stdout=subprocess.DEVNULL)
    print(f"{name}: seeds {', '.join(SEEDS)} finished in {output}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="+", help="preset names, e.g. sasrec text_rearec_erl")
    for name in parser.parse_args().presets:
        run_preset(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
