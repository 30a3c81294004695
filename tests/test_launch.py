"""What a launch leaves behind: a TensorBoard folder only once something is logged (one run, no timestamped
subfolders), and a user's mistake as one line on stderr with exit code 2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hybrid_rearec.hybrid import train as train_module
from hybrid_rearec.hybrid.train import train

from tests.test_train import quick_train_config

ROOT = Path(__file__).resolve().parents[1]


def test_a_run_logs_into_one_tensorboard_folder(tmp_path, csv_data_config, tiny_model_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(csv_data_config, tiny_model_config, quick_train_config(tmp_path, epochs=2, report_to="tensorboard"))
    folder = tmp_path / "run" / "tensorboard"
    assert [path.parent for path in folder.rglob("*") if path.is_file()] == [folder]  # no per-launch subfolders
    events = EventAccumulator(str(folder)).Reload()
    assert {"train/loss", "train/epoch_loss", "valid/ndcg@10"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("valid/ndcg@10")) == 2


def test_a_run_that_logs_nothing_leaves_no_tensorboard_folder(
    tmp_path, csv_data_config, tiny_model_config, monkeypatch
):
    def fails(run):
        raise RuntimeError("stopped before the first log")

    monkeypatch.setattr(train_module, "fit", fails)
    with pytest.raises(RuntimeError, match="before the first log"):
        train(csv_data_config, tiny_model_config, quick_train_config(tmp_path, report_to="tensorboard"))
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_a_config_error_is_one_line_and_exit_code_2(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "--hidden_size", "-3"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: hidden_size must be a positive whole number, got -3"), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not list(tmp_path.iterdir())  # no run folder, no TensorBoard folder


def test_make_demos_launch_reports_a_config_error_in_our_one_line(tmp_path):
    """`make demo` launches through accelerate; without -q the launcher adds a CalledProcessError trace."""
    launch = next(line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("LAUNCH :="))
    arguments = launch.split(":=", 1)[1].split()[2:]  # after '$(BIN)/accelerate launch'
    accelerate = Path(sys.executable).parent / "accelerate"
    done = subprocess.run(
        [str(accelerate), "launch", *arguments, str(ROOT / "scripts" / "train.py"), "--hidden_size", "-3"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "error: hidden_size must be a positive whole number, got -3" in output
    assert "Traceback" not in output and "CalledProcessError" not in output, output
