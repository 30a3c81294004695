"""HybridRecommender: item encoder + SASRec backbone + ReaRec reasoning head -> user vectors and scores.

Shape legend: B batch, L history length, K reasoning steps (S = K + 1 states), D hidden size, N items
(scores have N + 1 columns, column 0 is padding and always -inf).
"""

from __future__ import annotations

import numbers
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from ..encoders.base import ItemEncoder
from ..encoders.registry import EncoderInputs, build_encoder, encoder_kind
from ..encoders.text import load_or_encode_texts
from ..foundation import noise
from ..reasoning.backbone import Backbone
from ..reasoning.objectives import ClozeLoss, build_objective, item_logits
from ..reasoning.rearec import ReasoningHead, ReasoningLoop, aggregate
from .config import ModelConfig
from .errors import ConfigError, DataError
from .hub import model_card, push_folder
from .pretrained import (
    HUB_ARGUMENTS,
    PRETRAINED_SETTINGS,
    load_folder,
    model_folder_or_download,
    refuse_unsaveable,
    save_folder,
)
from .recommend import OUT_OF_STEP, ItemCatalogue, Recommendation, recommend


@dataclass
class RecommenderOutput:
    """What ``forward`` returns."""

    user_vector: torch.Tensor  # [B, D] the vector items are ranked by
    user_states: torch.Tensor  # [B, S, D] r_0..r_K
    loss: torch.Tensor | None = None  # training objective when targets are given
    loss_parts: dict[str, torch.Tensor] = field(default_factory=dict)  # its terms, detached, for logging


@dataclass
class TrainingBatch:
    """What one training forward scores: the history fed to the Transformer and the loss's item table, with
    history and targets numbered in that table's rows."""

    history: torch.Tensor  # [B, L] item ids (local ids when the encoder encodes only the batch's items)
    target: torch.Tensor  # [B] item ids, or rows of ``table`` when it is given
    table: torch.Tensor | None  # [C + 1, D] the batch's own items (scoring space); None: the softmax_table
    history_vectors: torch.Tensor | None = None  # [B, L, D] raw history vectors, when encoded with the table
    cloze: torch.Tensor | None = None  # [B, L] bool: history items masked for BERT4Rec's cloze loss


def build_item_encoder(
    config: ModelConfig,
    num_items: int,
    text_vectors: torch.Tensor | None = None,  # [N, T] frozen text vectors ('text' / 'hybrid')
    warm_items: torch.Tensor | None = None,  # [N + 1] bool, items with training interactions (text PCA, 'hybrid')
    item_texts: list[str] | None = None,  # texts of items 1..N ('lm_lora')
    progress: bool = True,  # bars while an encoder prepares (the LoRA encoder's layer cache)
) -> ItemEncoder:
    inputs = EncoderInputs(
        num_items, config.hidden_size, config.initializer_range, item_texts, text_vectors, warm_items, progress
    )
    return build_encoder(config.encoder, inputs)


def item_text_vectors(config: ModelConfig, item_texts: list[str], progress: bool = True) -> torch.Tensor | None:
    """Frozen text vectors [N, T] of the items for encoders that use them (cached on disk), else None."""
    kind = encoder_kind(config.encoder)
    if not kind.needs_texts:
        return None
    if not any(item_texts):
        raise DataError(
            f"item_encoder={config.item_encoder!r} needs item texts, but the dataset has none. Give the items "
            "texts (--item_file; a RecBole NAME.item file; NAME.text + NAME.item2index beside pre-split benchmark "
            "files) or use --item_encoder id."
        )
    if not kind.needs_text_vectors:  # e.g. an LM tokenises the texts itself and is tuned in training
        return None
    return load_or_encode_texts(
        item_texts, config.text_model, config.text_revision, batch_size=config.text_batch_size, progress=progress
    )


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
        """A new, untrained model of ``num_items`` items (ids 1..N; 0 is padding) reading the last
        ``max_history`` items of a history. ``text_vectors`` [N, T] (frozen-text and hybrid encoders) or
        ``item_texts`` (an LM encoder) give the items' texts; ``warm_items`` [N + 1] bool marks the items
        training saw. A trained one comes from ``from_pretrained`` or ``hybrid.train.train``."""
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got a {type(config).__name__}: ModelConfig(**settings)")
        if isinstance(num_items, bool) or not isinstance(num_items, numbers.Integral) or num_items < 1:
            raise ValueError(f"num_items must be a whole number >= 1 (items 1..N; 0 is padding), got {num_items!r}")
        super().__init__()
        self.config = config
        self.catalogue: ItemCatalogue | None = None  # raw ids/texts/titles of items 1..N, for recommend()
        self.results: dict | None = None  # test metrics, protocol and training config, for the model card
        self.item_encoder = item_encoder or build_item_encoder(config, num_items, text_vectors, warm_items, item_texts)
        self.backbone = Backbone(config.backbone_config, max_history)
        self.reasoning = ReasoningHead(
            config.hidden_size,
            config.reasoning_steps,
            config.initializer_range,
            config.separate_reasoning_norm,
            config.layer_norm_eps,
            config.reasoning_dropout,
        )
        self.objective = build_objective(config.objective, config.reasoning)  # chosen once, with its settings
        # Training encodes rows in length groups (the same loss; faster for short histories). Set by the
        # training build from TrainConfig.length_groups; a training setting, not saved with the model.
        self.group_lengths = True
        self.cloze_loss = ClozeLoss(config.objective)
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
        """Items the model scores (ids 1..N; 0 is padding), those added with ``add_items`` included."""
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
        every_position: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Left-padded item ids [B, L] -> reasoning states r_0..r_steps [B, steps + 1, D] (and, with
        ``return_prefill``, the last-layer states of every input position). ``noisy_view`` with
        ``share_history`` returns both PRL views [2B, ...] of a batch given once (see ReasoningHead).
        ``every_position``: every position reasons, [B, L, steps + 1, D]."""
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
            every_position=every_position,
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

    @torch.no_grad()
    def served_table(self) -> torch.Tensor:
        """``scoring_table()`` in eval mode, kept while no weight or buffer changes (in place, replaced or
        resized, e.g. by add_items): recommend answers request after request without encoding the catalogue
        again (a LoRA model runs its language model over every item for it). A change written through
        ``tensor.data`` bypasses the version counter this reads: change weights with ``load_state_dict`` or
        under ``torch.no_grad()`` instead."""
        state = tuple((t.data_ptr(), t._version, t.shape) for t in (*self.parameters(), *self.buffers()))
        kept = getattr(self, "_served", None)
        if self.training or kept is None or kept[0] != state:
            kept = (state, self.scoring_table())
            self._served = None if self.training else kept
        return kept[1]

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
        width = self.backbone.max_history
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
        return aggregate(states, self.config.averages_states)

    def position_states(self, history: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Every position reasons in one pass: left-padded item ids [B, L] -> states r_0..r_steps of each
        position [B, L, steps + 1, D], position t's equal to those of the history up to t (a causal backbone;
        rows of padding carry no meaning)."""
        steps = self.reasoning.check_steps(steps)
        inputs, key_valid = self.history_inputs(history)  # [B, L, D]
        return self.unit(self.reasoning.loop_positions(self.backbone, inputs, key_valid).run(steps))

    def reasoning_loop(self, history: torch.Tensor) -> ReasoningLoop:
        """Left-padded item ids [B, L] encoded, ready to run reasoning steps one at a time (adaptive depth).
        Its states are raw: ``unit`` puts them in scoring space."""
        inputs, key_valid = self.history_inputs(history)  # BERT4Rec: + [MASK]
        return self.reasoning.loop(self.backbone, inputs, key_valid)

    def user_vectors(self, history: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Left-padded item ids [B, L] -> user vectors [B, D] (``steps`` below the trained K is allowed;
        unset: the configured ``inference_steps``, else all trained steps)."""
        self.check_history(history)
        steps = self.config.inference_steps if steps is None else steps
        return self.aggregate(self.user_states(history, steps))

    def check_history(self, history: torch.Tensor) -> None:
        """Refuse what is not a batch of item indexes [B, L] of this model (inference entry points only: a
        training step is not checked)."""
        if (
            not isinstance(history, torch.Tensor)
            or history.ndim != 2
            or history.dtype not in (torch.int64, torch.int32)
        ):
            got = (
                f"{history.dtype} {tuple(history.shape)}"
                if isinstance(history, torch.Tensor)
                else type(history).__name__
            )
            raise TypeError(
                f"history must be an integer tensor [B, L] of item indexes (0 = padding, left-padded), got {got}; "
                "recommend() takes raw item ids"
            )
        if history.numel() and not 0 <= int(history.min()) <= int(history.max()) <= self.num_items:
            raise DataError(
                f"history holds item indexes outside 0..{self.num_items} (min {int(history.min())}, max "
                f"{int(history.max())}): they are indexes of this model's catalogue, not raw ids"
            )

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

    def all_positions_forward(
        self, history: torch.Tensor, target: torch.Tensor, contrastive: bool = False
    ) -> RecommenderOutput:
        """The loss at every position in one pass (``loss_positions='all'``): inputs [B, L], next items [B, L]
        (0 where no target is scored). Each position reasons from the history up to it, as its prefix row
        would; the objective sees the M scored positions as M rows, so the loss is the mean over the targets
        (the training step weighs each forward by its targets). PRL's contrastive negatives are the other
        scored positions of the forward."""
        if self.config.loss_positions != "all" or self.item_encoder.encodes_batch_items:
            raise ValueError(
                "per-position targets [B, L] need a model configured with loss_positions='all' and an id, text or "
                "hybrid item encoder"
            )
        two_views = contrastive and self.objective.uses_noisy_view
        if self.group_lengths:  # windows of similar length together, each group only as wide as it needs
            run = lambda rows, width: self.scored_states(history[rows, -width:], target[rows, -width:], two_views)  # noqa: E731
            parts, order = self.in_length_groups(history, run)
        else:
            parts, order = [self.scored_states(history, target, two_views)], None
        states, noisy, labels, last = (torch.cat(column) if column[0] is not None else None for column in zip(*parts))
        table, labels, _ = self.softmax_table(labels)  # labels [M]
        loss, terms = self.objective(states, table, labels, noisy)  # states, noisy [M, S, D]
        last = last if order is None else last[order]  # [B, S, D] in batch order
        return RecommenderOutput(self.aggregate(last), last, loss, terms)

    def in_length_groups(self, history: torch.Tensor, run) -> tuple[list, torch.Tensor]:
        """``run(rows, width)`` for each group of :func:`length_groups` of ``history`` [B, W], each under its own
        part of the training noise (its rows keep their dropout masks however the batch is split). Returns the
        parts, in group order, and the order [B] that puts rows concatenated in group order back in batch order."""
        groups, keyed_from, parts = length_groups(history), noise.keyed_calls(), []
        for rows, width in groups:
            with noise.subset_rows(rows, f"width {width}", keyed_from):
                parts.append(run(rows, width))
        return parts, torch.cat([rows for rows, _ in groups]).argsort()

    def scored_states(self, history: torch.Tensor, target: torch.Tensor, two_views: bool) -> tuple:
        """Every position's states of windows [B, W] in one pass, kept where a target is scored: states [M, S, D],
        PRL's noisy view of them [M, S, D] (or None), the targets [M] and the last position's states [B, S, D]."""
        shared = two_views and self.config.prl_noisy_view == "reasoning"
        inputs = history if shared or not two_views else torch.cat([history, history])
        states = self.user_states(inputs, noisy_view=two_views, share_history=shared, every_position=True)
        real = target > 0  # [B, W]
        noisy = states[len(history) :][real] if two_views else None
        return states[: len(history)][real], noisy, target[real], states[: len(history), -1]

    def batch_items(
        self, history: torch.Tensor, target: torch.Tensor, candidates: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Vectors of the batch's distinct items [C + 1, D] (row 0 padding) and history [B, L] and target [B]
        renumbered into them. ``candidates`` [G]: the distinct items of the whole global batch, when this forward
        holds one slice of it: every slice then encodes and softmaxes over the same items, so the slices'
        losses add up to the global batch's (split invariance, at the price of encoding them all)."""
        extra = target.new_zeros(1) if candidates is None else torch.cat([target.new_zeros(1), candidates])
        ids = torch.cat([history.flatten(), target, extra])  # the 0 makes padding row 0
        items, local = ids.unique(return_inverse=True)  # sorted: items[0] == 0
        table = self.item_encoder.encode(items)  # [C + 1, D]
        return table, local[: history.numel()].view_as(history), local[history.numel() : history.numel() + len(target)]

    def forward(
        self,
        history: torch.Tensor,
        target: torch.Tensor | None = None,
        contrastive: bool = False,
        cloze_per_row: float | None = None,
        candidates: torch.Tensor | None = None,
    ) -> RecommenderOutput:
        """History [B, L] -> user vectors; with targets [B], the training loss too. Every trained reasoning step
        runs here (training's view); ``user_vectors``, ``recommend`` and evaluation run the configured
        ``inference_steps`` instead, when set. ``contrastive`` turns on PRL's noisy second view (after its
        warm-up). A target [B, L] (next item at every position, 0 at padding) trains with the per-position loss
        of ``loss_positions='all'``. ``cloze_per_row``: see :meth:`cloze_per_row`; None averages over this
        forward's masked positions. ``candidates``: see :meth:`batch_items` (encoders that encode only the
        batch's items)."""
        if target is not None and target.ndim == 2:
            return self.all_positions_forward(history, target, contrastive)
        if target is None:
            self.check_history(history)
            states = self.user_states(history)
            return RecommenderOutput(user_vector=self.aggregate(states), user_states=states)
        batch = self.training_batch(history, target, candidates)
        two_views = contrastive and self.objective.uses_noisy_view
        states, noisy_states, masked = self.training_states(batch, two_views)  # [B, S, D] each
        table, target, renumber = batch.table, batch.target, None  # renumber: item id -> row of a subset table
        if table is None:
            table, target, renumber = self.softmax_table(target)
        loss, parts = self.objective(states, table, target, noisy_states)
        if masked is not None and len(masked[1]):
            masked, labels = masked  # [M, D] outputs at masked history items, [M] their items
            labels = labels if renumber is None else renumber[labels]
            cloze = self.cloze_loss(masked, table, labels, len(batch.history), cloze_per_row)
            loss, parts = loss + self.config.cloze_weight * cloze, parts | {"cloze": cloze.detach()}
        return RecommenderOutput(self.aggregate(states), states, loss, parts)

    def training_batch(
        self, history: torch.Tensor, target: torch.Tensor, candidates: torch.Tensor | None = None
    ) -> TrainingBatch:
        """The items a training forward scores against: every item (or the training-softmax subset), or, for an
        encoder that encodes only the batch's items, those items with the ids renumbered into them."""
        if self.item_encoder.encodes_batch_items:  # an LM: in-batch candidates
            table, history, target = self.batch_items(history, target, candidates)  # [C + 1, D], local ids
            return TrainingBatch(history, target, self.unit(table), table[history], cloze=self.cloze_positions(history))
        return TrainingBatch(history, target, None, cloze=self.cloze_positions(history))

    def training_states(self, batch: TrainingBatch, two_views: bool):
        """States r_0..r_K [B, S, D] of the batch, PRL's noisy view of them (or None) and, for the cloze loss,
        the outputs at the masked history items [M, D] with those items [M] (or None). Rows are encoded in
        groups of similar history length (:func:`length_groups`), each only as wide as its longest history: the
        same states as one padded batch, without encoding the padding (most of a batch of short histories).
        This holds for the bidirectional backbone too: positions count from the oldest real item and padding
        is never attended to."""
        if not self.group_lengths:
            return self.padded_training_states(batch, two_views)

        def run(rows: torch.Tensor, width: int):
            vectors = None if batch.history_vectors is None else batch.history_vectors[rows, -width:]
            cloze = None if batch.cloze is None else batch.cloze[rows, -width:]
            part = TrainingBatch(batch.history[rows, -width:], batch.target[rows], batch.table, vectors, cloze)
            return self.padded_training_states(part, two_views)

        parts, order = self.in_length_groups(batch.history, run)
        states = torch.cat([p[0] for p in parts])[order]  # [B, S, D]
        noisy = torch.cat([p[1] for p in parts])[order] if two_views else None
        if batch.cloze is None:
            return states, noisy, None
        # The cloze loss sums over masked items, so their order (group by group) does not matter.
        return states, noisy, tuple(torch.cat([p[2][i] for p in parts]) for i in range(2))  # [M, D], [M]

    def padded_training_states(self, batch: TrainingBatch, two_views: bool):
        """:meth:`training_states` of the batch as one padded tensor."""
        cloze, vectors, history = batch.cloze, batch.history_vectors, batch.history
        if not two_views:
            states = self.user_states(history, history_vectors=vectors, cloze=cloze, return_prefill=cloze is not None)
            if cloze is None:
                return states, None, None
            return states[0], None, masked_outputs(states[1], cloze, history)
        # 'reasoning': the history is encoded once and only the steps run twice; 'sequence' (released code):
        # the whole batch is encoded twice.
        shared = self.config.prl_noisy_view == "reasoning"
        twice = lambda x: x if shared or x is None else torch.cat([x, x])  # noqa: E731
        both = self.user_states(
            twice(history),
            noisy_view=True,
            history_vectors=twice(vectors),
            cloze=twice(cloze),
            return_prefill=cloze is not None,
            share_history=shared,
        )
        masked = None
        if cloze is not None:  # the clean view's outputs at the masked items
            both, prefill = both
            masked = masked_outputs(prefill[: len(history)], cloze, history)
        states, noisy_states = both.chunk(2)
        return states, noisy_states, masked

    # ------------------------------------------------------------------------------------ use and share
    def recommend(
        self, histories: Sequence[Sequence[str]], k: int = 10, exclude_history: bool = False
    ) -> list[Recommendation]:
        """Top-``k`` item ids, titles and scores for each history (a list of item ids, titles or texts, oldest
        first; only its last ``max_history`` items are read). ``exclude_history``: leave a history's own items out
        (default False: they may come back, as the evaluation protocol scores them). Raises ``UnknownItemError``
        (a ``DataError``) for an item the catalogue lacks and ``DataError`` for a malformed history."""
        if self.catalogue is None:
            raise ValueError("this model has no item catalogue; load one with from_pretrained or set .catalogue")
        return recommend(self, self.catalogue, histories, k=k, exclude_history=exclude_history)

    def add_items(
        self, texts: Sequence[str], item_ids: Sequence[str] | None = None, titles: Sequence[str] | None = None
    ) -> list[str]:
        """Add items known only by their text, usable at once (cold start without retraining): ``texts`` one per
        item, ``item_ids`` (default 'new-1', 'new-2', ...) and ``titles`` (default: the texts) one per text too.
        Returns their ids. Raises ``ConfigError`` for an ID-only model and ``DataError`` for a bad list (checked
        before anything changes)."""
        if not self.item_encoder.adds_items_by_text:
            raise ConfigError(
                f"an ID-only model (item_encoder={self.config.item_encoder!r}) has no vector for an item it never saw; "
                "train a 'text', 'hybrid' or 'lm_lora' model to add items by text."
            )
        if self.catalogue is None:
            raise ValueError("this model has no item catalogue; load one with from_pretrained or set .catalogue")
        size = len(self.catalogue)
        if size != self.num_items:
            raise ValueError(f"the catalogue has {size} items but the model {self.num_items}{OUT_OF_STEP}")
        new_ids = self.catalogue.add(texts, item_ids, titles)  # validates before anything changes
        if not new_ids:
            return []
        try:
            self.item_encoder.add_items_by_text(self.catalogue.item_texts[size:])
        except Exception:
            self.catalogue.truncate(size)  # the catalogue and the encoder never disagree
            raise
        if shadowed := self.catalogue.shadowed_names(new_ids):
            warnings.warn(
                f"new items share the names {shadowed[:3]} with items already there: a history can name those items "
                "only by id now. Give the new items other titles (titles=...) to keep naming them.",
                stacklevel=2,
            )
        if named := self.catalogue.ids_naming_others(new_ids):
            warnings.warn(
                f"new item ids {named[:3]} are also names of other items: a history giving one of them as spelled "
                "here now means the new item (other spellings still name the old one). Give the new items other "
                "ids to keep naming the old ones by that spelling.",
                stacklevel=2,
            )
        return new_ids

    @property
    def device(self) -> torch.device:
        """Where the weights are (as in transformers)."""
        return next(self.parameters()).device

    def save_pretrained(self, save_directory: str | Path, *args, **kwargs):
        """Write the model folder (config.json, model.safetensors, catalogue.json, the encoder's files and a
        model card) into ``save_directory``; huggingface_hub's other arguments (``push_to_hub``, ``repo_id``,
        ...) mean what they mean there, and its ``config`` is not used: the model writes its own."""
        refuse_unsaveable(self, Path(save_directory))  # before huggingface_hub's mixin makes or clears the folder
        return super().save_pretrained(save_directory, *args, **kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str = "Upload hybrid-rearec model",
        private: bool | None = None,
        token: str | None = None,
        branch: str | None = None,
        create_pr: bool | None = None,
        config: dict | None = None,
        model_card_kwargs: dict | None = None,
        **patterns,
    ) -> str:
        """Upload the folder ``save_pretrained`` writes, as ``scripts/push_to_hub.py`` does (``hub.push_folder``):
        the card names ``repo_id``, and the training settings and the adapter carry no local path of this
        machine (the model's own ``text_model``/``lm_model`` go up as given: loading needs them). Returns the
        commit's URL.
        huggingface_hub's ``config`` and ``model_card_kwargs`` are not used (the model writes its own files)."""
        given = sorted(name for name, value in patterns.items() if value is not None)
        if given:  # allow/ignore/delete patterns would upload part of a folder that loads only whole
            raise TypeError(f"push_to_hub uploads the whole model folder; unexpected argument(s) {given}")
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder)
            return push_folder(
                Path(folder),
                repo_id,
                private=private,
                token=token,
                commit_message=commit_message,
                branch=branch,
                create_pr=create_pr,
            )

    def _save_pretrained(self, save_directory: Path) -> None:
        save_folder(self, save_directory)
        model_card(self).save(Path(save_directory) / "README.md")

    def generate_model_card(self, *args, **kwargs):
        """The model card ``save_pretrained`` writes as README.md (huggingface_hub's arguments are not used)."""
        return model_card(self)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        token: str | bool | None = None,
        local_files_only: bool = False,
        map_location: str | torch.device = "cpu",
        **kwargs,
    ) -> HybridRecommender:
        """Load a folder written by ``save_pretrained``, or download a Hub repo holding one (the download
        arguments mean what they mean in huggingface_hub; a local folder needs none). ``map_location``: the
        device the tensors are loaded onto. Strict: a missing or unexpected weight is an error. ``text_model=``
        or ``lm_model=`` (the one the encoder uses) says where its pretrained model is now, when the saved name
        does not load here; a LoRA model refuses a language model with other weights than it trained on."""
        if not isinstance(pretrained_model_name_or_path, (str, os.PathLike)):
            raise TypeError(
                "from_pretrained takes a folder written by save_pretrained or a Hub repo id, got "
                f"{pretrained_model_name_or_path!r}"
            )
        check_device(map_location)
        pretrained = {name: kwargs.pop(name) for name in PRETRAINED_SETTINGS if kwargs.get(name) is not None}
        if kwargs:
            raise TypeError(
                f"unexpected argument(s) {sorted(kwargs)}; from_pretrained takes "
                f"{', '.join(HUB_ARGUMENTS + PRETRAINED_SETTINGS)}"
            )
        folder = model_folder_or_download(
            pretrained_model_name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            token=token,
            local_files_only=local_files_only,
        )
        return load_folder(cls, folder, pretrained).to(map_location)


def check_device(device: str | torch.device) -> None:
    """Refuse a device torch cannot name or this machine lacks, before a model is built for it (None: CPU)."""
    if device is None:
        return
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"map_location {device!r} is no device: use 'cpu', 'cuda', 'cuda:1' or 'mps'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"map_location {str(device)!r}, but torch sees no CUDA device here: use 'cpu'")


def masked_outputs(prefill: torch.Tensor, cloze: torch.Tensor, history: torch.Tensor) -> tuple:
    """The outputs [M, D] at BERT4Rec's masked history items and those items [M], from every input position's
    output [B, L', D] (L' = L + 1: the appended [MASK]), the cloze mask [B, L] and the history [B, L]."""
    return prefill[:, : history.shape[1]][cloze], history[cloze]


def length_groups(history: torch.Tensor) -> list[tuple[torch.Tensor, int]]:
    """Rows of a left-padded history [B, W] grouped by the width that holds them: the smallest power of two
    from 4 that holds the row's history, at most W. A row's width depends on its own length only (and on W,
    which every slice of a global batch shares), so its dropout masks do not depend on the other rows.
    Returns (rows [R], width) for each group, narrowest first."""
    lengths = (history > 0).sum(dim=1)  # [B]
    full = history.shape[1]
    widths = torch.full_like(lengths, full)
    bound = 4
    while bound < full:
        widths = torch.where((lengths <= bound) & (widths == full), bound, widths)
        bound *= 2
    return [((widths == width).nonzero().squeeze(1), int(width)) for width in widths.unique().tolist()]
