import json
from pathlib import Path

import pytest
from hybrid_rearec.hybrid.config import (
    DataConfig,
    ModelConfig,
    TrainConfig,
    check_configs,
    load_preset,
    parse_configs,
    to_dict,
)
from hybrid_rearec.hybrid.errors import ConfigError


def test_preset_and_command_line_override(tmp_path):
    preset = tmp_path / "p.json"
    preset.write_text(json.dumps({"model": {"hidden_size": 32}, "train": {"epochs": 3}, "k_core": 2}))
    data, model, train = parse_configs(["--config", str(preset), "--epochs", "5", "--exclude_history"])
    assert model.hidden_size == 32 and train.epochs == 5 and data.k_core == 2 and train.exclude_history is True


PRESETS = sorted((Path(__file__).parents[1] / "configs").glob("*.json"))


def checked(argv: list[str]) -> tuple:
    """The configs of a command line, checked together as training checks them."""
    configs = parse_configs(argv)
    check_configs(*configs)
    return configs


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_shipped_preset_parses(preset, capsys):
    data, model, train = checked(["--config", str(preset)])  # unknown keys or bad values raise
    assert train.seed == 2020 and data.max_history == 50 and model.hidden_size > 0
    assert "note:" not in capsys.readouterr().err  # no preset sets what its model never reads


def test_settings_the_model_never_reads_are_named_and_negative_loss_weights_refused(capsys):
    checked("--reasoning_steps 0 --reasoning_dropout 0.9 --select_inference_steps --fusion gate".split())
    notes = capsys.readouterr().err.splitlines()
    assert "note: fusion='gate' has no effect: item_encoder is 'id'." in notes
    assert "note: reasoning_dropout=0.9, select_inference_steps=True have no effect: reasoning_steps is 0." in notes
    checked("--reasoning_steps 2 --reasoning_method prl --erl_kl_weight 9 --epochs 2".split())
    notes = capsys.readouterr().err
    assert "erl_kl_weight=9.0 has no effect: reasoning_method is 'prl'." in notes
    assert "prl_warmup_epochs=2 epochs and the run trains at most epochs=2: it never runs" in notes
    checked("--reasoning_steps 2 --reasoning_method erl --erl_kl_weight 0.1 --epochs 3".split())
    assert "note:" not in capsys.readouterr().err
    for key in ("erl_kl_weight", "prl_step_weight", "prl_contrastive_weight"):
        with pytest.raises(ConfigError, match=rf"{key} must be >= 0 \(0 turns that loss off\), got -1"):
            checked(["--reasoning_steps", "2", f"--{key}", "-1"])


def test_defaults_are_recbole_sasrec():
    data, model, train = parse_configs([])
    assert (model.hidden_size, model.inner_size, model.num_layers, model.num_heads) == (64, 256, 2, 2)
    assert (model.hidden_dropout, data.max_history, train.batch_size, train.learning_rate) == (0.5, 50, 256, 1e-3)
    assert data.dataset == "ml-100k" and data.split == "leave_one_out" and train.exclude_history is False


def test_unknown_key_in_preset_suggests_the_right_one(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("model:\n  hiden_size: 32\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'hiden_size'.*Did you mean 'hidden_size'"):
        load_preset(preset)


def test_a_key_set_twice_in_a_preset_is_refused_not_silently_overridden(tmp_path):
    preset = tmp_path / "p.json"  # e.g. a copied preset with a top-level "dataset" added
    preset.write_text('{"dataset": "my.csv", "data": {"dataset": "ml-100k"}, "model": {"hidden_size": 32}}')
    with pytest.raises(ConfigError, match=r"sets 'dataset' twice, in the top level \('my.csv'\) and in section 'data'"):
        load_preset(preset)
    preset.write_text('{"data": {"dataset": "my.csv"}, "model": {"hidden_size": 32}}')
    assert load_preset(preset) == {"dataset": "my.csv", "hidden_size": 32}


def test_a_resume_without_a_preset_takes_the_runs_own_settings(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    trained = to_dict(
        DataConfig(dataset="my.csv", data_format="csv", max_history=8),
        ModelConfig(hidden_size=16, num_heads=2, inner_size=32),
        TrainConfig(output_dir=str(run), epochs=1),
    )
    (run / "config.json").write_text(json.dumps(trained))
    data, model, train = parse_configs(["--output_dir", str(run), "--resume", "latest", "--epochs", "3"])
    assert (data.dataset, data.max_history, model.hidden_size) == ("my.csv", 8, 16)
    assert (train.epochs, train.resume, train.output_dir) == (3, "latest", str(run))  # flags still win
    assert f"resuming with the settings of {run / 'config.json'}" in capsys.readouterr().err
    data, model, _ = parse_configs(["--output_dir", str(run), "--epochs", "3"])  # no resume: the defaults
    assert data.dataset == DataConfig().dataset and model.hidden_size == ModelConfig().hidden_size
    checkpoint = run / "checkpoints" / "step-000000004"  # --resume names a checkpoint, no --output_dir
    checkpoint.mkdir(parents=True)
    (checkpoint / "run_config.json").write_text(json.dumps(trained))
    data, _, train = parse_configs(["--resume", str(checkpoint)])
    assert (data.dataset, train.output_dir, train.resume) == ("my.csv", str(run), str(checkpoint))


def test_unknown_key_on_command_line_is_an_error():
    with pytest.raises(ConfigError, match=r"unknown config key 'learning_rat'.*'learning_rate'"):
        parse_configs(["--learning_rat", "0.1"])


def test_invalid_values_are_explained():
    with pytest.raises(ConfigError, match="divisible by num_heads"):
        ModelConfig(hidden_size=10, num_heads=3)
    with pytest.raises(ConfigError, match="valid_time and --test_time"):
        DataConfig(split="global_time")
    with pytest.raises(ConfigError, match="valid_time=5.0 applies to split='global_time' only"):
        DataConfig(valid_time=5.0)
    with pytest.raises(ConfigError, match="inference_steps=2 sets the reasoning depth by hand.*one of the two"):
        checked(["--reasoning_steps", "2", "--inference_steps", "2", "--select_inference_steps"])
    with pytest.raises(TypeError, match="takes a DataConfig here, got ModelConfig"):  # Python: arguments swapped
        check_configs(ModelConfig(), DataConfig(), TrainConfig())
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match=r"seed must be in \[0, 2\*\*32\), got -1"):  # numpy's range
        TrainConfig(seed=-1)
    with pytest.raises(ConfigError, match="split='random' is not one of"):
        parse_configs(["--split", "random"])


def test_missing_preset_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        parse_configs(["--config", str(tmp_path / "none.json")])


@pytest.mark.parametrize("name", ["hidden_size", "num_layers", "num_heads", "inner_size"])
def test_backbone_sizes_must_be_positive(name):
    with pytest.raises(ConfigError, match=f"{name} must be a positive whole number, got -3"):
        ModelConfig(**{name: -3})


@pytest.mark.parametrize(
    "values,problem",
    [
        ({"epochs": None}, r"epochs must be a whole number, got None"),
        ({"epochs": True}, r"epochs must be a whole number, got True"),
        ({"epochs": 1.5}, r"epochs must be a whole number, got 1.5"),
        ({"seed": [1, 2]}, r"seed must be a whole number, got \[1, 2\]"),
        ({"exclude_history": 1}, r"exclude_history must be true or false, got 1"),
        ({"learning_rate": "NaN"}, r"learning_rate must be a finite number, got nan"),
        ({"max_grad_norm": 0}, r"max_grad_norm must be > 0 .*or unset"),
        ({"weight_decay": -1}, r"weight_decay must be >= 0"),
        ({"save_every_steps": -3}, r"save_every_steps must be >= 0"),
        ({"num_threads": -2}, r"num_threads must be >= 0"),
        ({"initializer_range": -1}, r"initializer_range must be > 0"),
        ({"prl_contrastive_temperature": 0}, r"prl_contrastive_temperature must be > 0"),
        ({"prl_alpha": 0}, r"prl_alpha must be > 0"),
    ],
)
def test_preset_values_of_the_wrong_type_or_range_are_refused_by_name(tmp_path, values, problem):
    preset = tmp_path / "p.json"
    preset.write_text(json.dumps(values))
    with pytest.raises(ConfigError, match=problem):
        parse_configs(["--config", str(preset)])


def test_whole_floats_and_integers_are_taken_as_their_fields_types(tmp_path):
    preset = tmp_path / "p.json"
    preset.write_text(json.dumps({"hidden_size": 32.0, "num_heads": 2, "reasoning_steps": 2.0, "temperature": 1}))
    _, model, _ = parse_configs(["--config", str(preset)])
    assert (model.hidden_size, model.reasoning_steps, model.temperature) == (32, 2, 1.0)
    assert type(model.hidden_size) is int and type(model.temperature) is float


def test_python_training_checks_the_configs_together_as_the_command_line_does(tmp_path, capsys):
    from hybrid_rearec.hybrid.train import train

    model = ModelConfig(reasoning_steps=1, inference_steps=1)
    with pytest.raises(ConfigError, match="give one of the two"):  # before any data is read or folder made
        train(DataConfig(), model, TrainConfig(select_inference_steps=True, output_dir=str(tmp_path / "run")))
    with pytest.raises(TypeError, match="takes a DataConfig here, got dict"):
        train({"dataset": "ml-100k"}, model, TrainConfig())
    assert not (tmp_path / "run").exists()


def test_a_typod_setting_is_refused_with_the_right_name_in_python_too():
    with pytest.raises(ConfigError, match="ModelConfig has no setting 'hiden_size'. Did you mean 'hidden_size'"):
        ModelConfig(hiden_size=16)
    with pytest.raises(ConfigError, match="'epochs' is a TrainConfig setting, not a ModelConfig one"):
        ModelConfig(epochs=3)
    train = TrainConfig()
    with pytest.raises(ConfigError, match="TrainConfig has no setting 'epoch'. Did you mean 'epochs'"):
        train.epoch = 3  # Python would take it and training would ignore it
    train.epochs = 3
    assert train.epochs == 3


def test_a_subclass_keeps_its_own_settings_and_a_delimiter_must_be_text():
    import dataclasses

    @dataclasses.dataclass
    class MyTrain(TrainConfig):
        my_setting: int = 3

    mine = MyTrain(my_setting=4, epochs=2)  # its own dataclass __init__; the attribute check knows its fields
    mine.my_setting = 5
    assert mine.my_setting == 5 and mine.epochs == 2
    with pytest.raises(ConfigError, match="MyTrain has no setting 'my_seting'. Did you mean 'my_setting'"):
        mine.my_seting = 4
    with pytest.raises(ConfigError, match="delimiter must be a string"):
        DataConfig(delimiter=5)


def test_recbole_names_are_translated_to_ours(tmp_path):
    from hybrid_rearec.hybrid.config import RECBOLE_NAMES, known_keys

    assert set(RECBOLE_NAMES.values()) <= set(known_keys())  # every translation names a real setting
    with pytest.raises(ConfigError, match="RecBole's 'n_layers' is ModelConfig's 'num_layers' here"):
        parse_configs(["--n_layers", "3"])
    preset = tmp_path / "p.json"
    preset.write_text(json.dumps({"MAX_ITEM_LIST_LENGTH": 50}))
    with pytest.raises(ConfigError, match="RecBole's 'MAX_ITEM_LIST_LENGTH' is DataConfig's 'max_history' here"):
        load_preset(preset)
    with pytest.raises(ConfigError, match="RecBole's 'train_batch_size' is TrainConfig's 'batch_size' here"):
        TrainConfig(train_batch_size=256)


def test_recbole_names_with_no_setting_here_say_what_does_their_job():
    from hybrid_rearec.hybrid.config import RECBOLE_FIXED, known_keys

    assert not set(RECBOLE_FIXED) & set(known_keys())  # a real setting is never answered this way
    with pytest.raises(ConfigError, match="RecBole's 'model' has no setting here: the model is --backbone"):
        parse_configs(["--model", "SASRec"])
    with pytest.raises(ConfigError, match="'config_files' has no setting here: a preset is given with --config"):
        parse_configs(["--config_files", "x.yaml"])
    with pytest.raises(ConfigError, match="'valid_metric' has no setting here: .* validation NDCG@10"):
        TrainConfig(valid_metric="MRR@10")


def test_a_preset_path_that_is_a_folder_is_named_as_such(tmp_path):
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        load_preset(tmp_path)


def test_a_stray_argument_is_named_and_a_bare_preset_points_to_config():
    with pytest.raises(ConfigError, match=r"stray .*'configs/demo.json'.*Did you mean --config configs/demo.json\?"):
        parse_configs(["configs/demo.json"])
    with pytest.raises(ConfigError, match=r"stray .*'extra'.*--KEY VALUE"):
        parse_configs(["--epochs", "3", "extra"])
    assert parse_configs(["--config", "configs/demo.json", "--epochs", "3"])[2].epochs == 3


def test_help_opens_with_the_description_and_the_preset_and_says_each_default_once():
    from hybrid_rearec.hybrid.config import build_parser

    text = build_parser(description="Train a recommender.").format_help()
    assert text.startswith("usage: ") and "[--config PRESET] [--KEY VALUE ...]" in text.splitlines()[0]
    assert "Train a recommender." in text
    options = [line.split()[0] for line in text.splitlines() if line.startswith("  --")]
    assert options[0] == "--config"
    blocks = help_blocks(text)
    assert blocks["item_text_columns"].endswith("(default: every non-id column).")  # said by its help, no "None"
    assert blocks["max_history"].endswith("(default: 50)") and blocks["item_id_column"].endswith("item_column).")
    assert not [name for name, block in blocks.items() if "(default: None)" in block]
    assert all(block.count("(default:") <= 1 for block in blocks.values())
    preset = help_blocks(build_parser({"item_text_columns": "title", "progress": False}).format_help())
    assert preset["item_text_columns"].endswith("(default: every non-id column). (this preset: title)")
    assert preset["progress"].endswith("(default: False)")
    assert preset["no_progress"].endswith("Same as --progress false.")  # the preset's value is --progress's alone


def help_blocks(text: str) -> dict[str, str]:
    """--help's option blocks by key (unwrapped: one line each)."""
    blocks = (" ".join(block.split()) for block in text.split("\n  --")[1:])
    return {block.split()[0].split(",")[0]: block.split(" ", 1)[1] for block in blocks}


def test_a_preset_value_that_does_not_parse_names_the_preset_and_a_misspelled_section_its_name(tmp_path):
    preset = tmp_path / "p.json"
    preset.write_text(json.dumps({"data": {"max_history": "x"}}))
    with pytest.raises(ConfigError, match=rf"^--max_history: invalid int value: 'x' \(set in {preset}\)$"):
        parse_configs(["--config", str(preset)])
    with pytest.raises(ConfigError, match=r"^--max_history: invalid int value: 'y'$"):  # the command line's own
        parse_configs(["--config", str(preset), "--max_history", "y"])
    preset.write_text(json.dumps({"modle": {"hidden_size": 32}}))
    with pytest.raises(ConfigError, match=r"unknown section 'modle' .*Did you mean 'model'\?"):
        load_preset(preset)
    preset.write_text(json.dumps({"clip_grad_norm": {"max_norm": 5.0}}))  # a RecBole setting whose value is a dict
    with pytest.raises(ConfigError, match="RecBole's 'clip_grad_norm' is TrainConfig's 'max_grad_norm' here"):
        load_preset(preset)
    yaml_preset = tmp_path / "p.yaml"
    yaml_preset.write_text("model:\ntrain:\n  epochs: 3\n")  # a section left empty
    assert load_preset(yaml_preset) == {"epochs": 3}


@pytest.mark.parametrize("name", ["text_model", "lm_model"])
@pytest.mark.parametrize("blank", [None, "", "  "])
def test_a_blank_model_name_is_refused_by_name(name, blank):
    with pytest.raises(ConfigError, match=rf"{name} must name a model .*'all-MiniLM-L6-v2'.*got {blank!r}"):
        ModelConfig(item_encoder="text", **{name: blank})
