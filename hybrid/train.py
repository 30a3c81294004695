"""The accelerate training loop: one CPU, many CPU processes (gloo) or many GPUs, unchanged.

Every process holds the whole dataset (it is small next to the model's activations) and takes a disjoint
slice of each global batch (``hybrid.data.shard_batches``). Each process's loss is scaled so that the
gradient DDP averages equals the gradient of the global batch's mean loss, whatever the slice sizes; the
same scaling makes gradient accumulation exact. Checkpoints (``hybrid.checkpoint``) hold everything needed
to continue a killed run exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType, broadcast_object_list, set_seed
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from hybrid.checkpoint import TrainerState, load_checkpoint, resolve_checkpoint, save_checkpoint
from hybrid.config import DataConfig, ModelConfig, TrainConfig, to_dict
from hybrid.data import SequenceRows, ShardedBatch, SplitData, load_dataset, num_batches, sequence_rows, shard_batches
from hybrid.ema import WeightAverage
from hybrid.errors import ConfigError
from hybrid.evaluate import EvalResult, evaluate, format_table
from hybrid.model import HybridRecommender, item_text_vectors, warm_item_mask
from hybrid.readers import BUILTIN_DATASETS
from hybrid.recommend import ItemCatalogue
from reasoning.noise import global_batch_noise

RUN_FILES = (
    "config.json",
    "metrics.json",
    "model.safetensors",
    "valid_ranks.safetensors",
    "ranks.safetensors",
    "checkpoints",
)
BEST_MODEL = "model.safetensors"
PRETRAINED = "model"  # the save_pretrained folder of the best model
CHECKPOINT_BEST_MODEL = "best_model.safetensors"  # beside accelerate's own model.safetensors (the current weights)
CHECKPOINT_EMA = "weight_average.safetensors"  # the running weight average (--ema_decay)


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
    if existing and not (config.overwrite or config.resume):
        raise ConfigError(
            f"output_dir {str(folder)!r} already holds a run ({', '.join(existing)}). "
            "Choose another --output_dir, pass --resume latest to continue it, or --overwrite to replace it."
        )
    return folder


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: biases, LayerNorm weights and nothing 1-D are decayed."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def parameter_counts(model: torch.nn.Module) -> dict[str, int | float]:
    counts = {
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total": sum(p.numel() for p in model.parameters()),
    }
    if hasattr(model.item_encoder, "trainable_share"):
        trainable, language_model = model.item_encoder.trainable_share()
        counts |= {"item_encoder_trainable": trainable, "language_model": language_model}
        counts["trainable_share_of_language_model"] = trainable / language_model
    return counts


def save_atomically(tensors: dict[str, torch.Tensor], path: Path) -> None:
    temporary = path.with_name(f".{path.name}.incomplete")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, temporary)
    os.replace(temporary, path)


def train(data_config: DataConfig, model_config: ModelConfig, train_config: TrainConfig) -> dict:
    """Train with early stopping on validation NDCG@10, then test the best model. Returns metrics.json."""
    cpu = not torch.cuda.is_available()
    partial = PartialState(cpu=cpu)  # sets up the process group, so every rank can agree on the run dir
    if "WORLD_SIZE" in os.environ:  # launched by accelerate/torchrun: every rank must really exist
        assert partial.num_processes == int(os.environ["WORLD_SIZE"]), "distributed setup failed"
    output_dir = resolve_output_dir(train_config)
    checkpoint = resolve_checkpoint(output_dir, train_config.resume) if train_config.resume else None
    if train_config.mixed_precision == "fp16" and cpu:
        raise ConfigError("mixed_precision='fp16' needs a CUDA GPU; on CPU use 'bf16' or 'no'.")
    # accelerate keeps one precision per Python process; a later train() call (notebook, tests) may ask for
    # another. Forget the old setting (the process group in PartialState is kept).
    AcceleratorState._reset_state()
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision=train_config.mixed_precision,
        log_with=None if train_config.report_to == "none" else train_config.report_to,
        project_dir=str(output_dir),
    )
    if accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP):
        raise ConfigError(
            f"{accelerator.distributed_type.value} is not tested with hybrid-rearec. Use plain data parallel "
            "(`accelerate launch --multi_gpu`): the model is small enough to be replicated on every device."
        )
    configure_threads(train_config, accelerator)
    set_seed(train_config.seed)
    main = accelerator.is_main_process
    say = accelerator.print

    with accelerator.main_process_first():  # the main process builds the cache, the others read it
        dataset = load_dataset(data_config)
    say(f"data: {json.dumps(dataset.stats)}")
    with accelerator.main_process_first():  # text vectors: encoded once by the main process, then cached
        text_vectors = item_text_vectors(model_config, dataset.item_texts, progress=train_config.progress and main)
    warm_items = warm_item_mask(dataset.train.history, dataset.train.target, dataset.num_items)
    model = HybridRecommender(
        model_config, dataset.num_items, data_config.max_history, text_vectors, warm_items, dataset.item_texts
    )
    cold_items = ~warm_items
    cold_items[0] = False  # [N + 1]: items no training row mentions
    softmax_items = train_config.softmax_items
    if softmax_items == "auto":
        softmax_items = "seen" if data_config.split == "cold_items" else "all"
    if softmax_items == "seen":
        model.set_softmax_items(warm_items)
    optimizer = torch.optim.AdamW(
        decay_groups(model, train_config.weight_decay), lr=train_config.learning_rate, weight_decay=0.0
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    # Validated, tested and saved in place of the trained weights when set (same on every process: DDP
    # keeps the weights equal).
    ema = WeightAverage(unwrapped, train_config.ema_decay) if train_config.ema_decay else None
    config_dict = to_dict(data_config, model_config, train_config)
    config_dict["train"]["output_dir"] = str(output_dir)
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.json").write_text(json.dumps(config_dict, indent=2))
    if train_config.report_to != "none":
        hparams = {
            k: v for part in config_dict.values() for k, v in part.items() if isinstance(v, (int, float, str, bool))
        }
        accelerator.init_trackers("tensorboard", config=hparams)

    state, best_state = TrainerState(), None
    if checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint)
        if state.best_epoch:
            best_state = load_file(checkpoint / CHECKPOINT_BEST_MODEL)
        if ema is not None:
            if not (checkpoint / CHECKPOINT_EMA).exists():
                raise ConfigError(
                    f"--ema_decay is set but checkpoint {str(checkpoint)!r} holds no weight average (it was trained "
                    "without one): resume with the run's own settings, or start a new run."
                )
            ema.load_state_dict(load_file(checkpoint / CHECKPOINT_EMA))
        say(f"resumed from {checkpoint}: epoch {state.epoch}, {state.batches_done} batches done, step {state.step}")

    eval_loaders = {
        name: accelerator.prepare_data_loader(
            torch.utils.data.DataLoader(torch.arange(len(dataset.split(name))), batch_size=train_config.eval_batch_size)
        )
        for name in ("valid", "test")
    }

    def run_eval(name: str, steps: int | None = None) -> EvalResult:
        return evaluate(
            unwrapped,
            dataset.split(name),
            name,
            steps=steps,
            batches=eval_loaders[name],
            gather=accelerator.gather_for_metrics,
            exclude_history=train_config.exclude_history,
            split_protocol=data_config.split,
            cold_items=cold_items,
        )

    def checkpoint_now() -> None:
        nonlocal loss_sum
        total = accelerator.reduce(loss_sum.clone(), "sum").item()
        state.epoch_loss_sum, loss_sum = total, torch.zeros_like(loss_sum)  # reduced once, kept on main
        if main:
            loss_sum += total
        extra = {} if best_state is None else {CHECKPOINT_BEST_MODEL: best_state}
        if ema is not None:
            extra[CHECKPOINT_EMA] = ema.state_dict()
        folder = save_checkpoint(accelerator, output_dir, state, train_config.keep_checkpoints, extra=extra)
        say(f"checkpoint: {folder}")

    # The rows the loss is computed on: prefix rows, or per-position windows of them (loss_positions 'all').
    train_rows = (
        sequence_rows(dataset.train, data_config.max_history) if model_config.loss_positions == "all" else dataset.train
    )
    steps_per_epoch = num_batches(len(train_rows), train_config.batch_size)
    stopped = state.bad_evals >= train_config.patience
    loss_sum = torch.zeros((), device=accelerator.device)
    if main:
        loss_sum += state.epoch_loss_sum
    while not stopped and state.epoch <= train_config.epochs:
        epoch = state.epoch
        model.train()
        started = time.perf_counter()
        bar = tqdm(
            total=steps_per_epoch,
            initial=state.batches_done,
            desc=f"epoch {epoch}",
            leave=False,
            disable=not (main and train_config.progress),
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
        )
        batches = shard_batches(
            len(train_rows),
            train_config.batch_size,
            train_config.seed,
            epoch,
            accelerator.process_index,
            accelerator.num_processes,
        )
        for index, batch in enumerate(batches):
            if index < state.batches_done:  # trained before the interruption
                continue
            contrastive = epoch > model_config.prl_warmup_epochs
            local_sum = train_step(
                model,
                optimizer,
                accelerator,
                train_rows,
                batch,
                train_config,
                contrastive,
                step_noise_seed(train_config, state.step + 1),
            )
            if not torch.isfinite(local_sum):
                raise FloatingPointError(
                    f"the training loss became {local_sum.item()} at epoch {epoch}, step {state.step + 1}. Lower "
                    "--learning_rate, raise --temperature, or set --max_grad_norm (e.g. 1.0)."
                )
            loss_sum += local_sum
            if ema is not None:
                ema.update()
            state.step += 1
            state.batches_done = index + 1
            if state.step % train_config.log_every == 0:
                logged = train_rows.loss_per_target(
                    accelerator.reduce(local_sum.clone(), "sum").item(), batch.global_rows
                )
                accelerator.log({"train/loss": logged}, step=state.step)
                state.train_log.append({"step": state.step, "loss": logged})
                bar.set_postfix(loss=f"{logged:.4f}")
            bar.update()
            if train_config.save_every_steps and state.step % train_config.save_every_steps == 0:
                checkpoint_now()
        bar.close()
        state.epoch_seconds.append(time.perf_counter() - started)
        epoch_loss = train_rows.loss_per_target(accelerator.reduce(loss_sum, "sum").item())
        with ema.applied() if ema is not None else contextlib.nullcontext():
            valid = run_eval("valid")
            improved = valid.metrics["ndcg@10"] > state.best_ndcg
            if improved:  # the weights validated (the average when --ema_decay is set)
                best_state = {k: v.detach().clone() for k, v in unwrapped.state_dict().items()}
        accelerator.log(
            {"train/epoch_loss": epoch_loss, **{f"valid/{k}": v for k, v in valid.metrics.items()}}, step=state.step
        )
        cold_valid = valid.groups.get("cold targets")  # present only when some validation target is cold
        say(
            f"epoch {epoch}: loss {epoch_loss:.4f}, valid ndcg@10 {valid.metrics['ndcg@10']:.4f}, "
            f"recall@10 {valid.metrics['recall@10']:.4f}"
            + (f" (cold targets: ndcg@10 {cold_valid['ndcg@10']:.4f})" if cold_valid else "")
            + f" ({state.epoch_seconds[-1]:.1f}s){' *' if improved else ''}"
        )
        if improved:
            state.best_ndcg, state.best_epoch, state.best_valid = valid.metrics["ndcg@10"], epoch, valid.to_dict()
            state.bad_evals = 0
            if main:
                save_atomically(best_state, output_dir / BEST_MODEL)
                save_atomically({"valid": valid.ranks}, output_dir / "valid_ranks.safetensors")
        else:
            state.bad_evals += 1
        stopped = state.bad_evals >= train_config.patience
        if stopped:
            say(
                f"early stop: no better validation NDCG@10 for {state.bad_evals} epochs "
                f"(best: epoch {state.best_epoch})"
            )
        state.epoch, state.batches_done, loss_sum = epoch + 1, 0, torch.zeros_like(loss_sum)
        checkpoint_now()

    if best_state is None:
        raise RuntimeError("no epoch was trained: check --epochs and the checkpoint you resumed from")
    unwrapped.load_state_dict(best_state)
    valid_by_steps, valid_ranks = None, None
    if train_config.select_inference_steps and model_config.reasoning_steps > 0:
        # Model selection like the epoch's: every depth 0..K on validation, ties to the cheaper one.
        by_steps = {k: run_eval("valid", steps=k) for k in range(model_config.reasoning_steps + 1)}
        valid_by_steps = {k: result.metrics["ndcg@10"] for k, result in by_steps.items()}
        chosen = max(valid_by_steps, key=lambda k: (valid_by_steps[k], -k))
        # A copy: used by test and saved with the model, while the caller's config stays as given.
        unwrapped.config = dataclasses.replace(unwrapped.config, inference_steps=chosen)
        state.best_valid, valid_ranks = by_steps[chosen].to_dict(), by_steps[chosen].ranks
        say(
            f"inference steps chosen on validation NDCG@10: {chosen} ("
            + ", ".join(f"{k}: {value:.4f}" for k, value in valid_by_steps.items())
            + ")"
        )
    test = run_eval("test")
    results = {
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch - 1,
        "inference_steps": unwrapped.config.inference_steps,
        "valid_ndcg@10_by_inference_steps": valid_by_steps,
        "valid": state.best_valid,
        "test": test.to_dict(),
        "protocol": test.protocol,
        "seconds_per_epoch": sum(state.epoch_seconds) / max(len(state.epoch_seconds), 1),
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "data": dataset.stats,
        "parameters": parameter_counts(unwrapped),
        "train_log": state.train_log,
    }
    if main:
        (output_dir / "metrics.json").write_text(json.dumps(results, indent=2))
        # Per-row ranks (every metric is a function of them): for analysis and exact run comparisons.
        if valid_ranks is None:  # the best epoch's, at the trained depth
            valid_ranks = load_file(output_dir / "valid_ranks.safetensors")["valid"]
        save_atomically({"valid": valid_ranks, "test": test.ranks}, output_dir / "ranks.safetensors")
        # The best model as a self-contained folder (catalogue, card, adapter): what push_to_hub uploads.
        unwrapped.catalogue = ItemCatalogue.from_dataset(dataset)
        unwrapped.results = {
            "run_name": train_config.run_name,
            "dataset": data_config.dataset if data_config.dataset in BUILTIN_DATASETS else None,
            "test": test.metrics,
            "protocol": test.protocol,
            "train_config": to_dict(data_config, train_config),
        }
        unwrapped.save_pretrained(output_dir / PRETRAINED)
    say(f"parameters: {json.dumps(results['parameters'])}")
    say(f"\nprotocol: {test.protocol}")
    say(
        format_table(
            {
                f"{train_config.run_name} valid (best epoch {state.best_epoch})": state.best_valid["metrics"],
                f"{train_config.run_name} test": test.metrics,
            }
        )
    )
    if test.group_rows.get("cold targets"):
        say(
            format_table(
                {f"test, {name} ({test.group_rows[name]} rows)": m for name, m in test.groups.items()}
                | {f"random ranking of {name}": m for name, m in test.random_ranking.items()}
            )
        )
    say(f"run directory: {output_dir}")
    # Every process reaches the teardown together: a process that tore its process group down while another
    # was still writing the results sometimes aborted at exit (gloo, two CPU processes).
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return results


def train_step(
    model,
    optimizer,
    accelerator,
    train_rows: SplitData | SequenceRows,
    batch: ShardedBatch,
    config: TrainConfig,
    contrastive: bool = False,
    noise_seed: int | None = None,
) -> torch.Tensor:
    """One optimizer step on this process's slice of a global batch, in ``gradient_accumulation_steps``
    micro-batches. With ``noise_seed`` dropout masks are drawn per row of the global batch
    (``reasoning.noise``), so any process count and accumulation gives the same step. Returns the summed
    loss of the slice (for logging)."""
    global_size = len(batch.global_rows)
    width = train_rows.width(batch.global_rows)  # the same padding on every process
    loss_sum = torch.zeros((), device=accelerator.device)
    if len(batch.rows) == 0:  # global batch smaller than the process count: join the all-reduce with zero weight
        chunks, offsets, weights = [batch.global_rows[:1]], [0], [0.0]
    else:
        chunks = [c for c in batch.rows.tensor_split(config.gradient_accumulation_steps) if len(c)]
        offsets = [batch.offset + sum(len(c) for c in chunks[:i]) for i in range(len(chunks))]
        weights = [1.0] * len(chunks)
    cloze_per_row = None  # BERT4Rec: the global batch's masked positions per row, the same on every process
    unwrapped = accelerator.unwrap_model(model)
    split = accelerator.num_processes > 1 or len(chunks) > 1  # one whole-batch forward counts its own masks
    if noise_seed is not None and split and unwrapped.trains_cloze:
        with global_batch_noise(noise_seed, 0, global_size, global_size):
            cloze_per_row = unwrapped.cloze_per_row(train_rows.batch(batch.global_rows, width)[0])
    for index, (chunk, offset, weight) in enumerate(zip(chunks, offsets, weights)):
        # DDP averages gradients over processes: scale so the sum over chunks and processes is the global mean.
        scale = weight * len(chunk) * accelerator.num_processes / global_size
        history, target = train_rows.batch(chunk, width)
        last = index == len(chunks) - 1
        randomness = (
            contextlib.nullcontext()
            if noise_seed is None
            else global_batch_noise(noise_seed, offset, len(chunk), global_size, counted=weight > 0)
        )
        with contextlib.nullcontext() if last else accelerator.no_sync(model), randomness:
            output = model(
                history.to(accelerator.device),
                target.to(accelerator.device),
                contrastive=contrastive,
                cloze_per_row=cloze_per_row,
            )
            accelerator.backward(output.loss * scale)
        loss_sum += output.loss.detach() * len(chunk) * weight
    if config.max_grad_norm is not None:
        accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum


def step_noise_seed(config: TrainConfig, step: int) -> int | None:
    """The seed of one optimizer step's dropout masks (None: per-process torch RNG)."""
    return config.seed * 1_000_003 + step if config.split_invariant_dropout else None
