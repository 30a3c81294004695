"""The encoders' registry: every kind of item encoder, what it needs from the data, and how it is built.

This is the one place that tells encoder kinds apart by name; everything else asks an encoder what it can
do (see ``encoders.base.ItemEncoder``) or asks the registry what a kind needs, reads and is (its settings, the
pretrained model it refers to, its model card's line). To add an encoder: write its module, add its settings
to ``EncoderConfig`` and its ``Literal``, and register it here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import torch

from .base import ItemEncoder
from .config import EncoderConfig
from .hybrid import HybridItemEncoder
from .id import IDItemEncoder
from .lm_lora import LoRALMItemEncoder
from .text import TextItemEncoder, load_named, resolve_text_model


@dataclass(frozen=True)
class EncoderInputs:
    """What the data offers an encoder being built."""

    num_items: int  # N, padding excluded
    dim: int  # D, the vectors' size
    initializer_range: float = 0.02
    item_texts: Sequence[str] | None = None  # texts of items 1..N
    text_vectors: torch.Tensor | None = None  # [N, T] frozen sentence-transformers vectors of those texts
    warm_items: torch.Tensor | None = None  # [N + 1] bool: items with training interactions
    progress: bool = True  # progress bars while an encoder prepares (the LoRA encoder's layer cache)


@dataclass(frozen=True)
class EncoderKind:
    build: Callable[[EncoderConfig, EncoderInputs], ItemEncoder]
    needs_texts: bool  # every item must have a text
    needs_text_vectors: bool  # the caller computes (and caches) frozen text vectors of the item texts
    description: str  # what an item's vector is made of (the model card's one line)
    settings: tuple[str, ...] = ()  # the EncoderConfig fields this kind reads (set on another kind: a note)
    frozen_model: str | None = None  # the EncoderConfig field naming a pretrained model it uses but never saves
    no_all_positions: str | None = None  # why loss_positions='all' cannot train it; None: it can


TEXT_SETTINGS = tuple(f.name for f in fields(EncoderConfig) if f.name.startswith("text_"))
LM_SETTINGS = tuple(
    f.name for f in fields(EncoderConfig) if f.name.startswith(("lm_", "lora_")) or f.name == "gradient_checkpointing"
)


def build_id(config: EncoderConfig, inputs: EncoderInputs) -> ItemEncoder:
    return IDItemEncoder(inputs.num_items, inputs.dim, inputs.initializer_range)


def build_text(config: EncoderConfig, inputs: EncoderInputs) -> TextItemEncoder:
    vectors = inputs.text_vectors
    if vectors is None or vectors.shape[0] != inputs.num_items:
        found = "none" if vectors is None else f"{vectors.shape[0]}"
        raise ValueError(f"item_encoder={config.item_encoder!r} needs one text vector per item ({found} given)")
    return TextItemEncoder(
        vectors,
        inputs.dim,
        config.text_adaptor,
        config.text_experts,
        config.text_adaptor_dropout,
        config.text_pca_dim,
        inputs.initializer_range,
        text_model=config.text_model,
        text_revision=config.text_revision,
        pca_rows=None if inputs.warm_items is None else inputs.warm_items[1:],  # the trained items only
    )


def build_hybrid(config: EncoderConfig, inputs: EncoderInputs) -> ItemEncoder:
    text = build_text(config, inputs)  # first: a seed gives the same initial weights as before the registry
    ids = build_id(config, inputs)
    return HybridItemEncoder(ids, text, config.fusion, inputs.warm_items, config.id_dropout)


def build_lm_lora(config: EncoderConfig, inputs: EncoderInputs) -> ItemEncoder:
    if inputs.item_texts is None or len(inputs.item_texts) != inputs.num_items:
        raise ValueError("item_encoder='lm_lora' needs the text of every item")
    from transformers import AutoModel, AutoTokenizer

    path = resolve_text_model(config.lm_model)
    return LoRALMItemEncoder(
        inputs.item_texts,
        load_named("lm_model", config.lm_model, lambda: AutoModel.from_pretrained(path)),
        load_named("lm_model", config.lm_model, lambda: AutoTokenizer.from_pretrained(path)),
        inputs.dim,
        pooling=config.lm_pooling,
        lora_r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        lora_target_modules=config.lora_target_modules.split(",") if config.lora_target_modules else None,
        max_length=config.lm_max_length,
        lora_layers=config.lora_layers,
        gradient_checkpointing=config.gradient_checkpointing,
        initializer_range=inputs.initializer_range,
        cache_frozen_layers=config.lm_cache_frozen_layers,
        cache_dtype=config.lm_cache_dtype,
        cache_max_gb=config.lm_cache_max_gb,
        progress=inputs.progress,
    )


ENCODERS: dict[str, EncoderKind] = {
    "id": EncoderKind(build_id, needs_texts=False, needs_text_vectors=False, description="ID embeddings"),
    "text": EncoderKind(
        build_text, needs_texts=True, needs_text_vectors=True,
        description="frozen sentence-transformers text vectors + a trainable adaptor",
        settings=TEXT_SETTINGS, frozen_model="text_model",
    ),
    "hybrid": EncoderKind(
        build_hybrid, needs_texts=True, needs_text_vectors=True,
        description="ID embeddings fused with frozen text vectors",
        settings=(*TEXT_SETTINGS, "fusion", "id_dropout"), frozen_model="text_model",
    ),
    "lm_lora": EncoderKind(
        build_lm_lora, needs_texts=True, needs_text_vectors=False,
        description="a LoRA-tuned language model over item texts", settings=LM_SETTINGS, frozen_model="lm_model",
        no_all_positions="'lm_lora' softmaxes over the batch's own items",
    ),
}  # fmt: skip
ENCODER_SETTINGS = tuple(dict.fromkeys(name for kind in ENCODERS.values() for name in kind.settings))


def encoder_kind(config: EncoderConfig) -> EncoderKind:
    if config.item_encoder not in ENCODERS:
        raise ValueError(f"item_encoder={config.item_encoder!r} is not one of {tuple(ENCODERS)}")
    return ENCODERS[config.item_encoder]


def build_encoder(config: EncoderConfig, inputs: EncoderInputs) -> ItemEncoder:
    """The configured item encoder over the data's items."""
    return encoder_kind(config).build(config, inputs)
