"""The run folder: model/ is the one model format every tool reads; a run without it did not finish, and the
tools say how to continue it."""

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
from hybrid_rearec.hybrid.run_folder import load_model, model_folder
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
    command = f"python scripts/train.py --config {run / 'config.json'} --resume latest"
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
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelFileError, match="did not finish.*no checkpoint to continue from"):
        model_folder(tmp_path)
    with pytest.raises(ModelFileError, match="is not a run's config"):
        load_run(tmp_path)


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
