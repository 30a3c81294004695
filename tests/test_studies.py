"""The benchmark suites' library code: interleaved timing, report files, the committed pages rebuilt from their
figures, and one catalogue size measured in this process."""

import json
from pathlib import Path

import pytest
from hybrid_rearec.hybrid.studies import foundation, reasoning_cost, scale, suites, timing, training_steps
from hybrid_rearec.hybrid.studies.reports import BenchmarkConfig, header, report_text, write

ROOT = Path(__file__).resolve().parents[1]


def test_interleaved_rounds_rotate_the_order_and_skip_the_warm_up(monkeypatch):
    calls = []
    clock = iter(range(1000))
    monkeypatch.setattr(timing.time, "perf_counter", lambda: float(next(clock)))
    functions = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    samples = timing.interleaved_samples(functions, rounds=2)
    # warm-up round a b c, then each round starts one function later
    assert calls == list("abc") + list("bca") + list("cab")
    assert {name: len(values) for name, values in samples.items()} == {"a": 2, "b": 2, "c": 2}
    assert all(value == 1.0 for values in samples.values() for value in values)  # one tick per call
    assert timing.median_seconds(lambda: None, 3) == 1.0


def test_rounds_faster_pairs_entries_by_round():
    samples = {"fixed": [1.0, 2.0, 3.0], "rule": [0.5, 2.5, 2.0], "same": [1.0, 2.0, 3.0]}
    assert timing.rounds_faster(samples, "fixed") == {"fixed": 0, "rule": 2, "same": 0}


def test_a_report_names_the_machine_date_and_command_and_writes_both_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["scripts/benchmark.py", "--suite", "prl"])
    results = {**header(threads=3), "setting": "one batch", "seconds": {"a": 0.5}}
    assert results["command"] == "python scripts/benchmark.py --suite prl" and results["machine"]["threads"] == 3
    text = report_text("Title", results, "| a |", "What it means.")
    assert text.startswith("# Title\n\none batch.\n\nMachine: ") and text.endswith("\n\n| a |\n\nWhat it means.\n")
    assert f"Command: `{results['command']}`" in text and f"Date: {results['date']}." in text
    write(results, text, tmp_path / "deep" / "prl")
    assert json.loads((tmp_path / "deep" / "prl.json").read_text()) == results
    assert (tmp_path / "deep" / "prl.md").read_text() == text and text in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "report"),
    [
        ("foundation", foundation.report),
        ("reasoning", reasoning_cost.report),
        ("scale", scale.report),
        ("prl_training", training_steps.prl_report),
        ("precision", training_steps.precision_report),
    ],
)
def test_committed_benchmark_pages_are_rebuilt_byte_for_byte_from_their_figures(name, report):
    """The Markdown of every committed suite follows from its JSON: the tables' layout has not moved."""
    results = json.loads((ROOT / "benchmarks" / f"{name}.json").read_text())
    assert report(results) == (ROOT / "benchmarks" / f"{name}.md").read_text()


def test_growth_table_compares_each_size_with_the_next():
    rows = [
        {"items": 1000, "epoch_seconds": 1.0, "eval_seconds": 0.5, "peak_rss_gib": 1.0},
        {"items": 10_000, "epoch_seconds": 3.0, "eval_seconds": 2.0, "peak_rss_gib": 1.5},
    ]
    assert scale.growth_table(rows).splitlines()[2] == "| 1,000 -> 10,000 (10x items) | 3.0x | 4.0x | 1.50x |"


def test_one_catalogue_size_is_measured_in_this_process():
    row = scale.measure_size(items=60, users=40, mean_length=5.0, threads=1)
    assert row["items"] == 60 and row["test_users"] == 40 and row["loss"] == "full softmax"
    assert row["epoch_seconds"] > 0 and row["eval_seconds"] > 0 and row["peak_rss_gib"] > 0
    assert 0.0 <= row["test_ndcg@10"] <= 1.0


def test_suites_run_by_name_in_order_and_an_unknown_name_is_refused(monkeypatch, tmp_path):
    ran = []
    fake = {name: (lambda config, name=name: ran.append(name) or {"suite": name}) for name in suites.SUITES}
    monkeypatch.setattr(suites, "SUITES", fake)
    config = BenchmarkConfig(output_dir=str(tmp_path))
    assert isinstance(config.output_dir, Path)
    assert suites.run_suites(config, "prl") == {"prl": {"suite": "prl"}} and ran == ["prl"]
    order = ["foundation", "reasoning", "prl", "precision", "scale", "one_pass", "lora_cache"]
    assert list(suites.run_suites(config)) == order
    with pytest.raises(ValueError, match="unknown benchmark suite 'speed'"):
        suites.run_suites(config, "speed")


def test_one_pass_suite_times_both_layouts_and_writes_the_checked_schema(tmp_path, csv_data_config):
    import json

    from accelerate import Accelerator
    from hybrid_rearec.hybrid.data import load_dataset
    from hybrid_rearec.hybrid.studies import one_pass
    from hybrid_rearec.hybrid.studies.reports import BenchmarkConfig

    dataset = load_dataset(csv_data_config)
    accelerator = Accelerator(cpu=True)
    functions = {
        f"sasrec/{layout}": one_pass.epoch_function(dataset, one_pass.PRESETS["sasrec"], layout, accelerator)
        for layout in ("prefix", "one_pass")
    } | {"erl/shared": one_pass.shared_work_function(dataset, one_pass.PRESETS["rearec-erl"], accelerator)}
    seconds = one_pass.epoch_seconds(functions, rounds=1, synchronize=lambda: None)
    assert set(seconds) == {"sasrec/prefix", "sasrec/one_pass", "erl/shared"} and all(s > 0 for s in seconds.values())
    sasrec = {"prefix_s_per_epoch": 2.0, "one_pass_s_per_epoch": 0.5, "ratio": 4.0}
    figures = {"ml-100k": {"sasrec": sasrec | {"shared_s_per_epoch": 0.25, "ratio_bound": 8.0}}}
    one_pass.write_report(BenchmarkConfig(output_dir=tmp_path), figures, 1, accelerator, "one_pass")
    assert json.loads((tmp_path / "one_pass.json").read_text()) == figures
    assert "| ml-100k | sasrec | 2.0 | 0.5 | 4.0x | 0.2 | 8.0x |" in (tmp_path / "one_pass.md").read_text()


def test_one_pass_suite_reads_each_dataset_with_its_own_presets():
    from hybrid_rearec.hybrid.studies import one_pass

    scientific = one_pass.preset_data(one_pass.DATASETS["amazon-scientific"]["sasrec"])
    assert scientific.data_format == "recbole_split" and Path(scientific.dataset).is_absolute()
    assert one_pass.preset_data(one_pass.PRESETS["sasrec"]).dataset == "ml-100k"
    assert "ml-100k" in one_pass.available_datasets()  # Scientific only where its files are


def test_benchmark_settings_below_one_are_refused_before_any_suite_runs():
    with pytest.raises(ValueError, match=r"must be >= 1, got --threads 0, --sizes 0, --mean_length nan"):
        BenchmarkConfig(threads=0, sizes=[1000, 0], mean_length=float("nan"))
    with pytest.raises(ValueError, match=r"--sizes must be >= 2 and --mean_length in \[3, inf\)"):
        BenchmarkConfig(sizes=[1])  # the scale suite's synthetic data needs these
