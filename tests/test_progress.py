"""Progress bars on the slow steps (evaluation, analysis, text encoding), quiet when switched off, and the
training's own lines never glued to a bar."""

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hybrid_rearec.encoders.text import load_sentence_transformer, sentence_transformer_encode
from hybrid_rearec.hybrid.analysis import step_ranks
from hybrid_rearec.hybrid.data import load_dataset
from hybrid_rearec.hybrid.evaluate import evaluate
from hybrid_rearec.hybrid.model import HybridRecommender
from hybrid_rearec.hybrid.train import train

from tests.test_train import quick_train_config
from tests.tester import tiny_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("progress", [True, False])
def test_evaluation_and_analysis_show_a_bar_over_the_chunks_only_when_asked(progress, csv_data_config, capsys):
    dataset = load_dataset(csv_data_config)
    model = HybridRecommender(tiny_config(steps=2), num_items=dataset.num_items, max_history=8)
    capsys.readouterr()
    evaluate(model, dataset.valid, "valid", batch_size=8, progress=progress)
    step_ranks(model, dataset.test, batch_size=8, progress=progress)
    bars = capsys.readouterr().err
    assert ("Evaluating valid:   0%|          | 0/5" in bars) is progress  # 40 rows in chunks of 8
    assert ("Analysing test" in bars) is progress
    if not progress:
        assert bars == ""


def test_checkpoint_lines_get_their_own_line(tmp_path, csv_data_config, tiny_model_config):
    console = io.StringIO()  # a terminal shows stdout and stderr on one screen
    config = quick_train_config(tmp_path, epochs=1, progress=True, save_every_steps=3)
    with contextlib.redirect_stdout(console), contextlib.redirect_stderr(console):
        train(csv_data_config, tiny_model_config, config)
    lines = [line for line in console.getvalue().split("\n") if "checkpoint:" in line]
    assert len(lines) == 5  # steps 3, 6, 9, 12 and the epoch's end
    for line in lines:
        assert line.split("\r")[-1].startswith("checkpoint: "), repr(line)  # what a terminal shows of the line
    assert "Evaluating valid" in console.getvalue()


def test_text_encoding_has_our_bar_and_the_same_vectors(capsys):
    texts = ["Alien (1979)", "Toy Story", "a much longer title of a film about trains", "Heat", "Up", "Fargo (1996)"]
    model = load_sentence_transformer("all-MiniLM-L6-v2", None)
    reference = model.encode(texts, batch_size=2, show_progress_bar=False, convert_to_tensor=True).float().cpu()
    capsys.readouterr()
    vectors = sentence_transformer_encode(texts, "all-MiniLM-L6-v2", None, 2, progress=True, model=model)
    bars = capsys.readouterr().err
    assert "Encoding item texts" in bars and "3/3" in bars and "Batches" not in bars
    assert torch.equal(vectors, reference)
    sentence_transformer_encode(texts, "all-MiniLM-L6-v2", None, 2, progress=False, model=model)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("switch", [("--progress", "false"), ("--no_progress",), ()])
def test_the_evaluate_command_is_quiet_under_no_progress(switch, tmp_path, csv_data_config, tiny_model_config):
    train(csv_data_config, tiny_model_config, quick_train_config(tmp_path, epochs=1))
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), str(tmp_path / "run"), "--split", "valid", *switch],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert ("Evaluating valid" in done.stderr) is (not switch)


@pytest.mark.parametrize("progress", [True, False])
def test_preparing_data_shows_a_bar_only_when_built_and_asked(progress, csv_data_config, capsys):
    load_dataset(csv_data_config, progress=progress)  # built: read, split and cached
    built = capsys.readouterr().err
    assert ("Preparing" in built and "2/2" in built) is progress
    load_dataset(csv_data_config, progress=progress)  # from the cache: no bar
    assert "Preparing" not in capsys.readouterr().err
