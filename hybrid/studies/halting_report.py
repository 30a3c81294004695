"""The adaptive-depth study's tables, its files in RUN_DIR/analysis, and its timing as a benchmark report."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..tables import markdown_table
from .halting_study import HaltingStudy, Timing, fixed_label, halting_path_label
from .reports import header, report_text, write

TIMING_EXPLANATION = (
    "State halting and the state-feature head score no items while reasoning; KL halting and the "
    "distribution head score the catalogue after every step; the history-length plan decides before "
    "reasoning starts, the popularity plan after ranking the catalogue once at depth 0. 'Rounds "
    "faster' pairs each rule with the fixed K = {steps} evaluation of the same round, so both saw the"
    " same machine load. 'The halting path at K = {steps}' runs every user to depth {steps} through "
    "the halting code: the time against it is each rule's net saving (for KL halting and the "
    "distribution head, after their per-step scoring). Each round starts one entry later than the "
    "last."
)


def gap_closed(study: HaltingStudy, value: float) -> str:
    """The share of the gap from the best fixed depth (chosen on validation) to the oracle that ``value`` closes."""
    best = study.fixed["test"][study.best_fixed].metrics["ndcg@10"]
    gap = study.oracle["ndcg@10"] - best
    return f"{(value - best) / gap:+.1%}" if gap > 0 else "n/a"


def quality_table(study: HaltingStudy) -> str:
    """Validation and test figures of every fixed depth, every rule and the oracle."""
    rows = []
    for k in range(study.steps + 1):
        marker = " (best on valid)" if k == study.best_fixed else ""
        v, t = study.fixed["valid"][k].metrics, study.fixed["test"][k].metrics
        rows.append([f"fixed K = {k}{marker}", f"{v['ndcg@10']:.4f}", f"{t['ndcg@10']:.4f}", f"{t['recall@10']:.4f}",
                     str(k), ""])  # fmt: skip
    for rule in study.rules.values():
        t = rule.test.metrics
        rows.append([f"{rule.name} {rule.shown}", f"{rule.valid.metrics['ndcg@10']:.4f}", f"{t['ndcg@10']:.4f}",
                     f"{t['recall@10']:.4f}", f"{rule.mean_steps:.2f}", gap_closed(study, t["ndcg@10"])])  # fmt: skip
    oracle = study.oracle
    rows.append(["ORACLE (best depth per user, uses the label)", "", f"{oracle['ndcg@10']:.4f}",
                 f"{oracle['recall@10']:.4f}", "", "100%"])  # fmt: skip
    columns = ["depth rule", "valid NDCG@10", "test NDCG@10", "test Recall@10", "mean steps", "gap to oracle closed"]
    return markdown_table(columns, rows, "lrrrrr")


def timing_table(timing: Timing, steps: int) -> str:
    """Median seconds of each entry, against fixed K and against fixed K through the halting path."""
    fixed, path = timing.seconds[fixed_label(steps)], timing.seconds[halting_path_label(steps)]
    rows = (
        [name, f"{timing.mean_steps[name]:.2f}", f"{value:.4f}", f"{value / fixed:.3f}x",
         f"{timing.faster[name]} of {timing.rounds}", f"{value / path:.3f}x",
         f"{timing.faster_on_path[name]} of {timing.rounds}"]
        for name, value in timing.seconds.items()
    )  # fmt: skip
    columns = ["depth or rule", "mean steps", "seconds (median)", f"vs fixed K = {steps}",
               f"rounds faster than fixed K = {steps}", f"vs the halting path at K = {steps}",
               "rounds faster than it"]  # fmt: skip
    return markdown_table(columns, rows, "lrrrrrr")


def study_text(study: HaltingStudy, run_dir: str) -> str:
    """The study's Markdown page: protocol, quality table, timing table."""
    config = study.config
    return (
        f"# Adaptive reasoning depth: {Path(run_dir).name}\n\nProtocol: {study.rules['kl'].test.protocol}\n\n"
        f"Halting heads fitted on {config.head_split} rows.\n\n{quality_table(study)}\n\n"
        f"Test-set evaluation time, median of {config.timing_rounds} interleaved rounds, {torch.get_num_threads()} "
        f"thread(s), compact ratio {config.compact_ratio:g}:\n\n{timing_table(study.timing, study.steps)}"
    )


def study_json(study: HaltingStudy) -> dict:
    """Every figure of the study, for RUN_DIR/analysis/adaptive_depth.json."""
    fixed = study.fixed
    rules = {
        key: {
            "setting": rule.setting,
            "valid": rule.valid.metrics,
            "test": rule.test.metrics,
            "mean_steps": rule.mean_steps,
            **({"valid_read_off": rule.valid_read_off} if rule.valid_read_off is not None else {}),
        }
        for key, rule in study.rules.items()
    }
    return {
        "fixed": {
            k: {"valid": fixed["valid"][k].metrics, "test": fixed["test"][k].metrics} for k in range(study.steps + 1)
        },
        "best_fixed_on_valid": study.best_fixed,
        **rules,
        "head_split": study.config.head_split,
        "oracle_test": study.oracle,
        "eval_seconds": study.timing.seconds,
        "eval_seconds_by_round": study.timing.samples,
        "compact_ratio": study.config.compact_ratio,
    }


def write_study(study: HaltingStudy, run_dir: str) -> str:
    """Write RUN_DIR/analysis/adaptive_depth.{md,json}; returns the Markdown."""
    text = study_text(study, run_dir)
    folder = Path(run_dir) / "analysis"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adaptive_depth.md").write_text(text)
    (folder / "adaptive_depth.json").write_text(json.dumps(study_json(study), indent=2))
    return text


def write_timing_report(study: HaltingStudy, run_dir: str, path: Path) -> dict:
    """The timing alone, in the benchmark reports' format (machine, date, command): PATH.{md,json}."""
    timing, config = study.timing, study.config
    report = {
        **header(torch.get_num_threads()),
        "setting": f"evaluation of the {study.test_users} test users of run {run_dir} "
        f"(trained K = {study.steps}) at every fixed depth and with each halting rule at its validation-chosen "
        f"setting, {config.timing_rounds} interleaved rounds, compact ratio {config.compact_ratio:g}",
        "mean_steps": timing.mean_steps,
        "eval_seconds": timing.seconds,
        "eval_seconds_by_round": timing.samples,
        "rounds_faster_than_fixed_K": timing.faster,
        "rounds_faster_than_the_halting_path_at_K": timing.faster_on_path,
    }
    title = "Adaptive depth: evaluation time with halting"
    explanation = TIMING_EXPLANATION.format(steps=study.steps)
    write(report, report_text(title, report, timing_table(study.timing, study.steps), explanation), Path(path))
    return report
