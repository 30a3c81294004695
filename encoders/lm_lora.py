"""A language model tuned with LoRA as the item encoder (MoRec style, trained end to end).

Item texts are tokenised once. In training only the items of the batch go through the LM (the caller scores
against those, see ``encodes_batch_items``); in evaluation the whole catalogue is encoded in chunks without
gradients. Any transformers AutoModel works, encoder (BERT-like) or decoder-only (GPT-2, Qwen, Llama).

Shape legend: N items (without padding), U distinct items of a batch, S tokens, H LM hidden size, D item size.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..foundation import noise
from .base import ItemEncoder

ADAPTER = "adapter"  # beside a saved model's weights: the LoRA adapter folder

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


class PassThrough(nn.Module):
    """Stands in for an embedding layer: the input is already a hidden state (the cached frozen prefix)."""

    def forward(self, *args, inputs_embeds: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        return inputs_embeds


def layer_list(model: nn.Module) -> tuple[nn.Module, str]:
    """The module that owns the Transformer layers and the attribute that holds them."""
    if hasattr(model, "encoder") and hasattr(model.encoder, "layer"):  # BERT, MiniLM, RoBERTa
        return model.encoder, "layer"
    if hasattr(model, "layers") and hasattr(model, "embed_tokens"):  # Llama, Qwen, Mistral
        return model, "layers"
    raise ValueError(
        f"lora_layers needs a BERT-like or Llama/Qwen-like model, not {type(model).__name__}; leave lora_layers "
        "unset to tune every layer"
    )


def tuned_module_names(model: nn.Module, suffixes: Sequence[str], first: int) -> list[str]:
    """Full names of the `suffixes` modules inside layers first..L-1 (peft's own layers_to_transform does not
    match a bare AutoModel, whose layer names have no prefix)."""
    owner, attribute = layer_list(model)
    tuned = {id(m) for layer in list(getattr(owner, attribute))[first:] for m in layer.modules()}
    return [
        name for name, module in model.named_modules() if id(module) in tuned and name.rsplit(".", 1)[-1] in suffixes
    ]


def top_layers_view(model: nn.Module, first: int) -> nn.Module:
    """A model that shares `model`'s modules but takes the hidden state entering layer `first` as
    `inputs_embeds` and runs only layers first..L-1 (and the final norm, where the model has one)."""
    owner, attribute = layer_list(model)

    def shallow(module: nn.Module) -> nn.Module:  # a new module object whose children are the same modules
        clone = copy.copy(module)
        clone._modules = dict(module._modules)
        return clone

    view = shallow(model)
    if owner is model:  # decoder-only: inputs_embeds go straight into the layers
        view.layers = nn.ModuleList(list(model.layers)[first:])
    else:
        view.encoder = shallow(model.encoder)
        view.encoder.layer = nn.ModuleList(list(model.encoder.layer)[first:])
        view.embeddings = PassThrough()  # BERT adds positions and a LayerNorm to inputs_embeds; skip that
    return view


class LoRALMItemEncoder(ItemEncoder):
    """Texts -> LoRA-wrapped LM -> pooled hidden state -> Linear -> D-vectors; padding stays zero."""

    encodes_batch_items = True  # training scores against the batch's items, not the whole catalogue
    adds_items_by_text = True
    external_state_prefixes = ("language_model.",)  # the LM by name, its LoRA weights as a peft adapter

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
        lora_layers: int | None = None,
        train_chunk_size: int = 512,
    ):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        if pooling not in ("mean", "last_token"):
            raise ValueError(f"pooling {pooling!r} is not one of ('mean', 'last_token')")
        self.num_items, self.dim, self.pooling = len(texts), dim, pooling
        self.eval_chunk_size, self.train_chunk_size = eval_chunk_size, train_chunk_size
        if gradient_checkpointing:
            language_model.gradient_checkpointing_enable()
        target_modules = list(lora_target_modules or default_target_modules(language_model))
        total_layers = language_model.config.num_hidden_layers if lora_layers else 0
        if lora_layers is not None and not 1 <= lora_layers <= total_layers:
            raise ValueError(f"lora_layers={lora_layers} must be between 1 and the LM's {total_layers} layers")
        self.first_tuned = total_layers - lora_layers if lora_layers else 0
        lora = LoraConfig(
            r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            target_modules=tuned_module_names(language_model, target_modules, self.first_tuned)
            if lora_layers
            else target_modules,
        )
        self.language_model = get_peft_model(language_model, lora)  # freezes the LM, adds the adapters
        hidden = language_model.config.hidden_size
        self.project = nn.Linear(hidden, dim)
        nn.init.normal_(self.project.weight, std=initializer_range)
        nn.init.zeros_(self.project.bias)
        self.tokenizer, self.max_length = tokenizer, max_length
        # Tokenised once: [N + 1, S] ids and mask, row 0 (padding) empty.
        ids, mask = self._tokenise(texts)
        self.register_buffer("token_ids", torch.cat([ids.new_zeros(1, ids.shape[1]), ids]), persistent=False)
        self.register_buffer("token_mask", torch.cat([mask.new_zeros(1, mask.shape[1]), mask]), persistent=False)
        object.__setattr__(self, "top", None)  # not a submodule: it only re-uses the LM's own modules
        if self.first_tuned:
            # The layers below the first tuned one are frozen and see no adapter: their output never changes,
            # so compute it once; a step then runs only the tuned layers. [N + 1, S, H]
            self.register_buffer("prefix_states", self._frozen_prefix(torch.arange(self.num_items + 1)), False)
            object.__setattr__(self, "top", top_layers_view(self.language_model.get_base_model(), self.first_tuned))

    def _tokenise(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> ids and mask [M, S], right-padded (the last real token of row i sits at mask.sum() - 1)."""
        tokens = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        )
        ids, mask = tokens["input_ids"], tokens["attention_mask"]
        if self.tokenizer.padding_side == "left":  # move padding right
            order = torch.sort((mask == 0).long(), dim=1, stable=True, descending=False).indices
            ids, mask = ids.gather(1, order), mask.gather(1, order)
        return ids, mask

    def add_items_by_text(self, texts: Sequence[str]) -> None:
        """New items (ids N + 1..N + M) from their texts, usable at once: cold start without retraining."""
        ids, mask = self._tokenise(texts)  # [M, S']
        device = self.token_ids.device
        width = max(ids.shape[1], self.token_ids.shape[1])

        def widen(tensor: torch.Tensor) -> torch.Tensor:  # right-pad the token axis (dim 1) to `width`
            pad = tensor.new_zeros(tensor.shape[0], width - tensor.shape[1], *tensor.shape[2:])
            return torch.cat([tensor, pad], dim=1)

        first_new = self.num_items + 1
        self.token_ids = torch.cat([widen(self.token_ids), widen(ids.to(device))])
        self.token_mask = torch.cat([widen(self.token_mask), widen(mask.to(device))])
        self.num_items += len(texts)
        if self.top is not None:
            new = self._frozen_prefix(torch.arange(first_new, self.num_items + 1, device=device))
            self.prefix_states = torch.cat([widen(self.prefix_states), widen(new)])

    @torch.no_grad()
    def _frozen_prefix(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Hidden states entering the first tuned layer, [M, S, H] for item ids [M]."""
        base = self.language_model.get_base_model()
        training, states = base.training, []
        base.eval()
        for chunk in item_ids.split(self.eval_chunk_size):
            output = base(
                input_ids=self.token_ids[chunk], attention_mask=self.token_mask[chunk], output_hidden_states=True
            )
            states.append(output.hidden_states[self.first_tuned])  # the input of the first tuned layer
        base.train(training)
        return torch.cat(states)

    def save_files(self, folder: Path) -> None:
        """The LoRA adapter as ``folder/adapter`` in peft's format, replaced whole or not at all."""
        temporary = Path(tempfile.mkdtemp(dir=folder, prefix=".adapter-"))
        self.save_adapter(temporary)
        if (Path(folder) / ADAPTER).exists():
            shutil.rmtree(Path(folder) / ADAPTER)
        os.replace(temporary, Path(folder) / ADAPTER)

    def load_files(self, folder: Path) -> None:
        if not (Path(folder) / ADAPTER / "adapter_config.json").exists():
            raise FileNotFoundError(
                f"{Path(folder) / ADAPTER / 'adapter_config.json'} is missing: a LoRA model needs its peft adapter "
                "folder"
            )
        self.load_adapter(Path(folder) / ADAPTER)

    def save_adapter(self, folder) -> None:
        """The LoRA weights in peft's own format (adapter_config.json + adapter_model.safetensors)."""
        self.language_model.save_pretrained(str(folder))

    def load_adapter(self, folder) -> None:
        """Load LoRA weights saved by :meth:`save_adapter` (or any peft adapter of the same shape)."""
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

    def encode_real(self, item_ids: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """Distinct real item ids [U] (no padding) -> [U, D]. Items are sorted by text length and run in chunks
        padded to their own longest text, so short texts do not pay for the longest one."""
        lengths = self.token_mask[item_ids].sum(dim=1)  # [U]
        order = lengths.argsort()
        pooled = torch.cat([self._pool(item_ids[chunk]) for chunk in order.split(chunk_size or self.train_chunk_size)])
        return self.project(pooled[order.argsort()])  # [U, D]

    def _pool(self, item_ids: torch.Tensor) -> torch.Tensor:
        """[C] item ids -> [C, H] pooled LM states."""
        mask = self.token_mask[item_ids]  # [C, S]
        width = int(mask.sum(dim=1).max())
        mask = mask[:, :width]
        if self.top is None:
            states = self.language_model(input_ids=self.token_ids[item_ids, :width], attention_mask=mask)
        else:
            states = self.top(inputs_embeds=self.prefix_states[item_ids, :width], attention_mask=mask)
        states = states.last_hidden_state  # [C, S, H]
        if self.pooling == "mean":
            return (states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return states[torch.arange(len(item_ids), device=mask.device), mask.sum(1) - 1]

    def encode(self, item_ids: torch.Tensor) -> torch.Tensor:
        unique, inverse = item_ids.unique(return_inverse=True)  # [U], [...]
        real = unique > 0
        vectors = torch.zeros(len(unique), self.dim, device=unique.device, dtype=self.project.weight.dtype)
        if real.any():
            # The LM's dropouts (its own and LoRA's) draw from torch's global RNG: seeded by the step, every slice
            # of a global batch that encodes the same items draws the same masks (HybridRecommender.batch_items).
            with noise.shared_global_rng(unique.device, "language-model"):
                encoded = self.encode_real(unique[real])  # [U', D]
            vectors = vectors.index_put((real.nonzero()[:, 0],), encoded)
        return vectors[inverse]  # [..., D]

    def item_table(self) -> torch.Tensor:
        """The whole catalogue in chunks [N + 1, D]; no gradients (evaluation and inference only)."""
        with torch.no_grad():
            ids = torch.arange(1, self.num_items + 1, device=self.token_ids.device)
            table = [self.encode_real(ids, self.eval_chunk_size)]
        return torch.cat([table[0].new_zeros(1, self.dim), *table])
