"""The adaptive-depth study as a library: choosing settings on validation, the whole study on a tiny model,
its tables and files, and the committed halting timing tables rebuilt from their figures."""

import json
from pathlib import Path

import pytest
import torch
from hybrid_rearec.hybrid.evaluate import evaluate
from hybrid_rearec.hybrid.halting import HistoryDepth
from hybrid_rearec.hybrid.model import HybridRecommender
from hybrid_rearec.hybrid.studies import halting_report, halting_study
from hybrid_rearec.hybrid.studies.halting_study import HaltingStudyConfig, Timing, run_study
from hybrid_rearec.hybrid.synthetic import SyntheticConfig, synthetic_dataset

from tests.tester import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def test_pick_prefers_the_best_validation_figure_then_fewer_steps():
    candidates = [("a", 0.30, 2.0), ("b", 0.31, 2.0), ("c", 0.31, 1.0), ("d", 0.3100000001, 1.5)]
    assert halting_study.pick(candidates)[0] == "c"  # b, c and d tie at 6 decimals; c runs fewest steps


def test_plans_read_in_words():
    assert halting_study.history_plan_text((5, 2, 0)) == "<= 5 items: 2 steps, longer: 0"
    assert halting_study.history_plan_text((5, 1, 1)) == "(every user: 1 steps)"
    assert halting_study.popularity_plan_text((2.5, 2, 0)) == "(top-10 mean log popularity <= 2.500: 2 steps, above: 0)"


def test_a_bad_setting_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="head_split must be 'train' or 'valid'"):
        HaltingStudyConfig(head_split="test")
    with pytest.raises(ValueError, match="must be >= 1"):
        HaltingStudyConfig(timing_rounds=0)
    with pytest.raises(ValueError, match=r"compact_ratio must be >= 0 .*got -1"):
        HaltingStudyConfig(compact_ratio=-1)  # refused before minutes of fitting, not when the timing starts
    with pytest.raises(ValueError, match=r"compact_ratio must be >= 0 .*got nan"):
        HaltingStudyConfig(compact_ratio=float("nan"))


@pytest.fixture(scope="module")
def tiny_study():
    """The whole study on an untrained K = 2 model over synthetic data, every evaluation recorded."""
    torch.manual_seed(0)
    dataset = synthetic_dataset(SyntheticConfig(users=40, items=30, mean_length=6, seed=0), max_history=8)
    model = HybridRecommender(tiny_config("prl", steps=2), dataset.num_items, max_history=8).eval()
    seen = []

    def recording(model, split, name, **kwargs):
        seen.append((type(model).__name__, name, kwargs.get("steps")))
        return evaluate(model, split, name, **kwargs)

    study = run_study(model, dataset, HaltingStudyConfig(head_rows=64, timing_rounds=2), recording)
    return study, seen


def test_the_study_tunes_every_rule_on_validation_and_times_every_entry(tiny_study):
    study, seen = tiny_study
    assert study.steps == 2 and study.test_users == 40 and [len(r) for r in study.fixed.values()] == [3, 3]
    assert seen[:6] == [("HybridRecommender", split, k) for split in ("valid", "test") for k in range(3)]
    assert list(study.rules) == ["kl", "state", "learned", "learned_state", "history", "popularity"]
    best = study.fixed["valid"][study.best_fixed].metrics["ndcg@10"]
    assert best == max(result.metrics["ndcg@10"] for result in study.fixed["valid"])
    for key in ("history", "popularity"):  # chosen off the fixed depths' ranks, then run through halting
        rule = study.rules[key]
        assert rule.valid.metrics["ndcg@10"] == pytest.approx(rule.valid_read_off, abs=1e-6)
    # the oracle picks each user's best depth, so no fixed depth beats it
    assert all(study.oracle["ndcg@10"] >= r.metrics["ndcg@10"] - 1e-9 for r in study.fixed["test"])
    entries = ["fixed K = 0", "fixed K = 1", "fixed K = 2", "fixed K = 2, halting path", "KL halting",
               "state halting", "learned head", "learned head on state features", "history-length depth",
               "popularity depth"]  # fmt: skip
    assert list(study.timing.seconds) == entries and all(len(v) == 2 for v in study.timing.samples.values())
    assert study.timing.faster["fixed K = 2"] == 0 and study.timing.faster_on_path["fixed K = 2, halting path"] == 0
    assert isinstance(study.rules["history"].rule, HistoryDepth)


def test_the_study_writes_its_page_and_figures(tiny_study, tmp_path):
    study, _ = tiny_study
    run_dir = str(tmp_path / "my-run")
    text = halting_report.write_study(study, run_dir)
    assert text == (tmp_path / "my-run" / "analysis" / "adaptive_depth.md").read_text()
    assert text.startswith("# Adaptive reasoning depth: my-run\n\nProtocol: full ranking")
    assert "| ORACLE (best depth per user, uses the label) | | " in text
    assert text.count("\n| fixed K = ") == 3 + 4  # depths 0..2 in both tables, and K through the halting path
    figures = json.loads((tmp_path / "my-run" / "analysis" / "adaptive_depth.json").read_text())
    assert sorted(figures["fixed"]) == ["0", "1", "2"] and figures["best_fixed_on_valid"] == study.best_fixed
    assert "valid_read_off" in figures["history"] and "valid_read_off" not in figures["kl"]
    report = halting_report.write_timing_report(study, run_dir, tmp_path / "halting")
    assert report["rounds_faster_than_fixed_K"] == study.timing.faster
    assert "rounds faster than fixed K = 2" in (tmp_path / "halting.md").read_text()


def test_gap_closed_is_measured_from_the_best_fixed_depth_to_the_oracle(tiny_study):
    study, _ = tiny_study
    best = study.fixed["test"][study.best_fixed].metrics["ndcg@10"]
    gap = study.oracle["ndcg@10"] - best
    if gap > 0:
        assert halting_report.gap_closed(study, best + gap / 2) == "+50.0%"
    else:
        assert halting_report.gap_closed(study, best) == "n/a"


@pytest.mark.parametrize("name", ["halting_bert4rec_prl_2020", "halting_bert4rec_erl_2021"])
def test_committed_halting_timing_tables_are_rebuilt_from_their_figures(name):
    figures = json.loads((ROOT / "benchmarks" / f"{name}.json").read_text())
    timing = Timing(
        rounds=len(next(iter(figures["eval_seconds_by_round"].values()))),
        mean_steps=figures["mean_steps"],
        samples=figures["eval_seconds_by_round"],
        seconds=figures["eval_seconds"],
        faster=figures["rounds_faster_than_fixed_K"],
        faster_on_path=figures["rounds_faster_than_the_halting_path_at_K"],
    )
    table = halting_report.timing_table(timing, steps=2)
    assert f"\n\n{table}\n\n" in (ROOT / "benchmarks" / f"{name}.md").read_text()
