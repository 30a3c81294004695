"""The one-pass suite: seconds per training epoch of the prefix layout (a row per training target, the loss at
its last position) against the one-pass layout (``loss_positions='all'``: windows of a user's items, the loss
and every reasoning step at every position in one pass), side by side in interleaved rounds, for the SASRec,
ReaRec-ERL and ReaRec-PRL presets (K = 2) on MovieLens-100k and, where its files are present, on Amazon
Scientific (``../shared/data/amazon-scientific``, its own presets). Writes OUTPUT/one_pass.json as
``{dataset: {model: {prefix_s_per_epoch, one_pass_s_per_epoch, ratio}}}`` and OUTPUT/one_pass.md."""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator

from ..build import make_optimizer, use_length_groups
from ..config import DataConfig, ModelConfig, TrainConfig, load_preset
from ..data import RecDataset, load_dataset, sequence_rows
from ..fit import step_noise_seed, train_step
from ..model import HybridRecommender
from ..tables import markdown_table
from .paths import REPO_ROOT
from .reports import BenchmarkConfig, header, report_text

PRESETS = {
    "sasrec": "configs/sasrec_ml100k.json",
    "rearec-erl": "configs/rearec_erl_ml100k.json",
    "rearec-prl": "configs/rearec_prl_ml100k.json",
}
DATASETS = {
    "ml-100k": PRESETS,
    "amazon-scientific": {
        "sasrec": "configs/scientific_sasrec.json",
        "rearec-erl": "configs/scientific_rearec_erl.json",
        "rearec-prl": "configs/scientific_rearec_prl.json",
    },
}
EXPLANATION = (
    "Both layouts train the same targets per epoch with the same number of optimizer steps (one-pass windows "
    "are packed into batches of at most batch_size targets). The prefix layout encodes a user with n targets "
    "n times and runs K reasoning steps for each; the one-pass layout encodes each window once and runs the K "
    "steps for all its positions together. Rounds are interleaved (each round runs one epoch of every entry), "
    "so on a shared machine the ratios hold better than the seconds. Shared work: the objective (forward and "
    "backward: every target's K + 1 states scored against the whole catalogue, ERL's diversity, PRL's per-step "
    "and contrastive terms) and the optimizer step over the epoch's batches, which both layouts do alike; no "
    "layout can take less per epoch, so prefix / shared bounds the ratio any layout that trains the same "
    "objective can reach."
)


def _fields(values: dict, config_class: type) -> dict:
    return {k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(config_class)}}


def preset_configs(path: str) -> tuple[ModelConfig, TrainConfig]:
    """A preset's model config and training config (its data settings: see :func:`preset_data`)."""
    values = load_preset(REPO_ROOT / path)
    train = _fields(values, TrainConfig) | {"report_to": "none", "progress": False}
    return ModelConfig(**_fields(values, ModelConfig)), TrainConfig(**train)


def preset_data(path: str) -> DataConfig:
    """A preset's data config; a relative dataset path is read from the repository root."""
    data = DataConfig(**_fields(load_preset(REPO_ROOT / path), DataConfig))
    if data.data_format == "recbole_split" and not Path(data.dataset).is_absolute():
        data = dataclasses.replace(data, dataset=str((REPO_ROOT / data.dataset).resolve()))
    return data


def available_datasets() -> dict[str, dict[str, str]]:
    """The datasets whose files are here: MovieLens-100k always (it ships with recbole), Scientific if present."""
    return {name: presets for name, presets in DATASETS.items() if Path(preset_data(presets["sasrec"]).dataset).exists()
            or name == "ml-100k"}  # fmt: skip


def epoch_function(dataset: RecDataset, path: str, layout: str, accelerator: Accelerator) -> Callable[[int], None]:
    """One training epoch of the preset at ``path`` in ``layout`` ('prefix' or 'one_pass'), as the training
    loop runs it (train_step over the epoch's batches); called with the epoch number."""
    model_config, train_config = preset_configs(path)
    model_config = dataclasses.replace(model_config, loss_positions="all" if layout == "one_pass" else "last")
    torch.manual_seed(0)
    max_history = preset_data(path).max_history
    model = HybridRecommender(model_config, dataset.num_items, max_history)
    model.group_lengths = use_length_groups(train_config.length_groups, dataset.train.history)  # as training decides
    optimizer = make_optimizer(model, train_config.learning_rate, train_config.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    rows = sequence_rows(dataset.train, max_history) if layout == "one_pass" else dataset.train
    contrastive = train_config.prl_warmup_epochs == 0

    def epoch(number: int) -> None:
        model.train()
        for step, batch in enumerate(rows.epoch_batches(train_config.batch_size, train_config.seed, number), 1):
            seed = step_noise_seed(train_config, number * 100_000 + step)
            train_step(model, optimizer, accelerator, rows, batch, train_config, contrastive, seed)

    return epoch


def shared_work_function(dataset: RecDataset, path: str, accelerator: Accelerator) -> Callable[[int], None]:
    """The work every layout shares, for one epoch: the preset's objective (forward and backward) over the
    epoch's training targets, each with its K + 1 states scored against the item table, and the optimizer
    step, with the prefix layout's batches. Only the encoding of histories and reasoning steps is left out, so
    no layout's epoch can take less: prefix seconds / these seconds bounds the one-pass layout's ratio."""
    model_config, train_config = preset_configs(path)
    torch.manual_seed(0)
    model = HybridRecommender(model_config, dataset.num_items, preset_data(path).max_history)
    optimizer = make_optimizer(model, train_config.learning_rate, train_config.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    states_shape = (model_config.reasoning_steps + 1, model_config.hidden_size)

    def epoch(number: int) -> None:
        model.train()
        for batch in dataset.train.epoch_batches(train_config.batch_size, train_config.seed, number):
            target = dataset.train.target[batch.rows].to(accelerator.device)  # [B]
            states = torch.randn(len(target), *states_shape, device=accelerator.device, requires_grad=True)
            noisy = torch.randn_like(states) if model.objective.uses_noisy_view else None  # [B, S, D]
            table, target, _ = model.softmax_table(target)  # [N + 1, D]
            loss, _ = model.objective(states, table, target, noisy)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    return epoch


def epoch_seconds(functions: dict[str, Callable[[int], None]], rounds: int, synchronize) -> dict[str, float]:
    """Median seconds of one epoch of each function over interleaved rounds (each round starts one entry later)."""
    seconds: dict[str, list[float]] = {name: [] for name in functions}
    names = list(functions)
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize()
            started = time.perf_counter()
            functions[name](round_ + 1)
            synchronize()
            seconds[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in seconds.items()}


def run(config: BenchmarkConfig, rounds: int = 2, mixed_precision: str = "no", name: str = "one_pass") -> dict:
    """Time both layouts of every preset; writes OUTPUT/NAME.{json,md}. On a GPU (when one is present) pass
    mixed_precision='bf16'."""
    torch.set_num_threads(config.threads)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed_precision)
    synchronize = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    figures = {}
    for dataset_name, presets in available_datasets().items():
        dataset = load_dataset(preset_data(presets["sasrec"]))
        functions = {
            f"{model}/{layout}": epoch_function(dataset, path, layout, accelerator)
            for model, path in presets.items()
            for layout in ("prefix", "one_pass")
        } | {f"{model}/shared": shared_work_function(dataset, path, accelerator) for model, path in presets.items()}
        seconds = epoch_seconds(functions, rounds, synchronize)
        figures[dataset_name] = {
            model: {
                "prefix_s_per_epoch": seconds[f"{model}/prefix"],
                "one_pass_s_per_epoch": seconds[f"{model}/one_pass"],
                "ratio": seconds[f"{model}/prefix"] / seconds[f"{model}/one_pass"],
                "shared_s_per_epoch": seconds[f"{model}/shared"],
                "ratio_bound": seconds[f"{model}/prefix"] / seconds[f"{model}/shared"],
            }
            for model in presets
        }
    write_report(config, figures, rounds, accelerator, name)
    return figures


def write_report(config: BenchmarkConfig, figures: dict, rounds: int, accelerator: Accelerator, name: str) -> None:
    """NAME.json holds the figures alone (checked by a script); NAME.md says how they were made."""
    results = header(config.threads)
    device = "GPU " + torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    results["setting"] = (
        f"One training epoch of each preset in each layout on each dataset, {device}, precision "
        f"{accelerator.mixed_precision}, medians of {rounds} interleaved rounds"
    )
    rows = (
        [dataset, model, f"{f['prefix_s_per_epoch']:.1f}", f"{f['one_pass_s_per_epoch']:.1f}", f"{f['ratio']:.1f}x",
         f"{f['shared_s_per_epoch']:.1f}", f"{f['ratio_bound']:.1f}x"]
        for dataset, models in figures.items()
        for model, f in models.items()
    )  # fmt: skip
    headers = ["dataset", "model", "prefix (s/epoch)", "one pass (s/epoch)", "prefix / one pass",
               "shared work (s/epoch)", "bound: prefix / shared"]  # fmt: skip
    table = markdown_table(headers, rows, "llrrrrr")
    config.output_dir.mkdir(parents=True, exist_ok=True)
    (config.output_dir / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    text = report_text("Training layouts: prefix rows against one pass", results, table, EXPLANATION)
    (config.output_dir / f"{name}.md").write_text(text)
    print(text)
