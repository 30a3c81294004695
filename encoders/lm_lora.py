"""A language model tuned with LoRA as the item encoder (MoRec style, trained end to end).

Item texts are tokenised once. In training only the items of the batch go through the LM (the caller scores
against those, see ``encodes_batch_items``); in evaluation the whole catalogue is encoded in chunks without
gradients. Any transformers AutoModel works, encoder (BERT-like) or decoder-only (GPT-2, Qwen, Llama).

Shape legend: N items (without padding), U distinct items of a batch, S tokens, H LM hidden size, D item size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from encoders.base import ItemEncoder

# Attention projections by architecture: LoRA on these keeps the trainable share well below 1 %.
ATTENTION_MODULES = (
    ("query", "key", "value"),  # BERT, MiniLM, RoBERTa
    ("q_proj", "k_proj", "v_proj", "o_proj"),  # Llama, Qwen, Mistral
    ("c_attn",),  # GPT-2
)


def default_target_modules(model: nn.Module) -> list[str]:
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for group in ATTENTION_MODULES:
        if set(group) <= names:
            return list(group)
    raise ValueError(
        f"no known attention projections in {type(model).__name__}; pass lora_target_modules (module names)"
    )


class LoRALMItemEncoder(ItemEncoder):
    """Texts -> LoRA-wrapped LM -> pooled hidden state -> Linear -> D-vectors; padding stays zero."""

    encodes_batch_items = True  # training scores against the batch's items, not the whole catalogue

    def __init__(
        self,
        texts: Sequence[str],
        language_model: nn.Module,  # a transformers AutoModel (not yet LoRA-wrapped)
        tokenizer,
        dim: int,
        pooling: str = "mean",
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.05,
        lora_target_modules: Sequence[str] | None = None,
        max_length: int = 64,
        eval_chunk_size: int = 256,
        gradient_checkpointing: bool = False,
        initializer_range: float = 0.02,
    ):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        if pooling not in ("mean", "last_token"):
            raise ValueError(f"pooling {pooling!r} is not one of ('mean', 'last_token')")
        self.num_items, self.dim, self.pooling, self.eval_chunk_size = len(texts), dim, pooling, eval_chunk_size
        if gradient_checkpointing:
            language_model.gradient_checkpointing_enable()
        lora = LoraConfig(
            r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            target_modules=list(lora_target_modules or default_target_modules(language_model)),
        )
        self.language_model = get_peft_model(language_model, lora)  # freezes the LM, adds the adapters
        hidden = language_model.config.hidden_size
        self.project = nn.Linear(hidden, dim)
        nn.init.normal_(self.project.weight, std=initializer_range)
        nn.init.zeros_(self.project.bias)
        # Tokenised once: [N + 1, S] ids and mask, row 0 (padding) empty. Right padding, so the last real
        # token of row i sits at mask.sum() - 1.
        tokens = tokenizer(list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        ids, mask = tokens["input_ids"], tokens["attention_mask"]
        if tokenizer.padding_side == "left":  # move padding right
            order = torch.sort((mask == 0).long(), dim=1, stable=True, descending=False).indices
            ids, mask = ids.gather(1, order), mask.gather(1, order)
        self.register_buffer("token_ids", torch.cat([ids.new_zeros(1, ids.shape[1]), ids]), persistent=False)
        self.register_buffer("token_mask", torch.cat([mask.new_zeros(1, mask.shape[1]), mask]), persistent=False)

    def save_adapter(self, folder) -> None:
        """The LoRA weights in peft's own format (adapter_config.json + adapter_model.safetensors)."""
        self.language_model.save_pretrained(str(folder))

    def load_adapter(self, folder) -> None:
        """Load LoRA weights saved by :meth:`save_adapter` (or any peft adapter of the same shape)."""
        from pathlib import Path

        from peft import set_peft_model_state_dict
        from peft.utils import load_peft_weights

        if not (Path(folder) / "adapter_config.json").exists():
            raise FileNotFoundError(f"{folder} holds no peft adapter (adapter_config.json is missing)")
        result = set_peft_model_state_dict(self.language_model, load_peft_weights(str(folder), device="cpu"))
        if result.unexpected_keys:
            raise ValueError(f"the adapter in {folder} does not fit this model: {result.unexpected_keys[:3]}")

    def trainable_share(self) -> tuple[int, int]:
        """(trainable parameters, parameters of the LM itself)."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        base = sum(p.numel() for name, p in self.language_model.named_parameters() if "lora_" not in name)
        return trainable, base

    def encode_real(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Distinct real item ids [U] (no padding) -> [U, D]."""
        mask = self.token_mask[item_ids]  # [U, S]
        width = int(mask.sum(dim=1).max())
        ids, mask = self.token_ids[item_ids, :width], mask[:, :width]
        states = self.language_model(input_ids=ids, attention_mask=mask).last_hidden_state  # [U, S, H]
        if self.pooling == "mean":
            pooled = (states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        else:
            pooled = states[torch.arange(len(ids), device=ids.device), mask.sum(1) - 1]
        return self.project(pooled)  # [U, D]

    def encode(self, item_ids: torch.Tensor) -> torch.Tensor:
        unique, inverse = item_ids.unique(return_inverse=True)  # [U], [...]
        real = unique > 0
        vectors = torch.zeros(len(unique), self.dim, device=unique.device, dtype=self.project.weight.dtype)
        if real.any():
            vectors = vectors.index_put((real.nonzero()[:, 0],), self.encode_real(unique[real]))
        return vectors[inverse]  # [..., D]

    def item_table(self) -> torch.Tensor:
        """The whole catalogue in chunks [N + 1, D]; no gradients (evaluation and inference only)."""
        with torch.no_grad():
            ids = torch.arange(1, self.num_items + 1, device=self.token_ids.device)
            table = [self.encode_real(chunk) for chunk in ids.split(self.eval_chunk_size)]
        return torch.cat([table[0].new_zeros(1, self.dim), *table])
