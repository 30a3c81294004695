"""Synthetic sequential data of any size: Zipf item popularity, a planted sequential signal, item texts.

Each item i has a fixed successor s(i) (a random permutation, drawn once). A user starts at a popular item;
each next item is s(previous) with probability ``signal``, else a fresh draw from the Zipf popularity. A
model that learns the transitions beats popularity, so accuracy is measurable at every scale. Items carry a
category that their successor shares, and a text built from it, so text encoders have something to read.
Deterministic from the seed. Written as a plain CSV (user_id, item_id, timestamp) and an item CSV (item_id,
title, category), readable with ``--data_format csv --item_file``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ADJECTIVES = ["quiet", "bright", "rapid", "ancient", "bold", "gentle", "hidden", "lucky", "modern", "silver"]
NOUNS = ["river", "engine", "garden", "signal", "harbor", "canvas", "forest", "ladder", "market", "comet"]


@dataclass
class SyntheticConfig:
    users: int = 10_000
    items: int = 100_000
    mean_length: float = 12.0  # interactions per user (at least 3, so every user has valid and test rows)
    zipf_exponent: float = 1.0  # popularity of the item at rank r is proportional to r^-exponent
    signal: float = 0.6  # probability that the next item is the previous item's planted successor
    categories: int = 50
    seed: int = 0

    def __post_init__(self):
        if not all(math.isfinite(v) for v in (self.mean_length, self.zipf_exponent, self.signal)) or self.seed < 0:
            raise ValueError("need finite mean_length, zipf_exponent and signal, and seed >= 0")
        if self.users < 1 or self.items < 2 or self.mean_length < 3:
            raise ValueError("need users >= 1, items >= 2 and mean_length >= 3")
        if not 0 <= self.signal <= 1 or self.zipf_exponent < 0 or self.categories < 1:
            raise ValueError("need 0 <= signal <= 1, zipf_exponent >= 0 and categories >= 1")


def generate(config: SyntheticConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(users [M], items [M], timestamps [M], item categories [items]); item ids are 0..items-1."""
    rng = np.random.default_rng(config.seed)
    weights = np.arange(1, config.items + 1, dtype=np.float64) ** -config.zipf_exponent
    popularity = np.cumsum(weights / weights.sum())
    rank_to_item = rng.permutation(config.items)  # which item holds popularity rank r

    def popular(size: int) -> np.ndarray:
        ranks = np.minimum(np.searchsorted(popularity, rng.random(size)), config.items - 1)
        return rank_to_item[ranks]

    successor = rng.permutation(config.items)
    categories = np.full(config.items, -1, dtype=np.int64)  # an item's successor shares its category
    successors = successor.tolist()
    for start in range(config.items):  # walk each successor cycle once, giving it one category
        if categories[start] != -1:
            continue
        category, cycle, item = int(rng.integers(config.categories)), [], start
        while item != start or not cycle:
            cycle.append(item)
            item = successors[item]
        categories[cycle] = category

    lengths = np.maximum(3, rng.poisson(config.mean_length - 3, config.users) + 3)
    current = popular(config.users)
    steps = [current]
    for _ in range(1, int(lengths.max())):
        follow = rng.random(config.users) < config.signal
        current = np.where(follow, successor[current], popular(config.users))
        steps.append(current)
    walk = np.stack(steps, axis=1)  # [users, max length]
    keep = np.arange(walk.shape[1])[None, :] < lengths[:, None]
    users = np.repeat(np.arange(config.users), lengths)
    items = walk[keep]
    times = (np.arange(walk.shape[1])[None, :] + 1_000 * np.arange(config.users)[:, None])[keep]
    return users, items, times, categories


def item_title(item: int) -> str:
    return f"{ADJECTIVES[item % 10]} {NOUNS[(item // 10) % 10]} {item}"


def write(config: SyntheticConfig, folder: str | Path) -> tuple[Path, Path]:
    """Write interactions.csv and items.csv into ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    users, items, times, categories = generate(config)
    interactions, item_file = folder / "interactions.csv", folder / "items.csv"
    with open(interactions, "w") as out:
        out.write("user_id,item_id,timestamp\n")
        out.writelines(f"u{u},i{i},{t}\n" for u, i, t in zip(users.tolist(), items.tolist(), times.tolist()))
    with open(item_file, "w") as out:
        out.write("item_id,title,category\n")
        out.writelines(f"i{i},{item_title(i)},category {c}\n" for i, c in zip(range(config.items), categories.tolist()))
    return interactions, item_file


def synthetic_dataset(config: SyntheticConfig, max_history: int = 50):
    """The generated data as a leave-one-out RecDataset whose catalogue is every item 1..N (also the ones no
    user touched, as a real large catalogue has), without writing or reading files."""
    import torch

    from .config import DataConfig
    from .data import RecDataset, SplitData, build_rows, past_items_csr, split_positions

    users, items, times, categories = generate(config)  # already sorted by user, then time
    items = items + 1  # ids 1..N, 0 is padding
    counts = np.bincount(users, minlength=config.users)
    ends = np.cumsum(counts)
    starts = ends - counts
    positions = split_positions(DataConfig(), starts, ends, times.astype(np.float64))
    splits = {}
    for name, rows in positions.items():
        row_starts = starts[users[rows]]
        history, target = build_rows(items, row_starts, rows, max_history)
        offsets, past = past_items_csr(items, row_starts, rows)
        splits[name] = SplitData(
            *(torch.from_numpy(a) for a in (history, target, users[rows].astype(np.int64), offsets, past))
        )
    titles = [item_title(i) for i in range(config.items)]
    stats = {"users": config.users, "items": config.items, "interactions": int(len(items))}
    stats |= {f"{name}_rows": len(split) for name, split in splits.items()}
    return RecDataset(
        splits["train"],
        splits["valid"],
        splits["test"],
        [f"i{i}" for i in range(config.items)],
        [f"u{u}" for u in range(config.users)],
        [f"{title}. Category {c}" for title, c in zip(titles, categories.tolist())],
        stats,
        titles,
    )
