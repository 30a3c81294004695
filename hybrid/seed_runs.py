"""The finished runs of a seed folder (`scripts/seeds.py --output FOLDER`): FOLDER/seed-N/metrics.json."""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from pathlib import Path

from .checkpoint import IGNORED_CHANGES
from .errors import DataError

# Training settings that cannot change a run's figures (where it is written, how it is shown and saved; threads
# only change float rounding), and the seed, which a seed group varies. Every other one (epochs, patience, precision,
# depth selection, the optimizer's settings) must be the same in every run of a group.
NOT_A_SETTING = (
    "output_dir", "run_name", "overwrite", "seed", "eval_batch_size", "save_every_steps", "keep_checkpoints",
    "resume", "num_threads", "log_every", "report_to", "progress",
)  # fmt: skip


def read_run_json(path: Path, keys: tuple[str, ...] = ()) -> dict:
    """A run's metrics.json or config.json as a dict holding ``keys``; a damaged one is a DataError naming it."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{path} cannot be read ({error}): restore it, or train the run again.") from None
    missing = [key for key in keys if not isinstance(value, dict) or key not in value]
    if not isinstance(value, dict) or missing:
        raise DataError(
            f"{path} is damaged (it lacks {missing or 'its settings'}): restore it, or train the run again."
        )
    return value


def finished_seed_runs(folder: str | Path) -> list[Path]:
    """The seed-* runs of ``folder`` that wrote their metrics.json, sorted by name (unfinished runs are skipped)."""
    return sorted(run for run in Path(folder).glob("seed-*") if (run / "metrics.json").exists())


KEPT_FILES = ("config.json", "metrics.json")  # what the records and compare.py read of a run


def keep_run(run: Path, target: Path, files: tuple[str, ...] = KEPT_FILES) -> Path:
    """Copy ``files`` of a finished run into ``target`` (a folder outside the machine's run folders, e.g. one
    committed), each whole or not at all and metrics.json last: its presence marks the run kept."""
    for file in sorted(files, key=lambda name: name == "metrics.json"):  # stable: the others keep their order
        final = target / file
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.with_name(f".{final.name}.incomplete")
        shutil.copyfile(run / file, staging)
        os.replace(staging, final)
    return target


def run_settings_that_matter(run: Path) -> dict[str, object]:
    """A run's data and model settings and the training settings that can change its figures, seed aside (read
    from its config.json; {} for a run without one)."""
    path = run / "config.json"
    settings = settings_that_matter(read_run_json(path) if path.exists() else {})
    metrics = run / "metrics.json"  # the precision the run had: `accelerate launch --mixed_precision` sets it too
    ran = read_run_json(metrics).get("mixed_precision") if metrics.exists() else None
    return settings | ({"run.mixed_precision": ran} if ran is not None else {})


def settings_that_matter(sections: dict) -> dict[str, object]:
    """{'section.key': value} of a run's config sections (as config.json holds them), without the settings
    that cannot change its figures and the seed."""
    ignored = IGNORED_CHANGES | {"train": set(NOT_A_SETTING)}
    return {
        f"{section}.{key}": value
        for section, skip in ignored.items()
        for key, value in sections.get(section, {}).items()
        if key not in skip
    }


def mixed_seed_runs(runs: list[Path]) -> list[str]:
    """What makes ``runs`` something other than one setting trained with different seeds: a setting whose value
    differs between the runs that record it, or one seed trained twice. Empty when they are seeds of one
    setting."""
    values: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    seeds: dict[object, list[str]] = defaultdict(list)
    for run in runs:
        for key, value in run_settings_that_matter(run).items():
            values[key][json.dumps(value)].append(run.name)
        path = run / "config.json"
        if path.exists():
            seeds[read_run_json(path).get("train", {}).get("seed")].append(run.name)
    problems = [
        f"{key} differs ({'; '.join(f'{value} in {runs_named(names)}' for value, names in found.items())})"
        for key, found in values.items()
        if len(found) > 1  # a key some runs lack is not compared there: those runs predate it
    ]
    twice = [f"seed {seed} was trained twice ({runs_named(names)})" for seed, names in seeds.items()
             if seed is not None and len(names) > 1]  # fmt: skip
    return problems + twice


def runs_named(names: list[str]) -> str:
    return ", ".join(names)
