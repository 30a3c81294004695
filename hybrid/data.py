"""From raw interactions to padded training/evaluation tensors, cached on disk by data config.

Pipeline: read (``hybrid.readers``) -> rating threshold -> iterative k-core -> stable sort by (user, time)
-> contiguous ids (0 = padding, in order of first appearance) -> split -> left-padded histories.

Every row is a (history prefix, next item) pair: the history is the user's items before the target, the
most recent ``max_history`` kept, left-padded so the last column is the most recent item.

Pre-split benchmark files (``data_format='recbole_split'``, read by ``hybrid.benchmark_files``) skip the
filtering and splitting: their published rows become the same tensors, each row's full history its past.

The cold_items split (either kind of data) takes every interaction with a cold item out of training (as a
target and from histories); validation and test rows keep their full histories, and their targets may be
cold. Cold items are the newest by first appearance, or (``cold_selection='random'``, for data without
timestamps) a seeded random fraction of the catalogue.

Shape legend: R rows, L max history, P total past items of a split's rows.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .benchmark_files import PublishedRows, PublishedSplit, read_benchmark_files
from .config import DataConfig
from .errors import DataError, DataWarning
from .formats import BUILTIN_DATASETS
from .readers import RawInteractions, read_interactions

# 3: stats count repeated rows; 4: blank text cells trimmed, header names trimmed; 5: JSON ids mixing 7 and "007"
# refused (a cache made before would keep such ids merged), the reading's warnings kept to be said again
CACHE_VERSION = 5


def filled_width(history: torch.Tensor, rows: torch.Tensor) -> int:
    """Columns of left-padded ``history`` [R, L] holding a real item in at least one of ``rows`` (at least 1)."""
    return max(int((history[rows] > 0).sum(dim=1).max()), 1) if len(rows) else 1


@dataclass
class SplitData:
    """Rows of one split as tensors built once (never per sample in the training loop)."""

    history: torch.Tensor  # [R, L] int64, left-padded with 0
    target: torch.Tensor  # [R] int64
    user: torch.Tensor  # [R] int64 user index
    past_offsets: torch.Tensor  # [R + 1] int64: row r's full past is past_items[offsets[r]:offsets[r+1]]
    past_items: torch.Tensor  # [P] int64, every earlier item of the user (not truncated to L)

    def __len__(self) -> int:
        return self.target.shape[0]

    def width(self, rows: torch.Tensor) -> int:
        """Columns needed by the longest history among ``rows`` (at least 1)."""
        return filled_width(self.history, rows)

    def batch(self, rows: torch.Tensor, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """History [B, W] and target [B] of ``rows``. Left padding beyond ``width`` columns (default: the
        longest history among ``rows``) is dropped; histories are left-padded, so no real item is lost."""
        width = self.width(rows) if width is None else width
        return self.history[rows][:, self.history.shape[1] - width :], self.target[rows]

    def loss_per_target(self, loss_sum: float, rows: torch.Tensor | None = None) -> float:
        """Mean training loss per target from the summed loss of ``rows`` (default: all): one target a row."""
        return loss_sum / (len(self) if rows is None else len(rows))

    def targets(self, rows: torch.Tensor) -> int:
        """Training targets in ``rows``: one a row."""
        return len(rows)

    def epoch_batches(self, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1):
        """This process's slice of each global batch of ``batch_size`` rows (see :func:`shard_batches`)."""
        return shard_batches(len(self), batch_size, seed, epoch, rank, world_size)

    def batches_per_epoch(self, batch_size: int, seed: int = 0, epoch: int = 0) -> int:
        return num_batches(len(self), batch_size)

    def past_mask_indices(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch position, item id) pairs of every past item of ``rows``, for masking seen items."""
        starts, ends = self.past_offsets[rows], self.past_offsets[rows + 1]
        lengths = ends - starts  # [B]
        positions = torch.repeat_interleave(torch.arange(len(rows)), lengths)
        within = torch.arange(int(lengths.sum())) - torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
        return positions, self.past_items[starts[positions] + within]


@dataclass
class SequenceRows:
    """Training windows for ``loss_positions='all'``: each user's training items in windows of up to L
    inputs, the next item the target at every scored position (0 elsewhere: padding, or context that another
    window scores). Same ``batch``/``width`` interface as SplitData; batches are packed by targets."""

    history: torch.Tensor  # [W, L] int64 inputs, left-padded with 0
    target: torch.Tensor  # [W, L] int64 next item after each scored input, else 0

    def __len__(self) -> int:
        return self.target.shape[0]

    def width(self, rows: torch.Tensor) -> int:
        """Columns needed by the longest window among ``rows`` (at least 1)."""
        return filled_width(self.history, rows)

    def batch(self, rows: torch.Tensor, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs [B, W] and targets [B, W] of ``rows`` (left padding beyond ``width`` columns dropped)."""
        width = self.width(rows) if width is None else width
        return self.history[rows][:, -width:], self.target[rows][:, -width:]

    def targets(self, rows: torch.Tensor) -> int:
        """Scored targets in the windows ``rows``."""
        return int((self.target[rows] > 0).sum())

    def loss_per_target(self, loss_sum: float, rows: torch.Tensor | None = None) -> float:
        """Mean training loss per target from the summed loss (loss x targets of each forward) of ``rows``."""
        return loss_sum / max(self.targets(torch.arange(len(self)) if rows is None else rows), 1)

    def epoch_batches(self, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1):
        """Windows packed into global batches of at most ``batch_size`` targets (about as many batches per epoch
        as the prefix layout's batches of ``batch_size`` rows, so learning rate and patience keep their meaning)."""
        return packed_batches((self.target > 0).sum(dim=1), batch_size, seed, epoch, rank, world_size)

    def batches_per_epoch(self, batch_size: int, seed: int = 0, epoch: int = 0) -> int:
        """Batches of the epoch ``epoch`` (the packing, and so the count, depends on its order)."""
        return sum(1 for _ in self.epoch_batches(batch_size, seed, epoch))


def user_windows(count: int, length: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, end, first scored) positions of the windows over one user's ``count`` training targets, newest
    first: windows of ``length`` ending every ``stride`` positions back, each scoring its last ``stride``
    positions (the oldest window scores all of its own), so every target is scored once, after at least
    ``length - stride`` earlier items or the user's whole past."""
    windows, end = [], count - 1
    while True:
        start = max(0, end - length + 1)
        scored = start if start == 0 else end - stride + 1
        windows.append((start, end, scored))
        if start == 0:
            return windows
        end -= stride


def sequence_rows(train: SplitData, max_history: int, stride: int | None = None) -> SequenceRows:
    """Windows of the training rows (``stride`` default max_history // 2): every (last history item, target)
    pair of ``train`` scored exactly once, with at least ``max_history - stride`` items of context.

    A user's rows are consecutive and in time order, so row i's input is its most recent history item and
    its target the next one.
    """
    stride = stride or max(1, max_history // 2)
    user = train.user
    _, counts = torch.unique_consecutive(user, return_counts=True)  # rows per user block, in row order
    same_user = user[1:] == user[:-1]  # [R - 1]
    follows = train.history[1:, -1] == train.target[:-1]  # a row's last input is its predecessor's target
    if len(counts) != int(torch.unique(user).numel()) or not bool(follows[same_user].all()):
        raise DataError(
            "training rows are not grouped by user in time order, one row per interaction: cannot build "
            "per-position windows (loss_positions='all'); use loss_positions='last'"
        )
    inputs, targets, first = train.history[:, -1], train.target, 0
    histories, scored = [], []
    for count in counts.tolist():
        for start, end, score_from in user_windows(count, max_history, stride):
            window = torch.zeros(2, max_history, dtype=torch.long)  # inputs, targets; right-aligned
            width = end - start + 1
            window[0, -width:] = inputs[first + start : first + end + 1]
            window[1, max_history - (end - score_from + 1) :] = targets[first + score_from : first + end + 1]
            histories.append(window[0])
            scored.append(window[1])
        first += count
    return SequenceRows(torch.stack(histories), torch.stack(scored))


@dataclass
class RecDataset:
    """The processed dataset: three splits and the item catalogue."""

    train: SplitData
    valid: SplitData
    test: SplitData
    item_ids: list[str]  # raw id of item 1..N (index i holds item i + 1)
    user_ids: list[str]
    item_texts: list[str]  # text of item 1..N, '' where the source has none
    stats: dict
    item_titles: list[str] = field(default_factory=list)  # title of item 1..N for people (default: its text)
    cold_items: list[int] = field(default_factory=list)  # ids of the items made cold (split 'cold_items')
    data_warnings: list[str] = field(default_factory=list)  # what reading the files warned of: said on every load

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def split(self, name: str) -> SplitData:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]

    def signature(self) -> str:
        """A short hash of the catalogue, the users and every split's rows: another file, a changed row or a new
        item gives another signature (a resumed run must see the data it was trained on)."""
        digest = hashlib.sha256(json.dumps([self.item_ids, self.user_ids]).encode())
        for name in ("train", "valid", "test"):
            split = self.split(name)
            for tensor in (split.history, split.target, split.user):
                digest.update(tensor.contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def text_signature(self) -> str:
        """A short hash of the item texts: the text encoders' input, which ``signature`` leaves out so that an ID
        model's run may resume after its texts (shown by recommend) were edited."""
        return hashlib.sha256(json.dumps(self.item_texts).encode()).hexdigest()[:16]

    def renumbered(self, item_ids: list[str]) -> RecDataset:
        """This dataset with its items numbered as ``item_ids`` (the same items in another order, e.g. a
        model's catalogue: items are numbered by first appearance, so another log of the same items numbers them
        otherwise). Texts, titles, cold items and every split's item columns follow."""
        if sorted(item_ids) != sorted(self.item_ids):
            raise ValueError("renumbered needs the same items in another order")
        index = {item: i + 1 for i, item in enumerate(item_ids)}
        new = torch.tensor([0] + [index[item] for item in self.item_ids], dtype=torch.int64)  # [N + 1] old -> new
        old = torch.argsort(new)[1:] - 1  # [N] new position -> old position (0-based)

        def split(data: SplitData) -> SplitData:
            return dataclasses.replace(
                data, history=new[data.history], target=new[data.target], past_items=new[data.past_items]
            )

        texts, titles = ([values[i] for i in old.tolist()] if values else values for values in
                         (self.item_texts, self.item_titles))  # fmt: skip
        return dataclasses.replace(
            self,
            train=split(self.train),
            valid=split(self.valid),
            test=split(self.test),
            item_ids=list(item_ids),
            item_texts=texts,
            item_titles=titles,
            cold_items=sorted(int(new[i]) for i in self.cold_items),
        )

    def user_histories(self) -> dict[str, list[str]]:
        """Each user's whole known sequence of item ids, oldest first: the full past and the target of the
        user's latest row (test, else validation, else the longest training row). Users with no row (one
        interaction) are absent."""
        latest: dict[int, tuple[SplitData, int, int]] = {}  # user index -> (split, row, past length)
        for data in (self.train, self.valid, self.test):  # later splits hold later rows
            lengths = (data.past_offsets[1:] - data.past_offsets[:-1]).tolist()  # [R]
            for row, (user, length) in enumerate(zip(data.user.tolist(), lengths)):
                known = latest.get(user)
                if known is None or known[0] is not data or length >= known[2]:
                    latest[user] = (data, row, length)

        def sequence(data: SplitData, row: int) -> list[str]:
            past = data.past_items[data.past_offsets[row] : data.past_offsets[row + 1]].tolist()
            return [self.item_ids[i - 1] for i in [*past, int(data.target[row])]]

        return {self.user_ids[user]: sequence(data, row) for user, (data, row, _) in latest.items()}

    def untrained_items(self) -> torch.Tensor:
        """[N + 1] bool: items no training row holds, as history or target (the cold items of the evaluation
        groups); padding is none."""
        cold = ~warm_item_mask(self.train.history, self.train.target, self.num_items)
        cold[0] = False
        return cold


def warm_item_mask(train_history: torch.Tensor, train_target: torch.Tensor, num_items: int) -> torch.Tensor:
    """[N + 1] bool: items seen in any training row (history or target); padding is never warm."""
    warm = torch.zeros(num_items + 1, dtype=torch.bool)
    warm[train_history.flatten()] = True
    warm[train_target] = True
    warm[0] = False
    return warm


# --------------------------------------------------------------------------------------------- filtering
def filter_interactions(raw: RawInteractions, config: DataConfig) -> RawInteractions:
    """Rating threshold, then iterative k-core on users and items."""
    keep = np.ones(len(raw.users), dtype=bool)
    if config.min_rating is not None:
        keep &= raw.ratings >= config.min_rating
    users, items, times = raw.users[keep], raw.items[keep], raw.times[keep]
    if config.k_core > 1:
        while len(users):
            _, user_codes, user_counts = np.unique(users, return_inverse=True, return_counts=True)
            _, item_codes, item_counts = np.unique(items, return_inverse=True, return_counts=True)
            core = (user_counts[user_codes] >= config.k_core) & (item_counts[item_codes] >= config.k_core)
            if core.all():
                break
            users, items, times = users[core], items[core], times[core]
    if len(users) == 0:
        raise DataError(
            f"no interactions left after filtering (min_rating={config.min_rating}, k_core={config.k_core}). "
            "Lower --min_rating or --k_core."
        )
    return dataclasses.replace(raw, users=users, items=items, times=times, ratings=None)


def first_appearance_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous codes 0.. in order of first appearance (deterministic, unlike set order)."""
    uniques, first_index, codes = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first_index, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[codes], uniques[order]


# ----------------------------------------------------------------------------------------------- splits
def build_rows(
    items: np.ndarray, starts: np.ndarray, positions: np.ndarray, max_history: int
) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded histories [R, L] and targets [R] for target positions in the flat sorted item array.

    ``starts[r]`` is where row r's user begins; the history is items[max(start, pos - L):pos].
    """
    columns = positions[:, None] - max_history + np.arange(max_history)[None, :]  # [R, L]
    valid = columns >= starts[:, None]
    history = np.where(valid, items[np.clip(columns, 0, None)], 0)
    return history.astype(np.int64), items[positions].astype(np.int64)


def past_items_csr(items: np.ndarray, starts: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every earlier item of each row's user (untruncated), as CSR offsets [R + 1] and items [P]."""
    lengths = positions - starts
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    return offsets, items[flat].astype(np.int64)


def split_positions(
    config: DataConfig, user_starts: np.ndarray, user_ends: np.ndarray, times: np.ndarray
) -> dict[str, np.ndarray]:
    """Target positions (indices into the flat sorted arrays) of each split. Every target has a non-empty
    history; a training target is always earlier than every validation/test target of its user."""
    counts = user_ends - user_starts
    user_of = np.repeat(np.arange(len(counts)), counts)
    index_in_user = np.arange(len(times)) - user_starts[user_of]
    has_history = index_in_user >= 1
    if config.split in ("leave_one_out", "cold_items"):
        # Users with >= 3 items give their last item to test and the one before to validation; shorter
        # users only train.
        from_end = counts[user_of] - 1 - index_in_user  # 0 = last item
        evaluated = counts[user_of] >= 3
        test = has_history & evaluated & (from_end == 0)
        valid = has_history & evaluated & (from_end == 1)
        train = has_history & ~test & ~valid
    else:
        train = has_history & (times < config.valid_time)
        valid = has_history & (times >= config.valid_time) & (times < config.test_time)
        test = has_history & (times >= config.test_time)
    return {name: np.flatnonzero(mask) for name, mask in (("train", train), ("valid", valid), ("test", test))}


def cold_count(num_items: int, fraction: float) -> int:
    """Cold items of a ``fraction`` of ``num_items``: at least one, and at least one item left warm."""
    return min(max(1, round(fraction * num_items)), num_items - 1)


def cold_item_mask(items: np.ndarray, times: np.ndarray, fraction: float) -> np.ndarray:
    """[N + 1] bool: the newest ``fraction`` of items 1..N by first appearance (ties: lower id first)."""
    num_items = int(items.max())
    first = np.full(num_items + 1, np.inf)
    np.minimum.at(first, items, times)
    order = np.lexsort((np.arange(1, num_items + 1), first[1:])) + 1  # oldest first
    cold = np.zeros(num_items + 1, dtype=bool)
    cold[order[num_items - cold_count(num_items, fraction) :]] = True
    return cold


def random_cold_mask(num_items: int, fraction: float, seed: int) -> np.ndarray:
    """[N + 1] bool: a uniform random ``fraction`` of items 1..N drawn from ``seed`` alone (not the training
    seed). A prefix of one permutation, so for one seed a smaller fraction's items are among a larger one's."""
    cold = np.zeros(num_items + 1, dtype=bool)
    cold[np.random.default_rng(seed).permutation(num_items)[: cold_count(num_items, fraction)] + 1] = True
    return cold


def select_cold_items(
    config: DataConfig, num_items: int, items: np.ndarray | None = None, times: np.ndarray | None = None
) -> np.ndarray:
    """[N + 1] bool: the cold items of the cold_items split by ``config.cold_selection`` ('newest' reads the
    flat ``items`` and their ``times``; the config refuses it for data without timestamps)."""
    if config.cold_selection == "random":
        return random_cold_mask(num_items, config.cold_fraction, config.cold_seed)
    return cold_item_mask(items, times, config.cold_fraction)


def training_without_cold_items(
    items: np.ndarray, users: np.ndarray, positions: dict[str, np.ndarray], cold: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat (items, users, user starts, target positions) of the training rows of the cold_items split: the
    interactions before each user's evaluation targets, minus every interaction with a ``cold`` item."""
    keep = ~cold[items]
    keep[positions["valid"]] = keep[positions["test"]] = False
    # Evaluated users' targets are their last two interactions, so dropping them keeps every row's past intact.
    kept_items, kept_users = items[keep], users[keep]
    counts = np.bincount(kept_users, minlength=int(users.max()) + 1)
    starts = np.cumsum(counts) - counts
    index_in_user = np.arange(len(kept_items)) - starts[kept_users]
    return kept_items, kept_users, starts, np.flatnonzero(index_in_user >= 1)


def published_without_cold_items(rows: PublishedRows, cold: np.ndarray) -> PublishedRows:
    """Published training rows minus every interaction with a ``cold`` item: a row whose target is cold is
    dropped, cold items leave the other rows' histories, and a row left without history is dropped (like an
    unsplit user's first item, it has nothing to predict from)."""
    lengths = rows.positions - rows.starts + 1  # history + target of each row
    row_of = np.repeat(np.arange(len(lengths)), lengths)
    flat = np.repeat(rows.starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())
    warm = ~cold[rows.items[flat]]
    kept_per_row = np.bincount(row_of[warm], minlength=len(lengths))
    keep_row = ~cold[rows.items[rows.positions]] & (kept_per_row >= 2)
    counts = kept_per_row[keep_row]
    starts = np.cumsum(counts) - counts
    items = rows.items[flat[warm & keep_row[row_of]]]
    return PublishedRows(rows.users[keep_row], items, starts, starts + counts - 1)


def published_cold_split(published: PublishedSplit, config: DataConfig) -> tuple[PublishedSplit, np.ndarray]:
    """The published split with its training rows cut to warm items (validation and test kept exactly), and
    the [N + 1] bool cold mask."""
    cold = select_cold_items(config, len(published.item_ids))
    train = published_without_cold_items(published.rows["train"], cold)
    if not len(train.users):
        raise DataError(
            f"no training row is left once the {int(cold.sum())} cold items are taken out: lower --cold_fraction."
        )
    return dataclasses.replace(published, rows=published.rows | {"train": train}), cold


def cold_stats(config: DataConfig, cold: np.ndarray, splits: dict[str, SplitData]) -> dict:
    """What metrics.json records of a cold_items split: the selection, its seed, the cold items and the rows
    with a cold target; and the items no training row holds (what evaluation treats as cold: the selection plus
    any other item never seen in training)."""
    train = splits["train"]
    seen = np.zeros(len(cold), dtype=bool)
    seen[train.history.flatten().numpy()] = seen[train.target.numpy()] = True
    cold_tensor = torch.from_numpy(cold)
    return {
        "cold_selection": config.cold_selection,
        "cold_seed": config.cold_seed if config.cold_selection == "random" else None,
        "cold_fraction": config.cold_fraction,
        "cold_items": int(cold.sum()),
        "items_not_in_training": int((~seen[1:]).sum()),
        **{f"{name}_cold_target_rows": int(cold_tensor[splits[name].target].sum()) for name in ("valid", "test")},
    }


def published_split_rows(rows: PublishedRows, max_history: int) -> SplitData:
    """One published split as tensors: histories cut to the most recent ``max_history`` items, the full
    published history kept as each row's past."""
    history, target = build_rows(rows.items, rows.starts, rows.positions, max_history)
    offsets, past = past_items_csr(rows.items, rows.starts, rows.positions)
    arrays = (history, target, rows.users, offsets, past)
    return SplitData(*(torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)) for array in arrays))


def published_dataset(published: PublishedSplit, config: DataConfig) -> RecDataset:
    """The dataset of pre-split benchmark files, their rows as published; on the cold_items split, the
    training rows without the cold items."""
    cold = None
    if config.split == "cold_items":
        published, cold = published_cold_split(published, config)
    splits = {name: published_split_rows(rows, config.max_history) for name, rows in published.rows.items()}
    stats = published.stats | {"train_rows": len(splits["train"])}
    if cold is not None:
        stats |= cold_stats(config, cold, splits)
    return RecDataset(
        splits["train"],
        splits["valid"],
        splits["test"],
        published.item_ids,
        published.user_ids,
        published.item_texts,
        stats,
        published.item_titles,
        [] if cold is None else np.flatnonzero(cold).tolist(),
    )


def build_dataset(config: DataConfig) -> RecDataset:
    """Read, filter, split and tensorise (no cache; see :func:`load_dataset`); pre-split files keep their split."""
    if config.data_format == "recbole_split":
        return published_dataset(read_benchmark_files(config), config)
    raw = filter_interactions(read_interactions(config), config)
    user_codes, user_ids = first_appearance_codes(raw.users)
    item_codes, item_ids = first_appearance_codes(raw.items)
    order = np.lexsort((raw.times, user_codes))  # stable: ties in time keep file order
    users, items, times = user_codes[order], item_codes[order] + 1, raw.times[order]  # items 1..N
    counts = np.bincount(users, minlength=len(user_ids))
    user_ends = np.cumsum(counts)
    user_starts = user_ends - counts
    positions = split_positions(config, user_starts, user_ends, times)
    not_evaluated = int((counts < 3).sum()) if config.split != "global_time" else 0
    repeated = repeated_rows(users, items, times)
    if len(positions["test"]):
        warn_not_evaluated({"users_not_evaluated": not_evaluated, "users": len(counts), "repeated_rows": repeated})
    # cold_items: training rows come from the histories with every cold item (and evaluation target) removed.
    sources = {name: (items, users, user_starts, rows) for name, rows in positions.items()}
    cold = None
    if config.split == "cold_items":
        cold = select_cold_items(config, len(item_ids), items, times)
        sources["train"] = training_without_cold_items(items, users, positions, cold)
    for name, (_, _, _, rows) in sources.items():
        if len(rows) == 0:
            raise DataError(_empty_split_message(name, config, times))
    splits = {name: split_tensors(*source, config.max_history) for name, source in sources.items()}
    texts = [raw.item_texts.get(str(item), "") for item in item_ids]
    titles = [raw.item_titles.get(str(item)) or text for item, text in zip(item_ids, texts)]
    stats = {
        "users": int(len(user_ids)),
        "items": int(len(item_ids)),
        "interactions": int(len(items)),
        **{f"{name}_rows": len(split) for name, split in splits.items()},
        "items_with_text": int(sum(bool(t) for t in texts)),
        "users_not_evaluated": not_evaluated,
        **({"repeated_rows": repeated} if repeated else {}),
        **({} if cold is None else cold_stats(config, cold, splits)),
    }
    return RecDataset(
        splits["train"],
        splits["valid"],
        splits["test"],
        [str(i) for i in item_ids],
        [str(u) for u in user_ids],
        texts,
        stats,
        titles,
        [] if cold is None else np.flatnonzero(cold).tolist(),
    )


def split_tensors(
    items: np.ndarray, users: np.ndarray, user_starts: np.ndarray, rows: np.ndarray, max_history: int
) -> SplitData:
    """One split's tensors from the flat sorted arrays and its target positions ``rows`` (non-empty)."""
    starts = user_starts[users[rows]]
    history, target = build_rows(items, starts, rows, max_history)
    offsets, past = past_items_csr(items, starts, rows)
    arrays = (history, target, users[rows], offsets, past)
    return SplitData(*(torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)) for array in arrays))


def _empty_split_message(name: str, config: DataConfig, times: np.ndarray) -> str:
    if config.split == "global_time":
        return (
            f"the {name} split is empty: timestamps span [{times.min():.0f}, {times.max():.0f}] but "
            f"valid_time={config.valid_time}, test_time={config.test_time}. Choose cut-offs inside that range."
        )
    if name == "train" and config.split == "cold_items":
        return (
            f"the train split is empty once the cold items (--cold_fraction {config.cold_fraction}) and every "
            "evaluation target are taken out of the histories: lower --cold_fraction or add data."
        )
    if name == "train":  # a training target needs an item before it, and the last two are held out
        needed = "at least 4 interactions (a first item as history, a training target, a validation and a test item)"
    else:
        needed = "at least 3 interactions (a first item as history, a validation and a test item)"
    return (
        f"the {name} split is empty: leave_one_out needs users with {needed}. Lower --k_core/--min_rating or add data."
    )


# ------------------------------------------------------------------------------------------------ cache
def default_cache_dir() -> Path:
    return Path(os.environ.get("HYBRID_REAREC_CACHE", Path.home() / ".cache" / "hybrid-rearec"))


def cache_key(config: DataConfig) -> str:
    """Hash of every setting that changes the processed tensors, and of the source files' identity."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k != "cache_dir"}
    if config.dataset in BUILTIN_DATASETS:
        from .readers import recbole_dataset_dir

        files = sorted(recbole_dataset_dir(config.dataset).glob(f"{config.dataset}.*"))
    else:
        source = Path(config.dataset)
        # A file's siblings of the same name count too: a RecBole NAME.inter reads the NAME.item beside it.
        files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
        if source.is_file():
            files += sorted(p for p in source.parent.glob(f"{glob.escape(source.stem)}.*") if p != source)
        if config.item_file:
            files.append(Path(config.item_file))
    fingerprints = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.exists()]
    blob = json.dumps([CACHE_VERSION, settings, fingerprints], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_dataset(dataset: RecDataset, folder: Path) -> None:
    """Write atomically: a temporary folder renamed into place, so readers never see half a cache."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    tensors = {
        f"{name}.{column.name}": getattr(dataset.split(name), column.name).contiguous()
        for name in ("train", "valid", "test")
        for column in dataclasses.fields(SplitData)
    }
    save_file(tensors, temporary / "tensors.safetensors")
    meta = {
        "version": CACHE_VERSION,
        "item_ids": dataset.item_ids,
        "user_ids": dataset.user_ids,
        "item_texts": dataset.item_texts,
        "item_titles": dataset.item_titles,
        "stats": dataset.stats,
        "cold_items": dataset.cold_items,
        "data_warnings": dataset.data_warnings,
    }
    (temporary / "meta.json").write_text(json.dumps(meta))
    try:
        os.replace(temporary, folder)
    except OSError:  # another process finished the same cache first: theirs is identical
        shutil.rmtree(temporary, ignore_errors=True)


def read_cached_dataset(folder: Path) -> RecDataset:
    tensors = load_file(folder / "tensors.safetensors")
    meta = json.loads((folder / "meta.json").read_text())
    splits = {
        name: SplitData(**{f.name: tensors[f"{name}.{f.name}"] for f in dataclasses.fields(SplitData)})
        for name in ("train", "valid", "test")
    }
    return RecDataset(
        splits["train"],
        splits["valid"],
        splits["test"],
        meta["item_ids"],
        meta["user_ids"],
        meta["item_texts"],
        meta["stats"],
        meta.get("item_titles") or meta["item_texts"],
        meta.get("cold_items", []),
        meta["data_warnings"],  # a cache without them (an older version) is rebuilt by load_dataset
    )


def repeated_rows(users: np.ndarray, items: np.ndarray, times: np.ndarray) -> int:
    """How many rows [M] repeat an earlier row exactly: user, item and time."""
    return int(pd.DataFrame({"user": users, "item": items, "time": times}).duplicated().sum())


def warn_not_evaluated(stats: dict) -> None:
    """The users too short to evaluate and the rows repeated exactly."""
    if stats.get("repeated_rows"):
        warnings.warn(
            f"{stats['repeated_rows']} rows repeat an earlier row exactly (user, item and time): they are "
            "kept, so an item can be its own next target. Drop the repeats first if they are not real repeat "
            "interactions.",
            DataWarning,
            stacklevel=3,
        )
    if stats.get("users_not_evaluated"):
        warnings.warn(
            f"{stats['users_not_evaluated']} of {stats['users']} users have fewer than 3 interactions after "
            "filtering: they are not evaluated, and those with one interaction add no training row either. Set "
            "--k_core 3 to drop them, or keep them as extra training data.",
            DataWarning,
            stacklevel=3,
        )


def build_recording_warnings(config: DataConfig) -> RecDataset:
    """``build_dataset``, its warnings said as usual and its ``DataWarning``s kept in ``data_warnings``: the
    cache stores them, so a rerun from the cache warns of missing texts or odd ids as the first run did."""
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            dataset = build_dataset(config)
    finally:  # said where they arose, under the caller's own filters; before a failure too (they may explain it)
        for warning in said:
            module = next((name for name, m in list(sys.modules.items()) if getattr(m, "__file__", None) ==
                           warning.filename), None)  # fmt: skip
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno, module)
    dataset.data_warnings = [str(w.message) for w in said if issubclass(w.category, DataWarning)]
    return dataset


def load_dataset(config: DataConfig, use_cache: bool = True, progress: bool = False) -> RecDataset:
    """Processed dataset for ``config``: from the on-disk cache when present, else built and cached (with
    ``progress``, a bar over those steps: the first build of a large file takes a while, a cached load does not)."""
    folder = Path(config.cache_dir or default_cache_dir()) / "data" / cache_key(config)
    if use_cache and (folder / "meta.json").exists():
        try:
            cached = read_cached_dataset(folder)
        except Exception:  # noqa: BLE001 - an unreadable cache is rebuilt, never trusted
            shutil.rmtree(folder, ignore_errors=True)
        else:
            for message in cached.data_warnings:  # a cached load says what the first read of the files said
                warnings.warn(message, DataWarning, stacklevel=2)
            return cached
    name = Path(config.dataset).name or config.dataset
    with tqdm(total=2 if use_cache else 1, desc=f"Preparing {name}", unit="step", disable=not progress) as bar:
        bar.set_postfix_str("reading, filtering, splitting")
        dataset = build_recording_warnings(config)
        bar.update()
        if use_cache:
            bar.set_postfix_str("caching for the next run")
            try:
                save_dataset(dataset, folder)
            except OSError as error:  # the cache only saves time: a run goes on without it
                warnings.warn(
                    f"the processed dataset could not be cached in {folder} ({error.strerror or error}): the next "
                    "run reads the files again. Give a writable --cache_dir (or HYBRID_REAREC_CACHE).",
                    stacklevel=2,
                )
            bar.update()
    return dataset


# --------------------------------------------------------------------------------------------- batching
class ShardedBatch(NamedTuple):
    """This process's contiguous slice of one global batch."""

    rows: torch.Tensor  # [b] row indices of this process
    offset: int  # position of rows[0] in the global batch
    global_rows: torch.Tensor  # [G] every row of the global batch


def shard_batches(
    num_rows: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1
) -> Iterator[ShardedBatch]:
    """Yield this process's slice of each global batch of an epoch.

    The permutation depends only on (seed, epoch), so every process sees the same global batches and takes
    a disjoint contiguous slice of each: no duplicates, and N processes see exactly the rows of 1 process.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(num_rows, generator=generator)
    for start in range(0, num_rows, batch_size):
        yield _sharded(order[start : start + batch_size], rank, world_size)


def packed_batches(
    targets: torch.Tensor, budget: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1
) -> Iterator[ShardedBatch]:
    """Like :func:`shard_batches` for rows holding ``targets`` [R] targets each: rows in an order fixed by
    (seed, epoch), packed into global batches of at most ``budget`` targets (a row larger than the budget
    goes alone); every process takes a contiguous slice of each."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(targets), generator=generator)
    batch, held = [], 0
    for row, count in zip(order.tolist(), targets[order].tolist()):
        if batch and held + count > budget:
            yield _sharded(torch.tensor(batch), rank, world_size)
            batch, held = [], 0
        batch.append(row)
        held += count
    if batch:
        yield _sharded(torch.tensor(batch), rank, world_size)


def _sharded(global_batch: torch.Tensor, rank: int, world_size: int) -> ShardedBatch:
    slices = torch.tensor_split(global_batch, world_size)
    return ShardedBatch(slices[rank], sum(len(part) for part in slices[:rank]), global_batch)


def num_batches(num_rows: int, batch_size: int) -> int:
    return -(-num_rows // batch_size)
