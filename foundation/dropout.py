"""Dropout for every module of the project, split-invariant inside ``foundation.noise.global_batch_noise``.

Two kinds of rows are dropped: a batch row (a user's history, its reasoning tokens: :func:`dropout`, masks
drawn per row of the global batch) and an item (an item encoder's features of one item, wherever it appears:
:func:`keyed_dropout`, masks drawn per item id). Either way a mask never depends on how a global batch is
split over processes or micro-batches. :class:`HashedDropout` stands in for a third-party model's own
dropout modules (the LoRA encoder's language model), with a cheaper mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import noise


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout of batch rows x [B, ...]. On CPU the mask comes from 16-bit random integers: torch's
    ``bernoulli_`` there costs ~5x more and was over a third of a SASRec training step. p is honoured to
    1/65536. Inside ``global_batch_noise`` the mask of a row depends only on its place in the global batch."""
    if not training or p == 0.0:
        return x
    if x.device.type == "cpu":
        keep = noise.random_int16(x.shape, x.device) >= round(p * 65536) - 32768  # P(keep) = 1 - p
    elif noise.active():
        keep = noise.rand(x.shape, x.device) >= p
    else:
        return F.dropout(x, p, training=True)
    return x * (keep.to(x.dtype) * (1.0 / (1.0 - p)))


def keyed_dropout(x: torch.Tensor, keys: torch.Tensor, p: float, training: bool, stream: str) -> torch.Tensor:
    """Inverted dropout of item features x [..., F] whose mask depends on the item id ``keys`` [...] (and the
    step's seed), not on the row the item sits in: an item encoded on several processes, or in several
    micro-batches of one step, is dropped alike everywhere."""
    if not training or p == 0.0:
        return x
    keep = noise.keyed_keep(keys, x.shape[-1], stream, p)  # [..., F]
    return x * (keep.to(x.dtype) * (1.0 / (1.0 - p)))


class Dropout(nn.Module):
    """``nn.Dropout`` over batch rows with the fast, split-invariant mask of :func:`dropout`."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class KeyedDropout(nn.Module):
    """Dropout of item features whose mask follows the item id (see :func:`keyed_dropout`)."""

    def __init__(self, p: float, stream: str):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p, self.stream = p, stream

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return keyed_dropout(x, keys, self.p, self.training, self.stream)

    def extra_repr(self) -> str:
        return f"p={self.p}, stream={self.stream!r}"


class HashedDropout(nn.Module):
    """``nn.Dropout`` for a third-party model's own dropout modules (:func:`use_hashed_dropout`): on CPU the mask
    hashes (a seed, element) by :func:`noise.keyed_keep`, half the cost of torch's mask there (about 16 % of a
    Scientific LoRA step went to the language model's dropouts); elsewhere torch's fused dropout runs (the
    hash takes many small kernels on a GPU). It keeps ``p``, which models may read (BERT's attention passes its
    module's ``p`` to a functional dropout). The seed is one draw from torch's global RNG, as torch's own mask
    is: under ``noise.shared_global_rng`` every slice of a global batch draws the same, and activation
    checkpointing, which restores the RNG before it recomputes a layer, redraws the same masks."""

    def __init__(self, p: float, stream: str = "hashed-dropout"):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p, self.stream = p, stream

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.numel() == 0:
            return x
        if x.device.type != "cpu" or x.dim() == 0:
            return F.dropout(x, self.p, training=True)
        rows = x.reshape(-1, x.shape[-1])  # [R, F]: every element's mask hashes its row and column
        keys = torch.arange(len(rows), device=x.device)
        keep = noise.keyed_keep(keys, rows.shape[-1], self.stream, self.p, from_global_rng=True)  # [R, F]
        # One product with a scaled mask in the input's dtype, as torch's CPU dropout makes it: masking, then
        # scaling, would keep only the bool mask for backward but costs a second pass there (~25 ms of 28M).
        return (rows * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))).view_as(x)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_hashed_dropout(model: nn.Module) -> int:
    """Replace every ``nn.Dropout`` inside ``model`` (but one that drops everything, p = 1) with a
    :class:`HashedDropout` of the same ``p``; returns how many were replaced."""
    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Dropout and child.p < 1.0:
                module._modules[name] = HashedDropout(child.p)  # ModuleDict entries (peft's) included
                replaced += 1
    return replaced
