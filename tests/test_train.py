import builtins
import copy
import dataclasses
import io
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from conftest import write_sequential_csv
from hybrid_rearec.hybrid.build import decay_groups, make_optimizer
from hybrid_rearec.hybrid.config import DataConfig, ModelConfig, TrainConfig
from hybrid_rearec.hybrid.data import load_dataset
from hybrid_rearec.hybrid.errors import ConfigError, DataError
from hybrid_rearec.hybrid.evaluate import evaluate
from hybrid_rearec.hybrid.model import HybridRecommender
from hybrid_rearec.hybrid.train import train
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


def quick_train_config(tmp_path, **overrides):
    settings = dict(
        output_dir=str(tmp_path / "run"),
        epochs=6,
        patience=10,
        batch_size=32,
        learning_rate=5e-3,
        report_to="none",
        progress=False,
        log_every=5,
        seed=3,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def test_training_learns_a_planted_sequence_and_writes_the_run(tmp_path, csv_data_config, tiny_model_config):
    results = train(csv_data_config, tiny_model_config, quick_train_config(tmp_path))
    run = tmp_path / "run"
    files = {p.name for p in run.iterdir()}
    assert {"config.json", "metrics.json", "model", "ranks.safetensors", "valid_ranks.safetensors"} <= files
    assert "model.safetensors" not in files  # one saved model format: the model/ folder
    losses = [entry["loss"] for entry in results["train_log"]]
    assert losses[-1] < losses[0] - 1.0  # the walk i -> i+1 is easy to learn
    assert results["test"]["metrics"]["ndcg@10"] > 0.5  # random ranking of 30 items gives about 0.1
    epochs = results["epoch_log"]  # one entry per epoch, its validation figure the one early stopping read
    assert [e["epoch"] for e in epochs] == list(range(1, results["epochs_run"] + 1))
    best = epochs[results["best_epoch"] - 1]["valid_ndcg@10"]
    assert best == results["valid"]["metrics"]["ndcg@10"] == max(e["valid_ndcg@10"] for e in epochs)
    metrics = json.loads((run / "metrics.json").read_text())
    assert "ties count against" in metrics["protocol"] and "not excluded" in metrics["protocol"]
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["hidden_size"] == 16 and config["train"]["seed"] == 3
    # the saved best model reproduces the reported test metrics
    model = HybridRecommender.from_pretrained(run / "model")
    result = evaluate(model, load_dataset(csv_data_config).test, "test")
    assert torch.equal(result.ranks, load_file(run / "ranks.safetensors")["test"])


def test_existing_run_directory_is_not_overwritten(tmp_path, csv_data_config, tiny_model_config):
    train(csv_data_config, tiny_model_config, quick_train_config(tmp_path, epochs=1))
    before = (tmp_path / "run" / "model" / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run.*--overwrite"):
        train(csv_data_config, tiny_model_config, quick_train_config(tmp_path, epochs=1))
    assert (tmp_path / "run" / "model" / "model.safetensors").read_bytes() == before


def test_overwrite_sets_the_old_run_aside_and_starts_clean(tmp_path, csv_data_config, tiny_model_config):
    train(csv_data_config, tiny_model_config, quick_train_config(tmp_path, epochs=2))
    run = tmp_path / "run"
    old_checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    before = (run / "model" / "model.safetensors").read_bytes()
    train(csv_data_config, tiny_model_config, quick_train_config(tmp_path, epochs=1, overwrite=True))
    (aside,) = run.glob("replaced-*")
    assert (aside / "model" / "model.safetensors").read_bytes() == before  # nothing of the old run is lost
    assert sorted(p.name for p in (aside / "checkpoints").iterdir()) == old_checkpoints
    new_checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert new_checkpoints[-1] < old_checkpoints[-1]  # only the new run's: --resume latest finds its own
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 1


def test_overwrite_with_a_bad_setting_leaves_the_old_run_in_place(tmp_path, csv_data_config, tiny_model_config):
    train(csv_data_config, tiny_model_config, quick_train_config(tmp_path, epochs=1))
    run = tmp_path / "run"
    before = sorted(p.name for p in run.iterdir())
    bad = dataclasses.replace(csv_data_config, time_column="ts")  # refused when the data is read
    with pytest.raises(DataError, match="column 'ts' not found"):
        train(bad, tiny_model_config, quick_train_config(tmp_path, epochs=1, overwrite=True))
    assert sorted(p.name for p in run.iterdir()) == before and not list(run.glob("replaced-*"))


def test_a_run_that_stopped_before_its_first_checkpoint_starts_again(
    tmp_path, csv_data_config, tiny_model_config, capsys
):
    run = tmp_path / "run"
    (run / "checkpoints" / ".incomplete-step-000000004").mkdir(parents=True)  # killed while saving the first one
    (run / "config.json").write_text('{"data": {}, "train": {}}')
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        train(csv_data_config, tiny_model_config, quick_train_config(tmp_path, epochs=1, resume="latest"))
    results = train(csv_data_config, tiny_model_config, quick_train_config(tmp_path, epochs=1))  # no flag needed
    assert results["output_dir"] == str(run)  # where a caller finds model/
    out = capsys.readouterr().out
    assert "stopped before its first checkpoint: starting it again" in out
    # said when training starts (the final report says the folder alone): an interrupted run can be continued
    said = f"run directory: {run} (if stopped, the same command with --output_dir {run} --resume latest continues it)"
    assert said in out
    (aside,) = run.glob("replaced-*")
    assert (aside / "config.json").read_text() == '{"data": {}, "train": {}}' and (run / "metrics.json").exists()


class Killed(Exception):
    """The process killed in the middle of writing a file."""


class HalfWritten:
    """A file that takes half of what is written to it, then the process is killed."""

    def __init__(self, handle):
        self.handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *error):
        self.handle.close()

    def write(self, text):
        self.handle.write(text[: len(text) // 2])
        self.handle.close()
        raise Killed

    def __getattr__(self, name):
        return getattr(self.handle, name)


@contextmanager
def killed_while_writing(folder: Path, name: str):
    """Writing a file of ``folder`` whose name holds ``name`` (the file or a temporary copy of it) is killed
    halfway; every other file is written as usual."""
    real_open = io.open

    def open_cut_short(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if (
            isinstance(file, (str, os.PathLike))
            and "w" in mode
            and Path(file).parent == folder
            and name in Path(file).name
        ):
            return HalfWritten(handle)
        return handle

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(io, "open", open_cut_short)  # pathlib's
        patch.setattr(builtins, "open", open_cut_short)
        with pytest.raises(Killed):
            yield


def test_a_kill_while_writing_metrics_leaves_the_run_unfinished_not_damaged(
    tmp_path, csv_data_config, tiny_model_config
):
    config, run = quick_train_config(tmp_path, epochs=1), tmp_path / "run"
    with killed_while_writing(run, "metrics.json"):
        train(csv_data_config, tiny_model_config, config)
    assert not (run / "metrics.json").exists()  # a truncated one would mark it finished: seed studies skip it
    results = train(csv_data_config, tiny_model_config, dataclasses.replace(config, resume="latest"))
    assert json.loads((run / "metrics.json").read_text()) == json.loads(json.dumps(results))


def test_a_resume_killed_while_writing_the_settings_keeps_the_runs_own(tmp_path, csv_data_config, tiny_model_config):
    config, run = quick_train_config(tmp_path, epochs=1), tmp_path / "run"
    train(csv_data_config, tiny_model_config, config)
    settings = (run / "config.json").read_bytes()
    further = dataclasses.replace(config, resume="latest", epochs=2)
    with killed_while_writing(run, "config.json"):
        train(csv_data_config, tiny_model_config, further)
    assert (run / "config.json").read_bytes() == settings
    assert train(csv_data_config, tiny_model_config, further)["epochs_run"] == 2  # it resumes from them


@pytest.mark.parametrize("files", [{"config.json": "{}"}, {"config.json": "{}", "catalogue.json": "{}"}])
def test_a_folder_whose_config_is_no_runs_is_never_set_aside(tmp_path, csv_data_config, tiny_model_config, files):
    folder = tmp_path / "run"  # a saved model folder, a Hub snapshot, another project's folder
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match="holds a config.json that is no training run's.*another --output_dir"):
            train(csv_data_config, tiny_model_config, quick_train_config(tmp_path, epochs=1, overwrite=overwrite))
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)  # nothing moved, nothing written


def launch(tmp_path, csv_data_config, processes, name, *extra):
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        *(["--multi_gpu"] if processes > 1 else []),
        str(ROOT / "scripts" / "train.py"),
        "--dataset",
        csv_data_config.dataset,
        "--data_format",
        "csv",
        "--max_history",
        "8",
        "--hidden_size",
        "16",
        "--inner_size",
        "32",
        # Dropout on: its masks must not depend on how the global batch is split across processes.
        "--hidden_dropout",
        "0.3",
        "--attention_dropout",
        "0.3",
        "--epochs",
        "3",
        "--batch_size",
        "32",
        "--eval_batch_size",
        "16",
        "--learning_rate",
        "0.005",
        "--report_to",
        "none",
        "--progress",
        "false",
        "--log_every",
        "5",
        "--output_dir",
        str(tmp_path / name),
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((tmp_path / name / "metrics.json").read_text()), load_file(tmp_path / name / "ranks.safetensors")


@pytest.mark.parametrize(
    "extra",
    [
        (),
        # BERT4Rec's slices hold different numbers of masked items, and PRL's contrastive loss (no warm-up) takes
        # its negatives from the other process's rows too.
        ("--backbone", "bert4rec", "--reasoning_steps", "2", "--reasoning_method", "prl", "--prl_warmup_epochs", "0"),
    ],
    ids=["sasrec", "bert4rec-prl"],
)
def test_two_processes_equal_one_process(tmp_path, csv_data_config, extra):
    one, one_ranks = launch(tmp_path, csv_data_config, 1, "one", *extra)
    two, two_ranks = launch(tmp_path, csv_data_config, 2, "two", *extra)
    assert one["num_processes"] == 1 and two["num_processes"] == 2
    assert torch.equal(one_ranks["test"], two_ranks["test"]) and torch.equal(one_ranks["valid"], two_ranks["valid"])
    assert one["test"]["metrics"] == two["test"]["metrics"]
    for a, b in zip(one["train_log"], two["train_log"]):
        assert a["step"] == b["step"] and abs(a["loss"] - b["loss"]) < 1e-4


PRL = ("--reasoning_steps", "2", "--reasoning_method", "prl", "--prl_warmup_epochs", "0", "--batch_size", "8")


def test_a_process_without_rows_and_a_checkpoint_resumed_by_another_process_count(tmp_path):
    """41 users: 369 training rows, so each epoch's last global batch of 8 holds 1 row, and the second process
    a stand-in that must join PRL's gathers without a row of its own. A checkpoint written by one process
    resumes on two (whose DDP wrapper names the weights module.*) and ends as one process's run."""
    data = DataConfig(dataset=str(write_sequential_csv(tmp_path / "41.csv", num_users=41)), data_format="csv")
    one, one_ranks = launch(tmp_path, data, 1, "one", *PRL)
    two, two_ranks = launch(tmp_path, data, 2, "two", *PRL)
    launch(tmp_path, data, 1, "switch", *PRL, "--epochs", "2")
    switched, switched_ranks = launch(tmp_path, data, 2, "switch", *PRL, "--resume", "latest")
    assert two["num_processes"] == 2 and switched["num_processes"] == 2
    for metrics, ranks in ((two, two_ranks), (switched, switched_ranks)):
        assert torch.equal(one_ranks["test"], ranks["test"]) and one["test"]["metrics"] == metrics["test"]["metrics"]


def test_two_processes_accumulate_uneven_slices_in_as_many_micro_batches(tmp_path, csv_data_config):
    """360 rows in batches of 7, each split 4 + 3 and accumulated in 2 micro-batches; the last batch's 3 rows
    split 2 + 1, and the process with 1 row runs a stand-in as its second: it changes nothing (one process
    trains the same), and with PRL it joins every gather (a process running fewer would hang)."""
    uneven = ("--batch_size", "7", "--gradient_accumulation_steps", "2", "--epochs", "1")
    one, one_ranks = launch(tmp_path, csv_data_config, 1, "one", *uneven)
    two, two_ranks = launch(tmp_path, csv_data_config, 2, "two", *uneven)
    assert torch.equal(one_ranks["test"], two_ranks["test"]) and one["test"]["metrics"] == two["test"]["metrics"]
    prl, _ = launch(tmp_path, csv_data_config, 2, "prl", *PRL[:-2], *uneven)
    assert prl["num_processes"] == 2 and all(torch.isfinite(torch.tensor(e["loss"])) for e in prl["train_log"])


def test_bf16_mixed_precision_trains_and_is_recorded(tmp_path, csv_data_config, tiny_model_config):
    metrics = train(csv_data_config, tiny_model_config, quick_train_config(tmp_path, epochs=2, mixed_precision="bf16"))
    assert metrics["mixed_precision"] == "bf16"
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in metrics["train_log"])
    with pytest.raises(ConfigError, match="fp16' needs a CUDA GPU"):
        train(csv_data_config, tiny_model_config, quick_train_config(tmp_path / "b", mixed_precision="fp16"))
    with pytest.raises(ConfigError, match=r"mixed_precision='fp8' is not one of \('no', 'bf16', 'fp16'\)"):
        quick_train_config(tmp_path, mixed_precision="fp8")


@pytest.mark.parametrize("item_encoder,split", [("text", "leave_one_out"), ("hybrid", "cold_items")])
def test_text_encoders_train_end_to_end_with_the_packaged_minilm(tmp_path, sequential_csv, item_encoder, split):
    items = tmp_path / "items.csv"
    genres = ["comedy", "drama", "horror", "romance", "action"]
    items.write_text("item_id,title\n" + "".join(f"i{k},movie {k} ({genres[k % 5]})\n" for k in range(30)))
    data = DataConfig(dataset=str(sequential_csv), data_format="csv", item_file=str(items), max_history=8, split=split)
    model = ModelConfig(
        hidden_size=16, num_heads=2, inner_size=32, item_encoder=item_encoder, reasoning_steps=1, text_pca_dim=8
    )
    metrics = train(data, model, quick_train_config(tmp_path, epochs=2))
    assert metrics["data"]["items_with_text"] == 30
    groups = metrics["test"]["groups"]
    assert set(groups) >= {"warm targets"} and sum(g["rows"] for n, g in groups.items() if "among" not in n) == 40
    if split == "cold_items":
        assert groups["cold targets"]["rows"] > 0 and "cold targets among cold items" in groups
    assert list((tmp_path / "cache" / "text-vectors").glob("*.safetensors"))  # cached for the next run


def test_lora_encoder_trains_end_to_end_and_saves_its_adapter(tmp_path, sequential_csv):
    from peft import PeftConfig

    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"i{k},movie number {k}\n" for k in range(30)))
    data = DataConfig(dataset=str(sequential_csv), data_format="csv", item_file=str(items), max_history=8)
    model = ModelConfig(
        hidden_size=16, num_heads=2, inner_size=32, item_encoder="lm_lora", lora_layers=1, lm_max_length=8
    )
    metrics = train(data, model, quick_train_config(tmp_path, epochs=1))
    counts = metrics["parameters"]
    assert 0 < counts["item_encoder_trainable"] < 0.01 * counts["language_model"] < counts["total"]
    assert PeftConfig.from_pretrained(str(tmp_path / "run" / "model" / "adapter")).r == 8


def test_select_inference_steps_picks_the_depth_on_validation_and_saves_it(tmp_path, csv_data_config):
    model_config = ModelConfig(
        hidden_size=16, num_heads=2, inner_size=32, reasoning_steps=2, reasoning_method="prl", prl_alpha=2.0
    )
    metrics = train(csv_data_config, model_config, quick_train_config(tmp_path, epochs=3, select_inference_steps=True))
    by_steps = {int(k): v for k, v in metrics["valid_ndcg@10_by_inference_steps"].items()}
    chosen = metrics["inference_steps"]
    assert set(by_steps) == {0, 1, 2} and by_steps[chosen] == max(by_steps.values())
    assert all(by_steps[k] < by_steps[chosen] for k in range(chosen))  # ties go to fewer steps
    assert metrics["valid"]["metrics"]["ndcg@10"] == by_steps[chosen]
    assert model_config.inference_steps is None  # the caller's config is left as given
    model = HybridRecommender.from_pretrained(str(tmp_path / "run" / "model"))
    assert model.config.inference_steps == chosen and model.config.reasoning_steps == 2
    dataset = load_dataset(csv_data_config)
    test = evaluate(model, dataset.split("test"), "test")
    assert test.metrics == metrics["test"]["metrics"]  # the saved model tests at the chosen depth
    ranks = load_file(tmp_path / "run" / "ranks.safetensors")
    assert torch.equal(ranks["valid"], evaluate(model, dataset.split("valid"), "valid").ranks)


def test_the_training_optimizer_is_torchs_adamw_fused(tiny_model_config):
    """make_optimizer fuses AdamW's update into one kernel per parameter: the same steps as torch's default
    AdamW over the same groups (weight decay on matrices only)."""
    torch.manual_seed(0)
    model = HybridRecommender(tiny_model_config, num_items=20, max_history=8)
    reference, start = copy.deepcopy(model), copy.deepcopy(model)
    fused = make_optimizer(model, learning_rate=1e-2, weight_decay=0.1)
    plain = torch.optim.AdamW(decay_groups(reference, 0.1), lr=1e-2, weight_decay=0.0)
    assert fused.defaults["fused"] and not plain.defaults["fused"]
    for step in range(5):
        for a, b in zip(model.parameters(), reference.parameters()):
            a.grad = torch.randn(a.shape, generator=torch.Generator().manual_seed(step))
            b.grad = a.grad.clone()
        fused.step()
        plain.step()
    moved = max((a - b).abs().max().item() for a, b in zip(model.parameters(), start.parameters()))
    worst = max((a - b).abs().max().item() for a, b in zip(model.parameters(), reference.parameters()))
    assert moved > 1e-2 and worst <= 1e-6


def test_keep_freed_memory_stops_refaulting_the_same_large_tensors():
    import subprocess
    import sys

    code = """
import resource, sys, torch
from hybrid_rearec.foundation.memory import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
def step():  # tensors of a few sizes made, combined and freed, as in a training step; c is 48 MiB
    a, b, c = torch.ones(3_400_000), torch.ones(1_100_000), torch.ones(12_000_000)
    d = a + 1
    del a, b
    e = c * 2
    del c, d, e
for _ in range(5):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    faults = {
        how: int(subprocess.run([sys.executable, "-c", code, how], capture_output=True, text=True, check=True).stdout)
        for how in ("default", "keep")
    }
    if sys.platform.startswith("linux"):
        assert faults["keep"] * 5 < faults["default"], faults


def test_release_freed_memory_returns_the_free_pages_between_live_tensors(
    tmp_path, csv_data_config, tiny_model_config, monkeypatch
):
    import subprocess
    import sys

    code = """
import torch
from hybrid_rearec.foundation.memory import keep_freed_memory, release_freed_memory
keep_freed_memory()
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 // 2**20
blocks = [torch.ones(250_000 + 1_000 * k) for k in range(400)]  # about 1 MB each, of changing sizes
del blocks[:-1]  # all freed but the last: the free ones lie below a live block, never given back by themselves
before = rss_mb()
release_freed_memory()
print(before, rss_mb())
"""
    if not sys.platform.startswith("linux"):
        return
    before, after = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                            check=True).stdout.split())  # fmt: skip
    assert before - after > 200, (before, after)  # about 400 MB were free inside the heap
    from hybrid_rearec.hybrid import fit

    calls = []
    monkeypatch.setattr(fit, "release_freed_memory", lambda: calls.append(1))
    results = train(csv_data_config, tiny_model_config, quick_train_config(tmp_path, epochs=2, patience=5))
    assert len(calls) == results["epochs_run"] == 2  # once an epoch


def test_data_parallel_does_not_resend_the_fixed_buffers_every_forward(tmp_path):
    """Every buffer is fixed data made alike on each process (the LoRA encoder's cache is ~100 MB): DDP's
    default broadcast before every forward would only copy it again."""
    from hybrid_rearec.hybrid.train import set_up_accelerator

    accelerator, _, _ = set_up_accelerator(quick_train_config(tmp_path))
    assert accelerator.ddp_handler is not None and accelerator.ddp_handler.broadcast_buffers is False


def test_training_puts_the_callers_thread_count_back(tmp_path, csv_data_config, tiny_model_config):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a notebook's own setting
    try:
        train(csv_data_config, tiny_model_config, quick_train_config(tmp_path, epochs=1, num_threads=2))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
