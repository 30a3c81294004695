"""HybridRecommender: item encoder + SASRec backbone -> user vectors and full-catalogue scores.

Shape legend: B batch, L history length, D hidden size, N items (scores have N + 1 columns, column 0 is
padding and always -inf).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from encoders import IDItemEncoder, ItemEncoder
from hybrid.config import ModelConfig
from reasoning.backbone import Backbone, BackboneConfig


@dataclass
class RecommenderOutput:
    """What ``forward`` returns."""

    user_vector: torch.Tensor  # [B, D] the vector items are ranked by
    loss: torch.Tensor | None = None  # mean cross-entropy over the batch when targets are given


def build_item_encoder(config: ModelConfig, num_items: int) -> ItemEncoder:
    return IDItemEncoder(num_items, config.hidden_size, config.initializer_range)


class HybridRecommender(nn.Module):
    def __init__(self, config: ModelConfig, num_items: int, max_history: int = 50):
        super().__init__()
        self.config = config
        self.item_encoder = build_item_encoder(config, num_items)
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
            )
        )

    @property
    def num_items(self) -> int:
        return self.item_encoder.num_items

    def user_vectors(self, history: torch.Tensor) -> torch.Tensor:
        """Left-padded item ids [B, L] -> user vectors [B, D] (the last real position's state)."""
        key_valid = history > 0  # [B, L]
        inputs = self.backbone.embed(self.item_encoder.encode(history), key_valid)  # [B, L, D]
        states, _ = self.backbone.prefill(inputs, key_valid, last_only=True)  # [B, 1, D]
        return states[:, -1]

    def score(self, user_vector: torch.Tensor, item_table: torch.Tensor | None = None) -> torch.Tensor:
        """Dot-product scores [B, N + 1] against every item; the padding column is -inf."""
        table = self.item_encoder.item_table() if item_table is None else item_table  # [N + 1, D]
        scores = user_vector @ table.T  # [B, N + 1]
        return scores.index_fill(1, scores.new_zeros(1, dtype=torch.long), float("-inf"))

    def forward(self, history: torch.Tensor, target: torch.Tensor | None = None) -> RecommenderOutput:
        user_vector = self.user_vectors(history)  # [B, D]
        loss = None
        if target is not None:
            logits = self.score(user_vector) / self.config.temperature  # [B, N + 1]
            loss = F.cross_entropy(logits, target)
        return RecommenderOutput(user_vector=user_vector, loss=loss)
