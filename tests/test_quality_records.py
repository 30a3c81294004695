"""The quality records' writers on made-up runs: what they read, what they write and where."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "quality" / "scientific_results.py"
METRICS = ("recall@10", "ndcg@10", "recall@50", "ndcg@50")


def scientific_results():
    spec = importlib.util.spec_from_file_location("scientific_results", RESULTS)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def write_seed(folder: Path, seed: int, test_ndcg: float, valid_ndcg: float, method: str = "erl") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"train": {"seed": seed}, "model": {"reasoning_method": method}}
    (folder / "config.json").write_text(json.dumps(config))
    test = {metric: test_ndcg * (i + 1) for i, metric in enumerate(METRICS)}
    metrics = {"protocol": "P", "valid": {"metrics": {"ndcg@10": valid_ndcg}}, "test": {"metrics": test}}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_scientific_results_reads_nothing_until_stage_two_is_complete_then_writes_every_table(tmp_path):
    script = scientific_results()
    runs, record, readme = tmp_path / "runs", tmp_path / "scientific", tmp_path / "README.md"
    record.with_suffix(".md").write_text(f"# record\n\n{script.START}\nwaiting\n{script.END}\nafter\n")
    readme.write_text(f"# readme\n{script.README_START}\nwaiting\n{script.README_END}\n## next\n")
    for n, name in enumerate(script.PRESETS):
        for seed in script.SEEDS:
            gain = 1.1 if name == "text-rearec-prl" else 1.0  # the one reasoning gain the checks should find
            write_seed(runs / name / f"seed-{seed}", seed, (0.05 + 0.001 * n + 1e-4 * seed % 7) * gain, 0.06 + n / 1e3)
    command = [sys.executable, str(RESULTS), "--runs", str(runs), "--record", str(record), "--readme", str(readme)]
    (runs / "lora-rearec" / "seed-2024" / "metrics.json").unlink()
    (runs / "hybrid-sasrec" / "seed-2022" / "metrics.json").unlink()
    waiting = subprocess.run(command, capture_output=True, text=True)
    assert (
        waiting.returncode == 1 and "2 runs missing" in waiting.stdout and "hybrid-sasrec/seed-2022" in waiting.stdout
    )
    assert not record.with_suffix(".json").exists() and "waiting" in readme.read_text()
    write_seed(runs / "hybrid-sasrec" / "seed-2022", 2022, 0.05, 0.06)  # now only LoRA-MiniLM is pending
    early = subprocess.run(command, capture_output=True, text=True)
    assert early.returncode == 0 and "written without lora-rearec" in early.stdout, early.stderr
    assert sorted(json.loads(record.with_suffix(".json").read_text())["models"]) == sorted(script.PRESETS[:-1])
    assert "Figure 2: pending until LoRA-MiniLM" in record.with_suffix(".md").read_text()
    assert "lora" not in readme.read_text() and "- Figure 3, " in early.stdout
    write_seed(runs / "lora-rearec" / "seed-2024", 2024, 0.06, 0.07)
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    written = json.loads(record.with_suffix(".json").read_text())
    assert sorted(written["models"]) == sorted([*script.PRESETS[:-1], "lora-rearec-erl"])
    sasrec = written["models"]["sasrec"]
    assert sasrec["config"] == "configs/scientific_sasrec.json" and [s["seed"] for s in sasrec["seeds"]] == [
        *script.SEEDS
    ]
    assert set(sasrec["seeds"][0]["test"]) == set(METRICS) and "folder" not in sasrec
    markdown, shown = record.with_suffix(".md").read_text(), readme.read_text()
    assert "waiting" not in markdown and markdown.endswith(f"{script.END}\nafter\n")
    assert "waiting" not in shown and shown.endswith(f"{script.README_END}\n## next\n")
    for text in (markdown, shown):  # every model and every published figure, in both
        assert all(f"| {name} | 5 |" in text for name in written["models"])
        assert "| VQ-Rec (VQ-Rec Table 2) (published) | | | 0.1211 | 0.0643 | 0.2369 | 0.0897 |" in text
    # rule 7: text PRL has the higher validation mean of its backbone, and the checks compare it with K = 0
    assert "- Figure 3, text-rearec-prl / text-sasrec: " in markdown and "--seed_groups" in markdown
    assert "Figure 2: the best text or hybrid model by mean validation NDCG@10 is lora-rearec-erl" in markdown


def test_figure_three_says_n_a_where_every_seed_gave_the_same_value():
    script = scientific_results()
    seeds = [{"seed": seed, "valid": {"ndcg@10": 0.06}, "test": {"ndcg@10": 0.05}} for seed in script.SEEDS]
    record = {"models": {name: {"seeds": seeds} for name in script.PRESETS if name != script.LATE}}
    figure_three = [line for line in script.checks(record) if line.startswith("- Figure 3, ")]
    assert len(figure_three) == 3 and all("1.000x, 95 % interval n/a (every seed" in line for line in figure_three)
    assert "nan" not in " ".join(figure_three) and "NOT settled" in script.checks(record)[-1]


def scientific_stage2(monkeypatch):
    monkeypatch.syspath_prepend(str(RESULTS.parent))  # its sibling scripts import each other by name
    spec = importlib.util.spec_from_file_location("scientific_stage2", RESULTS.parent / "scientific_stage2.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_stage_two_lanes_claim_runs_apart_and_a_claim_ends_with_its_lane(tmp_path, monkeypatch):
    script = scientific_stage2(monkeypatch)
    with script.claim("sasrec", "2020", tmp_path) as held:
        with script.claim("sasrec", "2020", tmp_path) as again, script.claim("sasrec", "2021", tmp_path) as other:
            assert held and not again and other
    with script.claim("sasrec", "2020", tmp_path) as held:  # let go when its block ended
        assert held
    lane = "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print(1, flush=True)"
    lane += "; time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", lane, str(tmp_path / "sasrec-seed-2022")], stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == b"1"
    with script.claim("sasrec", "2022", tmp_path) as held:
        assert not held  # another lane holds it
    holder.kill()
    holder.wait()
    with script.claim("sasrec", "2022", tmp_path) as held:
        assert held  # a killed lane's claim is free at once


def fake_run(folder: Path, splits: list[str], grouping: str) -> Path:
    write_seed(folder, 2020, 0.05, 0.06)
    (folder / "analysis").mkdir()
    for split in splits:
        (folder / "analysis" / f"analysis-{split}.json").write_text(json.dumps({"grouping": grouping, "split": split}))
    return folder


def test_stage_two_keeps_each_finished_run_and_skips_kept_ones(tmp_path, monkeypatch):
    script = scientific_stage2(monkeypatch)
    from hybrid_rearec.hybrid.analysis import GROUPING

    kept, runs = tmp_path / "kept", tmp_path / "runs"
    target = script.keep(fake_run(runs / "sasrec" / "seed-2020", ["valid", "test"], GROUPING), "sasrec", kept)
    assert json.loads((target / "analysis" / "analysis-test.json").read_text())["split"] == "test"
    assert (target / "metrics.json").read_bytes() == (runs / "sasrec" / "seed-2020" / "metrics.json").read_bytes()
    bert = script.keep(fake_run(runs / "bert4rec" / "seed-2020", [], GROUPING), "bert4rec", kept)
    assert (bert / "config.json").exists() and not (bert / "analysis").exists()  # no analysis for BERT4Rec
    trained = []

    def train(preset: str, name: str, seed: str, threads: int) -> Path:  # a finished run, as seeds.py leaves it
        trained.append((preset, seed, threads))
        return fake_run(runs / name / f"seed-{seed}", [] if name == "bert4rec" else ["valid", "test"], GROUPING)

    monkeypatch.setattr(script, "train", train)
    assert script.lane(["sasrec", "bert4rec"], ["2020", "2021"], kept, tmp_path / "claims", threads=2) == 2
    assert trained == [("sasrec", "2021", 2), ("bert4rec", "2021", 2)]
    assert script.is_kept("bert4rec", "2021", kept) and script.lane(["sasrec"], ["2020"], kept, tmp_path) == 0


def test_an_unfinished_run_is_carried_to_the_next_machine_and_put_back_there(tmp_path, monkeypatch):
    script = scientific_stage2(monkeypatch)
    runs, carried = tmp_path / "runs", tmp_path / "carried"
    for step in (10, 20):  # two complete checkpoints: the later one is carried
        checkpoint = runs / "lora-rearec" / "seed-2020" / "checkpoints" / f"step-{step:09d}"
        checkpoint.mkdir(parents=True)
        (checkpoint / "trainer_state.json").write_text(json.dumps({"step": step}))
    (runs / "lora-rearec" / "seed-2020" / "checkpoints" / ".incomplete-step-000000030").mkdir()
    (runs / "lora-rearec" / "seed-2020" / "config.json").write_text("{}")
    fake_run(runs / "sasrec" / "seed-2020", [], "")  # finished: kept, never carried
    assert script.carry(runs, carried) == [carried / "lora-rearec" / "seed-2020"]
    copied = carried / "lora-rearec" / "seed-2020"
    assert sorted(p.name for p in (copied / "checkpoints").iterdir()) == ["step-000000020"]
    assert (copied / "config.json").exists() and not (carried / "sasrec").exists()
    fresh = tmp_path / "new-machine"
    assert (
        script.restore("lora-rearec", "2020", fresh, carried)
        and script.restore("sasrec", "2020", fresh, carried) is False
    )
    assert (fresh / "lora-rearec" / "seed-2020" / "checkpoints" / "step-000000020" / "trainer_state.json").exists()
    assert script.restore("lora-rearec", "2020", fresh, carried) is False  # it has a checkpoint now: left as it is


def fake_analysis(value: float) -> dict:
    from hybrid_rearec.hybrid.analysis import GROUPING

    readouts = {"model": {"ndcg@10": value}, "step 0": {"ndcg@10": value / 2}}
    groups = {key: {str(q): readouts for q in range(1, 6)} for key in ("by_history", "by_popularity")}
    return {
        "grouping": GROUPING,
        "overall": readouts,
        "group_sizes": {"history": [9] * 5, "popularity": [9] * 5},
        **groups,
    }


def test_the_test_analysis_waits_for_every_preset_but_lora_and_leaves_lora_out_until_its_seeds_are_in(tmp_path):
    script = scientific_results()
    runs = tmp_path / "kept"
    for name in script.PRESETS:
        for seed in script.SEEDS:
            folder = runs / name / f"seed-{seed}"
            write_seed(folder, seed, 0.05, 0.06)
            (folder / "analysis").mkdir()
            for split in ("valid", "test"):
                (folder / "analysis" / f"analysis-{split}.json").write_text(json.dumps(fake_analysis(0.05)))
    (runs / "lora-rearec" / "seed-2023" / "metrics.json").unlink()
    (runs / "text-sasrec" / "seed-2020" / "metrics.json").unlink()
    script_path, output = RESULTS.parent / "scientific_analysis.py", tmp_path / "analysis"
    command = [sys.executable, str(script_path), "--runs", str(runs), "--output", str(output)]
    refused = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert (
        refused.returncode == 1 and "text-sasrec/seed-2020" in refused.stdout and not output.with_suffix(".md").exists()
    )
    write_seed(runs / "text-sasrec" / "seed-2020", 2020, 0.05, 0.06)
    early = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert early.returncode == 0, early.stderr + early.stdout
    assert sorted(json.loads(output.with_suffix(".json").read_text())) == ["hybrid", "id", "text"]
    valid = subprocess.run([*command, "--split", "valid"], capture_output=True, text=True, cwd=ROOT)
    assert valid.returncode == 0 and "lora" in json.loads(output.with_suffix(".json").read_text())


def test_the_cold_record_takes_only_runs_of_its_declared_protocol(tmp_path):
    import pytest

    spec = importlib.util.spec_from_file_location("cold_start_scientific", RESULTS.parent / "cold_start_scientific.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    data = {"split": "cold_items", "cold_selection": "random", "cold_fraction": 0.1, "cold_seed": 1}
    config = {"data": data, "train": {"select_on": "warm_targets"}}
    script.check_protocol(tmp_path, config, 1)
    with pytest.raises(SystemExit, match=r"train.select_on 'all' \(the record's: 'warm_targets'\)"):
        script.check_protocol(tmp_path, config | {"train": {"select_on": "all"}}, 1)
    with pytest.raises(SystemExit, match=r"data.cold_seed 1 \(the record's: 2\)"):
        script.check_protocol(tmp_path, config, 2)
    for preset in sorted((ROOT / "configs").glob("scientific_cold_*.json")):  # the presets it is run with
        settings = json.loads(preset.read_text())
        script.check_protocol(tmp_path, {**settings, "data": {**settings["data"], "cold_seed": 0}}, 0)
