import math

import pytest
import torch
from hybrid_rearec.hybrid.metrics import metric_keys, metric_means, metrics_from_ranks, shared_metric_keys, target_ranks


def test_ranks_count_ties_against_the_target():
    scores = torch.tensor(
        [
            [float("-inf"), 0.9, 0.5, 0.5, 0.1],  # target 1: best -> rank 0
            [float("-inf"), 0.9, 0.5, 0.5, 0.1],  # target 2: one better, one tie -> rank 2
            [float("-inf"), 0.9, 0.5, 0.5, 0.1],  # target 4: last of 4 real items -> rank 3
        ]
    )
    ranks = target_ranks(scores, torch.tensor([1, 2, 4]))
    assert ranks.tolist() == [0, 2, 3]


def test_constant_score_model_scores_zero():
    num_items = 80  # more than the largest cut-off (50)
    scores = torch.zeros(5, num_items + 1)
    scores[:, 0] = float("-inf")  # padding
    ranks = target_ranks(scores, torch.tensor([1, 7, 12, 29, 80]))
    assert ranks.tolist() == [num_items - 1] * 5
    assert all(value == 0.0 for value in metric_means(ranks).values())


def test_metrics_match_hand_computed_values_and_cutoffs():
    ranks = torch.tensor([0, 4, 5, 9, 10, 19, 20])
    m = metrics_from_ranks(ranks)
    assert m["recall@5"].tolist() == [1, 1, 0, 0, 0, 0, 0]
    assert m["recall@10"].tolist() == [1, 1, 1, 1, 0, 0, 0]
    assert m["recall@20"].tolist() == [1, 1, 1, 1, 1, 1, 0]
    expected_ndcg10 = [1.0, 1 / math.log2(6), 1 / math.log2(7), 1 / math.log2(11), 0, 0, 0]
    assert torch.allclose(m["ndcg@10"], torch.tensor(expected_ndcg10, dtype=torch.float64))
    assert torch.allclose(m["mrr@5"], torch.tensor([1, 1 / 5, 0, 0, 0, 0, 0], dtype=torch.float64))
    assert torch.allclose(m["mrr@20"], torch.tensor([1, 1 / 5, 1 / 6, 1 / 10, 1 / 11, 1 / 20, 0], dtype=torch.float64))
    means = metric_means(ranks)
    assert abs(means["recall@10"] - 4 / 7) < 1e-12


def test_nan_scores_never_count_as_hits():
    scores = torch.tensor([[float("-inf"), float("nan"), 0.3, 0.2]])
    assert target_ranks(scores, torch.tensor([1])).tolist() == [2]


def test_random_ranking_metrics_are_the_chance_level():
    from hybrid_rearec.hybrid.metrics import random_ranking_metrics

    expected = random_ranking_metrics(1682)
    harmonic = sum(1 / math.log2(r + 2) for r in range(10))  # 4.543
    assert expected["ndcg@10"] == pytest.approx(harmonic / 1682)
    assert expected["recall@20"] == pytest.approx(20 / 1682) and expected["mrr@5"] == pytest.approx(
        sum(1 / r for r in range(1, 6)) / 1682
    )
    assert random_ranking_metrics(3)["recall@5"] == pytest.approx(1.0)  # fewer candidates than the cut-off
    with pytest.raises(ValueError, match="num_candidates"):
        random_ranking_metrics(0)


def test_runs_saved_before_a_cutoff_joined_are_compared_on_the_shared_ones():
    new = metric_means(torch.tensor([0, 3, 60]))
    old = {key: value for key, value in new.items() if not key.endswith("@50")}  # a run saved before 50 joined
    assert "ndcg@50" in new and shared_metric_keys([new]) == metric_keys()
    assert shared_metric_keys([new, old]) == metric_keys((5, 10, 20))
