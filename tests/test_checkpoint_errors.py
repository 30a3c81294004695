"""Resuming from a checkpoint that cannot be used says why and what to do, and leaves the checkpoint alone: a
damaged file of it is named, a changed setting is named with both values."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hybrid_rearec.hybrid.config import TrainConfig
from hybrid_rearec.hybrid.errors import ConfigError
from hybrid_rearec.hybrid.train import train
from safetensors.torch import load_file


@pytest.fixture
def trained(tmp_path, csv_data_config, tiny_model_config):
    config = TrainConfig(output_dir=str(tmp_path / "run"), epochs=1, batch_size=64, report_to="none", progress=False)
    train(csv_data_config, tiny_model_config, config)
    return replace(config, resume="latest", epochs=2)


def snapshot(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def test_a_truncated_best_model_is_named_and_left_alone(trained, csv_data_config, tiny_model_config):
    latest = sorted((Path(trained.output_dir) / "checkpoints").iterdir())[-1]
    best = latest / "best_model.safetensors"
    best.write_bytes(best.read_bytes()[:100])
    before = snapshot(latest)
    with pytest.raises(ConfigError, match=rf"{best} is corrupt or truncated.*older checkpoint.*nothing was changed"):
        train(csv_data_config, tiny_model_config, trained)
    assert snapshot(latest) == before


def test_a_changed_setting_is_named_not_called_corrupt(trained, csv_data_config, tiny_model_config):
    run = Path(trained.output_dir)
    latest = sorted((run / "checkpoints").iterdir())[-1]
    before, settings = snapshot(latest), (run / "config.json").read_bytes()
    changed = replace(tiny_model_config, hidden_size=32)
    with pytest.raises(ConfigError) as error:
        train(csv_data_config, changed, trained)
    message = str(error.value)
    assert "corrupt" not in message and "hidden_size" in message and "16" in message and "32" in message
    assert f"--config {latest / 'run_config.json'} --output_dir {run} --resume {latest}" in message  # as trained
    assert "--overwrite" in message  # or start fresh
    assert snapshot(latest) == before
    assert (run / "config.json").read_bytes() == settings  # the folder still describes the run that is in it
    sections = json.loads((latest / "run_config.json").read_text())
    assert sections["model"]["hidden_size"] == 16
    train(csv_data_config, tiny_model_config, trained)  # the checkpoint is sound: it resumes as trained


def test_a_finished_run_that_would_train_no_further_is_refused_before_anything_moves(
    trained, csv_data_config, tiny_model_config
):
    run = Path(trained.output_dir)
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(ConfigError, match=r"would train no further: it has trained 1 epochs: pass --epochs above 1"):
        train(csv_data_config, tiny_model_config, replace(trained, epochs=1))
    latest = sorted((run / "checkpoints").iterdir())[-1] / "trainer_state.json"
    state = json.loads(latest.read_text())
    latest.write_text(json.dumps(state | {"bad_evals": 3}))  # as a run that stopped early at patience 3 saves it
    with pytest.raises(ConfigError, match=r"stopped early.*pass --patience above 3 \(now 3\).*Nothing was changed"):
        train(csv_data_config, tiny_model_config, replace(trained, patience=3))
    latest.write_text(json.dumps(state))
    assert sorted(p.name for p in run.iterdir()) == before  # no results set aside
    train(csv_data_config, tiny_model_config, trained)  # one more epoch is something to train
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 2 and list(run.glob("replaced-*"))


@pytest.mark.parametrize("key,value", [("learning_rate", 0.5), ("batch_size", 16), ("seed", 99)])
def test_a_changed_training_path_setting_is_refused_on_resume(trained, csv_data_config, tiny_model_config, key, value):
    # the optimizer's restored state would keep the old learning rate while config.json claimed the new one
    with pytest.raises(
        ConfigError,
        match=rf"other settings than this run's \({key}: .* in the checkpoint, {value} now",
    ):
        train(csv_data_config, tiny_model_config, replace(trained, **{key: value}))
    train(csv_data_config, tiny_model_config, replace(trained, patience=3, log_every=1))  # these may change


def test_a_resume_in_another_precision_is_refused_whoever_set_it(trained, csv_data_config, tiny_model_config):
    with pytest.raises(ConfigError, match=r"trained in mixed_precision='no', and this resume would go on in 'bf16'"):
        train(csv_data_config, tiny_model_config, replace(trained, mixed_precision="bf16"))
    train(csv_data_config, tiny_model_config, replace(trained, mixed_precision="no"))  # the same precision as None


def test_an_older_checkpoint_without_a_recorded_precision_is_checked_against_its_settings(
    trained, csv_data_config, tiny_model_config
):
    latest = sorted((Path(trained.output_dir) / "checkpoints").iterdir())[-1]
    state = json.loads((latest / "trainer_state.json").read_text())
    (latest / "trainer_state.json").write_text(json.dumps({k: v for k, v in state.items() if k != "mixed_precision"}))
    settings = json.loads((latest / "run_config.json").read_text())
    settings["train"]["mixed_precision"] = "bf16"  # as an older run started with --mixed_precision bf16 saved it
    (latest / "run_config.json").write_text(json.dumps(settings))
    with pytest.raises(ConfigError, match=r"trained in mixed_precision='bf16', and this resume would go on in 'no'"):
        train(csv_data_config, tiny_model_config, replace(trained, mixed_precision="no"))


def test_a_relative_checkpoint_path_is_also_looked_for_in_the_run_folder(tmp_path, monkeypatch):
    from hybrid_rearec.hybrid.checkpoint import resolve_checkpoint

    step = tmp_path / "run" / "checkpoints" / "step-000000003"
    step.mkdir(parents=True)
    (step / "trainer_state.json").write_text("{}")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert resolve_checkpoint(tmp_path / "run", "checkpoints/step-000000003") == step
    with pytest.raises(ConfigError, match=r"'checkpoints/step-9' is not a complete checkpoint.*starts at --output_dir"):
        resolve_checkpoint(tmp_path / "run", "checkpoints/step-9")


def test_an_older_checkpoint_resumes_with_its_own_validation_ranks_and_abandons_the_later_ones(
    tmp_path, csv_data_config, tiny_model_config
):
    def config(name, epochs, **extra):
        return TrainConfig(
            output_dir=str(tmp_path / name), epochs=epochs, batch_size=64, report_to="none", progress=False,
            keep_checkpoints=5, patience=5, **extra,
        )  # fmt: skip

    one = train(csv_data_config, tiny_model_config, config("one", 1))
    train(csv_data_config, tiny_model_config, config("two", 3))
    run = tmp_path / "two"
    first, *later = sorted((run / "checkpoints").glob("step-*"))
    # Into a new folder: the checkpoint's ranks, not a file of that folder (there is none).
    moved = train(csv_data_config, tiny_model_config, config("three", 1, resume=str(first)))
    ranks = load_file(tmp_path / "three" / "ranks.safetensors")
    assert torch.equal(ranks["valid"], load_file(tmp_path / "one" / "ranks.safetensors")["valid"])
    assert moved["test"] == one["test"]
    # In its own folder, after later epochs: those checkpoints move aside, nothing is deleted.
    for name in ("model", "metrics.json", "ranks.safetensors"):
        shutil.rmtree(run / name) if name == "model" else (run / name).unlink()
    train(csv_data_config, tiny_model_config, config("two", 2, resume=str(first)))
    (aside,) = (run / "checkpoints").glob("abandoned-*")
    assert sorted(p.name for p in aside.iterdir()) == [p.name for p in later]
    new_branch = sorted(p.name for p in (run / "checkpoints").glob("step-*"))
    assert new_branch == [first.name, later[0].name]  # epoch 2 trained again: its step, this branch's weights


def test_a_resume_on_changed_data_is_refused(trained, csv_data_config, tiny_model_config):
    path = Path(csv_data_config.dataset)
    lines = path.read_text().splitlines()
    user, item, time, rating = lines[1].split(",")
    path.write_text("\n".join([*lines, f"{user},{item}-new,{int(time) + 10**6},{rating}"]) + "\n")  # a new item
    latest = sorted((Path(trained.output_dir) / "checkpoints").iterdir())[-1]
    before = snapshot(latest)
    with pytest.raises(ConfigError, match=r"trained on other data than the dataset holds now.*not changed"):
        train(csv_data_config, tiny_model_config, trained)
    assert snapshot(latest) == before
    path.write_text("\n".join(lines) + "\n")
    train(csv_data_config, tiny_model_config, trained)  # the same data again: it resumes


def test_training_a_finished_run_further_keeps_its_results_whole_beside_the_new_ones(
    trained, csv_data_config, tiny_model_config
):
    run = Path(trained.output_dir)
    before = {name: (run / name).read_bytes() for name in ("metrics.json", "ranks.safetensors")}
    weights = (run / "model" / "model.safetensors").read_bytes()
    further = train(csv_data_config, tiny_model_config, trained)  # --resume latest --epochs 2 on a finished run
    (aside,) = run.glob("replaced-*")
    assert {name: (aside / name).read_bytes() for name in before} == before  # the finished run, untouched
    assert (aside / "model" / "model.safetensors").read_bytes() == weights
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == further["epochs_run"] == 2
    assert (run / "config.json").exists() and (run / "checkpoints").is_dir()  # the run itself goes on in place
    assert not list(run.glob(".model-incomplete"))


def test_a_step_saved_twice_is_replaced_without_a_moment_with_neither(tmp_path):
    from hybrid_rearec.hybrid.checkpoint import replace_folder

    final, new = tmp_path / "step-000000049", tmp_path / ".incomplete-step-000000049"
    for folder, text in ((final, "first save"), (new, "second save")):
        folder.mkdir()
        (folder / "trainer_state.json").write_text(text)
    replace_folder(new, final)
    assert (final / "trainer_state.json").read_text() == "second save" and sorted(tmp_path.iterdir()) == [final]


def test_a_damaged_settings_file_in_a_checkpoint_is_named_not_a_traceback(trained, csv_data_config, tiny_model_config):
    latest = sorted((Path(trained.output_dir) / "checkpoints").iterdir())[-1]
    (latest / "run_config.json").write_text('{"data": {')  # cut short
    before = snapshot(latest)
    with pytest.raises(ConfigError, match=r"is corrupt or incomplete \(JSONDecodeError.*nothing was changed"):
        train(csv_data_config, tiny_model_config, trained)
    assert snapshot(latest) == before


def test_an_output_dir_that_cannot_be_written_and_a_cache_that_cannot_are_said_in_one_line(
    tmp_path, csv_data_config, tiny_model_config
):
    from hybrid_rearec.hybrid.data import load_dataset

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    config = TrainConfig(output_dir=str(blocker / "run"), epochs=1, report_to="none", progress=False)
    with pytest.raises(ConfigError, match=r"cannot write in output_dir .*a-file/run.*--output_dir"):
        train(csv_data_config, tiny_model_config, config)
    with pytest.warns(UserWarning, match=r"could not be cached in .*a-file.*the next run reads the files again"):
        dataset = load_dataset(replace(csv_data_config, cache_dir=str(blocker / "cache")))
    assert dataset.num_items == 30  # the run goes on without the cache


def test_save_pretrained_refuses_a_run_folder(trained):
    from hybrid_rearec.hybrid.pretrained import ModelFileError
    from hybrid_rearec.hybrid.run_folder import load_model

    run = Path(trained.output_dir)
    settings = (run / "config.json").read_bytes()
    with pytest.raises(ModelFileError, match=r"holds a training run, not a saved model.*model is in .*run/model"):
        load_model(run).save_pretrained(run)  # meant: run / "model", or a new folder
    assert (run / "config.json").read_bytes() == settings
    load_model(run).save_pretrained(run / "copy")  # a new folder is fine, and so is saving over a model folder
    load_model(run).save_pretrained(run / "copy")


def test_a_resume_on_another_lm_than_the_checkpoints_is_refused(tmp_path):
    from hybrid_rearec.hybrid.checkpoint import TrainerState, check_signatures

    state = TrainerState(fixed_weights_signature="aaaa")
    check_signatures(tmp_path, state, {"fixed_weights_signature": "aaaa"})  # the same LM: goes on
    check_signatures(tmp_path, TrainerState(), {"fixed_weights_signature": "bbbb"})  # an older checkpoint: unchecked
    with pytest.raises(ConfigError, match="the pretrained LM's weights"):
        check_signatures(tmp_path, state, {"fixed_weights_signature": "bbbb"})


def test_a_setting_added_since_a_checkpoint_counts_as_its_former_behaviour(tmp_path):
    """A checkpoint from before --select_on chose its epochs on every row: resuming it on warm targets only
    would compare two kinds of score, so it is refused; resuming with the default goes on."""
    import json

    from hybrid_rearec.hybrid.checkpoint import RUN_CONFIG, changed_settings

    (tmp_path / RUN_CONFIG).write_text(json.dumps({"data": {}, "model": {}, "train": {"seed": 1}}))
    now = {"data": {}, "model": {}, "train": {"seed": 1, "select_on": "warm_targets"}}
    assert changed_settings(tmp_path, now) == ["select_on: 'all' in the checkpoint, 'warm_targets' now"]
    assert changed_settings(tmp_path, {**now, "train": {"seed": 1, "select_on": "all"}}) == []


def test_a_kill_between_the_renames_of_a_step_saved_twice_resumes_from_its_earlier_save(
    trained, csv_data_config, tiny_model_config
):
    from hybrid_rearec.hybrid.checkpoint import checkpoint_folders, resolve_checkpoint

    run = Path(trained.output_dir)
    for name in ("model", "metrics.json", "ranks.safetensors"):  # as if killed while training
        shutil.rmtree(run / name) if name == "model" else (run / name).unlink()
    latest = checkpoint_folders(run)[-1]
    stand_in = latest.with_name(f".replaced-{latest.name}")
    shutil.copytree(latest, latest.with_name(f".incomplete-{latest.name}"))  # the step's new save, complete
    latest.rename(stand_in)  # replace_folder's first rename done, its second not
    assert checkpoint_folders(run)[-1] == stand_in
    assert resolve_checkpoint(run, "latest") == resolve_checkpoint(run, str(latest)) == stand_in
    resumed = train(csv_data_config, tiny_model_config, replace(trained, keep_checkpoints=1))
    assert resumed["epochs_run"] == 2 and not list(run.glob("replaced-*"))  # continued, not started again
    (kept,) = checkpoint_folders(run)  # the new epoch's save; the stand-in rotated away like any checkpoint
    assert kept.name.startswith("step-") and kept.name > latest.name


class Killed(Exception):
    """A kill in the middle of an operation."""


def test_a_step_saved_again_over_its_stand_in_keeps_it_until_the_new_save_is_in_place(tmp_path, monkeypatch):
    from hybrid_rearec.hybrid import checkpoint

    stand_in, final, new = (tmp_path / f"{prefix}step-000000049" for prefix in (".replaced-", "", ".incomplete-"))
    for folder, text in ((stand_in, "first save"), (new, "second save")):
        folder.mkdir()
        (folder / "trainer_state.json").write_text(text)

    def killed(source, target):
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint.os, "replace", killed)
        with pytest.raises(Killed):
            checkpoint.replace_folder(new, final)
    assert (stand_in / "trainer_state.json").read_text() == "first save"  # still the step's one checkpoint
    checkpoint.replace_folder(new, final)
    assert (final / "trainer_state.json").read_text() == "second save" and sorted(tmp_path.iterdir()) == [final]
