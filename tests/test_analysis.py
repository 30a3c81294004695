import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from hybrid_rearec.hybrid.analysis import analyse, load_run, quintiles, step_ranks
from hybrid_rearec.hybrid.config import ModelConfig
from hybrid_rearec.hybrid.data import load_dataset
from hybrid_rearec.hybrid.evaluate import evaluate

from tests.test_train import quick_train_config

ROOT = Path(__file__).resolve().parents[1]


def test_oracle_is_never_below_any_step_and_the_command_writes_tables_and_plots(tmp_path, csv_data_config):
    from hybrid_rearec.hybrid.train import train

    config = ModelConfig(
        hidden_size=16,
        num_layers=1,
        num_heads=2,
        inner_size=32,
        reasoning_steps=2,
        reasoning_method="erl",
        temperature=0.5,
    )
    train(csv_data_config, config, quick_train_config(tmp_path, epochs=2))
    model, data_config, _, _ = load_run(tmp_path / "run")
    dataset = load_dataset(data_config)
    ranks, aggregated = step_ranks(model, dataset.test)
    assert ranks.shape == (len(dataset.test), 3) and aggregated.shape == (len(dataset.test),)
    model.train()  # left in training mode by its caller: the analysis still runs without dropout, as evaluate
    assert step_ranks(model, dataset.test)[0].tolist() == ranks.tolist() and model.training
    model.eval()
    model.config.inference_steps = 1  # as a run saved with a validation-chosen depth: "model" is that depth
    shallow = evaluate(model, dataset.test, "test")
    assert step_ranks(model, dataset.test)[1].tolist() == shallow.ranks.tolist()
    assert step_ranks(model, dataset.test)[0].tolist() == ranks.tolist()  # the steps' own ranks do not move
    model.config.inference_steps = None
    analysis = analyse(model, dataset)
    oracle = analysis.overall["ORACLE (best step per row, uses the label)"]
    for k in range(3):
        for metric, value in analysis.overall[f"step {k}"].items():
            assert oracle[metric] >= value - 1e-12
    assert sum(analysis.group_sizes["history"]) == len(dataset.test)
    masked = evaluate(model, dataset.test, "test", exclude_history=True)  # past items excluded, as evaluate does
    assert masked.ranks.tolist() != evaluate(model, dataset.test, "test").ranks.tolist()
    assert step_ranks(model, dataset.test, exclude_history=True)[1].tolist() == masked.ranks.tolist()
    assert analyse(model, dataset, exclude_history=True).overall["model"] == masked.metrics
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), str(tmp_path / "run"), "--analysis", "--steps", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "ORACLE" in done.stdout and "protocol:" in done.stdout
    folder = tmp_path / "run" / "analysis"
    assert (folder / "analysis-test.md").read_text().startswith("# Reasoning analysis of the test")
    assert json.loads((folder / "analysis-test.json").read_text())["split"] == "test"
    assert (folder / "ndcg10_by_group-test.png").stat().st_size > 1000
    too_deep = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), str(tmp_path / "run"), "--steps", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert too_deep.returncode == 2 and "trained with reasoning_steps=2" in too_deep.stderr


def test_a_run_loads_at_the_inference_depth_it_chose_on_validation(tmp_path, csv_data_config):
    """config.json is written before training; the depth chosen after it must come back with the model."""
    import json

    from hybrid_rearec.hybrid.train import train

    config = ModelConfig(
        hidden_size=16, num_layers=1, num_heads=2, inner_size=32, reasoning_steps=2, reasoning_method="prl"
    )  # fmt: skip
    train(csv_data_config, config, quick_train_config(tmp_path, epochs=1, select_inference_steps=True))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    model, data_config, model_config, _ = load_run(tmp_path / "run")
    assert model_config.inference_steps == model.config.inference_steps == metrics["inference_steps"] is not None
    test = evaluate(model, load_dataset(data_config).test, "test")
    assert test.metrics["ndcg@10"] == metrics["test"]["metrics"]["ndcg@10"]


def test_quintiles_keep_equal_values_together():
    assert quintiles(np.arange(10)[::-1]).tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    # six equal values fill quintile 1 and leave 2 and 3 empty, whatever the rows' order
    assert quintiles(np.array([5, 0, 0, 9, 0, 5, 0, 0, 5, 0])).tolist() == [4, 1, 1, 5, 1, 4, 1, 1, 4, 1]
