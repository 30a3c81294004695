"""A run is named after what it trains (dataset, item encoder, backbone, method) unless named by hand."""

import json
from pathlib import Path

import pytest
from hybrid_rearec.hybrid.config import DataConfig, ModelConfig, TrainConfig, named_run, parse_configs, run_name_of
from hybrid_rearec.hybrid.run_folder import run_configs
from hybrid_rearec.hybrid.studies.compare import run_label
from hybrid_rearec.hybrid.train import train

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "data,model,expected",
    [
        ({}, {}, "ml-100k-id-sasrec"),
        (
            {"dataset": "data/amazon-scientific", "data_format": "recbole_split"},
            {"item_encoder": "text", "reasoning_steps": 2, "reasoning_method": "erl"},
            "amazon-scientific-text-rearec-erl",
        ),
        (
            {},
            {"item_encoder": "hybrid", "backbone": "bert4rec", "reasoning_steps": 1, "reasoning_method": "prl"},
            "ml-100k-hybrid-bert4rec-rearec-prl",
        ),
        (
            {"dataset": "/data/beauty/ratings.csv", "data_format": "csv"},
            {"item_encoder": "lm_lora"},
            "ratings-lm_lora-sasrec",
        ),
        ({"dataset": "data/ml-1m/", "data_format": "recbole"}, {}, "ml-1m-id-sasrec"),
    ],
)
def test_the_default_name_says_dataset_encoder_backbone_and_method(data, model, expected):
    assert run_name_of(DataConfig(**data), ModelConfig(**model)) == expected


def test_run_name_is_unset_by_default_and_a_given_name_is_kept():
    assert TrainConfig().run_name is None
    assert named_run(DataConfig(), ModelConfig(), TrainConfig()).run_name == "ml-100k-id-sasrec"
    assert named_run(DataConfig(), ModelConfig(), TrainConfig(run_name="mine")).run_name == "mine"


def test_presets_keep_their_names_and_the_command_line_derives_one():
    _, _, preset = parse_configs(["--config", str(ROOT / "configs" / "text_rearec_ml100k.json")])
    assert preset.run_name == "text-rearec-ml100k"
    data, model, plain = parse_configs(["--item_encoder", "text", "--reasoning_steps", "2"])
    assert plain.run_name is None and named_run(data, model, plain).run_name == "ml-100k-text-rearec-prl"


def test_old_run_configs_with_a_name_still_load(tmp_path):
    old = {"data": {"dataset": "ml-100k"}, "train": {"run_name": "sasrec-ml100k", "seed": 7}}
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert run_configs(tmp_path)[1].run_name == "sasrec-ml100k"


def test_every_output_of_a_run_carries_the_derived_name(tmp_path, csv_data_config, tiny_model_config, capsys):
    config = TrainConfig(
        output_dir=str(tmp_path / "run"), epochs=1, batch_size=32, report_to="none", progress=False, seed=3
    )
    results = train(csv_data_config, tiny_model_config, config)
    name = "interactions-id-sasrec"  # the fixture's data file is interactions.csv
    run = tmp_path / "run"
    out = capsys.readouterr().out
    assert f"| {name} test |" in out and "sasrec-ml100k" not in out
    assert results["run_name"] == name == json.loads((run / "metrics.json").read_text())["run_name"]
    assert json.loads((run / "config.json").read_text())["train"]["run_name"] == name
    assert (run / "model" / "README.md").read_text().count(f"# {name}\n") == 1
    assert run_label(run, {}) == name
    assert config.run_name is None  # the caller's config is left as given
