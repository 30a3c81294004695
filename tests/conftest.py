"""Shared fixtures: everything offline, caches in temporary folders, tiny data written in code."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hybrid_rearec.hybrid.config import DataConfig, ModelConfig  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRID_REAREC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    torch.manual_seed(0)


def write_sequential_csv(path, num_users=40, num_items=30, length=12, seed=0, planted=True):
    """Interactions with a learnable signal: each user walks item i -> i+1 (mod N) from a random start."""
    rng = np.random.default_rng(seed)
    lines = ["user_id,item_id,timestamp,rating"]
    for user in range(num_users):
        start = int(rng.integers(num_items))
        for step in range(length):
            item = (start + step) % num_items if planted else int(rng.integers(num_items))
            lines.append(f"u{user},i{item},{1000 + user * 100 + step},{1 + (step % 5)}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def sequential_csv(tmp_path):
    return write_sequential_csv(tmp_path / "interactions.csv")


@pytest.fixture
def csv_data_config(sequential_csv):
    return DataConfig(dataset=str(sequential_csv), data_format="csv", max_history=8)


@pytest.fixture
def tiny_model_config():
    return ModelConfig(
        hidden_size=16, num_layers=2, num_heads=2, inner_size=32, hidden_dropout=0.1, attention_dropout=0.1
    )
