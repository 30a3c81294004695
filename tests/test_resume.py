import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from hybrid_rearec.hybrid.checkpoint import STATE_FILE as STATE
from hybrid_rearec.hybrid.config import TrainConfig
from hybrid_rearec.hybrid.data import ShardedBatch, load_dataset, sequence_rows
from hybrid_rearec.hybrid.errors import ConfigError
from hybrid_rearec.hybrid.fit import micro_batches
from hybrid_rearec.hybrid.model import HybridRecommender
from hybrid_rearec.hybrid.train import train, train_step
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "variant",
    [
        {"loss_positions": "last"},
        {"loss_positions": "all"},
        {"loss_positions": "all", "reasoning_steps": 2, "reasoning_method": "erl"},
        {"backbone": "bert4rec"},
        {"backbone": "bert4rec", "reasoning_steps": 2, "reasoning_method": "prl"},
    ],
    ids=["last", "all", "all-erl", "bert4rec", "bert4rec-prl"],
)
def test_gradient_accumulation_matches_one_big_batch(csv_data_config, tiny_model_config, variant):
    """2 micro-batches of B equal one batch of 2B, dropout included (masks are drawn per global row); with
    loss_positions 'all' the rows are per-user windows whose target counts differ; BERT4Rec's micro-batches
    hold different numbers of masked items, and the cloze loss is still the global batch's mean over them."""
    dataset = load_dataset(csv_data_config)
    assert tiny_model_config.hidden_dropout > 0 and tiny_model_config.attention_dropout > 0
    model_config = replace(tiny_model_config, **variant)
    all_positions = model_config.loss_positions == "all"
    rows = sequence_rows(dataset.train, 8) if all_positions else dataset.train  # 80 windows or 360 rows
    batch = ShardedBatch(torch.arange(64), 0, torch.arange(64))
    results = []
    for steps in (1, 2, 4):
        torch.manual_seed(0)
        model = HybridRecommender(model_config, dataset.num_items, 8)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        config = TrainConfig(batch_size=64, gradient_accumulation_steps=steps)
        loss = train_step(model, optimizer, Accelerator(cpu=True), rows, batch, config, noise_seed=7)
        results.append((loss / 64, torch.cat([p.detach().flatten() for p in model.parameters()])))
    for loss, weights in results[1:]:
        assert abs(results[0][0] - loss) < 1e-5
        assert (results[0][1] - weights).abs().max() < 1e-5
    assert results[0][0] > 0


@pytest.mark.parametrize("global_size,processes,steps", [(8, 2, 2), (3, 2, 2), (1, 2, 1), (7, 3, 4), (3, 1, 4)])
def test_every_process_runs_as_many_micro_batches_and_they_cover_the_batch(global_size, processes, steps):
    """Each micro-batch's forward and backward joins collectives (PRL's gathers, DDP's all-reduce on the last):
    a process whose slice is short or empty runs zero-weight stand-ins, never fewer micro-batches."""
    rows = torch.arange(100, 100 + global_size)
    counts, covered = set(), []
    for rank in range(processes):
        slices = torch.tensor_split(rows, processes)  # data._sharded
        batch = ShardedBatch(slices[rank], sum(len(part) for part in slices[:rank]), rows)
        chunks, offsets, weights = micro_batches(batch, steps, processes)
        counts.add(len(chunks))
        for chunk, offset, weight in zip(chunks, offsets, weights):
            if weight:
                assert torch.equal(chunk, rows[offset : offset + len(chunk)])  # offsets index the global batch
                covered += chunk.tolist()
            else:
                assert weight == 0 and len(chunk) == 1  # a stand-in
    assert len(counts) == 1 and sorted(covered) == rows.tolist()
    if processes == 1:  # one process: no stand-in, at most one micro-batch per row
        assert counts == {min(steps, global_size)}


def test_a_non_finite_loss_makes_no_update(csv_data_config, tiny_model_config):
    dataset = load_dataset(csv_data_config)
    model = HybridRecommender(tiny_model_config, dataset.num_items, 8)
    with torch.no_grad():
        next(model.parameters())[0] = float("inf")  # an item vector: every logit of the batch becomes NaN
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = ShardedBatch(torch.arange(16), 0, torch.arange(16))
    loss = train_step(model, optimizer, Accelerator(cpu=True), dataset.train, batch, TrainConfig(batch_size=16))
    assert not torch.isfinite(loss)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def command(csv_data_config, output_dir, *extra):
    return [
        sys.executable,
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
        "--hidden_dropout",
        "0.2",
        "--attention_dropout",
        "0.2",
        "--epochs",
        "4",
        "--batch_size",
        "16",
        "--learning_rate",
        "0.005",
        "--report_to",
        "none",
        "--progress",
        "false",
        "--log_every",
        "3",
        "--save_every_steps",
        "4",
        "--keep_checkpoints",
        "2",
        "--num_threads",
        "1",
        "--output_dir",
        str(output_dir),
        *extra,
    ]


def lora_settings(tmp_path) -> tuple[str, ...]:
    """The packaged MiniLM, its top layer tuned on the cached lower ones, ERL on top, texts from an item file."""
    items = tmp_path / "items.csv"
    items.write_text(
        "item_id,title\n" + "".join(f"i{k},product {k} of kind {k % 7} and brand {k % 3}\n" for k in range(30))
    )
    return ("--item_encoder", "lm_lora", "--lm_max_length", "16", "--lora_layers", "1", "--item_file", str(items),
            "--reasoning_steps", "2", "--reasoning_method", "erl")  # fmt: skip


@pytest.mark.parametrize("encoder", ["id", "lm_lora"])
def test_killed_run_resumes_to_identical_results(tmp_path, csv_data_config, encoder):
    """Also for the LoRA encoder: its LM's dropout masks and its cache must come back the same."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    extra = lora_settings(tmp_path) if encoder == "lm_lora" else ()

    def run_command(output_dir, *more):
        return command(csv_data_config, output_dir, *extra, *more)

    reference = subprocess.run(run_command(tmp_path / "ref"), env=env, capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr[-2000:]
    # The same run, SIGKILLed after a checkpoint at step 32 or later (mid epoch 2 of 23-step epochs), resumed.
    process = subprocess.Popen(
        run_command(tmp_path / "run"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def steps_saved():
        folder = tmp_path / "run" / "checkpoints"
        return [int(p.name[5:]) for p in folder.glob("step-*")] if folder.exists() else []

    # Any checkpoint from step 32 on: an exact name could be rotated away before a busy machine polls it.
    deadline = time.time() + 120
    while max(steps_saved(), default=0) < 32 and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "run" / "metrics.json").exists()
    saved = json.loads((tmp_path / "run" / "checkpoints" / f"step-{max(steps_saved()):09d}" / STATE).read_text())
    assert (saved["epoch_seconds_so_far"] > 0) == (saved["batches_done"] > 0)  # the epoch's time before the kill
    refused = subprocess.run(run_command(tmp_path / "run"), env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--resume latest" in refused.stderr
    resumed = subprocess.run(
        run_command(tmp_path / "run", "--resume", "latest"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    expected = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    got = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert got["valid"]["metrics"] == expected["valid"]["metrics"] and got["best_epoch"] == expected["best_epoch"]
    assert got["test"]["metrics"] == expected["test"]["metrics"]
    assert got["train_log"] == expected["train_log"]
    resumed_epoch = next(entry for entry in got["epoch_log"] if entry["epoch"] == saved["epoch"])
    assert resumed_epoch["seconds"] >= saved["epoch_seconds_so_far"]  # counts the time before the kill too
    ranks, reference_ranks = (
        load_file(tmp_path / "run" / "ranks.safetensors"),
        load_file(tmp_path / "ref" / "ranks.safetensors"),
    )
    assert torch.equal(ranks["test"], reference_ranks["test"])
    folders = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert len(folders) == 2 and not any(name.startswith(".") for name in folders)
    latest = tmp_path / "run" / "checkpoints" / folders[-1]
    for name in ("model.safetensors", "best_model.safetensors"):  # the LM's own weights stay out, its LoRA's in
        lm = [key for key in load_file(latest / name) if "language_model" in key]
        assert (encoder == "id" and not lm) or (lm and all("lora_" in key for key in lm)), name


def test_corrupt_checkpoint_is_reported_and_left_alone(tmp_path, csv_data_config, tiny_model_config):
    config = TrainConfig(output_dir=str(tmp_path / "run"), epochs=1, batch_size=64, report_to="none", progress=False)
    train(csv_data_config, tiny_model_config, config)
    latest = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    weights = next(latest.glob("model*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    before = sorted(p.name for p in latest.iterdir())
    resume = TrainConfig(**{**config.__dict__, "resume": "latest", "epochs": 2})
    with pytest.raises(ConfigError, match=r"corrupt or incomplete.*Resume from an older one"):
        train(csv_data_config, tiny_model_config, resume)
    assert sorted(p.name for p in latest.iterdir()) == before
    with pytest.raises(ConfigError, match="not a complete checkpoint"):
        train(csv_data_config, tiny_model_config, TrainConfig(**{**config.__dict__, "resume": str(tmp_path)}))


def test_a_save_killed_midway_leaves_nothing_once_the_run_saves_again(tmp_path, csv_data_config, tiny_model_config):
    config = TrainConfig(output_dir=str(tmp_path / "run"), epochs=1, batch_size=64, report_to="none", progress=False)
    train(csv_data_config, tiny_model_config, config)
    checkpoints = tmp_path / "run" / "checkpoints"
    stale = checkpoints / ".incomplete-step-000009999"  # a kill during a save (a LoRA one is hundreds of MB)
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    train(csv_data_config, tiny_model_config, TrainConfig(**{**config.__dict__, "resume": "latest", "epochs": 2}))
    assert not list(checkpoints.glob(".incomplete-*")) and list(checkpoints.glob("step-*"))


def test_a_checkpoint_missing_a_trained_weight_is_named_and_left_alone(tmp_path, csv_data_config, tiny_model_config):
    config = TrainConfig(output_dir=str(tmp_path / "run"), epochs=1, batch_size=64, report_to="none", progress=False)
    train(csv_data_config, tiny_model_config, config)
    latest = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    weights = load_file(latest / "model.safetensors")
    dropped = sorted(weights)[0]
    save_file({k: v for k, v in weights.items() if k != dropped}, latest / "model.safetensors")
    before = (latest / "model.safetensors").read_bytes()
    resume = TrainConfig(**{**config.__dict__, "resume": "latest", "epochs": 2})
    with pytest.raises(ConfigError, match=rf"does not hold this model's weights \(1 missing, e.g. \['{dropped}'\]"):
        train(csv_data_config, tiny_model_config, resume)
    assert (latest / "model.safetensors").read_bytes() == before


def test_half_written_checkpoints_are_never_resumed_from(tmp_path):
    from hybrid_rearec.hybrid.checkpoint import resolve_checkpoint

    (tmp_path / "checkpoints" / "step-000000004").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step-000000004" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoints" / ".incomplete-step-000000008").mkdir()  # killed while saving
    (tmp_path / "checkpoints" / "step-000000009").mkdir()  # no trainer_state.json: not complete
    assert resolve_checkpoint(tmp_path, "latest").name == "step-000000004"


NAN_ON_ONE_PROCESS = """
import sys
import torch
from accelerate import Accelerator
from hybrid_rearec.hybrid.config import DataConfig, ModelConfig, TrainConfig
from hybrid_rearec.hybrid.data import load_dataset, shard_batches
from hybrid_rearec.hybrid.model import HybridRecommender
from hybrid_rearec.hybrid.train import train_step

accelerator = Accelerator(cpu=True)
dataset = load_dataset(DataConfig(dataset=sys.argv[1], data_format="csv", max_history=8), use_cache=False)
torch.manual_seed(0)
model = HybridRecommender(ModelConfig(hidden_size=16, num_heads=2, inner_size=32), dataset.num_items, 8)
model, optimizer = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))
inner = accelerator.unwrap_model(model)
if accelerator.process_index == 1:  # only this process's loss is not finite
    with torch.no_grad():
        inner.item_encoder.embedding.weight[1:] = float("inf")
before = [p.detach().clone() for p in inner.parameters()]
batch = next(shard_batches(len(dataset.train.target), 16, 0, 1, accelerator.process_index, 2))
loss = train_step(model, optimizer, accelerator, dataset.train, batch, TrainConfig(batch_size=16))
unchanged = all(torch.equal(a, b) for a, b in zip(before, inner.parameters()))
print(f"process {accelerator.process_index}: finite {bool(torch.isfinite(loss))}, unchanged {unchanged}")
accelerator.end_training()  # the process group torn down before exit (left to exit, gloo sometimes aborts)
"""


def test_a_non_finite_loss_on_one_process_stops_the_update_on_every_process(tmp_path, sequential_csv):
    """Without the shared check, process 0 (finite loss) would step with the NaN gradients DDP averaged in."""
    script = tmp_path / "nan_on_one.py"
    script.write_text(NAN_ON_ONE_PROCESS)
    launch = ["-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1", "--multi_gpu"]
    command = [sys.executable, *launch, "--mixed_precision", "no", "--dynamo_backend", "no", str(script)]
    command.append(str(sequential_csv))
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        "process 0: finite False, unchanged True" in done.stdout
        and "process 1: finite False, unchanged True" in done.stdout
    )
