"""One preset trained with several seeds, summarised as mean +/- std (scripts/seeds.py is its command line).

Each seed is a separate scripts/train.py run in FOLDER/seed-N: finished runs are kept and skipped and an
interrupted one resumes from its latest checkpoint, so the whole command can be stopped and started again.
The summary (summary.md, summary.json) is rebuilt from the finished runs' metrics.json files.
"""

from __future__ import annotations

import json
import math
import signal
import statistics
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from ..checkpoint import checkpoint_folders
from ..config import parse_configs, to_dict
from ..errors import ConfigError, DataError
from ..metrics import shared_metric_keys
from ..seed_runs import (
    finished_seed_runs,
    keep_run,
    mixed_seed_runs,
    read_run_json,
    run_settings_that_matter,
    settings_that_matter,
)
from ..tables import markdown_table
from .paths import TRAIN_SCRIPT

GROUP_KEYS = ("recall@10", "ndcg@10", "ndcg@20", "mrr@10")  # the columns of the target-group table

# run name -> (test rows of the group, the group's test metrics)
GroupRuns = dict[str, tuple[int, dict[str, float]]]


def seed_command(seed: int, run: Path, config: str | None, extra: Sequence[str]) -> list[str]:
    """The scripts/train.py command of one seed (resuming when the run left a complete checkpoint)."""
    command = [sys.executable, str(TRAIN_SCRIPT), "--seed", str(seed), "--output_dir", str(run), "--progress", "false"]
    command += [*(["--config", config] if config else []), *extra]
    if checkpoint_folders(run):
        command += ["--resume", "latest"]
    return command


def run_seeds(
    folder: Path, seeds: Sequence[int], config: str | None = None, extra: Sequence[str] = (), keep: Path | None = None
) -> list[int]:
    """Train every seed not finished yet into FOLDER/seed-N, one process after another; a seed that fails is
    reported and the others still run. With ``keep``, each finished run's config.json and metrics.json are
    copied to KEEP/seed-N (a folder that outlives the machine, e.g. committed) and a seed kept there is not
    trained again. A finished or kept seed whose settings differ from the ones asked for is refused (a failed
    seed, said with what differs). Returns the failed seeds: refused ones and those whose files could not be
    kept included."""
    owned = [arg for arg in extra if arg.split("=")[0].replace("-", "_") in ("__seed", "__output_dir")]
    if owned:
        raise ConfigError(f"{owned[0]} is set per seed by seeds.py (--seeds, --output); remove it from the extras.")
    failed = []
    for seed in seeds:
        run = folder / f"seed-{seed}"
        kept = keep is not None and (keep / run.name / "metrics.json").exists()
        earlier = keep / run.name if kept else run
        if (earlier / "metrics.json").exists() and (changed := changed_settings(earlier, seed, config, extra)):
            print(
                f"seed {seed}: {earlier} was trained with other settings ({'; '.join(changed[:3])}): delete it to "
                "train this seed again, or give another --output (and --keep).",
                file=sys.stderr,
            )
            failed.append(seed)
            continue
        if kept:
            print(f"seed {seed}: kept earlier in {keep / run.name} (delete that folder to train it again)")
            continue
        if not train_seed(seed, run, config, extra) or (keep is not None and not keep_seed(seed, run, keep)):
            failed.append(seed)
    return failed


def changed_settings(run: Path, seed: int, config: str | None, extra: Sequence[str]) -> list[str]:
    """The settings that matter whose value in a finished run's config.json differs from what this command
    asks for ('model.reasoning_method: 'erl' there, 'prl' now'); keys one side lacks (older runs) are not
    compared. Empty when the command's settings do not parse: training says why."""
    try:
        asked = parse_configs([*(["--config", config] if config else []), *extra, "--seed", str(seed)])
    except (ConfigError, DataError):
        return []
    wanted = settings_that_matter(json.loads(json.dumps(to_dict(*asked))))
    there = run_settings_that_matter(run)
    return [
        f"{key}: {there[key]!r} there, {value!r} now"
        for key, value in wanted.items()
        if key in there and there[key] != value
    ]


def train_seed(seed: int, run: Path, config: str | None, extra: Sequence[str]) -> bool:
    """Train one seed into ``run`` unless it finished earlier; False when its run failed (said on stderr)."""
    if (run / "metrics.json").exists():
        print(f"seed {seed}: finished earlier, kept ({run})")
        return True
    command = seed_command(seed, run, config, extra)
    print("running:", " ".join(command), flush=True)
    code = run_passing_sigterm(command)
    if code:
        # On stderr, beside the run's own error: a caller that hides stdout (test figures) still sees it.
        print(f"seed {seed}: failed (exit code {code}, its error above); the other seeds go on.", file=sys.stderr)
    return code == 0


def keep_seed(seed: int, run: Path, keep: Path) -> bool:
    """Copy a finished run's files to KEEP/seed-N; False (said on stderr) when they cannot be copied."""
    try:
        print(f"seed {seed}: kept in {keep_run(run, keep / run.name)}", flush=True)
    except OSError as error:
        print(
            f"seed {seed}: finished in {run} but could not be kept in {keep / run.name} "
            f"({error.strerror or error}): fix that and run the same command again (the run is not trained again).",
            file=sys.stderr,
        )
        return False
    return True


def run_passing_sigterm(command: list[str], stdout: int | None = None) -> int:
    """Run command to its end and return its exit code. A SIGTERM to this process is passed on to it (otherwise
    the training run goes on, orphaned) and, once it ended, stops the queue as Ctrl-C would (KeyboardInterrupt).
    ``stdout`` is the child's standard output, as subprocess takes it (default: this process's)."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set a handler
        return subprocess.run(command, stdout=stdout).returncode
    stopped, child = [], None

    def stop(signum: int, frame: object) -> None:
        stopped.append(signum)
        if child is not None:
            child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, stop)  # before the child starts: no moment without it
    try:
        child = subprocess.Popen(command, stdout=stdout)
        if stopped:  # the signal came while it started
            child.send_signal(signal.SIGTERM)
        code = child.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if stopped:
        raise KeyboardInterrupt
    return code


def spread(values: Sequence[float]) -> str:
    """``mean ± std`` (a single seed has no std: 'n/a')."""
    deviation = f"{statistics.stdev(values):.4f}" if len(values) > 1 else "n/a"
    return f"{statistics.mean(values):.4f} ± {deviation}"


def std_or_none(values: Sequence[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def group_metrics(metrics: dict[str, dict]) -> dict[str, GroupRuns]:
    """Per target group (e.g. cold targets), each run's (row count, test metrics); groups every run has."""
    groups: dict[str, GroupRuns] = {}
    for name, result in metrics.items():
        for group, entry in result["test"].get("groups", {}).items():
            groups.setdefault(group, {})[name] = (entry["rows"], entry["metrics"])
    return {group: runs for group, runs in groups.items() if len(runs) == len(metrics)}


def runs_table(metrics: dict[str, dict]) -> str:
    """One row per seed run (best epoch, validation NDCG@10, test metrics), then their mean ± std; runs that
    chose their epoch on some validation rows only (``--select_on``) add that figure."""
    keys = shared_metric_keys(r["test"]["metrics"] for r in metrics.values())
    selected = sorted(
        {r["selection"]["rows"] for r in metrics.values() if r.get("selection", {}).get("rows", "all") != "all"}
    )
    chosen = {
        name: [r.get("selection", {}).get("ndcg@10", math.nan)] if selected else [] for name, r in metrics.items()
    }
    rows = [
        [name, str(result["best_epoch"]), f"{result['valid']['metrics']['ndcg@10']:.4f}",
         *(f"{value:.4f}" for value in chosen[name]), *(f"{result['test']['metrics'][k]:.4f}" for k in keys)]
        for name, result in metrics.items()
    ]  # fmt: skip
    valid = [r["valid"]["metrics"]["ndcg@10"] for r in metrics.values()]
    tests = (spread([r["test"]["metrics"][k] for r in metrics.values()]) for k in keys)
    selection = [spread([values[0] for values in chosen.values()])] if selected else []
    rows.append([f"**mean ± std ({len(metrics)} seeds)**", "", spread(valid), *selection, *tests])
    extra = [f"valid ndcg@10, {', '.join(selected)} (chose the epoch)"] if selected else []
    columns = ["run", "best epoch", "valid ndcg@10", *extra, *(f"test {k}" for k in keys)]
    return markdown_table(columns, rows, "lrr" + "r" * (len(extra) + len(keys)))


def groups_table(groups: dict[str, GroupRuns], random_ranking: dict[str, dict[str, float]]) -> str:
    """Test metrics per target group and run, each group's mean ± std, and chance level where known."""
    rows = []
    for group, runs in groups.items():
        rows += [[group, name, str(count), *(f"{values[k]:.4f}" for k in GROUP_KEYS)]
                 for name, (count, values) in runs.items()]  # fmt: skip
        rows.append([group, "**mean ± std**", "", *(spread([v[k] for _, v in runs.values()]) for k in GROUP_KEYS)])
    for name, values in random_ranking.items():
        rows.append([f"random ranking of {name}", "expected", "", *(f"{values[k]:.4f}" for k in GROUP_KEYS)])
    columns = ["group", "run", "rows", *(f"test {k}" for k in GROUP_KEYS)]
    return markdown_table(columns, rows, "llr" + "r" * len(GROUP_KEYS))


def summary_json(metrics: dict[str, dict], groups: dict[str, GroupRuns]) -> dict:
    """The summary's figures: every run, the means, and the target groups."""
    keys = shared_metric_keys(r["test"]["metrics"] for r in metrics.values())
    return {
        "runs": {
            name: {"best_epoch": r["best_epoch"], "valid": r["valid"]["metrics"], "test": r["test"]["metrics"]}
            for name, r in metrics.items()
        },
        "seeds": len(metrics),
        "mean_test": {k: statistics.mean(r["test"]["metrics"][k] for r in metrics.values()) for k in keys},
        "std_test": {k: std_or_none([r["test"]["metrics"][k] for r in metrics.values()]) for k in keys},
        "mean_valid_ndcg@10": statistics.mean(r["valid"]["metrics"]["ndcg@10"] for r in metrics.values()),
        "protocol": next(iter(metrics.values()))["protocol"],
        "protocols": sorted({r["protocol"] for r in metrics.values()}),  # more than one: the means mix them
        "groups": {
            group: {
                "runs": {name: {"rows": count, "test": values} for name, (count, values) in runs.items()},
                "mean_test": {k: statistics.mean(v[k] for _, v in runs.values()) for k in keys},
            }
            for group, runs in groups.items()
        },
    }


def summarise(folder: Path, leave_out: Sequence[str] = ()) -> str:
    """Write FOLDER/summary.{md,json} from the finished seed runs (but those named in ``leave_out``, e.g. seeds
    refused for other settings); returns the Markdown."""
    runs = [run for run in finished_seed_runs(folder) if run.name not in leave_out]
    if not runs:
        raise DataError(f"no finished runs under {folder}")
    metrics = {
        run.name: read_run_json(run / "metrics.json", ("test", "valid", "best_epoch", "protocol")) for run in runs
    }
    first = next(iter(metrics.values()))
    text = f"# {folder.name}\n\nProtocol: {first['protocol']}\n\n{runs_table(metrics)}\n"
    mixed = mixed_seed_runs(runs)
    if mixed:  # said, not refused: the summary shows what is there (compare.py --seed_groups refuses it)
        text += f"\n**Not one setting over seeds**: {'; '.join(mixed)}.\n"
    protocols: dict[str, list[str]] = {}
    for name, result in metrics.items():
        protocols.setdefault(result["protocol"], []).append(name)
    if len(protocols) > 1:  # the means above mix figures of different evaluations
        said = "; ".join(f"{', '.join(names)}: {protocol}" for protocol, names in protocols.items())
        text += f"\n**Not one protocol over seeds**: {said}.\n"
    groups = group_metrics(metrics)
    if groups:
        table = groups_table(groups, first["test"].get("random_ranking", {}))
        text += f"\nTest metrics by target group (cold targets: no training interactions):\n\n{table}\n"
    (folder / "summary.md").write_text(text)
    (folder / "summary.json").write_text(json.dumps(summary_json(metrics, groups), indent=2))
    return text
