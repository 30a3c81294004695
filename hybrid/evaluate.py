"""Full-ranking evaluation (DESIGN.md section 4), one process or many.

Each process scores its share of the rows against the whole item table, a batch of users at a time (memory
is batch x items), turns scores into target ranks and gathers only those per-row ranks; every metric is a
function of the rank, so the gathered result equals a single-process run exactly.

Shape legend: B users in a batch, N items, D hidden size, R rows of the split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from hybrid.data import SplitData
from hybrid.metrics import DEFAULT_CUTOFFS, metric_keys, metric_means, target_ranks


@dataclass
class EvalResult:
    """Mean metrics of a split, the per-row ranks they come from, and the protocol that produced them."""

    split: str
    metrics: dict[str, float]
    ranks: torch.Tensor = field(repr=False)  # [R] rank of each row's target, in row order
    protocol: str = ""

    def to_dict(self) -> dict:
        return {
            "split": self.split,
            "rows": int(self.ranks.numel()),
            "metrics": self.metrics,
            "protocol": self.protocol,
        }


def describe_protocol(num_items: int, exclude_history: bool, split_protocol: str, rows: int) -> str:
    return (
        f"full ranking against all {num_items} items (padding masked); rank = number of other items scoring "
        f">= the target (ties count against it); user's past items "
        f"{'EXCLUDED (target kept)' if exclude_history else 'not excluded'}; {split_protocol} split; "
        f"means over {rows} rows; model selected on validation NDCG@10 only"
    )


@torch.no_grad()
def rank_batch(
    model,
    split: SplitData,
    rows: torch.Tensor,
    item_table: torch.Tensor,
    exclude_history: bool,
    steps: int | None = None,
) -> torch.Tensor:
    """Ranks [B] of the targets of ``rows`` (a batch of row indices) against every item."""
    device = item_table.device
    history, target = split.batch(rows)
    history, target = history.to(device), target.to(device)
    scores = model.score(model.user_vectors(history, steps), item_table)  # [B, N + 1]
    if exclude_history:
        target_score = scores.gather(1, target[:, None])  # [B, 1]
        positions, items = split.past_mask_indices(rows)
        scores[positions.to(device), items.to(device)] = float("-inf")
        scores.scatter_(1, target[:, None], target_score)  # a repeated target is never masked
    return target_ranks(scores, target)


@torch.no_grad()
def evaluate(
    model,
    split: SplitData,
    split_name: str,
    batches: Iterable[torch.Tensor] | None = None,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 1024,
    exclude_history: bool = False,
    split_protocol: str = "leave_one_out",
    cutoffs=DEFAULT_CUTOFFS,
    steps: int | None = None,
) -> EvalResult:
    """Evaluate ``model`` (an unwrapped HybridRecommender) on ``split``.

    ``batches`` yields this process's row indices (default: every row, in order); ``gather`` collects a
    per-row tensor from all processes (``accelerator.gather_for_metrics``; default: identity).
    ``steps`` runs fewer reasoning steps than trained (default: all).
    """
    was_training = model.training
    model.eval()
    item_table = model.item_encoder.item_table()  # [N + 1, D], computed once for the whole split
    if batches is None:
        batches = torch.arange(len(split)).split(batch_size)
    gather = gather or (lambda tensor: tensor)
    all_rows, all_ranks = [], []
    for rows in batches:
        rows = rows.cpu()
        ranks = rank_batch(model, split, rows, item_table, exclude_history, steps)
        all_rows.append(gather(rows.to(item_table.device)).cpu())
        all_ranks.append(gather(ranks).cpu())
    model.train(was_training)
    rows = torch.cat(all_rows)
    ranks = torch.empty(len(split), dtype=torch.long)
    ranks[rows] = torch.cat(all_ranks)
    if torch.unique(rows).numel() != len(split):
        raise RuntimeError(f"evaluation covered {torch.unique(rows).numel()} of {len(split)} rows")
    protocol = describe_protocol(model.num_items, exclude_history, split_protocol, len(split))
    return EvalResult(split_name, metric_means(ranks, cutoffs), ranks, protocol)


def format_table(results: dict[str, dict[str, float]], cutoffs=DEFAULT_CUTOFFS) -> str:
    """Markdown table: one row per named result, one column per metric."""
    keys = metric_keys(cutoffs)
    lines = ["| model | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name, metrics in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[k]:.4f}" for k in keys) + " |")
    return "\n".join(lines)
