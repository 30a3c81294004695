"""ID embeddings: one trainable D-vector per item, the classic SASRec item representation."""

from __future__ import annotations

import torch
from torch import nn

from .base import ItemEncoder


class IDItemEncoder(ItemEncoder):
    """A trainable embedding table of N + 1 rows; row 0 (padding) is zero and receives no gradient."""

    def __init__(self, num_items: int, dim: int, initializer_range: float = 0.02):
        super().__init__()
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        self.num_items = num_items
        self.dim = dim
        self.embedding = nn.Embedding(num_items + 1, dim, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=initializer_range)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def item_table(self) -> torch.Tensor:
        return self.embedding.weight  # [N + 1, D]

    def encode(self, item_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(item_ids)  # [..., D]

    def add_items(self, count: int) -> None:
        """Rows for ``count`` new items (ids N + 1..N + count). They are zero: a new item has no trained ID
        vector, so a hybrid encoder treats it as cold (text only)."""
        weight = self.embedding.weight
        grown = nn.Embedding(self.num_items + count + 1, self.dim, padding_idx=0).to(weight.device, weight.dtype)
        with torch.no_grad():
            grown.weight.zero_()
            grown.weight[: self.num_items + 1] = weight
        grown.weight.requires_grad_(weight.requires_grad)
        self.embedding, self.num_items = grown, self.num_items + count
