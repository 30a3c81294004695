"""The synthetic generator: deterministic, Zipf popularity, a planted signal, readable by the CSV reader."""

import numpy as np
import pytest
from hybrid_rearec.hybrid.config import DataConfig
from hybrid_rearec.hybrid.data import build_dataset
from hybrid_rearec.hybrid.synthetic import SyntheticConfig, generate, synthetic_dataset, write


def test_same_seed_same_data_and_the_planted_signal_is_there():
    config = SyntheticConfig(users=500, items=2000, mean_length=10, signal=0.6, seed=3)
    first, second = generate(config), generate(config)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    other = generate(SyntheticConfig(users=500, items=2000, mean_length=10, signal=0.6, seed=4))
    assert not np.array_equal(first[1], other[1])
    users, items, _, categories = first
    same_user = users[1:] == users[:-1]
    # The most frequent successor of each item: consecutive pairs agreeing with it show the planted signal.
    pairs = np.stack([items[:-1][same_user], items[1:][same_user]], axis=1)
    unique, counts = np.unique(pairs, axis=0, return_counts=True)
    repeated = counts[counts > 1].sum() / len(pairs)
    assert repeated > 0.3  # random pairs of 2000 items almost never repeat
    popularity = np.sort(np.bincount(items, minlength=2000))[::-1]
    assert popularity[0] > 10 * max(popularity[999], 1)  # Zipf: the head is far above the median item
    assert (categories >= 0).all()


def test_written_files_read_back_and_the_direct_dataset_keeps_every_item(tmp_path):
    config = SyntheticConfig(users=60, items=400, mean_length=6, seed=1)
    interactions, item_file = write(config, tmp_path / "syn")
    dataset = build_dataset(
        DataConfig(dataset=str(interactions), data_format="csv", item_file=str(item_file), max_history=8)
    )
    assert dataset.stats["interactions"] == len(generate(config)[0]) and dataset.stats["test_rows"] == 60
    assert all(text for text in dataset.item_texts)
    direct = synthetic_dataset(config, max_history=8)
    assert direct.num_items == 400 and len(direct.test) == 60  # untouched items stay in the catalogue
    assert int(direct.train.target.min()) >= 1 and int(direct.test.history.max()) <= 400


def test_the_command_says_how_many_items_occur_and_refuses_bad_sizes_in_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "make_synthetic.py"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "s"), "--users", "20", "--items", "500"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    occurring = build_dataset(DataConfig(dataset=str(tmp_path / "s" / "interactions.csv"), data_format="csv"))
    assert done.returncode == 0 and f": {occurring.num_items} of the 500 items occur" in done.stdout
    refused = subprocess.run([sys.executable, str(script), str(tmp_path / "t"), "--users", "0"], capture_output=True,
                             text=True, timeout=120)  # fmt: skip
    assert (
        refused.returncode == 2
        and refused.stderr.startswith("error: need users >= 1")
        and "Traceback" not in refused.stderr
    )
    for odd in ({"mean_length": float("nan")}, {"zipf_exponent": float("inf")}, {"seed": -1}):
        with pytest.raises(ValueError, match="need finite mean_length, zipf_exponent and signal, and seed >= 0"):
            SyntheticConfig(**odd)
