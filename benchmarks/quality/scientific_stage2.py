"""Stage 2 of benchmarks/quality/scientific.md: seeds 2020-2024 of every chosen Scientific preset, all trained
with the same code, each kept in the repository as soon as it finishes.

A lane takes the next run that is neither kept nor claimed by another lane, in the order of ORDER (figure 3's
K = 0 and ReaRec presets first, LoRA-MiniLM last), trains it with scripts/seeds.py into
runs/scientific-seeds/NAME/seed-N (an interrupted run resumes from its latest checkpoint), writes its analysis
of both splits (scripts/evaluate.py --analysis) and copies what the records read into
benchmarks/quality/scientific_seeds/NAME/seed-N: config.json, metrics.json and analysis/analysis-SPLIT.json.
A machine's run folders do not outlive it; the kept files are what scientific_results.py and
scientific_analysis.py read. They hold test figures: nothing here prints them. A run longer than a session
(LoRA-MiniLM's take hours) goes on where it stopped: `--carry`, just before a session ends, copies each
unfinished run's config.json and latest checkpoint into benchmarks/quality/scientific_carry/NAME/seed-N
(commit it), and a lane on the next machine puts it back before resuming the run.

    python benchmarks/quality/scientific_stage2.py                      # one lane; start one per core
    python benchmarks/quality/scientific_stage2.py sasrec --seeds 2020  # only these presets or seeds
    python benchmarks/quality/scientific_stage2.py --carry              # before the session ends; commit
    python benchmarks/quality/scientific_stage2.py lora_rearec --seeds 2024 --num_threads 2  # a last run alone
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from hybrid_rearec.hybrid.checkpoint import STATE_FILE, checkpoint_folders, replace_folder
from hybrid_rearec.hybrid.seed_runs import KEPT_FILES, keep_run
from hybrid_rearec.hybrid.studies.seeds import run_passing_sigterm
from scientific_analysis import SEEDS as KEPT  # this script's folder: where stage 2's runs are kept
from scientific_analysis import analysis  # a run's analysis file of one split

RUNS = Path("runs/scientific-seeds")  # the run folders of this machine
CARRIED = Path("benchmarks/quality/scientific_carry")  # the latest checkpoint of each unfinished run (committed)
CLAIMS = RUNS / ".claims"  # one file per run, locked by the lane training it
SEEDS = ["2020", "2021", "2022", "2023", "2024"]
ORDER = [  # preset names without scientific_; the record's run names use '-' for '_'
    "sasrec", "rearec_prl", "rearec_erl", "text_sasrec", "text_rearec_prl", "text_rearec_erl",
    "hybrid_sasrec", "hybrid_rearec_prl", "hybrid_rearec_erl", "bert4rec", "lora_rearec",
]  # fmt: skip
NO_ANALYSIS = {"bert4rec"}  # the analysis tables compare each backbone's K = 0 and ReaRec runs only


def is_kept(name: str, seed: str, kept: Path = KEPT) -> bool:
    return (kept / name / f"seed-{seed}" / "metrics.json").exists()


@contextlib.contextmanager
def claim(name: str, seed: str, claims: Path = CLAIMS) -> Iterator[bool]:
    """Hold this lane's claim on a run while the block runs: an exclusive lock on its claim file, which the
    system lets go when the process ends however it ends. Yields False while another lane holds it."""
    claims.mkdir(parents=True, exist_ok=True)
    with open(claims / f"{name}-seed-{seed}", "a") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True  # closing the file releases the lock


def train(preset: str, name: str, seed: str, runs: Path = RUNS, threads: int = 1) -> Path:
    config = f"configs/scientific_{preset}.json"
    command = [sys.executable, "scripts/seeds.py", "--config", config, "--seeds", seed, "--output", str(runs / name)]
    command += ["--", "--num_threads", str(threads)]
    code = run_passing_sigterm(command, stdout=subprocess.DEVNULL)  # its summary holds test figures: not shown
    if code != 0:
        raise SystemExit(f"{name} seed {seed} failed (exit {code}): its error is above")
    return runs / name / f"seed-{seed}"


def carry(runs: Path = RUNS, carried: Path = CARRIED) -> list[Path]:
    """Copy every unfinished run's config.json and latest complete checkpoint into ``carried``, each replacing
    the run's older copy only once it is whole. Returns the copies made."""
    copies = []
    for run in sorted(runs.glob("*/seed-*")):
        if (run / "metrics.json").exists() or not (run / "config.json").exists():
            continue
        staging = carried / run.parent.name / f".incomplete-{run.name}"
        for _ in range(5):  # the run goes on meanwhile: a checkpoint may rotate away or be saved again mid-copy
            if not (found := checkpoint_folders(run)) or copy_checkpoint(found[-1], staging):
                break
        if (staging / "checkpoints").is_dir():
            shutil.copyfile(run / "config.json", staging / "config.json")
            replace_folder(staging, carried / run.parent.name / run.name)
            copies.append(carried / run.parent.name / run.name)
    return copies


def copy_checkpoint(checkpoint: Path, staging: Path) -> bool:
    """Copy ``checkpoint`` into staging/checkpoints; False when it changed or went away during the copy."""
    shutil.rmtree(staging, ignore_errors=True)
    try:
        before = (checkpoint / STATE_FILE).read_bytes()
        shutil.copytree(checkpoint, staging / "checkpoints" / checkpoint.name)
        if (checkpoint / STATE_FILE).read_bytes() == before:
            return True
    except (FileNotFoundError, shutil.Error):
        pass
    shutil.rmtree(staging, ignore_errors=True)
    return False


def restore(name: str, seed: str, runs: Path = RUNS, carried: Path = CARRIED) -> bool:
    """Put a carried run back into its run folder when that has no checkpoint (a new machine); the checkpoint
    appears whole or not at all."""
    source, run = carried / name / f"seed-{seed}", runs / name / f"seed-{seed}"
    if not (source / "config.json").exists() or checkpoint_folders(run) or (run / "metrics.json").exists():
        return False
    (checkpoint,) = (source / "checkpoints").iterdir()
    staging = run / "checkpoints" / f".incomplete-{checkpoint.name}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(checkpoint, staging)
    shutil.copyfile(source / "config.json", run / "config.json")
    os.replace(staging, run / "checkpoints" / checkpoint.name)
    return True


def keep(run: Path, name: str, kept: Path = KEPT) -> Path:
    """Copy the files the records read (with the run's analysis of both splits, made when missing)."""
    splits = [] if name in NO_ANALYSIS else ["valid", "test"]
    for split in splits:
        analysis(run, split)  # made by scripts/evaluate.py when missing
    return keep_run(
        run, kept / name / run.name, (*(f"analysis/analysis-{split}.json" for split in splits), *KEPT_FILES)
    )


def lane(presets: list[str], seeds: list[str], kept: Path = KEPT, claims: Path = CLAIMS, threads: int = 1) -> int:
    """Train and keep every owed run of ``presets``, in order, skipping those kept or claimed elsewhere."""
    done = 0
    for preset in presets:
        name = preset.replace("_", "-")
        for seed in seeds:
            if is_kept(name, seed, kept):
                continue
            with claim(name, seed, claims) as held:
                if held and not is_kept(name, seed, kept):  # another lane may have kept it between the two looks
                    if restore(name, seed):
                        print(f"{name} seed {seed}: resumes from its carried checkpoint", flush=True)
                    run = train(preset, name, seed, threads=threads)
                    print(f"{name} seed {seed}: kept in {keep(run, name, kept)}", flush=True)
                    shutil.rmtree(CARRIED / name / f"seed-{seed}", ignore_errors=True)  # kept: no longer carried
                    done += 1
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="*", metavar="PRESET", help=f"some of {', '.join(ORDER)} (default: all)")
    parser.add_argument("--seeds", nargs="+", choices=SEEDS, default=SEEDS, help="seeds to run (default: all)")
    parser.add_argument("--carry", action="store_true", help="only copy the unfinished runs' latest checkpoints")
    parser.add_argument(
        "--num_threads", type=int, default=1, metavar="N",
        help="CPU threads per run (default: 1, one lane per core; 2 for a last run alone on two cores, from its "
        "start: a run resumed with another count sums in another order, so it is the same run only to float rounding)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.carry:
        copies = carry()
        print("\n".join(f"carried {path}" for path in copies) or "no unfinished run has a checkpoint to carry")
        return 0
    if unknown := sorted(set(args.presets) - set(ORDER)):
        parser.error(f"unknown presets {unknown}: name some of {', '.join(ORDER)}")
    try:
        if args.num_threads < 1:
            parser.error(f"--num_threads must be at least 1, got {args.num_threads}")
        done = lane(args.presets or ORDER, args.seeds, threads=args.num_threads)
    except KeyboardInterrupt:  # Ctrl-C, or a SIGTERM passed on to the run being trained
        print("stopped: the same command goes on from here (the interrupted run resumes from its checkpoint)")
        return 130
    print(f"lane finished: {done} runs trained and kept; every run of these presets is kept or claimed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
