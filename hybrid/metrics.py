"""Rank-based metrics for one relevant item per row.

rank = number of OTHER items whose score is >= the target's (0 = best). Ties count against the target, so
a model that gives every item the same score ranks every target last and scores zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

DEFAULT_CUTOFFS = (5, 10, 20, 50)  # 50: the cut-off of the text-based SeqRec tables (UniSRec, VQ-Rec)
METRIC_NAMES = ("recall", "ndcg", "mrr")


def target_ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Scores [B, N] (masked items at -inf), target ids [B] -> ranks [B] (int64)."""
    target_score = scores.gather(1, target[:, None])  # [B, 1]
    at_or_above = (scores >= target_score).sum(dim=1)  # [B], includes the target itself
    # A NaN target score compares false with everything: rank it last instead of first.
    worst = (~torch.isneginf(scores)).sum(dim=1) - 1  # every unmasked item ranks above it
    return torch.where(torch.isnan(target_score[:, 0]), worst, at_or_above - 1)


def metrics_from_ranks(ranks: torch.Tensor, cutoffs=DEFAULT_CUTOFFS) -> dict[str, torch.Tensor]:
    """Per-row metric vectors {'recall@10': [B], 'ndcg@10': [B], 'mrr@10': [B], ...} from ranks [B]."""
    ranks = ranks.double()
    out = {}
    for k in cutoffs:
        hit = (ranks < k).double()
        out[f"recall@{k}"] = hit
        out[f"ndcg@{k}"] = hit / torch.log2(ranks + 2.0)
        out[f"mrr@{k}"] = hit / (ranks + 1.0)
    return out


def metric_means(ranks: torch.Tensor, cutoffs=DEFAULT_CUTOFFS) -> dict[str, float]:
    """Mean of every metric over rows."""
    return {name: float(values.mean()) for name, values in metrics_from_ranks(ranks, cutoffs).items()}


def metric_keys(cutoffs=DEFAULT_CUTOFFS) -> list[str]:
    return [f"{name}@{k}" for name in METRIC_NAMES for k in cutoffs]


def shared_metric_keys(results: Iterable[Mapping[str, float]], cutoffs=DEFAULT_CUTOFFS) -> list[str]:
    """The standard metric keys that every result has, in standard order: runs saved before a cut-off joined
    the standard ones (50 did) are still summarised and compared, on the cut-offs they share."""
    results = list(results)
    return [key for key in metric_keys(cutoffs) if all(key in result for result in results)]


def random_ranking_metrics(num_candidates: int, cutoffs=DEFAULT_CUTOFFS) -> dict[str, float]:
    """Expected metrics of a uniformly random ranking of ``num_candidates`` items (the target equally likely
    at every rank): the chance level a model must beat, e.g. 4.54 / N for NDCG@10."""
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be >= 1, got {num_candidates}")
    return metric_means(torch.arange(num_candidates), cutoffs)
