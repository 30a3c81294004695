"""The cold_items split and warm/cold-target evaluation."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hybrid_rearec.hybrid.config import DataConfig
from hybrid_rearec.hybrid.data import build_dataset, cold_item_mask, warm_item_mask
from hybrid_rearec.hybrid.evaluate import evaluate

from tests.conftest import write_sequential_csv


def test_cold_items_are_the_newest_by_first_appearance():
    items = np.array([1, 2, 3, 1, 4, 5])
    times = np.array([5.0, 1.0, 9.0, 0.0, 9.0, 3.0])
    # first appearance: 1 -> 0, 2 -> 1, 5 -> 3, 3 -> 9, 4 -> 9 (tie: lower id first)
    assert np.flatnonzero(cold_item_mask(items, times, 0.4)).tolist() == [3, 4]
    assert np.flatnonzero(cold_item_mask(items, times, 0.01)).tolist() == [4]  # at least one


def test_cold_items_split_removes_every_cold_interaction_from_training(tmp_path):
    path = write_sequential_csv(tmp_path / "x.csv", num_users=30, num_items=25, length=10, planted=False)
    loo = build_dataset(DataConfig(dataset=str(path), data_format="csv", max_history=6))
    cold = build_dataset(DataConfig(dataset=str(path), data_format="csv", max_history=6, split="cold_items"))
    for name in ("valid", "test"):  # evaluation rows are leave-one-out's, over the full histories
        assert torch.equal(loo.split(name).history, cold.split(name).history)
        assert torch.equal(loo.split(name).target, cold.split(name).target)
    cold_ids = torch.from_numpy(np.flatnonzero(cold_item_mask_from(cold)))
    train = cold.train
    assert len(cold_ids) == round(0.1 * cold.num_items)
    assert not torch.isin(train.target, cold_ids).any() and not torch.isin(train.history, cold_ids).any()
    assert len(train) < len(loo.train)
    warm = warm_item_mask(train.history, train.target, cold.num_items)
    assert not warm[cold_ids].any()  # the model sees them as cold
    assert torch.isin(cold.test.target, cold_ids).any()  # some test targets are cold


def cold_item_mask_from(dataset):
    """The cold items of a cold_items dataset: items that appear in evaluation rows but never in training."""
    warm = warm_item_mask(dataset.train.history, dataset.train.target, dataset.num_items).numpy()
    return ~warm & (np.arange(dataset.num_items + 1) > 0)


class FixedScores(torch.nn.Module):
    """A model whose scores are a fixed [N + 1] vector for every user: 1-d item vectors, every user vector 1."""

    def __init__(self, scores):
        super().__init__()
        self.num_items = len(scores) - 1
        table = torch.cat([torch.zeros(1), scores[1:]])[:, None]  # [N + 1, 1], padding row 0
        self.item_encoder = SimpleNamespace(item_table=lambda: table)
        self.scoring_table = lambda: table

    def user_vectors(self, history, steps=None):
        return torch.ones(len(history), 1)


def test_warm_and_cold_target_metrics_and_ranking_among_cold_items(tmp_path):
    path = write_sequential_csv(tmp_path / "x.csv", num_users=4, num_items=6, length=5)
    split = build_dataset(DataConfig(dataset=str(path), data_format="csv")).test
    split.target[:] = torch.tensor([1, 2, 5, 6])
    scores = torch.tensor([float("-inf"), 6.0, 5.0, 4.0, 3.0, 2.0, 1.0])  # item i ranks i - 1 overall
    cold = torch.tensor([False, False, False, False, True, True, True])  # items 4, 5, 6
    result = evaluate(FixedScores(scores), split, "test", cold_items=cold)
    assert result.ranks.tolist() == [0, 1, 4, 5]
    assert result.group_rows == {"warm targets": 2, "cold targets": 2, "cold targets among cold items": 2}
    assert result.groups["warm targets"]["recall@5"] == 1.0
    assert result.groups["cold targets"]["recall@5"] == 0.5  # ranks 4 and 5
    among_cold = result.groups["cold targets among cold items"]  # items 5 and 6 rank 1 and 2 among 4, 5, 6
    assert among_cold["mrr@5"] == (1 / 2 + 1 / 3) / 2
    assert "groups" in result.to_dict() and result.to_dict()["groups"]["cold targets"]["rows"] == 2
    chance = result.to_dict()["random_ranking"]  # expected metrics of a random ranking: 6 items, 3 cold
    assert chance["all 6 items"]["recall@5"] == 5 / 6 and chance["3 cold items"]["recall@5"] == 1.0


def test_seen_items_softmax_leaves_cold_items_out_of_training():
    from hybrid_rearec.hybrid.config import ModelConfig
    from hybrid_rearec.hybrid.model import HybridRecommender
    from hybrid_rearec.reasoning.objectives import cross_entropy, item_logits

    torch.manual_seed(0)
    model = HybridRecommender(ModelConfig(hidden_size=8, num_heads=2, inner_size=16), num_items=6, max_history=4)
    model.eval()  # no dropout: the two losses below see the same states
    history = torch.tensor([[0, 1, 2, 3], [0, 0, 2, 4]])
    target = torch.tensor([4, 1])
    seen = torch.tensor([False, True, True, True, True, False, False])  # items 5 and 6 are cold
    model.set_softmax_items(seen)
    loss = model(history, target).loss
    loss.backward()
    table = model.item_encoder.item_table().detach()
    states = model.user_vectors(history).detach()
    logits = item_logits(states, table)
    logits[:, 5:] = float("-inf")  # the softmax of the seen items only
    assert torch.allclose(loss, cross_entropy(logits, target, model.config.temperature), atol=1e-6)
    grad = model.item_encoder.embedding.weight.grad  # [N + 1, D]
    assert grad[1:5].abs().sum() > 0 and torch.all(grad[5:] == 0)  # cold rows: not even negatives
    with pytest.raises(ValueError, match="outside the training-softmax"):
        model(history, torch.tensor([5, 1]))  # a cold item cannot be a training target
    model.set_softmax_items(None)  # back to every item: cold rows are negatives again
    model.zero_grad()
    model(history, target).loss.backward()
    assert grad is not None and model.item_encoder.embedding.weight.grad[5:].abs().sum() > 0
