"""The one interface every item encoder implements, including what an encoder can do.

Item ids are contiguous: 0 is padding, 1..N are real items. The padding vector is always zero, so a padded
history slot contributes nothing and the padding column of a score matrix can be masked by id.
Shape legend: N items (without padding), D vector size.

Randomness: an encoder draws every random number through ``foundation`` (``Dropout`` for a batch row's
values, ``KeyedDropout`` / ``noise.keyed_rand`` for an item's own values), so one global batch split over
processes or micro-batches trains exactly as a whole. A third-party model that draws from torch's global RNG
runs inside ``noise.shared_global_rng`` on the same inputs in every slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn


class ItemEncoder(nn.Module):
    """Maps item ids to D-dimensional vectors.

    Subclasses set ``num_items`` (N, padding excluded) and ``dim`` (D) and implement :meth:`item_table`;
    :meth:`encode` defaults to a lookup in that table, which an encoder with a cheaper per-id path overrides.
    The class attributes and the methods below :meth:`encode` declare what else the encoder can do; callers
    ask them instead of checking the encoder's kind.
    """

    num_items: int
    dim: int
    # Training encodes only the batch's distinct items and softmaxes over them (an LM is too costly to run
    # over the catalogue per step); otherwise training scores against the whole item table.
    encodes_batch_items: ClassVar[bool] = False
    # add_items_by_text works: a new item gets a vector from its text alone (cold start without retraining).
    adds_items_by_text: ClassVar[bool] = False

    def item_table(self) -> torch.Tensor:
        """All item vectors, padding row first: [N + 1, D], row 0 all zeros."""
        raise NotImplementedError

    def encode(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Vectors for ``item_ids`` of any shape [...] -> [..., D]; id 0 (padding) gives zeros."""
        return self.item_table()[item_ids]

    def add_items_by_text(self, texts: Sequence[str]) -> None:
        """Append items N + 1..N + M known by their texts only."""
        raise TypeError(
            f"{type(self).__name__} has no vector for an item it never saw; use a text, hybrid or lm_lora item "
            "encoder to add items by text."
        )

    def save_files(self, folder: Path) -> None:
        """Write what the encoder needs beside the saved weights (frozen text vectors, an adapter): nothing."""

    def load_files(self, folder: Path) -> None:
        """Read back what :meth:`save_files` wrote, after the weights are loaded: nothing."""

    def trainable_share(self) -> tuple[int, int] | None:
        """(trainable parameters, parameters of a wrapped pretrained model), or None when nothing is wrapped."""
        return None

    # State-dict entries under these prefixes are not saved with the weights: a pretrained model travels by
    # reference, and save_files writes what was tuned in it (an adapter) in that model's own format.
    external_state_prefixes: ClassVar[tuple[str, ...]] = ()
