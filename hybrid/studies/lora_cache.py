"""The lora_cache suite: how much faster a training epoch of LoRA-MiniLM + ReaRec is with the frozen LM layers
cached. 'cached' and 'uncached' are the preset configs/lora_rearec_ml100k.json (LoRA on MiniLM's top layer, ERL
with K = 2) and differ only in ``lm_cache_frozen_layers``: 'cached' runs the tuned layer on the stored output of
the 5 frozen ones, 'uncached' reruns the frozen layers (without gradients) every step, so ``ratio`` is the gain
of the cache alone. 'every_layer' is the encoder without lora_layers (LoRA on every layer, whose backward runs
through all of them): ``ratio_every_layer`` is the gain of tuning the top layer on the cache over that.

An epoch of the slow entries takes tens of minutes on a shared CPU, so the suite times ``steps`` training
steps per entry in each of ``rounds`` interleaved rounds (after a warm-up round), on the first batches of an
epoch, and scales the median step to the epoch's number of batches. Writes OUTPUT/lora_cache.json as
``{entry: {s_per_step, s_per_epoch}, ratio, ratio_every_layer, cache_build_s, cache_gb, steps, rounds,
batches_per_epoch}`` and OUTPUT/lora_cache.md.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import statistics
import time
from collections.abc import Callable

import torch
from accelerate import Accelerator

from ..build import make_optimizer, use_length_groups
from ..config import DataConfig, ModelConfig, TrainConfig
from ..data import RecDataset, load_dataset
from ..fit import step_noise_seed, train_step
from ..model import HybridRecommender
from ..tables import markdown_table
from .one_pass import preset_configs
from .reports import BenchmarkConfig, header, report_text
from .timing import interleaved_samples

PRESET = "configs/lora_rearec_ml100k.json"
ROUNDS, STEPS = 3, 2  # an uncached step of the preset takes ~20 s on 2 loaded CPU threads
EXPLANATION = (
    "'cached' and 'uncached' train the same model (preset configs/lora_rearec_ml100k.json: LoRA on MiniLM's top "
    "layer, ReaRec-ERL with K = 2, batches of 1024 rows) and differ only in lm_cache_frozen_layers: 'uncached' "
    "reruns MiniLM's 5 frozen layers without gradients on every step's items, 'cached' reads their output, "
    "computed once when the model is built (and again when it is loaded: the cache is never saved), which is the "
    "'cache build' time. 'LoRA on every layer' is the encoder without lora_layers (every layer tuned, so nothing "
    "to cache). Seconds per epoch are the median step of the interleaved rounds times the epoch's batches, not "
    "whole epochs; on a shared machine the ratios hold better than the seconds."
)


def cache_entries(model_config: ModelConfig) -> dict[str, ModelConfig]:
    """The compared settings: the same config with the frozen layers cached and rerun every step, and LoRA on
    every layer (the encoder without lora_layers: nothing is frozen, so nothing can be cached)."""
    return {
        "cached": dataclasses.replace(model_config, lm_cache_frozen_layers=True),
        "uncached": dataclasses.replace(model_config, lm_cache_frozen_layers=False),
        "every_layer": dataclasses.replace(model_config, lora_layers=None),
    }


def build_model(dataset: RecDataset, model_config: ModelConfig, max_history: int) -> tuple[HybridRecommender, float]:
    """The model over the dataset's items and the seconds its building took (the LM cache, where cached)."""
    torch.manual_seed(0)
    started = time.perf_counter()
    model = HybridRecommender(model_config, dataset.num_items, max_history, item_texts=dataset.item_texts)
    model.group_lengths = use_length_groups("auto", dataset.train.history)  # as training decides by default
    return model, time.perf_counter() - started


def training_steps(
    model: HybridRecommender, dataset: RecDataset, train_config: TrainConfig, accelerator: Accelerator, steps: int
) -> Callable[[], None]:
    """A function that runs the next ``steps`` training steps of ``model`` (as the training loop does: train_step
    over the epoch's batches, cycling through epoch 0's batches)."""
    optimizer = make_optimizer(model, train_config.learning_rate, train_config.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    batches = itertools.cycle(enumerate(dataset.train.epoch_batches(train_config.batch_size, train_config.seed, 0)))
    contrastive = train_config.prl_warmup_epochs == 0

    def run() -> None:
        model.train()
        for _ in range(steps):
            step, batch = next(batches)
            seed = step_noise_seed(train_config, step)
            train_step(model, optimizer, accelerator, dataset.train, batch, train_config, contrastive, seed)

    return run


def measure(
    dataset: RecDataset, model_config: ModelConfig, train_config: TrainConfig, max_history: int, rounds: int, steps: int
) -> dict:
    """Seconds per step and per epoch of each entry, their ratios to the cached one, and the cache's build time and
    size."""
    accelerator = Accelerator(cpu=True)
    functions, build_seconds, cache_gb = {}, {}, 0.0
    for name, config in cache_entries(model_config).items():
        model, build_seconds[name] = build_model(dataset, config, max_history)
        if model.item_encoder.prefix_states is not None:
            states = model.item_encoder.prefix_states
            cache_gb = states.numel() * states.element_size() / 2**30
        functions[name] = training_steps(model, dataset, train_config, accelerator, steps)
    samples = interleaved_samples(functions, rounds)
    batches = dataset.train.batches_per_epoch(train_config.batch_size)
    figures = {}
    for name, values in samples.items():
        per_step = statistics.median(values) / steps
        figures[name] = {"s_per_step": per_step, "s_per_epoch": per_step * batches}
    figures["ratio"] = figures["uncached"]["s_per_step"] / figures["cached"]["s_per_step"]
    figures["ratio_every_layer"] = figures["every_layer"]["s_per_step"] / figures["cached"]["s_per_step"]
    figures["cache_build_s"] = build_seconds["cached"] - build_seconds["uncached"]
    figures |= {"cache_gb": cache_gb, "steps": steps, "rounds": rounds, "batches_per_epoch": batches}
    return figures


def run(config: BenchmarkConfig, rounds: int = ROUNDS, steps: int = STEPS) -> dict:
    """Time both entries of the preset on MovieLens-100k on CPU; writes OUTPUT/lora_cache.{json,md}."""
    torch.set_num_threads(config.threads)
    model_config, train_config = preset_configs(PRESET)
    data_config = DataConfig()  # MovieLens-100k, leave-one-out, max_history 50, as the preset
    figures = measure(load_dataset(data_config), model_config, train_config, data_config.max_history, rounds, steps)
    write_report(config, figures)
    return figures


def write_report(config: BenchmarkConfig, figures: dict, name: str = "lora_cache") -> None:
    """NAME.json holds the figures alone; NAME.md says how they were made."""
    results = header(config.threads)
    results["setting"] = (
        f"Training steps of LoRA-MiniLM + ReaRec-ERL on MovieLens-100k, CPU, fp32: {figures['steps']} steps per "
        f"entry in each of {figures['rounds']} interleaved rounds (after a warm-up round), the median step scaled "
        f"to an epoch of {figures['batches_per_epoch']} batches"
    )
    labels = {
        "every_layer": "LoRA on every layer",
        "uncached": "top layer tuned, frozen ones rerun",
        "cached": "top layer tuned, frozen ones cached",
    }
    rows = [[labels[e], f"{figures[e]['s_per_step']:.2f}", f"{figures[e]['s_per_epoch']:.0f}"] for e in labels]
    table = markdown_table(["entry", "s/step", "s/epoch (scaled)"], rows, "lrr")
    table += (
        f"\n\nCached is {figures['ratio']:.1f}x faster per step than rerunning the frozen layers and "
        f"{figures['ratio_every_layer']:.1f}x faster than LoRA on every layer"
        + f". Cache build (at model build and at every load): {figures['cache_build_s']:.1f} s, "
        f"{figures['cache_gb'] * 1024:.0f} MB."
    )
    config.output_dir.mkdir(parents=True, exist_ok=True)
    (config.output_dir / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    text = report_text("LoRA LM encoder: cached frozen layers against rerunning them", results, table, EXPLANATION)
    (config.output_dir / f"{name}.md").write_text(text)
    print(text)
