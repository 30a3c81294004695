"""The epoch loop: train an epoch, validate it, keep the best weights, stop early, checkpoint.

Every process holds the whole dataset (it is small next to the model's activations) and takes a disjoint
slice of each global batch (``hybrid.data.shard_batches``). Each process's loss is scaled so that the
gradient DDP averages equals the gradient of the global batch's mean loss, whatever the slice sizes; the
same scaling makes gradient accumulation exact.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from ..foundation.memory import release_freed_memory
from ..foundation.noise import global_batch_noise
from .checkpoint import (
    CHECKPOINT_BEST_MODEL,
    CHECKPOINT_EMA,
    CHECKPOINT_VALID_RANKS,
    TrainerState,
    fixed_weight_names,
    save_checkpoint,
)
from .config import DataConfig, ModelConfig, TrainConfig
from .data import RecDataset, SequenceRows, ShardedBatch, SplitData, sequence_rows
from .ema import WeightAverage
from .evaluate import EvalResult, evaluate
from .model import HybridRecommender
from .run_folder import VALID_RANKS, save_atomically


class TensorBoardLog:
    """Scalars of one run in ``folder`` (None: nothing is logged, e.g. on the other processes or with
    --report_to none). The folder and its writer are made at the first value: a launch that fails before logging
    leaves no empty folder. The settings go into the same event files (accelerate's tracker put them in two
    timestamped subfolders per launch, each shown by TensorBoard as a run of its own)."""

    def __init__(self, folder: Path | None, settings: dict[str, int | float | str | bool]):
        self.folder, self.settings, self.writer = folder, settings, None

    def log(self, values: dict[str, float], step: int) -> None:
        if self.folder is None:
            return
        if self.writer is None:
            self.writer = self.open()
        for name, value in values.items():
            self.writer.add_scalar(name, value, global_step=step)
        self.writer.flush()  # readable while training runs, and complete if the run is killed

    def open(self):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        writer = SummaryWriter(str(self.folder))  # a resumed run adds an event file to the same run
        for summary in hparams(self.settings, {}):  # the experiment, its session start and end
            writer.file_writer.add_summary(summary)
        return writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class Run:
    """What the training steps share, passed from step to step: the prepared model, the data, where training
    stands and the best weights so far."""

    accelerator: Accelerator
    data_config: DataConfig
    model_config: ModelConfig
    config: TrainConfig
    output_dir: Path
    dataset: RecDataset
    model: torch.nn.Module  # as prepared by accelerate (wrapped in DDP on several processes)
    unwrapped: HybridRecommender
    optimizer: torch.optim.Optimizer
    cold_items: torch.Tensor  # [N + 1] bool
    # Validated, tested and saved in place of the trained weights when set (the same on every process: DDP
    # keeps the weights equal).
    ema: WeightAverage | None
    tensorboard: TensorBoardLog
    state: TrainerState = field(default_factory=TrainerState)
    best_weights: dict[str, torch.Tensor] | None = None  # of the best validated epoch so far
    best_valid_ranks: torch.Tensor | None = None  # [R] that epoch's validation ranks, checkpointed with it
    eval_loaders: dict[str, Iterable[torch.Tensor]] = field(default_factory=dict)  # this process's rows
    loss_sum: torch.Tensor | None = None  # this process's summed loss of the epoch in progress
    epoch_started: float = 0.0  # perf_counter() when the epoch in progress would have started, had it run at once

    def eval_split(self, split: str, steps: int | None = None) -> EvalResult:
        return evaluate(
            self.unwrapped,
            self.dataset.split(split),
            split,
            steps=steps,
            batches=self.eval_loaders[split],
            gather=self.accelerator.gather_for_metrics,
            exclude_history=self.config.exclude_history,
            split_protocol=self.data_config.split,
            cold_items=self.cold_items,
            progress=self.accelerator.is_main_process and self.config.progress,
            select_on=self.config.select_on,
        )

    def checkpoint(self) -> None:
        # The epoch's loss so far is reduced over processes once, and kept in the state and on the main process.
        total = self.accelerator.reduce(self.loss_sum.clone(), "sum").item()
        self.state.epoch_loss_sum, self.loss_sum = total, torch.zeros_like(self.loss_sum)
        mid_epoch = self.state.batches_done > 0  # at an epoch's end fit has already moved on to the next
        self.state.epoch_seconds_so_far = time.perf_counter() - self.epoch_started if mid_epoch else 0.0
        if self.accelerator.is_main_process:
            self.loss_sum += total
        extra = {} if self.best_weights is None else {CHECKPOINT_BEST_MODEL: self.best_weights}
        if self.ema is not None:
            extra[CHECKPOINT_EMA] = self.ema.state_dict()
        if self.best_valid_ranks is not None:
            extra[CHECKPOINT_VALID_RANKS] = {"valid": self.best_valid_ranks}
        folder = save_checkpoint(self.accelerator, self.output_dir, self.state, self.config.keep_checkpoints, extra)
        if self.accelerator.is_main_process:  # tqdm.write: its own line, above an epoch bar still running
            tqdm.write(f"checkpoint: {folder}")


def nothing_to_train(state: TrainerState, config: TrainConfig) -> list[str]:
    """Why fit would train no epoch from ``state`` under ``config`` (empty when it would train one)."""
    why = []
    if state.bad_evals >= config.patience:
        why.append(
            f"it stopped early, no better validation NDCG@10 for {state.bad_evals} epochs: pass --patience above "
            f"{state.bad_evals} (now {config.patience})"
        )
    if state.epoch > config.epochs:
        why.append(
            f"it has trained {state.epoch - 1} epochs: pass --epochs above {state.epoch - 1} (now {config.epochs})"
        )
    return why


def fit(run: Run) -> None:
    """Train until --epochs or early stopping, from where run.state stands (mid-epoch after a resume)."""
    state = run.state
    # The rows the loss is computed on: prefix rows, or per-position windows of them (loss_positions 'all').
    rows = run.dataset.train
    if run.model_config.loss_positions == "all":
        rows = sequence_rows(rows, run.data_config.max_history)
    run.loss_sum = torch.zeros((), device=run.accelerator.device)
    if run.accelerator.is_main_process:
        run.loss_sum += state.epoch_loss_sum  # a resumed epoch's loss so far
    stopped = bool(nothing_to_train(state, run.config))
    while not stopped and state.epoch <= run.config.epochs:
        train_epoch(run, rows)
        valid, improved = validate(run, rows)
        stopped = early_stopping(run, valid, improved)
        state.epoch, state.batches_done, run.loss_sum = state.epoch + 1, 0, torch.zeros_like(run.loss_sum)
        run.checkpoint()
        release_freed_memory()  # the epoch's freed heap pages go back: memory stays bounded (foundation.memory)


def train_epoch(run: Run, rows: SplitData | SequenceRows) -> None:
    """The batches of the epoch in progress that are not trained yet (all of them unless resumed)."""
    accelerator, config, state = run.accelerator, run.config, run.state
    epoch = state.epoch
    run.model.train()
    run.epoch_started = time.perf_counter() - state.epoch_seconds_so_far  # a resumed epoch's time so far
    bar = tqdm(
        total=rows.batches_per_epoch(config.batch_size, config.seed, epoch),
        initial=state.batches_done,
        desc=f"epoch {epoch}",
        leave=False,
        disable=not (accelerator.is_main_process and config.progress),
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
    )
    batches = rows.epoch_batches(
        config.batch_size, config.seed, epoch, accelerator.process_index, accelerator.num_processes
    )
    contrastive = epoch > config.prl_warmup_epochs
    for index, batch in enumerate(batches):
        if index < state.batches_done:  # trained before the interruption
            continue
        noise_seed = step_noise_seed(config, state.step + 1)
        local_sum = train_step(run.model, run.optimizer, accelerator, rows, batch, config, contrastive, noise_seed)
        if not torch.isfinite(local_sum):
            raise FloatingPointError(  # on every process (train_step: NaN where another's loss was not finite)
                f"the training loss became {local_sum.item()} at epoch {epoch}, step {state.step + 1} (no update "
                "was made with it). Lower --learning_rate, raise --temperature, or set --max_grad_norm (e.g. 1.0)."
            )
        run.loss_sum += local_sum
        if run.ema is not None and not accelerator.optimizer_step_was_skipped:  # fp16's scaler may skip a step
            run.ema.update()
        state.step += 1
        state.batches_done = index + 1
        if state.step % config.log_every == 0:
            logged = rows.loss_per_target(accelerator.reduce(local_sum.clone(), "sum").item(), batch.global_rows)
            run.tensorboard.log({"train/loss": logged}, step=state.step)
            state.train_log.append({"step": state.step, "loss": logged})
            bar.set_postfix(loss=f"{logged:.4f}")
        bar.update()
        if config.save_every_steps and state.step % config.save_every_steps == 0:
            run.checkpoint()
    bar.close()
    state.epoch_seconds.append(time.perf_counter() - run.epoch_started)


def validate(run: Run, rows: SplitData | SequenceRows) -> tuple[EvalResult, bool]:
    """Validate the epoch's weights, keep them when they are the best so far, and log the epoch."""
    accelerator, state = run.accelerator, run.state
    epoch_loss = rows.loss_per_target(accelerator.reduce(run.loss_sum, "sum").item())
    with run.ema.applied() if run.ema is not None else contextlib.nullcontext():
        valid = run.eval_split("valid")
        improved = valid.selection_score(run.config.select_on) > state.best_ndcg
        if improved:  # the weights validated (the average when --ema_decay is set)
            fixed = fixed_weight_names(run.unwrapped)  # never trained: the model built has them (checkpoint.py)
            run.best_weights = {k: v.detach().clone() for k, v in run.unwrapped.state_dict().items() if k not in fixed}
    run.tensorboard.log(
        {"train/epoch_loss": epoch_loss, **{f"valid/{k}": v for k, v in valid.metrics.items()}}, step=state.step
    )
    entry = {"epoch": state.epoch, "loss": epoch_loss, "valid_ndcg@10": valid.metrics["ndcg@10"],
             "seconds": state.epoch_seconds[-1]}  # fmt: skip
    selected = run.config.select_on != "all"  # what chose the epoch, when not the whole split
    if selected:
        entry["selection_ndcg@10"] = valid.selection_score(run.config.select_on)
    state.epoch_log.append(entry)
    cold_valid = valid.groups.get("cold targets")  # present only when some validation target is cold
    accelerator.print(
        f"epoch {state.epoch}: loss {epoch_loss:.4f}, valid ndcg@10 {valid.metrics['ndcg@10']:.4f}, "
        f"recall@10 {valid.metrics['recall@10']:.4f}"
        + (f" (cold targets: ndcg@10 {cold_valid['ndcg@10']:.4f})" if cold_valid else "")
        + (f" (selects on {run.config.select_on}: {entry['selection_ndcg@10']:.4f})" if selected else "")
        + f" ({state.epoch_seconds[-1]:.1f}s){' *' if improved else ''}"
    )
    return valid, improved


def early_stopping(run: Run, valid: EvalResult, improved: bool) -> bool:
    """Record the epoch's validation in the early-stopping state; True when training should stop."""
    state = run.state
    if improved:
        state.best_ndcg, state.best_epoch = valid.selection_score(run.config.select_on), state.epoch
        state.best_valid = valid.to_dict()
        state.bad_evals, run.best_valid_ranks = 0, valid.ranks
        if run.accelerator.is_main_process:
            save_atomically({"valid": valid.ranks}, run.output_dir / VALID_RANKS)
    else:
        state.bad_evals += 1
    stopped = state.bad_evals >= run.config.patience
    if stopped:
        run.accelerator.print(
            f"early stop: no better validation NDCG@10 for {state.bad_evals} epochs (best: epoch {state.best_epoch})"
        )
    return stopped


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
    (``foundation.noise``), so any process count and accumulation gives the same step. Returns the summed
    loss of the slice (for logging), or NaN with no update made when any process's loss or stand-in's was not
    finite."""
    global_size = len(batch.global_rows)
    global_targets = train_rows.targets(batch.global_rows)  # rows, or the windows' scored positions
    width = train_rows.width(batch.global_rows)  # the same padding on every process
    loss_sum = torch.zeros((), device=accelerator.device)
    finite = torch.ones((), dtype=torch.bool, device=accelerator.device)  # a stand-in's too: 0 x inf is NaN
    chunks, offsets, weights = micro_batches(batch, config.gradient_accumulation_steps, accelerator.num_processes)
    split = accelerator.num_processes > 1 or len(chunks) > 1  # a whole-batch forward sees everything itself
    shared = shared_by_slices(accelerator, model, train_rows, batch, width, noise_seed) if split else {}
    for index, (chunk, offset, weight) in enumerate(zip(chunks, offsets, weights)):
        # DDP averages gradients over processes: scale so the sum over chunks and processes is the global mean.
        targets = train_rows.targets(chunk)  # the forward's loss is the mean over these
        scale = weight * targets * accelerator.num_processes / global_targets
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
                **shared,
            )
            accelerator.backward(output.loss * scale)
        finite &= torch.isfinite(output.loss.detach())
        if weight:  # a stand-in's loss is never counted
            loss_sum += output.loss.detach() * targets
    if not finite_everywhere(accelerator, finite):  # no update: one process's NaN would reach every weight
        optimizer.zero_grad(set_to_none=True)
        return loss_sum if not torch.isfinite(loss_sum) else torch.full_like(loss_sum, float("nan"))
    if config.max_grad_norm is not None:
        accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum


def finite_everywhere(accelerator, finite: torch.Tensor) -> bool:
    """Whether every process's losses of the step were finite (the same answer on all of them)."""
    finite = finite.float()
    if accelerator.num_processes > 1:
        finite = accelerator.reduce(finite, "sum") / accelerator.num_processes
    return bool(finite == 1)


def micro_batches(
    batch: ShardedBatch, accumulation: int, num_processes: int
) -> tuple[list[torch.Tensor], list[int], list[float]]:
    """This process's micro-batches of a global batch: their rows, offsets in the global batch and weights. Every
    process runs as many (each forward and backward joins collectives: DDP's gradient all-reduce on the last,
    PRL's gathers on each), so a slice with fewer rows than micro-batches, or none (a global batch smaller
    than the process count), runs zero-weight stand-ins of one row in place of the missing ones."""
    largest = -(-len(batch.global_rows) // num_processes)  # the first process's slice (data._sharded)
    chunks, offsets, weights, offset = [], [], [], batch.offset
    for part in batch.rows.tensor_split(min(accumulation, largest)):
        stand_in = len(part) == 0
        chunks.append(batch.global_rows[:1] if stand_in else part)
        offsets.append(0 if stand_in else offset)
        weights.append(0.0 if stand_in else 1.0)
        offset += len(part)
    return chunks, offsets, weights


def shared_by_slices(accelerator, model, train_rows, batch: ShardedBatch, width: int, noise_seed: int | None) -> dict:
    """What every slice of a split global batch must know of the whole: BERT4Rec's masked positions per row
    (the cloze loss is the global batch's mean over them) and, for an encoder that softmaxes over the batch's
    own items, those items (every slice then scores against the same ones)."""
    shared, global_size, unwrapped = {}, len(batch.global_rows), accelerator.unwrap_model(model)
    history, target = train_rows.batch(batch.global_rows, width)
    if noise_seed is not None and unwrapped.trains_cloze:  # drawn on the forward's device: its generator's numbers
        with global_batch_noise(noise_seed, 0, global_size, global_size):
            shared["cloze_per_row"] = unwrapped.cloze_per_row(history.to(accelerator.device))
    if unwrapped.item_encoder.encodes_batch_items:
        shared["candidates"] = torch.cat([history.flatten(), target.flatten()]).unique().to(accelerator.device)
    return shared


def step_noise_seed(config: TrainConfig, step: int) -> int | None:
    """The seed of one optimizer step's dropout masks (None: per-process torch RNG)."""
    return config.seed * 1_000_003 + step if config.split_invariant_dropout else None
