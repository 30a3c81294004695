"""Recommendations for new histories given as raw item ids (the ids of the training data).

The item catalogue maps raw ids to the model's item indexes 1..N; a history holding an id the model never
saw is refused with the ids and the fix, never silently dropped or mapped to padding.

Shape legend: B histories, L history length, N items, D hidden size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hybrid.errors import DataError


class UnknownItemError(DataError):
    """A request names an item id the model has no vector for."""


@dataclass
class Recommendation:
    """Top-k items of one history, best first."""

    item_ids: list[str]
    scores: list[float]
    titles: list[str]


class ItemCatalogue:
    """Raw item ids (and their texts) of items 1..N, in the model's index order."""

    def __init__(self, item_ids: Sequence[str], item_texts: Sequence[str] | None = None):
        self.item_ids = [str(i) for i in item_ids]
        self.item_texts = list(item_texts) if item_texts is not None else [""] * len(self.item_ids)
        if len(self.item_texts) != len(self.item_ids):
            raise ValueError(f"{len(self.item_texts)} texts for {len(self.item_ids)} items")
        self.index = {item: i + 1 for i, item in enumerate(self.item_ids)}  # 0 is padding
        if len(self.index) != len(self.item_ids):
            raise ValueError("item ids must be unique")

    @classmethod
    def from_dataset(cls, dataset) -> ItemCatalogue:
        return cls(dataset.item_ids, dataset.item_texts)

    def __len__(self) -> int:
        return len(self.item_ids)

    def indexes(self, histories: Sequence[Sequence[str]]) -> list[list[int]]:
        """Raw ids -> item indexes, with one error listing every unknown id and every empty history."""
        empty = [n for n, history in enumerate(histories) if len(history) == 0]
        if empty:
            raise DataError(
                f"histories {empty[:5]} are empty; give each at least one item id it interacted with "
                "(a user with no history needs a popularity or cold-start fallback outside the model)."
            )
        unknown = sorted({str(item) for history in histories for item in history if str(item) not in self.index})
        if unknown:
            shown = ", ".join(repr(item) for item in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise UnknownItemError(
                f"{len(unknown)} item id(s) unknown to this model: {shown}. Use ids of the training data "
                f"({len(self)} items, e.g. {self.item_ids[0]!r}), or drop the unknown ones from the history."
            )
        return [[self.index[str(item)] for item in history] for history in histories]


def pad_histories(indexes: list[list[int]], max_history: int) -> torch.Tensor:
    """Item indexes -> left-padded [B, L] keeping each history's last ``max_history`` items."""
    width = min(max_history, max(len(h) for h in indexes))
    batch = torch.zeros(len(indexes), width, dtype=torch.long)  # [B, L]
    for row, history in enumerate(indexes):
        kept = history[-width:]
        batch[row, width - len(kept) :] = torch.tensor(kept, dtype=torch.long)
    return batch


@torch.no_grad()
def recommend(
    model,
    catalogue: ItemCatalogue,
    histories: Sequence[Sequence[str]],
    k: int = 10,
    exclude_history: bool = False,
) -> list[Recommendation]:
    """Top-``k`` items (at most the whole catalogue) for each history of raw item ids, oldest first."""
    if len(catalogue) != model.num_items:
        raise ValueError(f"the catalogue has {len(catalogue)} items but the model {model.num_items}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, len(catalogue))  # a small catalogue returns all of its items
    indexes = catalogue.indexes(histories)
    history = pad_histories(indexes, model.backbone.config.max_history)  # [B, L]
    was_training = model.training
    model.eval()
    try:
        scores = model.score(model.user_vectors(history))  # [B, N + 1], column 0 is -inf
    finally:
        model.train(was_training)
    if exclude_history:
        for row, items in enumerate(indexes):
            scores[row, items] = float("-inf")
    top = scores.topk(k, dim=1)  # ties: torch's order, stable for a given input
    return [
        Recommendation(
            item_ids=[catalogue.item_ids[i - 1] for i in items.tolist()],
            scores=values.tolist(),
            titles=[catalogue.item_texts[i - 1] for i in items.tolist()],
        )
        for values, items in zip(top.values, top.indices)
    ]
