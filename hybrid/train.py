"""Training in named steps: set up accelerate, build, prepare the run, resume, fit, select the inference depth,
test, save. The same code runs on one CPU, many CPU processes (gloo) or many GPUs.

Each step is a function below, in the order ``train`` calls them; the epoch loop is ``hybrid.fit``, what the
run folder holds is ``hybrid.run_folder``. Checkpoints (``hybrid.checkpoint``) hold everything needed to
continue a killed run exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedDataParallelKwargs, DistributedType, set_seed
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from ..encoders.registry import ENCODERS
from ..foundation.memory import keep_freed_memory
from .build import Built, build
from .checkpoint import (
    CHECKPOINT_BEST_MODEL,
    CHECKPOINT_EMA,
    CHECKPOINT_VALID_RANKS,
    RUN_CONFIG,
    TrainerState,
    check_weight_names,
    fixed_weight_names,
    fixed_weights_signature,
    leave_out_fixed_weights,
    load_checkpoint,
    load_weights,
    replace_folder,
    resolve_checkpoint,
    set_aside_newer,
)
from .config import DataConfig, ModelConfig, TrainConfig, check_configs, named_run, to_dict
from .data import RecDataset
from .ema import WeightAverage
from .errors import ConfigError
from .evaluate import EvalResult, format_groups, format_table
from .fit import Run, TensorBoardLog, fit, nothing_to_train, step_noise_seed, train_step
from .formats import BUILTIN_DATASETS
from .pretrained import write_atomically
from .recommend import ItemCatalogue
from .run_folder import (
    CONFIG,
    METRICS,
    MODEL,
    RANKS,
    VALID_RANKS,
    resolve_output_dir,
    run_lock,
    save_atomically,
    take_output_dir,
)

TENSORBOARD = "tensorboard"  # under the run folder, where accelerate's tracker wrote too

__all__ = ["train", "train_step", "step_noise_seed"]  # the benchmarks time train_step as training runs it


def train(data_config: DataConfig, model_config: ModelConfig, train_config: TrainConfig) -> dict:
    """Train with early stopping on validation NDCG@10, then test the best model. Returns metrics.json, whose
    ``output_dir`` is the run folder (``HybridRecommender.from_pretrained(Path(output_dir) / "model")`` loads
    the best model). The torch thread count it sets (--num_threads, or the cores per process) is put back when
    it returns."""
    check_configs(data_config, model_config, train_config)
    threads = torch.get_num_threads()
    try:
        return train_and_test(data_config, model_config, train_config)
    finally:
        torch.set_num_threads(threads)  # a notebook's own setting outlives the run


def train_and_test(data_config: DataConfig, model_config: ModelConfig, train_config: TrainConfig) -> dict:
    """:func:`train` once its configs are checked."""
    train_config = named_run(data_config, model_config, train_config)  # before the run folder is named after it
    accelerator, output_dir, checkpoint = set_up_accelerator(train_config)
    with run_lock(output_dir):
        built = build(data_config, model_config, train_config, accelerator)
        run = prepare_run(accelerator, built, data_config, model_config, train_config, output_dir)
        if checkpoint is not None:
            resume(run, checkpoint)  # a refused resume raises before the run folder is touched
        take_output_dir(output_dir, train_config)  # a run already there moves aside only now
        write_config(run)
        accelerator.print(
            f"run directory: {output_dir} (if stopped, the same command with --output_dir {output_dir} --resume "
            "latest continues it)"
        )
        run.eval_loaders = eval_loaders(accelerator, run.dataset, train_config.eval_batch_size)
        fit(run)
        if run.best_weights is None:
            raise RuntimeError("no epoch was trained: check --epochs and the checkpoint you resumed from")
        load_weights(run.unwrapped, run.best_weights, "the best weights")
        valid_by_steps, valid_ranks = select_depth(run)
        test = run.eval_split("test")
        results = collect_results(run, test, valid_by_steps)
        if accelerator.is_main_process:
            save(run, results, test, valid_ranks)
        report(run, results, test)
        # Every process reaches the teardown together: a process that tore its process group down while another
        # was still writing the results sometimes aborted at exit (gloo, two CPU processes).
        accelerator.wait_for_everyone()
        run.tensorboard.close()
        accelerator.end_training()
        return results


def set_up_accelerator(config: TrainConfig) -> tuple[Accelerator, Path, Path | None]:
    """The accelerator, the run folder and the checkpoint to resume from (None: a fresh start); seeds every RNG."""
    cpu = not torch.cuda.is_available()
    partial = PartialState(cpu=cpu)  # sets up the process group, so every rank can agree on the run folder
    if "WORLD_SIZE" in os.environ:  # launched by accelerate/torchrun: every rank must really exist
        assert partial.num_processes == int(os.environ["WORLD_SIZE"]), "distributed setup failed"
    output_dir = resolve_output_dir(config)
    checkpoint = resolve_checkpoint(output_dir, config.resume) if config.resume else None
    if config.mixed_precision == "fp16" and cpu:
        raise ConfigError("mixed_precision='fp16' needs a CUDA GPU; on CPU use 'bf16' or 'no'.")
    # accelerate keeps one precision per Python process; a later train() call (notebook, tests) may ask for
    # another. Forget the old setting (the process group in PartialState is kept).
    AcceleratorState._reset_state()
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision=config.mixed_precision,
        project_dir=str(output_dir),
        # Every buffer is fixed data made alike on every process (token ids, a PCA basis, the LoRA encoder's
        # cache of its frozen layers [N + 1, S, H]: 108 MB on Scientific): DDP would otherwise send rank 0's
        # copy to every process before every forward (and does not at the start either).
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
    )
    if accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP):
        raise ConfigError(
            f"{accelerator.distributed_type.value} is not tested with hybrid-rearec. Use plain data parallel "
            "(`accelerate launch --multi_gpu`): the model is small enough to be replicated on every device."
        )
    if accelerator.device.type == "cpu":  # accelerate sets OMP_NUM_THREADS=1: give each process its share
        torch.set_num_threads(config.num_threads or max(1, (os.cpu_count() or 1) // accelerator.num_processes))
        keep_freed_memory()
    set_seed(config.seed)
    return accelerator, output_dir, checkpoint


def prepare_run(
    accelerator: Accelerator,
    built: Built,
    data_config: DataConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    output_dir: Path,
) -> Run:
    """Hand the model and optimizer to accelerate and set up TensorBoard (its folder is made when the first
    value is logged); :func:`write_config` writes the run's config.json once the run may go ahead."""
    with warnings.catch_warnings():  # torch renamed DDP's broadcast_buffers, the only name accelerate passes
        warnings.filterwarnings("ignore", message="`broadcast_buffers` is deprecated", category=FutureWarning)
        model, optimizer = accelerator.prepare(built.model, built.optimizer)
    unwrapped = accelerator.unwrap_model(model)
    leave_out_fixed_weights(accelerator, unwrapped)  # checkpoints hold what trains, not a pretrained LM's weights
    ema = WeightAverage(unwrapped, train_config.ema_decay) if train_config.ema_decay else None
    config_dict = run_settings(data_config, model_config, train_config, output_dir)
    logs = accelerator.is_main_process and train_config.report_to == "tensorboard"
    settings = {
        k: v for part in config_dict.values() for k, v in part.items() if isinstance(v, (int, float, str, bool))
    }
    return Run(
        accelerator=accelerator,
        data_config=data_config,
        model_config=model_config,
        config=train_config,
        output_dir=output_dir,
        dataset=built.dataset,
        model=model,
        unwrapped=unwrapped,
        optimizer=optimizer,
        cold_items=built.cold_items,
        ema=ema,
        tensorboard=TensorBoardLog(output_dir / TENSORBOARD if logs else None, settings),
        state=TrainerState(
            data_signature=built.dataset.signature(),
            text_signature=built.dataset.text_signature() if ENCODERS[model_config.item_encoder].needs_texts else None,
            mixed_precision=accelerator.mixed_precision,
            fixed_weights_signature=fixed_weights_signature(unwrapped),
        ),
    )


SIGNATURES = ("data_signature", "text_signature", "fixed_weights_signature")  # checked on resume (TrainerState)


def run_settings(data: DataConfig, model: ModelConfig, train: TrainConfig, output_dir: Path) -> dict:
    """The settings a run's config.json holds: {"data": ..., "model": ..., "train": ...}."""
    config_dict = to_dict(data, model, train)
    config_dict["train"]["output_dir"] = str(output_dir)
    return config_dict


def write_config(run: Run) -> None:
    """The run folder's config.json, written only when the run goes ahead (after a resume was accepted), so a
    refused resume leaves the folder describing the run that is in it."""
    if run.accelerator.is_main_process:
        run.output_dir.mkdir(parents=True, exist_ok=True)
        settings = run_settings(run.data_config, run.model_config, run.config, run.output_dir)
        _write_json_atomically(run.output_dir / CONFIG, settings)  # a kill mid-write keeps the one there


def resume(run: Run, checkpoint: Path) -> None:
    """Continue from a checkpoint: weights, optimizer, RNG, where training stands, the best weights so far."""
    settings = run_settings(run.data_config, run.model_config, run.config, run.output_dir)
    signatures = {key: getattr(run.state, key) for key in SIGNATURES}  # of the data and LM just read
    run.state = load_checkpoint(run.accelerator, checkpoint, settings, signatures, run.model)
    for key, value in signatures.items():  # recorded from now on, also when the checkpoint is older than one
        setattr(run.state, key, value)
    ran, now = run.state.mixed_precision or configured_precision(checkpoint), run.accelerator.mixed_precision
    if ran is not None and ran != now:  # set by --mixed_precision or by `accelerate launch`: what ran counts
        raise ConfigError(
            f"checkpoint {str(checkpoint)!r} trained in mixed_precision={ran!r}, and this resume would go on in "
            f"{now!r}: resume with --mixed_precision {ran} (or the same `accelerate launch` setting), or start a "
            "new run with --overwrite."
        )
    run.state.mixed_precision = now
    if (run.output_dir / METRICS).exists() and (why := nothing_to_train(run.state, run.config)):
        raise ConfigError(  # before its results move aside: training it "further" would only test it again
            f"{str(run.output_dir)!r} holds a finished run that --resume would train no further: {'; '.join(why)}. "
            f"scripts/evaluate.py {run.output_dir} evaluates it again. Nothing was changed."
        )
    if run.state.best_epoch:
        best, fixed = load_file(checkpoint / CHECKPOINT_BEST_MODEL), fixed_weight_names(run.unwrapped)
        check_weight_names(set(run.unwrapped.state_dict()), fixed, set(best), checkpoint / CHECKPOINT_BEST_MODEL)
        run.best_weights = {name: value for name, value in best.items() if name not in fixed}  # older: held them
    if (checkpoint / CHECKPOINT_VALID_RANKS).exists():  # else the run folder's file (older checkpoints)
        run.best_valid_ranks = load_file(checkpoint / CHECKPOINT_VALID_RANKS)["valid"]
    if run.ema is not None:
        if not (checkpoint / CHECKPOINT_EMA).exists():
            raise ConfigError(
                f"--ema_decay is set but checkpoint {str(checkpoint)!r} holds no weight average (it was trained "
                "without one): resume with the run's own settings, or start a new run."
            )
        run.ema.load_state_dict(load_file(checkpoint / CHECKPOINT_EMA))
    state = run.state
    run.accelerator.print(
        f"resumed from {checkpoint}: epoch {state.epoch}, {state.batches_done} batches done, step {state.step}"
    )
    if run.accelerator.is_main_process and (aside := set_aside_newer(run.output_dir, checkpoint)):
        print(f"the checkpoints after it belong to the run's abandoned continuation: moved to {aside}")
    run.accelerator.wait_for_everyone()


def eval_loaders(accelerator: Accelerator, dataset: RecDataset, batch_size: int) -> dict[str, DataLoader]:
    """This process's share of the validation and test rows (row indices), in batches."""
    return {
        name: accelerator.prepare_data_loader(DataLoader(torch.arange(len(dataset.split(name))), batch_size=batch_size))
        for name in ("valid", "test")
    }


def select_depth(run: Run) -> tuple[dict[int, float] | None, torch.Tensor | None]:
    """With --select_inference_steps: the reasoning depth 0..K with the best validation NDCG@10 (ties to the
    cheaper one), set on the model. Returns NDCG@10 by depth and the chosen depth's validation ranks."""
    reasoning_steps = run.model_config.reasoning_steps
    if not (run.config.select_inference_steps and reasoning_steps > 0):
        return None, None
    by_steps = {k: run.eval_split("valid", steps=k) for k in range(reasoning_steps + 1)}
    valid_by_steps = {k: result.selection_score(run.config.select_on) for k, result in by_steps.items()}
    chosen = max(valid_by_steps, key=lambda k: (valid_by_steps[k], -k))
    # A copy: used by test and saved with the model, while the caller's config stays as given.
    run.unwrapped.config = dataclasses.replace(run.unwrapped.config, inference_steps=chosen)
    run.state.best_valid = by_steps[chosen].to_dict()
    run.accelerator.print(
        f"inference steps chosen on validation NDCG@10 ({run.config.select_on} rows): {chosen} ("
        + ", ".join(f"{k}: {value:.4f}" for k, value in valid_by_steps.items())
        + ")"
    )
    return valid_by_steps, by_steps[chosen].ranks


def configured_precision(checkpoint: Path) -> str | None:
    """An older checkpoint's precision as its run_config.json set it (None: accelerate's, not known here)."""
    try:
        return json.loads((checkpoint / RUN_CONFIG).read_text()).get("train", {}).get("mixed_precision")
    except (OSError, ValueError, AttributeError):  # none, or damaged: check_settings has named it already
        return None


def collect_results(run: Run, test: EvalResult, valid_by_steps: dict[int, float] | None) -> dict:
    """metrics.json: the best model's validation and test results, and how the run went."""
    state = run.state
    return {
        "run_name": run.config.run_name,
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch - 1,
        "inference_steps": run.unwrapped.config.inference_steps,
        "valid_ndcg@10_by_inference_steps": valid_by_steps,  # of the rows --select_on names
        "selection": {"rows": run.config.select_on, "ndcg@10": state.best_ndcg},  # what chose the best epoch
        "valid": state.best_valid,
        "test": test.to_dict(),
        "protocol": test.protocol,
        "seconds_per_epoch": sum(state.epoch_seconds) / max(len(state.epoch_seconds), 1),
        "num_processes": run.accelerator.num_processes,
        "mixed_precision": run.accelerator.mixed_precision,
        "data": run.dataset.stats,
        "parameters": parameter_counts(run.unwrapped),
        "train_log": state.train_log,
        "epoch_log": state.epoch_log,
        "launch_dir": os.getcwd(),  # where relative data paths start: the tools look there too
        "output_dir": str(run.output_dir),  # the run folder, whose name may hold the time it started
    }


def parameter_counts(model: torch.nn.Module) -> dict[str, int | float]:
    counts = {
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total": sum(p.numel() for p in model.parameters()),
    }
    if (share := model.item_encoder.trainable_share()) is not None:  # an encoder wrapping a pretrained model
        trainable, language_model = share
        counts |= {"item_encoder_trainable": trainable, "language_model": language_model}
        counts["trainable_share_of_language_model"] = trainable / language_model
    return counts


def save(run: Run, results: dict, test: EvalResult, valid_ranks: torch.Tensor | None) -> None:
    """Write the best model as model/ (the one format every tool reads), every row's ranks, and metrics.json
    last. Main process only."""
    data_config, train_config, output_dir = run.data_config, run.config, run.output_dir
    # A self-contained folder (catalogue, card, adapter): evaluated, analysed, served and uploaded as it is.
    run.unwrapped.catalogue = ItemCatalogue.from_dataset(run.dataset)
    run.unwrapped.results = {
        "run_name": train_config.run_name,
        "dataset": data_config.dataset if data_config.dataset in BUILTIN_DATASETS else None,
        "test": test.metrics,
        "protocol": test.protocol,
        "train_config": to_dict(data_config, train_config),
        "trained_items": run.dataset.num_items,  # the card tells items added later (add_items) apart
    }
    # Written whole beside the run, then put in place: a kill mid-save never leaves a model/ half old, half new.
    incomplete = output_dir / f".{MODEL}-incomplete"
    shutil.rmtree(incomplete, ignore_errors=True)
    run.unwrapped.save_pretrained(incomplete)
    replace_folder(incomplete, output_dir / MODEL)
    # Per-row ranks (every metric is a function of them): for analysis and exact run comparisons.
    if valid_ranks is None:  # the best epoch's, at the trained depth (from the checkpoint after a resume)
        valid_ranks = run.best_valid_ranks
    if valid_ranks is None:  # resumed from a checkpoint older than best_valid_ranks.safetensors
        valid_ranks = load_file(output_dir / VALID_RANKS)["valid"]
    save_atomically({"valid": valid_ranks, "test": test.ranks}, output_dir / RANKS)
    _write_json_atomically(output_dir / METRICS, results)  # marks the run finished: never a truncated one


def _write_json_atomically(path: Path, value: dict) -> None:
    """A kill mid-write leaves the file that was there (a resumed run's config.json) or none, never a truncated
    one (a damaged metrics.json would mark the run finished)."""
    write_atomically(path, lambda p: p.write_text(json.dumps(value, indent=2)))


def report(run: Run, results: dict, test: EvalResult) -> None:
    say, name, best_valid = run.accelerator.print, run.config.run_name, run.state.best_valid
    say(f"parameters: {json.dumps(results['parameters'])}")
    say(f"\nprotocol: {test.protocol}")
    say(
        format_table(
            {f"{name} valid (best epoch {run.state.best_epoch})": best_valid["metrics"], f"{name} test": test.metrics}
        )
    )
    groups = format_groups(test, "test")
    if groups:
        say(groups)
    say(f"run directory: {run.output_dir}")
