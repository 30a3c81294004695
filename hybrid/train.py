"""The accelerate training loop: one CPU, many CPU processes (gloo) or many GPUs, unchanged.

Every process holds the whole dataset (it is small next to the model's activations) and takes a disjoint
slice of each global batch (``hybrid.data.shard_batches``). Each process's loss is scaled so that the
gradient DDP averages equals the gradient of the global batch's mean loss, whatever the slice sizes.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import broadcast_object_list, set_seed
from safetensors.torch import save_file
from tqdm.auto import tqdm

from hybrid.config import DataConfig, ModelConfig, TrainConfig, to_dict
from hybrid.data import RecDataset, load_dataset, num_batches, shard_batches
from hybrid.errors import ConfigError
from hybrid.evaluate import EvalResult, evaluate, format_table
from hybrid.model import HybridRecommender

RUN_FILES = ("config.json", "metrics.json", "model.safetensors", "ranks.safetensors")


def configure_threads(config: TrainConfig, accelerator: Accelerator) -> None:
    """accelerate sets OMP_NUM_THREADS=1; on CPU give each process its share of the cores instead."""
    if accelerator.device.type != "cpu":
        return
    threads = config.num_threads or max(1, (os.cpu_count() or 1) // accelerator.num_processes)
    torch.set_num_threads(threads)


def resolve_output_dir(config: TrainConfig) -> Path:
    """The run directory, the same on every process; refuses to mix two runs in one folder."""
    name = [config.output_dir or f"runs/{config.run_name}-{datetime.now():%Y%m%d-%H%M%S}"]
    broadcast_object_list(name)  # the main process's timestamp wins
    folder = Path(name[0])
    existing = [f for f in RUN_FILES if (folder / f).exists()]
    if existing and not config.overwrite:
        raise ConfigError(
            f"output_dir {str(folder)!r} already holds a run ({', '.join(existing)}). "
            "Choose another --output_dir or pass --overwrite to replace it."
        )
    return folder


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: biases, LayerNorm weights and nothing 1-D are decayed."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def train(data_config: DataConfig, model_config: ModelConfig, train_config: TrainConfig) -> dict:
    """Train with early stopping on validation NDCG@10, then test the best model. Returns metrics.json."""
    cpu = not torch.cuda.is_available()
    state = PartialState(cpu=cpu)  # sets up the process group, so every rank can agree on the run dir
    if "WORLD_SIZE" in os.environ:  # launched by accelerate/torchrun: every rank must really exist
        assert state.num_processes == int(os.environ["WORLD_SIZE"]), "distributed setup failed"
    output_dir = resolve_output_dir(train_config)
    accelerator = Accelerator(
        cpu=cpu,
        log_with=None if train_config.report_to == "none" else train_config.report_to,
        project_dir=str(output_dir),
    )
    configure_threads(train_config, accelerator)
    set_seed(train_config.seed)
    main = accelerator.is_main_process
    say = accelerator.print

    with accelerator.main_process_first():  # the main process builds the cache, the others read it
        dataset = load_dataset(data_config)
    say(f"data: {json.dumps(dataset.stats)}")
    model = HybridRecommender(model_config, dataset.num_items, data_config.max_history)
    optimizer = torch.optim.AdamW(
        decay_groups(model, train_config.weight_decay), lr=train_config.learning_rate, weight_decay=0.0
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    config_dict = to_dict(data_config, model_config, train_config)
    config_dict["train"]["output_dir"] = str(output_dir)
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.json").write_text(json.dumps(config_dict, indent=2))
    if train_config.report_to != "none":
        hparams = {
            k: v
            for section in config_dict.values()
            for k, v in section.items()
            if isinstance(v, (int, float, str, bool))
        }
        accelerator.init_trackers("tensorboard", config=hparams)

    eval_loaders = {
        name: accelerator.prepare_data_loader(
            torch.utils.data.DataLoader(torch.arange(len(dataset.split(name))), batch_size=train_config.eval_batch_size)
        )
        for name in ("valid", "test")
    }

    def run_eval(name: str) -> EvalResult:
        return evaluate(
            unwrapped,
            dataset.split(name),
            name,
            batches=eval_loaders[name],
            gather=accelerator.gather_for_metrics,
            exclude_history=train_config.exclude_history,
            split_protocol=data_config.split,
        )

    best = {"ndcg@10": -math.inf, "epoch": 0, "valid": None}
    best_state = None
    history, step, bad_evals = [], 0, 0
    epoch_seconds: list[float] = []
    steps_per_epoch = num_batches(len(dataset.train), train_config.batch_size)
    for epoch in range(1, train_config.epochs + 1):
        model.train()
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=accelerator.device)
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch}",
            disable=not (main and train_config.progress),
            leave=False,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
        )
        for rows, global_size in shard_batches(
            len(dataset.train),
            train_config.batch_size,
            train_config.seed,
            epoch,
            accelerator.process_index,
            accelerator.num_processes,
        ):
            contrastive = epoch > model_config.prl_warmup_epochs
            local_sum = train_step(model, optimizer, accelerator, dataset, rows, global_size, train_config, contrastive)
            loss_sum += local_sum
            step += 1
            if not torch.isfinite(local_sum):
                raise FloatingPointError(
                    f"the training loss became {local_sum.item()} at epoch {epoch}, step {step}. Lower "
                    "--learning_rate, raise --temperature, or set --max_grad_norm (e.g. 1.0)."
                )
            if step % train_config.log_every == 0:
                logged = accelerator.reduce(local_sum.detach(), "sum").item() / global_size
                accelerator.log({"train/loss": logged}, step=step)
                history.append({"step": step, "loss": logged})
                bar.set_postfix(loss=f"{logged:.4f}")
            bar.update()
        bar.close()
        epoch_seconds.append(time.perf_counter() - started)
        epoch_loss = accelerator.reduce(loss_sum, "sum").item() / len(dataset.train)
        valid = run_eval("valid")
        accelerator.log(
            {"train/epoch_loss": epoch_loss, **{f"valid/{k}": v for k, v in valid.metrics.items()}}, step=step
        )
        improved = valid.metrics["ndcg@10"] > best["ndcg@10"]
        say(
            f"epoch {epoch}: loss {epoch_loss:.4f}, valid ndcg@10 {valid.metrics['ndcg@10']:.4f}, "
            f"recall@10 {valid.metrics['recall@10']:.4f} ({epoch_seconds[-1]:.1f}s){' *' if improved else ''}"
        )
        if improved:
            best = {"ndcg@10": valid.metrics["ndcg@10"], "epoch": epoch, "valid": valid}
            best_state = {k: v.detach().clone() for k, v in unwrapped.state_dict().items()}
            bad_evals = 0
            if main:
                save_file({k: v.contiguous().cpu() for k, v in best_state.items()}, output_dir / "model.safetensors")
        else:
            bad_evals += 1
            if bad_evals >= train_config.patience:
                say(f"early stop: no better validation NDCG@10 for {bad_evals} epochs (best: epoch {best['epoch']})")
                break

    unwrapped.load_state_dict(best_state)
    test = run_eval("test")
    results = {
        "best_epoch": best["epoch"],
        "epochs_run": epoch,
        "valid": best["valid"].to_dict(),
        "test": test.to_dict(),
        "protocol": test.protocol,
        "seconds_per_epoch": sum(epoch_seconds) / len(epoch_seconds),
        "num_processes": accelerator.num_processes,
        "data": dataset.stats,
        "train_log": history,
    }
    if main:
        (output_dir / "metrics.json").write_text(json.dumps(results, indent=2))
        # Per-row ranks (every metric is a function of them): for analysis and exact run comparisons.
        save_file({"valid": best["valid"].ranks, "test": test.ranks}, output_dir / "ranks.safetensors")
    say(f"\nprotocol: {test.protocol}")
    say(
        format_table(
            {
                f"{train_config.run_name} valid (best epoch {best['epoch']})": best["valid"].metrics,
                f"{train_config.run_name} test": test.metrics,
            }
        )
    )
    say(f"run directory: {output_dir}")
    accelerator.end_training()
    return results


def train_step(
    model, optimizer, accelerator, dataset: RecDataset, rows, global_size, config: TrainConfig, contrastive=False
):
    """One optimizer step on this process's slice ``rows`` of a global batch of ``global_size`` rows.
    Returns the summed loss of the slice (for logging)."""
    scale = len(rows) * accelerator.num_processes / global_size  # DDP averages: undo, then divide by global
    if len(rows) == 0:  # global batch smaller than the process count: join the all-reduce with zero weight
        rows, scale = torch.zeros(1, dtype=torch.long), 0.0
    history, target = dataset.train.batch(rows)
    output = model(history.to(accelerator.device), target.to(accelerator.device), contrastive=contrastive)
    accelerator.backward(output.loss * scale)
    if config.max_grad_norm is not None:
        accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return output.loss.detach() * len(rows) * (scale > 0)
