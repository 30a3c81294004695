"""The one interface every item encoder implements.

Item ids are contiguous: 0 is padding, 1..N are real items. The padding vector is always zero, so a padded
history slot contributes nothing and the padding column of a score matrix can be masked by id.
Shape legend: N items (without padding), D vector size.
"""

from __future__ import annotations

import torch
from torch import nn


class ItemEncoder(nn.Module):
    """Maps item ids to D-dimensional vectors.

    Subclasses set ``num_items`` (N, padding excluded) and ``dim`` (D) and implement :meth:`item_table`;
    :meth:`encode` defaults to a lookup in that table, which an encoder with a cheaper per-id path overrides.
    """

    num_items: int
    dim: int

    def item_table(self) -> torch.Tensor:
        """All item vectors, padding row first: [N + 1, D], row 0 all zeros."""
        raise NotImplementedError

    def encode(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Vectors for ``item_ids`` of any shape [...] -> [..., D]; id 0 (padding) gives zeros."""
        return self.item_table()[item_ids]
