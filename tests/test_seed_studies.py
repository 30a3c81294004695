"""Seed runs as a library: the per-seed command, the summary of a seed folder, and comparing runs and seed groups."""

import json
import statistics
import sys
from pathlib import Path

import pytest
from hybrid_rearec.hybrid.errors import ConfigError, DataError
from hybrid_rearec.hybrid.seed_runs import keep_run
from hybrid_rearec.hybrid.seed_stats import compare_means
from hybrid_rearec.hybrid.studies import compare, seeds

KEYS = [f"{name}@{k}" for name in ("recall", "ndcg", "mrr") for k in (5, 10, 20)]


def write_run(folder: Path, ndcg: float, protocol: str = "P", cold: bool = True, name: str | None = None) -> None:
    """A finished run's metrics.json (every metric derived from ``ndcg``), with a cold-target group."""
    folder.mkdir(parents=True)
    test = {"metrics": {k: ndcg * (i + 1) for i, k in enumerate(KEYS)}, "random_ranking": {"all 9 items": {}}}
    if cold:
        test["groups"] = {"cold targets": {"rows": 4, "metrics": {k: ndcg / 10 for k in KEYS}}}
        test["random_ranking"] = {"all 9 items": {k: 0.01 for k in KEYS}}
    metrics = {"protocol": protocol, "best_epoch": 3, "epochs_run": 8, "seconds_per_epoch": 2.5, "test": test,
               "valid": {"metrics": {"ndcg@10": ndcg + 0.01}}}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if name:
        (folder / "config.json").write_text(json.dumps({"train": {"run_name": name}}))


def test_seed_command_passes_the_preset_and_resumes_an_interrupted_run(tmp_path):
    run = tmp_path / "seed-7"
    command = seeds.seed_command(7, run, "configs/x.json", ["--epochs", "2"])
    assert command[0] == sys.executable and command[1].endswith("scripts/train.py")
    assert command[2:] == ["--seed", "7", "--output_dir", str(run), "--progress", "false", "--config",
                           "configs/x.json", "--epochs", "2"]  # fmt: skip
    (run / "checkpoints" / ".incomplete-step-000000002").mkdir(parents=True)  # killed while saving: start again
    assert "--resume" not in seeds.seed_command(7, run, None, [])
    (run / "checkpoints" / "step-000000001").mkdir()
    (run / "checkpoints" / "step-000000001" / "trainer_state.json").write_text("{}")
    assert seeds.seed_command(7, run, None, [])[-2:] == ["--resume", "latest"]


def test_a_failed_seed_is_reported_and_the_others_still_run(tmp_path, capsys, monkeypatch):
    codes = {"1": 3, "2": 0}
    monkeypatch.setattr(seeds, "run_passing_sigterm", lambda command: codes[command[3]])
    assert seeds.run_seeds(tmp_path, [1, 2]) == [1]
    said = capsys.readouterr()
    assert "seed 1: failed (exit code 3" in said.err and "seed-2" in said.out  # the failure also where stdout is hidden
    with pytest.raises(ConfigError, match="--seed=5 is set per seed by seeds.py"):
        seeds.run_seeds(tmp_path, [1], extra=["--seed=5"])


def test_a_sigterm_reaches_the_seed_being_trained_and_stops_the_queue():
    import os
    import signal
    import threading
    import time

    before = signal.getsignal(signal.SIGTERM)
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()  # as `kill SEEDS_PID` would
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):  # the queue stops, not the next seed
        seeds.run_passing_sigterm([sys.executable, "-c", "import time; time.sleep(60)"])
    assert time.monotonic() - start < 30  # the child got the signal and ended (else it ran its 60 s)
    assert signal.getsignal(signal.SIGTERM) is before
    assert seeds.run_passing_sigterm([sys.executable, "-c", "raise SystemExit(3)"]) == 3


def test_finished_seeds_are_kept_not_trained_again(tmp_path, capsys, monkeypatch):
    write_run(tmp_path / "seed-1", 0.06)
    monkeypatch.setattr(seeds, "run_passing_sigterm", lambda *a: pytest.fail("a finished seed was trained again"))
    seeds.run_seeds(tmp_path, [1])
    assert "seed 1: finished earlier, kept" in capsys.readouterr().out


def test_keep_copies_finished_runs_and_skips_seeds_kept_on_another_machine(tmp_path, capsys, monkeypatch):
    runs, kept = tmp_path / "runs", tmp_path / "kept"
    write_run(kept / "seed-1", 0.05, name="a")  # kept by an earlier machine: its run folder is gone
    write_run(runs / "seed-2", 0.06, name="a")  # finished here before --keep was given

    def train(command: list[str]) -> int:  # seed 3 trains and finishes, seed 4 fails
        seed = command[3]
        assert seed in ("3", "4"), f"seed {seed} was trained again"
        if seed == "4":
            return 1
        write_run(Path(command[5]), 0.07, name="a")
        return 0

    monkeypatch.setattr(seeds, "run_passing_sigterm", train)
    assert seeds.run_seeds(runs, [1, 2, 3, 4], keep=kept) == [4]
    assert "seed 1: kept earlier" in capsys.readouterr().out
    assert sorted(p.name for p in kept.iterdir()) == ["seed-1", "seed-2", "seed-3"]  # the failed seed is not kept
    for seed in (2, 3):
        for file in ("config.json", "metrics.json"):
            assert (kept / f"seed-{seed}" / file).read_bytes() == (runs / f"seed-{seed}" / file).read_bytes()
    assert not list(kept.glob("*/.*incomplete"))
    assert "3 seeds" in seeds.summarise(kept)


def test_keep_run_copies_nested_files_and_writes_metrics_last(tmp_path):
    run = tmp_path / "run"
    write_run(run, 0.05, name="a")
    (run / "analysis").mkdir()
    (run / "analysis" / "analysis-test.json").write_text("{}")
    target = keep_run(run, tmp_path / "kept" / "seed-1", ("metrics.json", "analysis/analysis-test.json"))
    assert (target / "analysis" / "analysis-test.json").read_text() == "{}" and (target / "metrics.json").exists()
    (run / "config.json").unlink()
    with pytest.raises(FileNotFoundError):  # listed first, metrics.json is still copied last
        keep_run(run, tmp_path / "kept" / "seed-2", ("metrics.json", "config.json"))
    assert not (tmp_path / "kept" / "seed-2" / "metrics.json").exists()


def test_a_half_kept_seed_is_kept_again_and_a_copy_that_fails_is_a_failed_seed(tmp_path, capsys, monkeypatch):
    runs, kept = tmp_path / "runs", tmp_path / "kept"
    write_run(runs / "seed-1", 0.05, name="a")
    (kept / "seed-1").mkdir(parents=True)  # stopped mid-copy: config.json and a partial metrics.json only
    (kept / "seed-1" / "config.json").write_text("{}")
    (kept / "seed-1" / ".metrics.json.incomplete").write_text("{")
    monkeypatch.setattr(seeds, "run_passing_sigterm", lambda *a: pytest.fail("a finished seed was trained again"))
    assert seeds.run_seeds(runs, [1], keep=kept) == []
    assert (kept / "seed-1" / "metrics.json").read_bytes() == (runs / "seed-1" / "metrics.json").read_bytes()
    write_run(runs / "seed-2", 0.06, name="a")
    (kept / "seed-2").write_text("a file where the seed's folder goes")
    assert seeds.run_seeds(runs, [2], keep=kept) == [2]
    said = capsys.readouterr().err
    assert "seed 2: finished in" in said and "could not be kept" in said and "not trained again" in said


def test_summary_shows_every_seed_the_mean_and_the_groups_all_runs_have(tmp_path):
    write_run(tmp_path / "seed-1", 0.060)
    write_run(tmp_path / "seed-2", 0.064)
    (tmp_path / "seed-3").mkdir()  # unfinished: no metrics.json, not a sample
    text = seeds.summarise(tmp_path)
    assert text == (tmp_path / "summary.md").read_text() and text.startswith(f"# {tmp_path.name}\n\nProtocol: P\n")
    ndcg = [0.060 * 5, 0.064 * 5]  # ndcg@10 is the fifth key
    mean_row = next(line for line in text.splitlines() if line.startswith("| **mean ± std (2 seeds)** | |"))
    assert f"{statistics.mean(ndcg):.4f} ± {statistics.stdev(ndcg):.4f}" in mean_row
    assert "| cold targets | seed-2 | 4 | " in text and "| random ranking of all 9 items | expected | |" in text
    assert "chose the epoch" not in text  # selected on every validation row: no extra column
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary["runs"]) == ["seed-1", "seed-2"] and summary["mean_test"]["ndcg@10"] == pytest.approx(0.31)
    assert summary["groups"]["cold targets"]["runs"]["seed-1"]["rows"] == 4


def test_runs_that_chose_their_epoch_on_warm_targets_show_that_figure(tmp_path):
    for seed, figure in ((1, 0.07), (2, 0.09)):
        write_run(tmp_path / f"seed-{seed}", 0.06)
        path = tmp_path / f"seed-{seed}" / "metrics.json"
        path.write_text(
            json.dumps(json.loads(path.read_text()) | {"selection": {"rows": "warm_targets", "ndcg@10": figure}})
        )
    text = seeds.summarise(tmp_path)
    assert "| valid ndcg@10, warm_targets (chose the epoch) |" in text.splitlines()[4]
    assert "| 0.0800 ± 0.0141 |" in next(line for line in text.splitlines() if line.startswith("| **mean ± std"))


def test_a_group_some_runs_lack_is_left_out_and_an_empty_folder_is_an_error(tmp_path):
    write_run(tmp_path / "seed-1", 0.060)
    write_run(tmp_path / "seed-2", 0.064, cold=False)
    assert "by target group" not in seeds.summarise(tmp_path)
    with pytest.raises(DataError, match="no finished runs under"):
        seeds.summarise(tmp_path / "nothing")


def test_compare_runs_names_each_run_and_measures_against_the_first(tmp_path):
    write_run(tmp_path / "a", 0.05, name="sasrec")
    write_run(tmp_path / "b", 0.055)
    write_run(tmp_path / "c" / "b", 0.06)  # the same folder name again: shown by its path
    text = compare.compare_runs([tmp_path / "a", tmp_path / "b", tmp_path / "c" / "b"])
    lines = text.splitlines()
    assert lines[:3] == ["protocol: P", "", "| model | recall@5 | recall@10 | recall@20 | ndcg@5 | ndcg@10 | "
                                           "ndcg@20 | mrr@5 | mrr@10 | mrr@20 |"]  # fmt: skip
    assert lines[-3] == "sasrec: test ndcg@10 0.2500 (+0.0% vs sasrec), best epoch 3 of 8, 2.5 s/epoch"
    assert lines[-2].startswith("b: test ndcg@10 0.2750 (+10.0% vs sasrec)")
    assert lines[-1].startswith(f"{tmp_path / 'c' / 'b'}: test ndcg@10 0.3000 (+20.0% vs sasrec)")
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(DataError, match="metrics.json is missing: did the run finish?"):
        compare.compare_runs([tmp_path / "a", tmp_path / "unfinished"])


def test_seed_groups_against_the_first_group(tmp_path):
    for seed, value in zip((1, 2, 3), (0.060, 0.062, 0.064)):
        write_run(tmp_path / "base" / f"seed-{seed}", value)
    for seed, value in zip((1, 2), (0.066, 0.068)):
        write_run(tmp_path / "new" / f"seed-{seed}", value)
    text = compare.compare_seed_groups([str(tmp_path / "base"), str(tmp_path / "new")], "recall@5", 0.95, 1.05)
    header, separator, base_row, new_row = text.splitlines()[4:]
    assert text.startswith("protocol: P\nnote: 5 run(s) have no config.json (e.g. ")  # settings not compared
    assert "their settings were not compared\nseeds are the samples; test recall@5\n\n" in text
    assert separator == "|---|---:|---:|---:|---|---:|---:|" and "(95% test, 80% power)" in header
    assert base_row == f"| {tmp_path / 'base'} | 3 | 0.0620 ± 0.0020 | 1 | | | |"
    expected = compare_means([0.060, 0.062, 0.064], [0.066, 0.068])
    assert f"| {expected.ratio:.3f}x | {compare.ratio_interval(expected)} | {expected.p_value:.3f} |" in new_row


def test_seed_groups_refuse_shared_runs_small_groups_and_mixed_protocols(tmp_path):
    for seed in (1, 2):
        write_run(tmp_path / "a" / f"seed-{seed}", 0.06)
        write_run(tmp_path / "other" / f"seed-{seed}", 0.06, protocol="Q")
        write_run(tmp_path / "other2" / f"seed-{seed}", 0.07)
    write_run(tmp_path / "small" / "seed-1", 0.06)
    a = str(tmp_path / "a")
    with pytest.raises(DataError, match="twice in group"):
        compare.read_seed_groups([f"{a},{a}"])
    with pytest.raises(DataError, match=f"in groups {a} and"):
        compare.read_seed_groups([a, f"{tmp_path / 'small'},{a}"])
    with pytest.raises(DataError, match="holds 1 finished seed runs"):
        compare.read_seed_groups([a, str(tmp_path / "small")])
    with pytest.raises(DataError, match=r"seed folder '.*smal' does not exist"):  # a typo is not 'no runs'
        compare.read_seed_groups([a, f"{a},{tmp_path / 'smal'}"])
    with pytest.raises(DataError, match="different protocols"):
        compare.compare_seed_groups([a, str(tmp_path / "other")], "ndcg@10", 0.95)
    with pytest.raises(DataError, match=r"a run of .*a has no test mrr@50 \(it has .*ndcg@10"):  # a traceback before
        compare.compare_seed_groups([a, str(tmp_path / "small") + "," + str(tmp_path / "other2")], "mrr@50", 0.95)


def test_seed_groups_on_other_rows_than_the_protocol_line_shows_are_refused(tmp_path):
    for group, cold_seed in (("a", 0), ("b", 1), ("c", 0)):  # a cold_items split with other cold items
        for seed in (1, 2):
            run = tmp_path / group / f"seed-{seed}"
            write_run(run, 0.06 + seed / 1000)
            seed_config(run, seed)
            config = json.loads((run / "config.json").read_text())
            config["data"] |= {"split": "cold_items", "cold_seed": cold_seed}
            (run / "config.json").write_text(json.dumps(config))
    groups = [str(tmp_path / name) for name in "abc"]
    with pytest.raises(DataError, match=r"not evaluated on the same rows: data.cold_seed: 0 in .*a/seed-1; 1 in"):
        compare.compare_seed_groups(groups, "ndcg@10", 0.95)
    assert "1.000x" in compare.compare_seed_groups([groups[0], groups[2]], "ndcg@10", 0.95)
    metrics = tmp_path / "c" / "seed-1" / "metrics.json"  # another dataset of the same sizes in the protocol
    metrics.write_text(json.dumps(json.loads(metrics.read_text()) | {"data": {"interactions": 99}}))
    (tmp_path / "a" / "seed-1" / "metrics.json").write_text(metrics.read_text().replace("99", "98"))
    with pytest.raises(DataError, match=r"interactions \(metrics.json data\): 98 in"):
        compare.compare_seed_groups([groups[0], groups[2]], "ndcg@10", 0.95)
    with pytest.raises(DataError, match="not evaluated on the same rows"):
        compare.compare_runs([tmp_path / "a" / "seed-1", tmp_path / "c" / "seed-1"])


def test_levels_and_small_p_values_are_printed_as_they_are():
    assert compare.percent(0.975) == "97.5%" and compare.percent(0.95) == "95%" and compare.percent(0.999) == "99.9%"
    assert compare.p_text(0.0001) == "<0.001" and compare.p_text(0.0123) == "0.012"


def test_an_unplannable_target_says_why_in_its_cell():
    assert compare.planned_seeds([0.06, 0.06], [0.07, 0.07], 1.05, 0.95, 0.8).startswith("(the seeds' standard")


def seed_config(run: Path, seed: int, hidden_size: int = 16, epochs: int = 10) -> None:
    sections = {"data": {"dataset": "x.csv", "cache_dir": str(run)}, "model": {"hidden_size": hidden_size},
                "train": {"seed": seed, "learning_rate": 0.001, "output_dir": str(run), "epochs": epochs,
                          "num_threads": seed, "log_every": seed}}  # fmt: skip
    (run / "config.json").write_text(json.dumps(sections))


def test_a_seed_group_of_other_settings_or_a_repeated_seed_is_refused_and_the_summary_says_so(tmp_path):
    for folder, seed_list, sizes in (("same", [1, 2, 3], [16, 16, 16]), ("mixed", [1, 2, 3], [16, 16, 32]),
                                     ("twice", [1, 1, 3], [16, 16, 16])):  # fmt: skip
        for index, (seed, size) in enumerate(zip(seed_list, sizes)):
            write_run(tmp_path / folder / f"seed-{index}", 0.06 + index / 1000)
            seed_config(tmp_path / folder / f"seed-{index}", seed, size)
    assert len(compare.read_seed_groups([str(tmp_path / "same")])[0][str(tmp_path / "same")]) == 3
    with pytest.raises(
        DataError, match=r"mixed is not one setting.*model.hidden_size differs \(16 in seed-0, seed-1; 32 in seed-2\)"
    ):
        compare.read_seed_groups([str(tmp_path / "same"), str(tmp_path / "mixed")])
    with pytest.raises(DataError, match=r"twice is not one setting.*seed 1 was trained twice \(seed-0, seed-1\)"):
        compare.read_seed_groups([str(tmp_path / "same"), str(tmp_path / "twice")])
    assert "**Not one setting over seeds**: model.hidden_size differs" in seeds.summarise(tmp_path / "mixed")
    assert "Not one setting" not in seeds.summarise(tmp_path / "same")  # folders, caches and threads may differ
    for index, epochs in enumerate((10, 10, 20)):  # a shorter schedule changes the figures: not one setting
        write_run(tmp_path / "longer" / f"seed-{index}", 0.06)
        seed_config(tmp_path / "longer" / f"seed-{index}", index, epochs=epochs)
    with pytest.raises(DataError, match=r"longer is not one setting.*train.epochs differs \(10 in seed-0, seed-1;"):
        compare.read_seed_groups([str(tmp_path / "same"), str(tmp_path / "longer")])
    for index, precision in enumerate(("no", "no", "bf16")):  # as `accelerate launch --mixed_precision` ran them
        write_run(tmp_path / "launched" / f"seed-{index}", 0.06)
        seed_config(tmp_path / "launched" / f"seed-{index}", index)
        metrics = tmp_path / "launched" / f"seed-{index}" / "metrics.json"
        metrics.write_text(json.dumps(json.loads(metrics.read_text()) | {"mixed_precision": precision}))
    with pytest.raises(DataError, match=r"launched is not one setting.*run.mixed_precision differs"):
        compare.read_seed_groups([str(tmp_path / "same"), str(tmp_path / "launched")])


def test_damaged_or_repeated_run_files_are_named_not_traced(tmp_path):
    for name, ndcg in (("a", 0.05), ("b", 0.06)):
        write_run(tmp_path / name, ndcg, name=name)
    (tmp_path / "b" / "metrics.json").write_text('{"test": ')  # cut short
    with pytest.raises(DataError, match=r"b/metrics.json cannot be read .*restore it"):
        compare.compare_runs([tmp_path / "a", tmp_path / "b"])
    (tmp_path / "b" / "metrics.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"b/metrics.json is damaged \(it lacks \['test'"):
        compare.compare_runs([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(DataError, match="given more than once"):
        compare.compare_runs([tmp_path / "a", tmp_path / "a"])
    with pytest.raises(DataError, match="is no folder"):
        compare.compare_runs([tmp_path / "a", tmp_path / "typo"])
    for seed, ndcg in ((1, 0.05), (2, 0.06)):
        write_run(tmp_path / "seeds" / f"seed-{seed}", ndcg)
    (tmp_path / "seeds" / "seed-2" / "metrics.json").write_text("{")
    with pytest.raises(DataError, match=r"seed-2/metrics.json cannot be read"):
        seeds.summarise(tmp_path / "seeds")


def test_seeds_command_says_when_every_seed_failed_and_refuses_a_missing_preset(tmp_path):
    import subprocess

    script = Path(__file__).resolve().parents[1] / "scripts" / "seeds.py"
    preset = tmp_path / "bad.json"
    preset.write_text(json.dumps({"epochs": 0}))  # every seed's run refuses it
    done = subprocess.run([sys.executable, str(script), "--config", str(preset), "--seeds", "1", "2", "--output",
                           str(tmp_path / "out"), "--keep", str(tmp_path / "kept")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1 and "error: every seed failed ([1, 2])" in done.stderr
    assert not (tmp_path / "kept").exists()  # a failed seed is not kept
    write_run(tmp_path / "kept" / "seed-1", 0.05, name="a")  # kept by another machine, no run folder here
    kept = subprocess.run([sys.executable, str(script), "--config", str(preset), "--seeds", "1", "--output",
                           str(tmp_path / "elsewhere"), "--keep", str(tmp_path / "kept")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert kept.returncode == 0 and "seed 1: kept earlier" in kept.stdout, kept.stderr
    assert "1 seeds" in (tmp_path / "kept" / "summary.md").read_text()  # the summary is made of the kept seeds
    missing = subprocess.run([sys.executable, str(script), "--config", str(tmp_path / "no.json"), "--output",
                              str(tmp_path / "out")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert (
        missing.returncode == 2
        and "no.json' is no file" in missing.stderr
        and not (tmp_path / "out" / "seed-2020").exists()
    )
    absent = subprocess.run([sys.executable, str(script), "--summarise", str(tmp_path / "typo")],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert absent.returncode == 2 and "typo' is no folder: give a seeds.py --output" in absent.stderr


def test_a_finished_or_kept_seed_trained_with_other_settings_is_refused_not_reported_as_this_one(tmp_path, capsys):
    from hybrid_rearec.hybrid.config import parse_configs, to_dict

    preset = tmp_path / "p.json"
    preset.write_text(json.dumps({"epochs": 5, "reasoning_steps": 2, "reasoning_method": "erl"}))
    for folder in ("out/seed-1", "kept/seed-2"):
        write_run(tmp_path / folder, 0.05)
        trained = to_dict(*parse_configs(["--config", str(preset), "--seed", folder[-1], "--output_dir", folder]))
        (tmp_path / folder / "config.json").write_text(json.dumps(trained))
    same = seeds.run_seeds(tmp_path / "out", [1, 2], str(preset), ["--num_threads", "1"], keep=tmp_path / "kept")
    assert same == [] and "seed 1: finished earlier" in capsys.readouterr().out  # threads change no figure
    failed = seeds.run_seeds(tmp_path / "out", [1, 2], str(preset), ["--reasoning_method", "prl"], tmp_path / "kept")
    said = capsys.readouterr().err
    assert failed == [1, 2] and "model.reasoning_method: 'erl' there, 'prl' now" in said
    assert f"seed 2: {tmp_path / 'kept' / 'seed-2'} was trained with other settings" in said
    changed = seeds.changed_settings(tmp_path / "out" / "seed-1", 1, str(preset), ["--inference_steps", "1"])
    assert changed == ["model.inference_steps: None there, 1 now"]  # config.json holds the depth asked for
    import subprocess

    script = Path(__file__).resolve().parents[1] / "scripts" / "seeds.py"
    done = subprocess.run([sys.executable, str(script), "--config", str(preset), "--seeds", "1", "--output",
                           str(tmp_path / "out"), "--", "--reasoning_method", "prl"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1 and "error: every seed failed ([1])" in done.stderr  # not summarised as this one


def test_the_summary_says_a_single_seeds_std_is_unknown_and_names_a_mix_of_protocols(tmp_path):
    write_run(tmp_path / "one" / "seed-1", 0.07)
    text = seeds.summarise(tmp_path / "one")
    assert "0.0800 ± n/a" in text and "± 0.0000" not in text  # valid ndcg@10: one seed has no spread
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["seeds"] == 1 and summary["std_test"]["ndcg@10"] is None
    write_run(tmp_path / "one" / "seed-2", 0.07, protocol="Q")  # the same data? another catalogue, other rows
    assert "**Not one protocol over seeds**: seed-1: P; seed-2: Q." in seeds.summarise(tmp_path / "one")
    assert json.loads((tmp_path / "one" / "summary.json").read_text())["std_test"]["ndcg@10"] == 0.0
