"""Everything training starts from, built in one place: data, text vectors, model, softmax items, optimizer."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from accelerate import Accelerator

from .config import DataConfig, ModelConfig, TrainConfig
from .data import RecDataset, load_dataset, warm_item_mask
from .model import HybridRecommender, build_item_encoder, item_text_vectors


@dataclass
class Built:
    dataset: RecDataset
    model: HybridRecommender
    optimizer: torch.optim.Optimizer
    cold_items: torch.Tensor  # [N + 1] bool: items no training row mentions


def build(
    data_config: DataConfig, model_config: ModelConfig, train_config: TrainConfig, accelerator: Accelerator
) -> Built:
    """The dataset, a freshly initialised model and its optimizer (not yet prepared by accelerate). The order
    of the steps is fixed: the model's initial weights are drawn from the RNG right after the data is read."""
    progress = train_config.progress and accelerator.is_main_process
    with accelerator.main_process_first():  # the main process builds the cache, the others read it
        dataset = load_dataset(data_config, progress=progress)
    accelerator.print(f"data: {json.dumps(dataset.stats)}")
    with accelerator.main_process_first():  # text vectors: encoded once by the main process, then cached
        text_vectors = item_text_vectors(model_config, dataset.item_texts, progress=progress)
    warm_items = warm_item_mask(dataset.train.history, dataset.train.target, dataset.num_items)
    # Built as the model's constructor would build it (same draws, same order), with the run's progress setting.
    encoder = build_item_encoder(
        model_config, dataset.num_items, text_vectors, warm_items, dataset.item_texts, progress=progress
    )
    model = HybridRecommender(
        model_config, dataset.num_items, data_config.max_history, text_vectors, warm_items, dataset.item_texts, encoder
    )
    cold_items = dataset.untrained_items()  # ~warm_items without padding
    softmax_items = train_config.softmax_items
    if softmax_items == "auto":
        softmax_items = "seen" if data_config.split == "cold_items" else "all"
    if softmax_items == "seen":
        model.set_softmax_items(warm_items)
    model.group_lengths = use_length_groups(train_config.length_groups, dataset.train.history)
    optimizer = make_optimizer(model, train_config.learning_rate, train_config.weight_decay)
    return Built(dataset, model, optimizer, cold_items)


def use_length_groups(setting: str, history: torch.Tensor) -> bool:
    """Whether training encodes rows in length groups: 'on', 'off', or 'auto': on when the training histories
    [R, L] fill less than half of their width on average (most of a padded batch would be padding)."""
    if setting != "auto":
        return setting == "on"
    return bool((history > 0).float().mean() < 0.5)


def make_optimizer(model: torch.nn.Module, learning_rate: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (weight decay on matrices only), fused where the parameters' device
    has the fused kernel (CPU, CUDA): one kernel per parameter instead of about ten small operations, which on
    CPU was about a tenth of a one-pass SASRec step. The same algorithm as torch's default AdamW (tested)."""
    groups = decay_groups(model, weight_decay)
    fused = all(p.device.type in ("cpu", "cuda") for group in groups for p in group["params"])
    return torch.optim.AdamW(groups, lr=learning_rate, weight_decay=0.0, fused=fused)


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: no bias, LayerNorm weight or other 1-D parameter is decayed."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
