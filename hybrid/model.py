"""HybridRecommender: item encoder + SASRec backbone + ReaRec reasoning head -> user vectors and scores.

Shape legend: B batch, L history length, K reasoning steps (S = K + 1 states), D hidden size, N items
(scores have N + 1 columns, column 0 is padding and always -inf).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from encoders import IDItemEncoder, ItemEncoder
from encoders.hybrid import HybridItemEncoder
from encoders.lm_lora import LoRALMItemEncoder
from encoders.text import TextItemEncoder, load_or_encode_texts, resolve_text_model
from hybrid.config import ModelConfig
from hybrid.errors import ConfigError, DataError
from hybrid.recommend import ItemCatalogue, Recommendation, recommend
from reasoning import noise
from reasoning.backbone import Backbone, BackboneConfig
from reasoning.objectives import erl_loss, item_logits, prl_loss, state_cross_entropy
from reasoning.rearec import ReasoningHead


@dataclass
class RecommenderOutput:
    """What ``forward`` returns."""

    user_vector: torch.Tensor  # [B, D] the vector items are ranked by
    user_states: torch.Tensor  # [B, S, D] r_0..r_K
    loss: torch.Tensor | None = None  # training objective when targets are given
    loss_parts: dict[str, torch.Tensor] = field(default_factory=dict)  # its terms, detached, for logging


def build_item_encoder(
    config: ModelConfig,
    num_items: int,
    text_vectors: torch.Tensor | None = None,  # [N, T] frozen text vectors ('text' / 'hybrid')
    warm_items: torch.Tensor | None = None,  # [N + 1] bool, items with training interactions ('hybrid')
    item_texts: list[str] | None = None,  # texts of items 1..N ('lm_lora')
) -> ItemEncoder:
    if config.item_encoder == "id":
        return IDItemEncoder(num_items, config.hidden_size, config.initializer_range)
    if config.item_encoder == "lm_lora":
        if item_texts is None or len(item_texts) != num_items:
            raise ValueError("item_encoder='lm_lora' needs the text of every item")
        from transformers import AutoModel, AutoTokenizer

        path = resolve_text_model(config.lm_model)
        return LoRALMItemEncoder(
            item_texts,
            AutoModel.from_pretrained(path),
            AutoTokenizer.from_pretrained(path),
            config.hidden_size,
            pooling=config.lm_pooling,
            lora_r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            lora_target_modules=config.lora_target_modules.split(",") if config.lora_target_modules else None,
            max_length=config.lm_max_length,
            lora_layers=config.lora_layers,
            gradient_checkpointing=config.gradient_checkpointing,
            initializer_range=config.initializer_range,
        )
    if text_vectors is None:
        raise ValueError(f"item_encoder={config.item_encoder!r} needs the items' text vectors")
    if text_vectors.shape[0] != num_items:
        raise ValueError(f"{text_vectors.shape[0]} text vectors for {num_items} items")
    text = TextItemEncoder(
        text_vectors,
        config.hidden_size,
        config.text_adaptor,
        config.text_experts,
        config.text_adaptor_dropout,
        config.text_pca_dim,
        config.initializer_range,
    )
    if config.item_encoder == "text":
        return text
    ids = IDItemEncoder(num_items, config.hidden_size, config.initializer_range)
    return HybridItemEncoder(ids, text, config.fusion, warm_items, config.id_dropout)


def item_text_vectors(config: ModelConfig, item_texts: list[str], progress: bool = True) -> torch.Tensor | None:
    """Frozen text vectors [N, T] of the items for 'text'/'hybrid' encoders (cached on disk), else None."""
    if config.item_encoder == "id":
        return None
    missing = sum(not text for text in item_texts)
    if missing == len(item_texts):
        raise DataError(
            f"item_encoder={config.item_encoder!r} needs item texts, but the dataset has none. Give an item "
            "table (--item_file, or a .item file with titles) or use --item_encoder id."
        )
    if config.item_encoder == "lm_lora":  # tokenised by its encoder, tuned in training
        return None
    return load_or_encode_texts(
        item_texts, config.text_model, config.text_revision, batch_size=config.text_batch_size, progress=progress
    )


def warm_item_mask(train_history: torch.Tensor, train_target: torch.Tensor, num_items: int) -> torch.Tensor:
    """[N + 1] bool: items seen in any training row (history or target); padding is never warm."""
    warm = torch.zeros(num_items + 1, dtype=torch.bool)
    warm[train_history.flatten()] = True
    warm[train_target] = True
    warm[0] = False
    return warm


class HybridRecommender(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="hybrid-rearec",
    tags=["recommendation", "sequential-recommendation", "rearec"],
):
    """Item encoder + SASRec backbone + ReaRec head, with its item catalogue once trained or loaded.

    ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` use the folder format of ``hybrid/pretrained.py``.
    """

    def __init__(
        self,
        config: ModelConfig,
        num_items: int,
        max_history: int = 50,
        text_vectors: torch.Tensor | None = None,
        warm_items: torch.Tensor | None = None,
        item_texts: list[str] | None = None,
        item_encoder: ItemEncoder | None = None,  # a ready encoder (tests build tiny LMs in code)
    ):
        super().__init__()
        self.config = config
        self.catalogue: ItemCatalogue | None = None  # raw ids/texts/titles of items 1..N, for recommend()
        self.results: dict | None = None  # test metrics, protocol and training config, for the model card
        self.item_encoder = item_encoder or build_item_encoder(config, num_items, text_vectors, warm_items, item_texts)
        self.backbone = Backbone(
            BackboneConfig(
                hidden_size=config.hidden_size,
                num_layers=config.num_layers,
                num_heads=config.num_heads,
                inner_size=config.inner_size,
                hidden_dropout=config.hidden_dropout,
                attention_dropout=config.attention_dropout,
                layer_norm_eps=config.layer_norm_eps,
                max_history=max_history,
                initializer_range=config.initializer_range,
                bidirectional=config.backbone == "bert4rec",
            )
        )
        self.reasoning = ReasoningHead(
            config.hidden_size,
            config.reasoning_steps,
            config.initializer_range,
            config.separate_reasoning_norm,
            config.layer_norm_eps,
            config.reasoning_dropout,
        )
        # Training-softmax candidates (set_softmax_items): their ids [C + 1] and each item's row among them [N + 1].
        self.register_buffer("softmax_ids", None, persistent=False)
        self.register_buffer("softmax_rows", None, persistent=False)

    def set_softmax_items(self, items: torch.Tensor | None) -> None:
        """Train the softmax over ``items`` only ([N + 1] bool; None: every item). Items left out, e.g. cold
        items that do not exist yet when the model is trained, are neither negatives nor targets."""
        if items is None:
            self.softmax_ids = self.softmax_rows = None
            return
        keep = items.to(torch.bool).clone()
        keep[0] = True  # padding stays row 0 (masked in the loss)
        ids = keep.nonzero().squeeze(1)  # [C + 1]
        rows = torch.zeros(keep.shape[0], dtype=torch.long, device=ids.device)
        rows[ids] = torch.arange(ids.shape[0], device=ids.device)
        self.softmax_ids, self.softmax_rows = ids, rows

    @property
    def num_items(self) -> int:
        return self.item_encoder.num_items

    def history_inputs(
        self,
        history: torch.Tensor,
        history_vectors: torch.Tensor | None = None,  # [B, L, D] when the caller encoded the items already
        cloze: torch.Tensor | None = None,  # [B, L] bool: history items replaced by [MASK] (BERT4Rec training)
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Transformer inputs [B, L', D] and key validity [B, L'] of left-padded item ids [B, L]; BERT4Rec
        appends its [MASK] token (L' = L + 1), whose output is r_0."""
        key_valid = history > 0  # [B, L]
        vectors = self.item_encoder.encode(history) if history_vectors is None else history_vectors
        mask_token = self.backbone.mask_token
        if mask_token is not None:
            if cloze is not None:
                vectors = torch.where(cloze[..., None], mask_token.to(vectors.dtype), vectors)
            appended = mask_token.to(vectors.dtype).expand(vectors.shape[0], 1, -1)  # [B, 1, D]
            vectors = torch.cat([vectors, appended], dim=1)
            key_valid = torch.cat([key_valid, key_valid.new_ones(key_valid.shape[0], 1)], dim=1)
        return self.backbone.embed(vectors, key_valid), key_valid

    def user_states(
        self,
        history: torch.Tensor,
        steps: int | None = None,
        noisy_view: bool = False,
        history_vectors: torch.Tensor | None = None,  # [B, L, D] when the caller encoded the items already
        cloze: torch.Tensor | None = None,  # [B, L] bool (BERT4Rec training)
        return_prefill: bool = False,
        share_history: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Left-padded item ids [B, L] -> reasoning states r_0..r_steps [B, steps + 1, D] (and, with
        ``return_prefill``, the last-layer states of every input position). ``noisy_view`` with
        ``share_history`` returns both PRL views [2B, ...] of a batch given once (see ReasoningHead)."""
        inputs, key_valid = self.history_inputs(history, history_vectors, cloze)  # [B, L', D]
        output = self.reasoning(
            self.backbone,
            inputs,
            key_valid,
            steps,
            noisy_view=noisy_view,
            noise_std=self.config.prl_noise_std,
            noisy_from_clean=self.config.prl_noisy_from_clean,
            return_prefill=return_prefill,
            share_history=share_history,
        )
        # Cosine scoring normalises the outputs only: each step's input stays the raw state, as trained.
        if return_prefill:
            return self.unit(output[0]), self.unit(output[1])
        return self.unit(output)

    def unit(self, vectors: torch.Tensor) -> torch.Tensor:
        """Vectors [..., D] in scoring space: L2-normalised under cosine scoring, unchanged under dot."""
        return F.normalize(vectors, dim=-1) if self.config.score_similarity == "cosine" else vectors

    def scoring_table(self) -> torch.Tensor:
        """The item table [N + 1, D] that user vectors are scored against (unit rows under cosine scoring)."""
        return self.unit(self.item_encoder.item_table())

    @property
    def trains_cloze(self) -> bool:
        """Whether a training forward masks history items for BERT4Rec's cloze loss."""
        return self.training and self.config.backbone == "bert4rec" and self.config.cloze_prob > 0

    def cloze_positions(self, history: torch.Tensor) -> torch.Tensor | None:
        """[B, L] bool: real history items masked for BERT4Rec's cloze loss (training only), else None. Drawn
        at full max_history width and right-aligned, so a row's mask does not depend on the batch's width
        (or on how the global batch is split over processes)."""
        if not self.trains_cloze:
            return None
        width = self.backbone.config.max_history
        # Own stream: the training loop redraws them for the whole global batch to count them (cloze_per_row).
        draw = noise.rand((history.shape[0], width), history.device, stream="cloze")  # [B, max_history]
        return (draw[:, width - history.shape[1] :] < self.config.cloze_prob) & (history > 0)  # [B, L]

    def cloze_per_row(self, history: torch.Tensor) -> float | None:
        """Masked positions per row of a WHOLE global batch [G, L] (call inside its ``global_batch_noise``
        at offset 0): the forward divides its masked CEs by (its rows x this), so the cloze loss is the global
        batch's mean over its masked positions however the batch is split. None when nothing is masked."""
        cloze = self.cloze_positions(history)
        return None if cloze is None else float(cloze.sum()) / len(history)

    def aggregate(self, states: torch.Tensor) -> torch.Tensor:
        """States [B, S, D] -> the user vector [B, D]: ERL averages all states, PRL/SASRec take the last."""
        if self.config.reasoning_steps > 0 and self.config.reasoning_method == "erl":
            return states.mean(dim=1)
        return states[:, -1]

    def user_vectors(self, history: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Left-padded item ids [B, L] -> user vectors [B, D] (``steps`` below the trained K is allowed;
        unset: the configured ``inference_steps``, else all trained steps)."""
        steps = self.config.inference_steps if steps is None else steps
        return self.aggregate(self.user_states(history, steps))

    def score(self, user_vector: torch.Tensor, item_table: torch.Tensor | None = None) -> torch.Tensor:
        """Scores [B, N + 1] against every item (``item_table`` from ``scoring_table``); padding column -inf."""
        return item_logits(user_vector, self.scoring_table() if item_table is None else item_table)

    def softmax_table(self, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The training softmax's item table, ``target`` renumbered into its rows, and the renumbering (None
        when the table holds every item): [N + 1, D] or, after ``set_softmax_items``, [C + 1, D]."""
        table = self.scoring_table()  # [N + 1, D]
        if self.softmax_ids is None:
            return table, target, None
        renumber = self.softmax_rows  # seen items only: targets renumbered into them
        if not bool(torch.all(renumber[target] > 0)):
            raise ValueError("a training target is outside the training-softmax items (set_softmax_items)")
        return table[self.softmax_ids], renumber[target], renumber

    def all_positions_forward(self, history: torch.Tensor, target: torch.Tensor) -> RecommenderOutput:
        """Plain SASRec's causal loss at every position: inputs [B, L], next items [B, L] (0 at padding).
        A row's loss is the sum of its targets' cross-entropies / max_history, so the batch loss weighs every
        target alike however the batch is split over processes or micro-batches."""
        if self.config.loss_positions != "all" or getattr(self.item_encoder, "encodes_batch_items", False):
            raise ValueError(
                "per-position targets [B, L] need a model configured with loss_positions='all' and an id, text or "
                "hybrid item encoder"
            )
        inputs, key_valid = self.history_inputs(history)  # [B, L, D]
        hidden, _ = self.backbone.prefill(inputs, key_valid)  # [B, L, D]: position i sees items <= i only
        states = self.unit(hidden)  # [B, L, D]
        real = target > 0  # [B, L]
        table, labels, _ = self.softmax_table(target[real])  # labels [M]
        mean = state_cross_entropy(states[real], table, labels, self.config.temperature, self.config.loss_chunk_size)
        loss = mean * real.sum() / (history.shape[0] * self.backbone.config.max_history)
        return RecommenderOutput(user_vector=states[:, -1], user_states=states[:, -1:], loss=loss)

    def batch_items(
        self, history: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Vectors of the batch's distinct items [C + 1, D] (row 0 padding) and history [B, L] and target [B]
        renumbered into them."""
        ids = torch.cat([history.flatten(), target, target.new_zeros(1)])  # the 0 makes padding row 0
        candidates, local = ids.unique(return_inverse=True)  # sorted: candidates[0] == 0
        local = local[:-1]
        table = self.item_encoder.encode(candidates)  # [C + 1, D]
        return table, local[: history.numel()].view_as(history), local[history.numel() :]

    def forward(
        self,
        history: torch.Tensor,
        target: torch.Tensor | None = None,
        contrastive: bool = False,
        cloze_per_row: float | None = None,
    ) -> RecommenderOutput:
        """``contrastive`` turns on PRL's noisy second view (after its warm-up). A target [B, L] (next item at
        every position, 0 at padding) trains with the per-position loss of ``loss_positions='all'``.
        ``cloze_per_row``: see :meth:`cloze_per_row`; None averages over this forward's masked positions."""
        config = self.config
        if target is not None and target.ndim == 2:
            return self.all_positions_forward(history, target)
        two_views = (
            contrastive
            and target is not None
            and config.reasoning_steps > 0
            and config.reasoning_method == "prl"
            and config.prl_contrastive_weight > 0
        )
        history_vectors, table = None, None
        if target is not None and getattr(self.item_encoder, "encodes_batch_items", False):
            # An LM encoder encodes only the batch's items; the softmax runs over them (in-batch candidates).
            table, history, target = self.batch_items(history, target)  # [C + 1, D], local ids
            history_vectors = table[history]  # [B, L, D] raw vectors feed the Transformer
            table = self.unit(table)
        cloze = self.cloze_positions(history) if target is not None else None  # [B, L] or None
        prefill = None  # [B, L', D] every position's output, only for the cloze loss
        if two_views:
            # 'reasoning': the history is encoded once and only the steps run twice; 'sequence' (released
            # code): the whole batch is encoded twice.
            shared = config.prl_noisy_view == "reasoning"
            twice = lambda x: x if shared or x is None else torch.cat([x, x])  # noqa: E731
            both = self.user_states(
                twice(history),
                noisy_view=True,
                history_vectors=twice(history_vectors),
                cloze=twice(cloze),
                return_prefill=cloze is not None,
                share_history=shared,
            )
            if cloze is not None:
                both, prefill = both[0], both[1][: len(history)]
            states, noisy_states = both.chunk(2)  # [B, S, D] each
        else:
            states = self.user_states(
                history, history_vectors=history_vectors, cloze=cloze, return_prefill=cloze is not None
            )
            if cloze is not None:
                states, prefill = states
            noisy_states = None
        output = RecommenderOutput(user_vector=self.aggregate(states), user_states=states)
        if target is None:
            return output
        renumber = None  # item id -> row of the loss table, when the table holds a subset of the items
        if table is None:
            table, target, renumber = self.softmax_table(target)
        if config.reasoning_steps == 0:
            output.loss = state_cross_entropy(
                output.user_vector, table, target, config.temperature, config.loss_chunk_size
            )
        elif config.reasoning_method == "erl":
            output.loss, output.loss_parts = erl_loss(
                states,
                table,
                target,
                config.temperature,
                config.erl_kl_weight,
                config.erl_kl_pairs,
                config.loss_chunk_size,
            )
        else:
            output.loss, output.loss_parts = prl_loss(
                states,
                table,
                target,
                config.temperature,
                config.prl_alpha,
                config.prl_step_weight,
                config.prl_step_reduction,
                noisy_states,
                config.prl_contrastive_weight,
                config.prl_contrastive_similarity,
                config.prl_contrastive_temperature,
                config.loss_chunk_size,
            )
        if cloze is not None and cloze.any():
            # BERT4Rec's cloze objective: predict the masked history items from their output states.
            masked = prefill[:, : history.shape[1]][cloze]  # [M, D]
            labels = history[cloze] if renumber is None else renumber[history[cloze]]  # [M]
            cloze_loss = state_cross_entropy(masked, table, labels, config.temperature, config.loss_chunk_size)
            if cloze_per_row:  # the global batch's masked positions, not this slice's, divide the sum
                cloze_loss = cloze_loss * (len(masked) / (len(history) * cloze_per_row))
            output.loss = output.loss + config.cloze_weight * cloze_loss
            output.loss_parts["cloze"] = cloze_loss.detach()
        return output

    # ------------------------------------------------------------------------------------ use and share
    def recommend(
        self, histories: Sequence[Sequence[str]], k: int = 10, exclude_history: bool = False
    ) -> list[Recommendation]:
        """Top-``k`` item ids, titles and scores for each history of item ids or exact titles (oldest first)."""
        if self.catalogue is None:
            raise ValueError("this model has no item catalogue; load one with from_pretrained or set .catalogue")
        return recommend(self, self.catalogue, histories, k=k, exclude_history=exclude_history)

    def add_items(
        self, texts: Sequence[str], item_ids: Sequence[str] | None = None, titles: Sequence[str] | None = None
    ) -> list[str]:
        """Add items known only by their text, usable at once (cold start without retraining). Returns their ids
        (default 'new-1', 'new-2', ...)."""
        if self.config.item_encoder == "id":
            raise ConfigError(
                "an ID-only model (item_encoder='id') has no vector for an item it never saw; train a 'text', "
                "'hybrid' or 'lm_lora' model to add items by text."
            )
        if self.catalogue is None:
            raise ValueError("this model has no item catalogue; load one with from_pretrained or set .catalogue")
        texts = [str(text) for text in texts]
        vectors = None
        if self.config.item_encoder in ("text", "hybrid") and all(t.strip() for t in texts):
            vectors = load_or_encode_texts(texts, self.config.text_model, self.config.text_revision, progress=False)
        new_ids = self.catalogue.add(texts, item_ids, titles)  # validates before anything changes
        self.item_encoder.add_items(texts if vectors is None else vectors)
        return new_ids

    def _save_pretrained(self, save_directory: Path) -> None:
        from hybrid.hub import model_card
        from hybrid.pretrained import save_folder

        save_folder(self, save_directory)
        model_card(self).save(Path(save_directory) / "README.md")

    def generate_model_card(self, *args, **kwargs):
        from hybrid.hub import model_card

        return model_card(self)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        **kwargs,
    ) -> HybridRecommender:
        """Load a folder written by ``save_pretrained``, or download a Hub repo holding one. Strict: a missing or
        unexpected weight is an error."""
        from hybrid.pretrained import ModelFileError, load_folder

        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        folder = Path(pretrained_model_name_or_path)
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            name = str(pretrained_model_name_or_path)
            try:
                folder = Path(
                    snapshot_download(
                        name, revision=revision, token=token, cache_dir=cache_dir, local_files_only=local_files_only
                    )
                )
            except Exception as error:  # offline, unknown repo, no access: one clear message
                raise ModelFileError(
                    f"{name!r} is neither a local folder nor a Hub repo that could be downloaded "
                    f"({type(error).__name__}: {error}). Check the path, the repo id, your network and HF_TOKEN."
                ) from None
        return load_folder(cls, folder)
