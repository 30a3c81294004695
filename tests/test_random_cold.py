"""Cold items chosen at random (``cold_selection='random'``): for data without timestamps, pre-split or not."""

from collections import Counter

import numpy as np
import pytest
import torch
from hybrid_rearec.hybrid.config import DataConfig, ModelConfig, TrainConfig
from hybrid_rearec.hybrid.data import (
    build_dataset,
    cache_key,
    load_dataset,
    random_cold_mask,
    sequence_rows,
    warm_item_mask,
)
from hybrid_rearec.hybrid.errors import ConfigError

from tests.conftest import write_sequential_csv
from tests.test_benchmark_files import SEQUENCES, published_rows, rows_of, write_benchmark

RANDOM = dict(split="cold_items", cold_selection="random")
COLD_TOKENS = {"2", "3", "10", "11"}  # the toy catalogue's 25 % drawn with cold_seed 0 (item i + 1 is token i)


def toy_config(folder, **overrides) -> DataConfig:
    settings = dict(dataset=str(folder), data_format="recbole_split", cold_fraction=0.25, **RANDOM)
    return DataConfig(**(settings | overrides))


def cold_ids(dataset) -> torch.Tensor:
    return torch.tensor(dataset.cold_items, dtype=torch.long)


def test_the_random_selection_is_fixed_by_its_seed_and_respects_the_fraction():
    first = random_cold_mask(1000, 0.1, seed=0)
    assert np.array_equal(first, random_cold_mask(1000, 0.1, seed=0))
    assert not np.array_equal(first, random_cold_mask(1000, 0.1, seed=1))
    assert first.sum() == 100 and not first[0]  # the fraction of items 1..N; padding is never cold
    assert not (first & ~random_cold_mask(1000, 0.2, seed=0)).any()  # a smaller fraction nests in a larger one
    assert random_cold_mask(5, 0.01, seed=0).sum() == 1 and random_cold_mask(5, 0.99, seed=0).sum() == 4


def test_presplit_training_rows_lose_every_cold_interaction_and_evaluation_rows_stay(tmp_path):
    folder = write_benchmark(tmp_path / "toy")
    dataset = build_dataset(toy_config(folder))
    assert {dataset.item_ids[i - 1] for i in dataset.cold_items} == COLD_TOKENS
    published = rows_of(SEQUENCES)
    expected = Counter()  # cold targets dropped, cold items out of histories, rows left without history dropped
    for user, history, target in published["train"]:
        kept = [token for token in history.split() if token not in COLD_TOKENS]
        if target not in COLD_TOKENS and kept:
            expected[(user, " ".join(kept), target)] += 1
    assert published_rows(dataset, "train") == expected and len(dataset.train) < len(published["train"])
    train, cold = dataset.train, cold_ids(dataset)
    for column in (train.history, train.target, train.past_items):
        assert not torch.isin(column, cold).any()
    for split in ("valid", "test"):  # as published: cold items stay in the histories, targets may be cold
        assert published_rows(dataset, split) == Counter(published[split])
        assert torch.isin(dataset.split(split).history, cold).any()
    assert torch.isin(dataset.test.target, cold).sum() == dataset.stats["test_cold_target_rows"] == 1
    sequence_rows(train, max_history=4)  # still one row per interaction, in time order (loss_positions 'all')
    stats = dataset.stats
    assert (stats["cold_selection"], stats["cold_seed"], stats["cold_items"]) == ("random", 0, 4)
    assert stats["train_rows"] == len(train) and stats["valid_cold_target_rows"] == 1


def test_other_seeds_choose_other_cold_items(tmp_path):
    folder = write_benchmark(tmp_path / "toy")
    chosen = {seed: build_dataset(toy_config(folder, cold_seed=seed)).cold_items for seed in (0, 1, 2)}
    assert len({tuple(items) for items in chosen.values()}) == 3 and all(len(c) == 4 for c in chosen.values())
    assert build_dataset(toy_config(folder, cold_seed=1)).cold_items == chosen[1]


def test_unsplit_data_takes_the_random_cold_items_out_of_training_only(tmp_path):
    path = write_sequential_csv(tmp_path / "x.csv", num_users=30, num_items=25, length=10, planted=False)
    common = dict(dataset=str(path), data_format="csv", max_history=6)
    loo = build_dataset(DataConfig(**common))
    cold = build_dataset(DataConfig(**common, **RANDOM, cold_seed=4))
    cold_items = cold_ids(cold)
    assert cold_items.tolist() == np.flatnonzero(random_cold_mask(25, 0.1, seed=4)).tolist()
    for column in (cold.train.history, cold.train.target, cold.train.past_items):
        assert not torch.isin(column, cold_items).any()
    for name in ("valid", "test"):  # leave-one-out's rows over the full histories
        assert torch.equal(loo.split(name).history, cold.split(name).history)
        assert torch.equal(loo.split(name).target, cold.split(name).target)
    assert torch.isin(cold.test.target, cold_items).sum() == cold.stats["test_cold_target_rows"] > 0
    assert cold.stats["cold_items"] == round(0.1 * 25) == len(cold_items) and cold.stats["cold_seed"] == 4


def test_evaluation_treats_every_selected_item_as_cold(tmp_path):
    """The run's cold set is the items no training row holds (hybrid.build): the selection, plus items that
    training never held anyway (here the toy's items found only in item2index or only as evaluation targets)."""
    dataset = build_dataset(toy_config(write_benchmark(tmp_path / "toy")))
    unseen = ~warm_item_mask(dataset.train.history, dataset.train.target, dataset.num_items)
    unseen[0] = False
    assert unseen[cold_ids(dataset)].all()
    assert int(unseen.sum()) == dataset.stats["items_not_in_training"] > dataset.stats["cold_items"]


def test_a_run_reports_cold_target_groups_and_records_the_selection(tmp_path):
    from hybrid_rearec.hybrid.train import train

    data = toy_config(write_benchmark(tmp_path / "toy"), max_history=4)
    model = ModelConfig(hidden_size=16, num_layers=1, num_heads=2, inner_size=32, reasoning_steps=1)
    settings = dict(epochs=1, batch_size=8, report_to="none", progress=False, seed=3)
    results = train(data, model, TrainConfig(output_dir=str(tmp_path / "run"), **settings))
    dataset = load_dataset(data)
    unseen = ~warm_item_mask(dataset.train.history, dataset.train.target, dataset.num_items)
    groups = results["test"]["groups"]
    assert groups["cold targets"]["rows"] == int(unseen[dataset.test.target].sum()) >= 1
    assert {"warm targets", "cold targets among cold items"} <= set(groups)
    unseen_count = dataset.stats["items_not_in_training"]
    assert set(results["test"]["random_ranking"]) == {"all 16 items", f"{unseen_count} cold items"}
    recorded = results["data"]
    assert (recorded["cold_selection"], recorded["cold_seed"], recorded["cold_items"]) == ("random", 0, 4)


def test_selection_on_warm_targets_chooses_the_epoch_by_warm_rows_only(tmp_path, monkeypatch):
    """Validation scores scripted per epoch (overall, warm targets): the whole split picks epoch 1, its warm
    rows epoch 2."""
    import dataclasses

    from hybrid_rearec.hybrid import fit
    from hybrid_rearec.hybrid.evaluate import EvalResult
    from hybrid_rearec.hybrid.train import train

    result = EvalResult("valid", {"ndcg@10": 0.3}, torch.zeros(4), groups={"warm targets": {"ndcg@10": 0.5}})
    assert result.selection_score("all") == 0.3 and result.selection_score("warm_targets") == 0.5
    assert EvalResult("valid", {"ndcg@10": 0.3}, torch.zeros(4)).selection_score("warm_targets") == 0.3  # no cold
    data = toy_config(write_benchmark(tmp_path / "toy"), max_history=4)
    model = ModelConfig(hidden_size=16, num_layers=1, num_heads=2, inner_size=32)
    real = fit.Run.eval_split
    for select_on, best in (("all", 1), ("warm_targets", 2)):
        scripted = iter([(0.5, 0.1), (0.2, 0.4), (0.1, 0.05)])

        def eval_split(self, split, steps=None, scripted=scripted):
            found = real(self, split, steps)
            if split != "valid":
                return found
            overall, warm = next(scripted)
            groups = found.groups | {"warm targets": found.groups["warm targets"] | {"ndcg@10": warm}}
            return dataclasses.replace(found, metrics=found.metrics | {"ndcg@10": overall}, groups=groups)

        monkeypatch.setattr(fit.Run, "eval_split", eval_split)
        train_config = TrainConfig(output_dir=str(tmp_path / select_on), select_on=select_on, epochs=3, batch_size=8,
                                   report_to="none", progress=False)  # fmt: skip
        results = train(data, model, train_config)
        assert results["best_epoch"] == best and results["valid"]["metrics"]["ndcg@10"] == (0.5, 0.2)[best - 1]
        assert ("selection_ndcg@10" in results["epoch_log"][0]) == (select_on != "all")
        said = "warm-target rows only" if select_on != "all" else "selected on validation NDCG@10 only"
        assert results["test"]["protocol"].endswith(said)  # the protocol names the rows that chose


def test_the_cache_key_holds_the_selection_and_the_cache_keeps_the_cold_items(tmp_path):
    folder = write_benchmark(tmp_path / "toy")
    keys = {cache_key(toy_config(folder, cold_seed=seed)) for seed in (0, 1)}
    keys.add(cache_key(toy_config(folder, cold_fraction=0.3)))
    assert len(keys) == 3
    path = write_sequential_csv(tmp_path / "x.csv", num_users=10, num_items=12, length=6)
    unsplit = dict(dataset=str(path), data_format="csv", split="cold_items")
    assert cache_key(DataConfig(**unsplit)) != cache_key(DataConfig(**unsplit, cold_selection="random"))
    built = build_dataset(toy_config(folder)).cold_items
    assert load_dataset(toy_config(folder)).cold_items == load_dataset(toy_config(folder)).cold_items == built


@pytest.mark.parametrize(
    "settings,message",
    [
        (dict(split="cold_items", data_format="recbole_split"), r"'newest'.*no timestamps\. Use --cold_selection"),
        (dict(cold_selection="random"), r"^cold_selection='random' applies to split='cold_items' only.*--split cold_"),
        (dict(split="cold_items", cold_seed=3), r"^cold_seed=3 seeds cold_selection='random' only"),
        (dict(split="cold_items", cold_fraction=1.0), r"^cold_fraction must be in \(0, 1\)"),
        (dict(**RANDOM, cold_fraction=0.0), r"^cold_fraction must be in \(0, 1\)"),
        (dict(**RANDOM, cold_seed=-1), r"^cold_seed must be >= 0"),
        (dict(split="cold_items", cold_selection="oldest"), r"cold_selection='oldest' is not one of"),
    ],
)
def test_bad_cold_settings_are_refused_naming_the_fix(settings, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig(**({"dataset": "x.csv", "data_format": "csv"} | settings))
