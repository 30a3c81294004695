import hybrid_rearec.hybrid.data as data_module
import numpy as np
import pytest
import torch
from hybrid_rearec.hybrid.config import DataConfig
from hybrid_rearec.hybrid.data import build_dataset, load_dataset, shard_batches
from hybrid_rearec.hybrid.errors import DataError


def user_sequences(dataset):
    """Each user's full item sequence, rebuilt from the test rows (history + target)."""
    sequences = {}
    for row in range(len(dataset.test)):
        history = dataset.test.history[row]
        past = dataset.test.past_items[dataset.test.past_offsets[row] : dataset.test.past_offsets[row + 1]]
        assert torch.equal(history[history > 0], past[-(history > 0).sum() :])
        sequences[int(dataset.test.user[row])] = past.tolist() + [int(dataset.test.target[row])]
    return sequences


def test_leave_one_out_rows_and_no_leakage(csv_data_config):
    dataset = build_dataset(csv_data_config)
    assert dataset.stats["users"] == 40 and dataset.stats["items"] == 30
    assert len(dataset.valid) == len(dataset.test) == 40
    assert len(dataset.train) == 40 * (12 - 3)  # targets 2..n-2 of every user
    sequences = user_sequences(dataset)
    for row in range(len(dataset.valid)):
        user = int(dataset.valid.user[row])
        assert int(dataset.valid.target[row]) == sequences[user][-2]
    # no training row's target or history reaches the user's validation/test positions
    for user, sequence in sequences.items():
        rows = (dataset.train.user == user).nonzero().flatten()
        targets = dataset.train.target[rows].tolist()
        assert targets == sequence[1:-2]
        for k, row in enumerate(rows.tolist()):  # row k predicts sequence[k + 1] from what came before it
            history = dataset.train.history[row]
            assert history[history > 0].tolist() == sequence[max(0, k + 1 - 8) : k + 1]


def test_histories_are_left_padded_and_truncated(tmp_path):
    from tests.conftest import write_sequential_csv

    path = write_sequential_csv(tmp_path / "long.csv", num_users=3, num_items=50, length=20)
    dataset = build_dataset(DataConfig(dataset=str(path), data_format="csv", max_history=5))
    assert dataset.train.history.shape[1] == 5
    first = dataset.train.history[0]
    assert first.tolist()[:4] == [0, 0, 0, 0] and first[-1] > 0
    # a long history keeps the 5 most recent items, the last column being the item just before the target
    test_history = dataset.test.history[0].tolist()
    assert 0 not in test_history
    seq = dataset.test.past_items[dataset.test.past_offsets[0] : dataset.test.past_offsets[1]].tolist()
    assert test_history == seq[-5:]


def test_global_time_split(sequential_csv):
    config = DataConfig(
        dataset=str(sequential_csv), data_format="csv", split="global_time", valid_time=3000, test_time=3500
    )
    dataset = build_dataset(config)
    times = {}
    import pandas as pd

    frame = pd.read_csv(sequential_csv)
    for _, row in frame.iterrows():
        times[(row.user_id, row.item_id)] = row.timestamp
    users, items = dataset.user_ids, dataset.item_ids
    for split, low, high in (("train", -np.inf, 3000), ("valid", 3000, 3500), ("test", 3500, np.inf)):
        part = dataset.split(split)
        assert len(part) > 0
        for row in range(len(part)):
            t = times[(users[int(part.user[row])], items[int(part.target[row]) - 1])]
            assert low <= t < high
            for item in part.history[row][part.history[row] > 0].tolist():
                assert times[(users[int(part.user[row])], items[item - 1])] < t


def test_k_core_and_rating_filters(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(
        "user_id,item_id,timestamp,rating\n"
        + "\n".join(
            [f"u1,i{k},{k},5" for k in range(5)] + [f"u2,i{k},{k},5" for k in range(5)] + ["u3,i9,1,5", "u3,i0,2,1"]
        )
        + "\n"
    )
    dataset = build_dataset(DataConfig(dataset=str(path), data_format="csv", k_core=2))
    assert dataset.stats["users"] == 3 - 1 and dataset.stats["items"] == 5  # u3 and i9 drop out together
    with pytest.raises(DataError, match=r"no interactions left after filtering.*Lower --min_rating or --k_core"):
        build_dataset(DataConfig(dataset=str(path), data_format="csv", k_core=50))
    with pytest.raises(DataError, match="no interactions left"):
        build_dataset(DataConfig(dataset=str(path), data_format="csv", rating_column="rating", min_rating=6))


def test_users_with_one_interaction_only_is_an_error(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("user_id,item_id,timestamp\nu1,i1,1\nu2,i2,2\n")
    with pytest.raises(DataError, match="split is empty"):
        build_dataset(DataConfig(dataset=str(path), data_format="csv"))


def test_users_with_three_interactions_only_leave_no_training_row_and_the_error_says_four(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"u{u},i{t},{t}\n" for u in range(3) for t in range(3)))
    with pytest.raises(DataError, match="the train split is empty: leave_one_out needs users with at least 4"):
        build_dataset(DataConfig(dataset=str(path), data_format="csv"))
    (tmp_path / "y.csv").write_text(path.read_text() + "u0,i3,3\n")  # one user with a training target is enough
    assert len(build_dataset(DataConfig(dataset=str(tmp_path / "y.csv"), data_format="csv")).train.target) == 1
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"u{u},i{t},{t}\n" for u in range(3) for t in range(4)))
    cold = DataConfig(dataset=str(path), data_format="csv", split="cold_items", cold_fraction=0.9)
    with pytest.raises(DataError, match=r"train split is empty once the cold items \(--cold_fraction 0.9\)"):
        build_dataset(cold)


def test_processed_tensors_are_cached(csv_data_config, monkeypatch):
    first = load_dataset(csv_data_config)
    calls = []
    monkeypatch.setattr(data_module, "build_dataset", lambda config: calls.append(config))
    second = load_dataset(csv_data_config)
    assert calls == []
    assert torch.equal(first.train.history, second.train.history) and first.item_ids == second.item_ids
    changed = DataConfig(**{**csv_data_config.__dict__, "max_history": 4})
    with pytest.raises(AttributeError):  # a different config misses the cache and calls the builder
        load_dataset(changed)
    assert len(calls) == 1


def test_movielens_100k_matches_recbole_counts():
    dataset = load_dataset(DataConfig())
    assert (len(dataset.train), len(dataset.valid), len(dataset.test)) == (97_171, 943, 943)
    assert dataset.num_items == 1682


def test_shards_cover_each_batch_without_duplicates():
    for world in (1, 2, 3):
        seen = []
        for rank in range(world):
            for rows, offset, global_rows in shard_batches(103, 10, seed=1, epoch=2, rank=rank, world_size=world):
                seen.extend(rows.tolist())
                assert len(global_rows) <= 10
                assert global_rows[offset : offset + len(rows)].tolist() == rows.tolist()
        assert sorted(seen) == list(range(103))
    single = [batch.rows.tolist() for batch in shard_batches(103, 10, seed=1, epoch=2)]
    pair = [
        a.rows.tolist() + b.rows.tolist()
        for a, b in zip(shard_batches(103, 10, 1, 2, 0, 2), shard_batches(103, 10, 1, 2, 1, 2))
    ]
    assert single == pair


def test_rows_repeated_exactly_are_counted_in_a_warning_and_kept(tmp_path):
    rows = "".join(f"u{u},i{k},{k}\n" for u in range(4) for k in range(5))
    path = tmp_path / "x.csv"
    path.write_text("user_id,item_id,timestamp\n" + rows + "u1,i4,4\nu2,i3,3\n")
    with pytest.warns(UserWarning, match="2 rows repeat an earlier row exactly"):
        dataset = build_dataset(DataConfig(dataset=str(path), data_format="csv"))
    assert dataset.stats["interactions"] == 22 and dataset.stats["repeated_rows"] == 2


def test_the_cache_key_sees_the_item_file_beside_a_recbole_inter_file(tmp_path):
    (tmp_path / "d.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nu\ti\t1\n")
    config = DataConfig(dataset=str(tmp_path / "d.inter"), data_format="recbole")
    before = data_module.cache_key(config)
    (tmp_path / "d.item").write_text("item_id:token\ttitle:token_seq\ni\tA title\n")  # read with the .inter
    assert data_module.cache_key(config) != before
