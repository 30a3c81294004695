"""Recommendations for new histories given as raw item ids or titles.

The item catalogue maps raw ids to the model's item indexes 1..N; a history holding an id the model never
saw is refused with the ids and the fix, never silently dropped or mapped to padding.

Shape legend: B histories, L history length, N items, D hidden size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .errors import DataError
from .ranking import chunked_top_k, item_chunk_size


class UnknownItemError(DataError):
    """A request names an item id the model has no vector for."""


@dataclass
class Recommendation:
    """Top-k items of one history, best first."""

    item_ids: list[str]
    scores: list[float]
    titles: list[str]


class ItemCatalogue:
    """Raw item ids, texts and titles of items 1..N, in the model's index order."""

    def __init__(
        self,
        item_ids: Sequence[str],
        item_texts: Sequence[str] | None = None,
        item_titles: Sequence[str] | None = None,
    ):
        self.item_ids = [str(i) for i in item_ids]
        self.item_texts = list(item_texts) if item_texts is not None else [""] * len(self.item_ids)
        self.item_titles = list(item_titles) if item_titles else list(self.item_texts)
        if not len(self.item_texts) == len(self.item_titles) == len(self.item_ids):
            raise ValueError(f"{len(self.item_texts)} texts, {len(self.item_titles)} titles, {len(self)} items")
        self.index = {item: i + 1 for i, item in enumerate(self.item_ids)}  # 0 is padding
        if len(self.index) != len(self.item_ids):
            raise ValueError("item ids must be unique")

    @classmethod
    def from_dataset(cls, dataset) -> ItemCatalogue:
        return cls(dataset.item_ids, dataset.item_texts, dataset.item_titles or None)

    def to_dict(self) -> dict[str, list[str]]:
        return {"item_ids": self.item_ids, "item_texts": self.item_texts, "item_titles": self.item_titles}

    def __len__(self) -> int:
        return len(self.item_ids)

    def add(self, texts: Sequence[str], item_ids: Sequence[str] | None = None, titles: Sequence[str] | None = None):
        """Append new items; ids default to 'new-1', 'new-2', ... (unused ones). Returns their ids."""
        if item_ids is None:
            item_ids, n = [], 0
            while len(item_ids) < len(texts):
                n += 1
                if f"new-{n}" not in self.index:
                    item_ids.append(f"new-{n}")
        item_ids = [str(i) for i in item_ids]
        taken = sorted({i for i in item_ids if i in self.index} | {i for i in item_ids if item_ids.count(i) > 1})
        if taken or len(item_ids) != len(texts):
            raise DataError(
                f"new item ids must be unique and not in the catalogue (already there or repeated: {taken[:5]}), "
                f"one per text ({len(item_ids)} ids for {len(texts)} texts)."
            )
        empty = [n for n, text in enumerate(texts) if not str(text).strip()]
        if empty:
            raise DataError(f"texts {empty[:5]} are empty: a new item is known by its text alone; give it one.")
        titles = list(titles) if titles is not None else [str(t) for t in texts]
        for item, text, title in zip(item_ids, texts, titles):
            self.item_ids.append(item)
            self.item_texts.append(str(text))
            self.item_titles.append(str(title))
            self.index[item] = len(self.item_ids)
        return item_ids

    def truncate(self, size: int) -> None:
        """Forget the items after the first ``size`` (undo an ``add`` whose encoder step failed)."""
        for item in self.item_ids[size:]:
            del self.index[item]
        del self.item_ids[size:], self.item_texts[size:], self.item_titles[size:]

    def resolve(self, item: str) -> str:
        """An item given by id, or else by its exact title or text (case-insensitive), -> its id."""
        item = str(item)
        if item in self.index:
            return item
        if not hasattr(self, "_by_name"):
            self._by_name: dict[str, list[str]] = {}
            for item_id, title, text in zip(self.item_ids, self.item_titles, self.item_texts):
                for name in {title.casefold(), text.casefold()} - {""}:
                    self._by_name.setdefault(name, []).append(item_id)
        matches = self._by_name.get(item.casefold(), [])
        if len(matches) > 1:
            raise DataError(f"{item!r} names {len(matches)} items ({matches[:5]}); give the item id instead.")
        return matches[0] if matches else item  # an unknown name stays as is and is reported as unknown

    def indexes(self, histories: Sequence[Sequence[str]]) -> list[list[int]]:
        """Raw ids (or titles) -> item indexes, with one error listing every unknown item and empty history."""
        empty = [n for n, history in enumerate(histories) if len(history) == 0]
        if empty:
            raise DataError(
                f"histories {empty[:5]} are empty; give each at least one item id it interacted with "
                "(a user with no history needs a popularity or cold-start fallback outside the model)."
            )
        self.__dict__.pop("_by_name", None)  # the catalogue may have grown since the last request
        histories = [[self.resolve(item) for item in history] for history in histories]
        unknown = sorted({item for history in histories for item in history if item not in self.index})
        if unknown:
            shown = ", ".join(repr(item) for item in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise UnknownItemError(
                f"{len(unknown)} item(s) unknown to this model: {shown}. Use ids of the training data "
                f"({len(self)} items, e.g. {self.item_ids[0]!r}) or their exact titles, add new items by text "
                "(model.add_items), or drop the unknown ones from the history."
            )
        return [[self.index[item] for item in history] for history in histories]


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
    history = pad_histories(indexes, model.backbone.max_history)  # [B, L]
    was_training = model.training
    model.eval()
    try:
        users = model.user_vectors(history)  # [B, D]
        table = model.scoring_table()  # [N + 1, D]
    finally:
        model.train(was_training)
    exclude = None
    if exclude_history:
        rows = [row for row, items in enumerate(indexes) for _ in items]
        exclude = torch.tensor(rows), torch.tensor([item for items in indexes for item in items])
    # Chunked over the items with a running top-k: memory stays bounded for any catalogue size.
    top_scores, top_items = chunked_top_k(users, table, k, item_chunk_size(len(indexes)), exclude)  # [B, k]
    return [
        Recommendation(
            item_ids=[catalogue.item_ids[i - 1] for i in items.tolist()],
            scores=values.tolist(),
            titles=[catalogue.item_titles[i - 1] for i in items.tolist()],
        )
        for values, items in zip(top_scores, top_items)
    ]
