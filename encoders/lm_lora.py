"""A language model tuned with LoRA as the item encoder (MoRec style, trained end to end).

Item texts are tokenised once. In training only the items of the batch go through the LM (the caller scores
against those, see ``encodes_batch_items``); in evaluation the whole catalogue is encoded in chunks without
gradients. Any transformers AutoModel works, encoder (BERT-like) or decoder-only (GPT-2, Qwen, Llama).

With ``lora_layers`` LoRA sits on the top layers only. The layers below are frozen and see no adapter, so
their output never changes: it is computed once for every item (the hidden states entering the first tuned
layer, ``prefix_states`` [N + 1, S, H]) and a step runs only the tuned layers on it. The frozen layers run
without dropout (as in evaluation), the tuned ones as the model's mode says, so the cached path gives the
full model's vectors, loss and gradients (tests/test_lm_lora.py, to 1e-5 in fp32).

The LM's dropout modules (its own and LoRA's) are swapped for ``foundation.dropout.HashedDropout``: the same
distribution with masks hashed instead of drawn, half the cost on CPU; functional dropouts inside the LM
(BERT's attention probabilities) still draw from torch's RNG.

Cache precision, measured on the packaged MiniLM (6 layers, LoRA on the top one, 32 tokens, LoRA B random as
if trained) over the first 500 MovieLens-100k titles, against an fp32 cache: an fp16 cache changes the pooled
LM states (mean |x| 0.23, largest 1.42) by at most 3.6e-4, a softmax loss over those items (256 random users,
temperature 0.05, value 45.44) by 4.0e-4 (9e-6 of it) and its gradients by at most 7.5e-4 of the largest;
bfloat16 by 2.7e-3, 2.2e-3 and 5.7e-3. fp16 halves the memory and loses nothing next to training's own noise,
so it is the default (`cache_dtype`); states that overflow fp16 (large LMs have outliers beyond 65504) raise an
error naming bfloat16/float32. The whole ML-100k catalogue (1682 items) caches in 0.04 GB.

Shape legend: N items (without padding), U distinct items of a batch, S tokens, H LM hidden size, D item size.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..foundation import noise
from ..foundation.dropout import use_hashed_dropout
from ..foundation.errors import ConfigError
from .base import ItemEncoder

ADAPTER = "adapter"  # beside a saved model's weights: the LoRA adapter folder
CACHE_LABEL = "Caching LM layers below the first tuned one"
CACHE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}

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
    raise ConfigError(
        f"no known attention projections in {type(model).__name__}: pass --lora_target_modules, some of its "
        f"linear layers' names ({linear_names(model)})."
    )


def linear_names(model: nn.Module, shown: int = 12) -> str:
    """The distinct last names of a model's linear layers, for a message."""
    names = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear)})
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


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
    raise ConfigError(
        f"lora_layers needs a BERT-like or Llama/Qwen-like model, not {type(model).__name__}: leave --lora_layers "
        "unset to tune every layer."
    )


def tuned_module_names(model: nn.Module, suffixes: Sequence[str], first: int) -> list[str]:
    """Full names of the `suffixes` modules inside layers first..L-1 (peft's own layers_to_transform does not
    match a bare AutoModel, whose layer names have no prefix)."""
    owner, attribute = layer_list(model)
    tuned = {id(m) for layer in list(getattr(owner, attribute))[first:] for m in layer.modules()}
    return [
        name for name, module in model.named_modules() if id(module) in tuned and name.rsplit(".", 1)[-1] in suffixes
    ]


def shallow(module: nn.Module) -> nn.Module:
    """A new module object whose children are the same modules (replacing one changes only the copy)."""
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    return clone


def sliced_config(config, start: int, stop: int):
    """The model config of layers start..stop-1: decoder-only models index `layer_types` (full or sliding
    attention) by the position in their layer list, so the view's list must start at layer `start`."""
    config = copy.deepcopy(config)
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = list(config.layer_types)[start:stop]
    config.num_hidden_layers = stop - start
    return config


def layers_view(model: nn.Module, start: int, stop: int) -> nn.Module:
    """A model that shares `model`'s modules but runs only layers start..stop-1. From a layer above the first
    it takes the hidden state entering layer `start` as `inputs_embeds` (no embedding: BERT would add
    positions and a LayerNorm); below the top it returns the state leaving layer stop-1 (no final norm).
    Decoder-only models still make position ids 0..S-1, the rotary embedding and the causal mask from it,
    as the whole model does for right-padded rows. Neither pools (the encoder pools itself)."""
    owner, attribute = layer_list(model)
    every = list(getattr(owner, attribute))
    view = shallow(model)
    view.config = sliced_config(model.config, start, stop)
    layers = nn.ModuleList(every[start:stop])
    if owner is model:  # decoder-only: inputs_embeds go straight into the layers
        view.layers = layers
        if stop < len(every) and isinstance(getattr(view, "norm", None), nn.Module):
            view.norm = nn.Identity()
    else:
        view.encoder = shallow(model.encoder)
        view.encoder.layer = layers
        if start:
            view.embeddings = PassThrough()
    if isinstance(getattr(view, "pooler", None), nn.Module):
        view.pooler = None
    return view


def enable_checkpointing(model: nn.Module) -> None:
    """Recompute the LM layers' activations in backward. Non-reentrant, so the LoRA weights get gradients
    although the layers' input (the frozen cache) needs none."""
    settings = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 (the old name is deprecated)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=settings)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=settings)


def first_tuned_layer(model: nn.Module, lora_layers: int | None) -> int:
    """Index of the lowest layer with LoRA (0: every layer)."""
    if lora_layers is None:
        return 0
    total = model.config.num_hidden_layers
    if not 1 <= lora_layers <= total:
        raise ConfigError(
            f"lora_layers={lora_layers} must be between 1 and the LM's {total} layers: lower --lora_layers."
        )
    return total - lora_layers


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
        cache_frozen_layers: bool = True,  # False: rerun the frozen layers every step (no cache memory)
        cache_dtype: str = "float16",
        cache_max_gb: float = 8.0,
        progress: bool = True,  # a progress bar while the cache is computed
    ):
        super().__init__()
        if pooling not in ("mean", "last_token"):
            raise ValueError(f"pooling {pooling!r} is not one of ('mean', 'last_token')")
        if cache_dtype not in CACHE_DTYPES:
            raise ValueError(f"cache_dtype {cache_dtype!r} is not one of {tuple(CACHE_DTYPES)}")
        self.num_items, self.dim, self.pooling = len(texts), dim, pooling
        self.eval_chunk_size, self.train_chunk_size = eval_chunk_size, train_chunk_size
        self.cache_dtype, self.cache_max_gb = CACHE_DTYPES[cache_dtype], cache_max_gb
        self.first_tuned = first_tuned_layer(language_model, lora_layers)
        if gradient_checkpointing:
            enable_checkpointing(language_model)
        self.language_model = self._wrap(language_model, lora_r, lora_alpha, lora_dropout, lora_target_modules)
        use_hashed_dropout(self.language_model)  # its dropout modules (LoRA's too), with masks half as costly
        language_model.config.use_cache = False  # an item encoder never generates: no key/value cache
        self.project = nn.Linear(language_model.config.hidden_size, dim)
        nn.init.normal_(self.project.weight, std=initializer_range)
        nn.init.zeros_(self.project.bias)
        self.tokenizer, self.max_length = tokenizer, max_length
        # Tokenised once: [N + 1, S] ids and mask, row 0 (padding) empty.
        ids, mask = self._tokenise(texts)
        self.register_buffer("token_ids", torch.cat([ids.new_zeros(1, ids.shape[1]), ids]), persistent=False)
        self.register_buffer("token_mask", torch.cat([mask.new_zeros(1, mask.shape[1]), mask]), persistent=False)
        self.register_buffer("prefix_states", None, persistent=False)  # [N + 1, S, H], never saved
        object.__setattr__(self, "views", None)  # (frozen layers, tuned layers); not submodules: shared modules
        if self.first_tuned:
            base, total = self.language_model.get_base_model(), language_model.config.num_hidden_layers
            views = (layers_view(base, 0, self.first_tuned), layers_view(base, self.first_tuned, total))
            object.__setattr__(self, "views", views)
            self.train(self.training)  # the frozen layers in eval mode before they fill the cache
            if cache_frozen_layers:
                self.check_cache_budget(self.num_items + 1, self.token_ids.shape[1])
                self.prefix_states = self._frozen_prefix(torch.arange(self.num_items + 1), progress)

    def _wrap(self, language_model: nn.Module, r: int, alpha: int, dropout: float, targets) -> nn.Module:
        """The LM with LoRA on `targets` (default: its attention projections) in the tuned layers; freezes
        everything else."""
        from peft import LoraConfig, get_peft_model

        targets = list(targets or default_target_modules(language_model))
        if self.first_tuned:
            targets = tuned_module_names(language_model, targets, self.first_tuned)
        config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets)
        with warnings.catch_warnings():  # peft probes transformers' renamed is_gradient_checkpointing by name
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
            try:
                return get_peft_model(language_model, config)
            except ValueError as error:  # peft: no module matched the target names
                raise ConfigError(
                    f"lora_target_modules={','.join(targets)!r} names no layer of {type(language_model).__name__} "
                    f"({str(error).splitlines()[0][:200]}). Its linear layers: {linear_names(language_model)}."
                ) from None

    def train(self, mode: bool = True) -> LoRALMItemEncoder:
        super().train(mode)
        if self.views is not None:  # the views' own flags follow; the frozen layers never drop out (as cached)
            frozen, tuned = self.views
            tuned.train(mode)
            frozen.eval()
        return self

    def cache_gb(self, rows: int, width: int) -> float:
        """Size of a cache of `rows` items x `width` tokens, in GB (2^30 bytes)."""
        hidden = self.language_model.get_base_model().config.hidden_size
        return rows * width * hidden * self.cache_dtype.itemsize / 2**30

    def check_cache_budget(self, rows: int, width: int) -> None:
        """Refuse a cache over ``cache_max_gb`` before computing any of it."""
        needed = self.cache_gb(rows, width)
        if needed > self.cache_max_gb:
            dtype = str(self.cache_dtype).removeprefix("torch.")
            raise ConfigError(
                f"the cache of the frozen LM layers needs {needed:.2f} GB ({rows} items x {width} tokens x "
                f"{self.language_model.get_base_model().config.hidden_size} hidden x {dtype}), over "
                f"lm_cache_max_gb={self.cache_max_gb:g}. Raise lm_cache_max_gb, shorten lm_max_length, use "
                "lm_cache_dtype float16 if it is float32, or set lm_cache_frozen_layers false (the frozen layers "
                "then rerun every step). The size does not depend on how many layers are frozen, only "
                "lora_layers = all layers removes the cache."
            )

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

    def add_items_by_text(self, texts: Sequence[str], progress: bool = False) -> None:
        """New items (ids N + 1..N + M) from their texts, usable at once: cold start without retraining."""
        ids, mask = self._tokenise(texts)  # [M, S']
        device = self.token_ids.device
        width = max(ids.shape[1], self.token_ids.shape[1])

        def widen(tensor: torch.Tensor) -> torch.Tensor:  # right-pad the token axis (dim 1) to `width`
            pad = tensor.new_zeros(tensor.shape[0], width - tensor.shape[1], *tensor.shape[2:])
            return torch.cat([tensor, pad], dim=1)

        if self.prefix_states is not None:
            self.check_cache_budget(self.num_items + 1 + len(texts), width)
        first_new = self.num_items + 1
        self.token_ids = torch.cat([widen(self.token_ids), widen(ids.to(device))])
        self.token_mask = torch.cat([widen(self.token_mask), widen(mask.to(device))])
        self.num_items += len(texts)
        if self.prefix_states is not None:
            new = self._frozen_prefix(torch.arange(first_new, self.num_items + 1, device=device), progress)
            self.prefix_states = torch.cat([widen(self.prefix_states), widen(new)])

    @torch.no_grad()
    def _frozen_prefix(self, item_ids: torch.Tensor, progress: bool = False) -> torch.Tensor:
        """Hidden states entering the first tuned layer, [M, S, H] in the cache dtype, for item ids [M]."""
        states = []
        with tqdm(total=len(item_ids), desc=CACHE_LABEL, unit="item", disable=not progress) as bar:
            for chunk in item_ids.split(self.eval_chunk_size):
                states.append(self._to_cache(self._run_frozen(chunk, self.token_ids.shape[1])))
                bar.update(len(chunk))
        return torch.cat(states)

    def _run_frozen(self, item_ids: torch.Tensor, width: int) -> torch.Tensor:
        """The frozen layers on the first `width` tokens of items [C] -> [C, width, H] in the LM's dtype."""
        with torch.no_grad():
            frozen = self.views[0]
            ids, mask = self.token_ids[item_ids, :width], self.token_mask[item_ids, :width]
            return frozen(input_ids=ids, attention_mask=mask).last_hidden_state

    def _to_cache(self, states: torch.Tensor) -> torch.Tensor:
        cached = states.to(self.cache_dtype)
        if not torch.isfinite(cached).all():
            raise ValueError(
                f"the frozen LM layers' states overflow {self.cache_dtype} (largest {states.abs().max():.3g}); set "
                "lm_cache_dtype to bfloat16 or float32"
            )
        return cached

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
        missing = [key for key in result.missing_keys if "lora_" in key]  # the LM's own weights are never in it
        if missing:
            raise ValueError(f"the adapter in {folder} lacks {len(missing)} LoRA weight(s), e.g. {missing[:2]}")

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
        if self.views is None:
            states = self.language_model(input_ids=self.token_ids[item_ids, :width], attention_mask=mask)
        else:
            states = self.views[1](inputs_embeds=self._tuned_input(item_ids, width), attention_mask=mask)
        states = states.last_hidden_state  # [C, S, H]
        if self.pooling == "mean":
            return (states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return states[torch.arange(len(item_ids), device=mask.device), mask.sum(1) - 1]

    def _tuned_input(self, item_ids: torch.Tensor, width: int) -> torch.Tensor:
        """Hidden states entering the first tuned layer [C, width, H] in the LM's dtype: cached, or recomputed
        when the cache is off."""
        dtype = self.language_model.get_base_model().get_input_embeddings().weight.dtype
        if self.prefix_states is None:
            return self._run_frozen(item_ids, width)
        return self.prefix_states[item_ids, :width].to(dtype)

    def encode(self, item_ids: torch.Tensor) -> torch.Tensor:
        unique, inverse = item_ids.unique(return_inverse=True)  # [U], [...]
        real = unique > 0
        vectors = torch.zeros(len(unique), self.dim, device=unique.device, dtype=self.project.weight.dtype)
        if real.any():
            # The LM's dropouts (its own and LoRA's) draw from torch's global RNG: seeded by the step, every slice
            # of a global batch that encodes the same items draws the same masks (HybridRecommender.batch_items).
            with noise.shared_global_rng(unique.device, "language-model"):
                encoded = self.encode_real(unique[real])  # [U', D]
            # Under autocast (bf16 mixed precision) the LM returns bf16; the table keeps the weights' dtype.
            vectors = vectors.index_put((real.nonzero()[:, 0],), encoded.to(vectors.dtype))
        return vectors[inverse]  # [..., D]

    def item_table(self) -> torch.Tensor:
        """The whole catalogue in chunks [N + 1, D]; no gradients (evaluation and inference only)."""
        with torch.no_grad():
            ids = torch.arange(1, self.num_items + 1, device=self.token_ids.device)
            table = [self.encode_real(ids, self.eval_chunk_size)]
        return torch.cat([table[0].new_zeros(1, self.dim), *table])
