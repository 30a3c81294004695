"""The run folder: model/ is the one model format every tool reads; a run without it did not finish, and the
tools say how to continue it."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hybrid_rearec.hybrid.analysis import load_run
from hybrid_rearec.hybrid.config import ModelConfig
from hybrid_rearec.hybrid.data import load_dataset
from hybrid_rearec.hybrid.evaluate import evaluate
from hybrid_rearec.hybrid.pretrained import ModelFileError
from hybrid_rearec.hybrid.run_folder import load_model, model_folder, run_configs
from hybrid_rearec.hybrid.train import train
from safetensors.torch import load_file, save_file

from tests.test_train import quick_train_config

ROOT = Path(__file__).resolve().parents[1]


def script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # read now: the fixtures set the caches' folders
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_an_unfinished_run_names_the_resume_command_and_that_command_finishes_it(tmp_path, csv_data_config):
    model_config = ModelConfig(hidden_size=16, num_heads=2, inner_size=32, reasoning_steps=1)
    config = quick_train_config(tmp_path, epochs=2, select_inference_steps=True)
    finished = train(csv_data_config, model_config, config)
    run = tmp_path / "run"
    # As if killed after the last checkpoint, before the best model was saved.
    for name in ("model", "metrics.json", "ranks.safetensors"):
        shutil.rmtree(run / name) if name == "model" else (run / name).unlink()
    command = f"python scripts/train.py --config {run / 'config.json'} --output_dir {run} --resume latest"
    for load in (load_model, load_run, model_folder):
        with pytest.raises(ModelFileError, match="did not finish") as error:
            load(run)
        assert command in str(error.value)
    refused = script("scripts/evaluate.py", str(run))
    assert refused.returncode == 2 and "did not finish" in refused.stderr and command in refused.stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir())  # nothing was removed

    resumed = script(*command.split()[1:])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("valid", "test", "best_epoch", "inference_steps", "train_log"):
        assert metrics[key] == finished[key]
    model, _, model_config, _ = load_run(run)
    assert model_config.inference_steps == finished["inference_steps"]
    checked = script("scripts/check_reload.py", str(run))
    assert checked.returncode == 0 and "ranks equal to the training run's: True" in checked.stdout
    shallower = script("scripts/evaluate.py", str(run), "--steps", "0")
    assert "| run test, 0 of 1 reasoning steps |" in shallower.stdout  # the depth it ran, in the table


def test_a_run_saved_with_the_old_second_weights_file_loads_through_model(tmp_path, csv_data_config, tiny_model_config):
    train(csv_data_config, tiny_model_config, quick_train_config(tmp_path, epochs=1))
    run = tmp_path / "run"
    # Runs saved before model/ was the only format also hold the best weights at the run's root.
    saved = load_file(run / "model" / "model.safetensors")
    save_file({name: torch.zeros_like(tensor) for name, tensor in saved.items()}, run / "model.safetensors")
    model, data_config, _, _ = load_run(run)
    test = evaluate(model, load_dataset(data_config).test, "test")
    assert torch.equal(test.ranks, load_file(run / "ranks.safetensors")["test"])  # read from model/, not the root
    assert model_folder(run) == run / "model" and model_folder(run / "model") == run / "model"


def test_a_folder_that_is_no_run_is_named(tmp_path):
    with pytest.raises(ModelFileError, match="neither a run folder nor a model folder"):
        model_folder(tmp_path)
    with pytest.raises(ModelFileError, match="holds no config.json: give a run folder"):
        run_configs(tmp_path)
    (tmp_path / "seed-1").mkdir()
    (tmp_path / "seed-1" / "config.json").write_text("{}")
    with pytest.raises(ModelFileError, match="is a seed study .*pass one of its seed-N folders.*--seed_groups"):
        run_configs(tmp_path)
    (tmp_path / "config.json").write_text('{"data": {}, "train": {}}')
    with pytest.raises(ModelFileError, match="did not finish.*no checkpoint to continue from"):
        model_folder(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelFileError, match="has a config.json that is not a run's"):
        load_run(tmp_path)
    with pytest.raises(ModelFileError, match="no folder .*typo.*give a run folder"):
        run_configs(tmp_path / "typo")
    with pytest.raises(ModelFileError, match="typo is no folder: give a run folder"):
        model_folder(tmp_path / "typo")


def test_evaluate_reads_the_runs_history_setting_and_takes_a_moved_datasets_path(
    tmp_path, csv_data_config, tiny_model_config
):
    finished = train(csv_data_config, tiny_model_config, quick_train_config(tmp_path, epochs=1, exclude_history=True))
    run = str(tmp_path / "run")
    default, shown = (
        script("scripts/evaluate.py", run),
        script("scripts/evaluate.py", run, "--exclude_history", "false"),
    )
    assert default.returncode == shown.returncode == 0, default.stderr[-2000:]
    assert f"{finished['test']['metrics']['ndcg@10']:.4f}" in default.stdout  # as trained: past items excluded
    assert "run test |" in default.stdout  # no reasoning: no depth in the row's name
    assert "EXCLUDED" in default.stdout.splitlines()[0] and "EXCLUDED" not in shown.stdout.splitlines()[0]
    moved = Path(csv_data_config.dataset).rename(tmp_path / "moved.csv")
    refused = script("scripts/evaluate.py", run)
    assert (
        refused.returncode == 2
        and "Traceback" not in refused.stderr
        and "give its path with --dataset" in refused.stderr
    )
    again = script("scripts/evaluate.py", run, "--dataset", str(moved))
    assert again.returncode == 0 and again.stdout == default.stdout.replace(csv_data_config.dataset, str(moved))
    refused = script("scripts/check_reload.py", run)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr and "--dataset PATH" in refused.stderr
    checked = script("scripts/check_reload.py", run, "--dataset", str(moved))
    assert checked.returncode == 0 and "ranks equal to the training run's: True" in checked.stdout


def test_a_second_training_process_in_a_run_folder_is_refused_and_changes_nothing(tmp_path, csv_data_config):
    import fcntl
    from dataclasses import replace

    from hybrid_rearec.hybrid.errors import ConfigError

    model_config = ModelConfig(hidden_size=16, num_heads=2, inner_size=32)
    config = quick_train_config(tmp_path, epochs=1)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"data": {}, "train": {}}')  # a run in progress, before its first checkpoint
    with (run / ".lock").open("a") as held:  # that run's process holds the folder
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigError, match=r"another training process is running in .*run.*nothing .* changed"):
            train(csv_data_config, model_config, config)  # without the lock it would restart that run
        (run / "checkpoints").mkdir()  # a run past its first checkpoint: the lock is named, not --resume's advice
        for resume in (None, "latest"):
            with pytest.raises(ConfigError, match=r"another training process is running in"):
                train(csv_data_config, model_config, replace(config, resume=resume))
        (run / "checkpoints").rmdir()
        assert sorted(p.name for p in run.iterdir()) == [".lock", "config.json"]
    train(csv_data_config, model_config, config)  # once that process ended, the same command restarts it
    assert (run / "metrics.json").exists() and len(list(run.glob("replaced-*/config.json"))) == 1
    missing = replace(csv_data_config, dataset=str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError):
        train(missing, model_config, replace(config, output_dir=str(tmp_path / "new")))
    assert not (tmp_path / "new").exists()  # a refused run leaves no folder behind


def test_evaluate_shows_the_cold_groups_and_refuses_data_with_other_items(tmp_path, tiny_model_config):
    from dataclasses import replace

    from hybrid_rearec.hybrid.config import DataConfig

    from tests.conftest import write_sequential_csv

    data = write_sequential_csv(tmp_path / "interactions.csv", planted=False)
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"i{n},thing {n}\n" for n in range(30)))
    data_config = DataConfig(dataset=str(data), item_file=str(items), data_format="csv", max_history=8)
    config = quick_train_config(tmp_path, epochs=1)
    finished = train(replace(data_config, split="cold_items"), tiny_model_config, config)
    run = str(tmp_path / "run")
    shown = script("scripts/evaluate.py", run, "--no_progress")
    assert shown.returncode == 0, shown.stderr[-2000:]
    cold_rows = finished["test"]["groups"]["cold targets"]["rows"]
    assert f"test, cold targets ({cold_rows} rows)" in shown.stdout and "random ranking of 3 cold items" in shown.stdout
    moved = items.rename(tmp_path / "moved-items.csv")
    refused = script("scripts/evaluate.py", run, "--dataset", str(data))
    assert refused.returncode == 2 and f"The run read --item_file {str(items)!r}" in refused.stderr
    assert "give its path with --item_file PATH" in refused.stderr
    again = script("scripts/evaluate.py", run, "--item_file", str(moved), "--no_progress")
    assert again.returncode == 0 and again.stdout == shown.stdout and again.stderr == shown.stderr
    other = write_sequential_csv(tmp_path / "other.csv", num_items=35, planted=False)  # more items, other order
    refused = script("scripts/evaluate.py", run, "--dataset", str(other), "--item_file", str(moved))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"the data at {str(other)!r} is not the data this model was trained on" in refused.stderr
    lines = data.read_text().splitlines()
    reordered = tmp_path / "reordered.csv"  # the same rows, users reversed: the cold items would be others
    reordered.write_text("\n".join([lines[0], *lines[:0:-1]]) + "\n")
    refused = script("scripts/evaluate.py", run, "--dataset", str(reordered), "--item_file", str(moved))
    assert refused.returncode == 2 and "a cold_items split picks its cold items by that order" in refused.stderr
    fewer = tmp_path / "fewer.csv"  # the same items, the last user's rows gone
    fewer.write_text("\n".join(line for line in lines if not line.startswith("u39,")) + "\n")
    changed = script("scripts/check_reload.py", run, "--dataset", str(fewer), "--item_file", str(moved))
    assert "warning: the data read now has other users or rows than the run was trained on" in changed.stderr
    assert changed.returncode == 2 and "Traceback" not in changed.stderr  # one test row fewer: named, not traced
    ranked = len(load_file(tmp_path / "run" / "ranks.safetensors")["test"])
    assert f"error: the test split read now has {ranked - 1} rows, the training run ranked {ranked}" in changed.stderr


def test_evaluate_renumbers_a_log_of_the_same_items_in_another_order(tmp_path, csv_data_config, tiny_model_config):
    train(csv_data_config, tiny_model_config, quick_train_config(tmp_path, epochs=1))
    run = str(tmp_path / "run")
    shown = script("scripts/evaluate.py", run, "--no_progress")
    header, *rows = Path(csv_data_config.dataset).read_text().splitlines()
    reversed_log = tmp_path / "reversed.csv"  # the users in reverse order: items first appear in another order
    reversed_log.write_text("\n".join([header, *rows[::-1]]) + "\n")
    read = load_dataset(dataclasses.replace(csv_data_config, dataset=str(reversed_log)), use_cache=False)
    assert read.item_ids != load_dataset(csv_data_config, use_cache=False).item_ids  # numbered otherwise
    renumbered = script("scripts/evaluate.py", run, "--dataset", str(reversed_log), "--no_progress")
    assert renumbered.returncode == 0, renumbered.stderr[-2000:]
    assert "renumbered to the model's catalogue" in renumbered.stderr and "warning" not in renumbered.stderr
    assert renumbered.stdout == shown.stdout  # every row ranked as before, only the users' order differs


def test_a_runs_relative_data_path_is_found_from_the_folder_it_was_trained_in(
    tmp_path, csv_data_config, tiny_model_config, monkeypatch
):
    from dataclasses import replace

    monkeypatch.chdir(Path(csv_data_config.dataset).parent)
    relative = replace(csv_data_config, dataset=Path(csv_data_config.dataset).name)
    finished = train(relative, tiny_model_config, quick_train_config(tmp_path, epochs=1))
    shown = script("scripts/evaluate.py", str(tmp_path / "run"))  # from the repository root: the path is not here
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert f"note: reading --dataset {csv_data_config.dataset}" in shown.stderr
    assert f"{finished['test']['metrics']['ndcg@10']:.4f}" in shown.stdout
