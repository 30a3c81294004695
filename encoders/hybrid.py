"""ID + text fusion: an item is its trained ID vector and its text vector together; a cold item, its text alone.

Cold items (no training interaction) have ID vectors that never received a gradient, only their random init,
so their ID part is masked to zero and the fusion sees text only. ``id_dropout`` (DropoutNet, Volkovs et al.
2017) also drops the ID part of random warm items in training, so the sequence model learns to score items
from their text alone, on the same scale as warm ones, which is what a cold item is.

Randomness: ``id_dropout`` in ``encode`` (a batch's histories [B, ...]) is drawn per occurrence, row-aligned
with the global batch; in ``item_table`` it is drawn per item id (the same table on every process).

Shape legend: N items (without padding), D item-vector size.
"""

from __future__ import annotations

import torch
from torch import nn

from ..foundation import noise
from .base import ItemEncoder
from .id import IDItemEncoder

FUSIONS = ("sum", "concat", "gate")


class HybridItemEncoder(ItemEncoder):
    """Fusions: ``sum`` id + text; ``concat`` Linear([id; text]); ``gate`` g * id + (1 - g) * text with
    g = sigmoid(W [id; text])."""

    adds_items_by_text = True

    def __init__(
        self,
        id_encoder: IDItemEncoder,
        text_encoder: ItemEncoder,
        fusion: str = "sum",
        warm_items: torch.Tensor | None = None,  # [N + 1] bool, True where the ID vector was trained
        id_dropout: float = 0.0,
    ):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion {fusion!r} is not one of {FUSIONS}")
        if id_encoder.num_items != text_encoder.num_items or id_encoder.dim != text_encoder.dim:
            raise ValueError("the ID and text encoders must cover the same items with the same dimension")
        if not 0.0 <= id_dropout < 1.0:
            raise ValueError(f"id_dropout must be in [0, 1), got {id_dropout}")
        self.id_encoder, self.text_encoder, self.fusion, self.id_dropout = id_encoder, text_encoder, fusion, id_dropout
        self.num_items, self.dim = id_encoder.num_items, id_encoder.dim
        warm = torch.ones(self.num_items + 1, dtype=torch.bool) if warm_items is None else warm_items.bool()
        if warm.shape != (self.num_items + 1,):
            raise ValueError(f"warm_items must be [{self.num_items + 1}], got {tuple(warm.shape)}")
        self.register_buffer("warm_items", warm.clone())
        if fusion == "concat":
            self.project = nn.Linear(2 * self.dim, self.dim)
        elif fusion == "gate":
            self.gate = nn.Linear(2 * self.dim, self.dim)

    def fuse(
        self, id_vectors: torch.Tensor, text_vectors: torch.Tensor, item_ids: torch.Tensor, by_row: bool
    ) -> torch.Tensor:
        """[..., D] ID and text vectors of ``item_ids`` [...] -> fused [..., D]; padding stays zero. ``by_row``:
        ``item_ids`` are a batch's rows [B, ...] (id_dropout drawn per occurrence), else a table of items."""
        warm = self.warm_items[item_ids].unsqueeze(-1)  # [..., 1]
        if self.training and self.id_dropout > 0:  # each occurrence of a warm item may be shown as cold
            if by_row:
                draw = noise.rand(warm.shape, warm.device, stream="id_dropout")  # [..., 1]
            else:
                draw = noise.keyed_rand(item_ids, 1, stream="id_dropout")  # [..., 1]
            warm = warm & (draw >= self.id_dropout)
        id_vectors = id_vectors * warm
        if self.fusion == "sum":
            fused = id_vectors + text_vectors
        elif self.fusion == "concat":
            fused = self.project(torch.cat([id_vectors, text_vectors], dim=-1))
        else:
            gate = torch.sigmoid(self.gate(torch.cat([id_vectors, text_vectors], dim=-1))) * warm  # cold: text
            fused = gate * id_vectors + (1 - gate) * text_vectors
        return fused * (item_ids > 0).unsqueeze(-1)

    def item_table(self) -> torch.Tensor:
        ids = torch.arange(self.num_items + 1, device=self.warm_items.device)  # [N + 1]
        return self.fuse(self.id_encoder.item_table(), self.text_encoder.item_table(), ids, by_row=False)

    def encode(self, item_ids: torch.Tensor) -> torch.Tensor:
        id_vectors, text_vectors = self.id_encoder.encode(item_ids), self.text_encoder.encode(item_ids)
        return self.fuse(id_vectors, text_vectors, item_ids, by_row=item_ids.ndim > 1)

    def add_items_by_text(self, texts) -> None:
        """New items from their texts: cold (text only) until a model is retrained."""
        before = self.text_encoder.num_items
        self.text_encoder.add_items_by_text(texts)
        self.grow(self.text_encoder.num_items - before)

    def save_files(self, folder) -> None:
        self.text_encoder.save_files(folder)

    def add_items(self, text_vectors: torch.Tensor) -> None:
        """New items [M, T] from their frozen text vectors: cold (text only) until a model is retrained."""
        self.text_encoder.add_items(text_vectors)
        self.grow(text_vectors.shape[0])

    def grow(self, count: int) -> None:
        """The ID side and the warm mask follow ``count`` items just added to the text side (cold ones)."""
        self.id_encoder.add_items(count)
        self.warm_items = torch.cat([self.warm_items, self.warm_items.new_zeros(count)])
        self.num_items = self.text_encoder.num_items
