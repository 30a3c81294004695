"""Full-ranking evaluation (DESIGN.md section 4), one process or many.

Each process ranks its share of the rows against the whole item table, a batch of users against a chunk of
items at a time (hybrid/ranking.py: memory is bounded by a budget, never users x items), and gathers only
the per-row target ranks; every metric is a function of the rank, so the gathered result equals a
single-process run exactly.

Shape legend: B users in a batch, N items, D hidden size, R rows of the split.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .data import SplitData
from .errors import DataError
from .metrics import DEFAULT_CUTOFFS, metric_means, random_ranking_metrics, shared_metric_keys
from .ranking import DEFAULT_MEMORY_BYTES, chunked_target_ranks, item_chunk_size
from .tables import markdown_table


@dataclass
class EvalResult:
    """Mean metrics of a split, the per-row ranks they come from, and the protocol that produced them."""

    split: str
    metrics: dict[str, float]
    ranks: torch.Tensor = field(repr=False)  # [R] rank of each row's target, in row order
    protocol: str = ""
    # Metrics of the rows whose target is warm (has training interactions) or cold, and of the cold-target
    # rows ranked among cold items only; with their row counts.
    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    group_rows: dict[str, int] = field(default_factory=dict)
    # Expected metrics of a uniformly random ranking, for the cold-target groups (chance level).
    random_ranking: dict[str, dict[str, float]] = field(default_factory=dict)

    def selection_score(self, rows: str = "all") -> float:
        """The NDCG@10 that chooses the best epoch and the depth: of every row, or ('warm_targets') of the rows
        whose target is warm (every row when no target is cold: then there are no groups)."""
        if rows == "warm_targets" and "warm targets" in self.groups:
            return self.groups["warm targets"]["ndcg@10"]
        return self.metrics["ndcg@10"]

    def to_dict(self) -> dict:
        return {
            "split": self.split,
            "rows": int(self.ranks.numel()),
            "metrics": self.metrics,
            "groups": {name: {"rows": self.group_rows[name], "metrics": m} for name, m in self.groups.items()},
            "random_ranking": self.random_ranking,
            "protocol": self.protocol,
        }


def progress_bar(iterable: Iterable | None, description: str, enabled: bool, total: int | None = None) -> tqdm:
    """A tqdm bar on stderr that leaves no line behind (the step prints its own result). Redrawn every second on
    a terminal, every 30 s into a log file, so a long job's log is not flooded."""
    return tqdm(
        iterable,
        total=total,
        desc=description,
        leave=False,
        disable=not enabled,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
    )


def describe_protocol(
    num_items: int, exclude_history: bool, split_protocol: str, rows: int, select_on: str = "all"
) -> str:
    """The evaluation protocol in words (``select_on``: the validation rows the training run chose on)."""
    selected = "validation NDCG@10" if select_on == "all" else "the validation NDCG@10 of warm-target rows"
    return (
        f"full ranking against all {num_items} items (padding masked); rank = number of other items scoring "
        f">= the target (ties count against it); user's past items "
        f"{'EXCLUDED (target kept)' if exclude_history else 'not excluded'}; {split_protocol} split; "
        f"means over {rows} rows; model selected on {selected} only"
    )


@torch.no_grad()
def rank_batch(
    model,
    split: SplitData,
    rows: torch.Tensor,
    item_table: torch.Tensor,
    exclude_history: bool,
    steps: int | None = None,
    cold_items: torch.Tensor | None = None,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Ranks [B] of the targets of ``rows`` (a batch of row indices) against every item; with ``cold_items``
    ([N + 1] bool) also the rank among cold items only (-1 where the target is warm)."""
    device = item_table.device
    history, target = split.batch(rows)
    history, target = history.to(device), target.to(device)
    users = model.user_vectors(history, steps)  # [B, D]
    past = None
    if exclude_history:
        positions, items = split.past_mask_indices(rows)
        past = positions.to(device), items.to(device)
    chunk = item_chunk_size(len(rows), memory_bytes)
    return chunked_target_ranks(users, item_table, target, chunk, past, cold_items)


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
    cutoffs: Iterable[int] = DEFAULT_CUTOFFS,
    steps: int | None = None,
    cold_items: torch.Tensor | None = None,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    progress: bool = False,
    select_on: str = "all",
) -> EvalResult:
    """Evaluate ``model`` (an unwrapped HybridRecommender) on ``split`` (``dataset.test`` or ``dataset.valid``
    of the data the model was trained on, whose item numbering it shares: ``hybrid.run_folder.run_dataset``
    reads a run's data again).

    ``batches`` yields this process's row indices (default: every row, in order); ``gather`` collects a
    per-row tensor from all processes (``accelerator.gather_for_metrics``; default: identity).
    ``steps`` sets the reasoning depth (default: the model's ``inference_steps``, else every trained step).
    ``cold_items`` ([N + 1] bool, items without training interactions) adds warm-target and cold-target
    metrics. ``memory_bytes`` bounds one users x items score block. ``progress`` shows a bar over the batches
    (pass it on the main process only). ``select_on`` (the training run's setting) is named in the protocol.
    """
    check_split(model, split)
    was_training = model.training
    model.eval()
    item_table = model.scoring_table()  # [N + 1, D], computed once for the whole split
    if batches is None:
        batches = torch.arange(len(split)).split(batch_size)
    gather = gather or (lambda tensor: tensor)
    if cold_items is not None:
        cold_items = cold_items.to(item_table.device)
    all_rows, all_ranks, all_cold_ranks = [], [], []
    depth = "" if steps is None else f" at {steps} steps"
    for rows in progress_bar(batches, f"Evaluating {split_name}{depth}", progress):
        rows = rows.cpu()
        ranks, cold_ranks = rank_batch(model, split, rows, item_table, exclude_history, steps, cold_items, memory_bytes)
        all_rows.append(gather(rows.to(item_table.device)).cpu())
        all_ranks.append(gather(ranks).cpu())
        if cold_ranks is not None:
            all_cold_ranks.append(gather(cold_ranks).cpu())
    model.train(was_training)
    rows = torch.cat(all_rows)
    ranks = torch.empty(len(split), dtype=torch.long)
    ranks[rows] = torch.cat(all_ranks)
    if torch.unique(rows).numel() != len(split):
        raise RuntimeError(f"evaluation covered {torch.unique(rows).numel()} of {len(split)} rows")
    protocol = describe_protocol(model.num_items, exclude_history, split_protocol, len(split), select_on)
    result = EvalResult(split_name, metric_means(ranks, cutoffs), ranks, protocol)
    if cold_items is not None:
        cold_ranks = torch.empty(len(split), dtype=torch.long)
        cold_ranks[rows] = torch.cat(all_cold_ranks)
        # With exclude_history the candidate count differs per row: no single random-ranking figure.
        random = not exclude_history
        add_cold_start_groups(result, cold_items.cpu(), split.target, cold_ranks, model.num_items, cutoffs, random)
    return result


def check_split(model, split: SplitData) -> None:
    """Refuse what cannot be this model's split: another type, or item ids beyond its catalogue."""
    if not isinstance(split, SplitData):
        what = "a dataset: pass one of its splits, dataset.test or dataset.valid" if hasattr(split, "test") else ""
        raise TypeError(
            f"evaluate takes a SplitData (dataset.test or dataset.valid), got {what or type(split).__name__}"
        )
    if not len(split):
        return
    largest = max(int(split.history.max()), int(split.target.max()))
    if largest > model.num_items:
        raise DataError(
            f"the split holds item id {largest} but the model knows {model.num_items} items: evaluate on the data "
            "the model was trained on (hybrid.run_folder.run_dataset reads a run's data again)."
        )


def add_cold_start_groups(
    result: EvalResult,
    cold_items: torch.Tensor,  # [N + 1] bool
    targets: torch.Tensor,  # [R] the split's target of every row
    cold_ranks: torch.Tensor,  # [R] rank among cold items only (-1 where the target is warm)
    num_items: int,
    cutoffs,
    random_ranking: bool = True,
) -> None:
    """Warm-target, cold-target and cold-among-cold metrics, with (``random_ranking``) the expected metrics
    of a random ranking beside them."""
    cold_target = cold_items[targets]  # [R]
    for name, mask, values in (
        ("warm targets", ~cold_target, result.ranks),
        ("cold targets", cold_target, result.ranks),
        ("cold targets among cold items", cold_target, cold_ranks),
    ):
        result.group_rows[name] = int(mask.sum())
        if mask.any():
            result.groups[name] = metric_means(values[mask], cutoffs)
    if not random_ranking:
        return
    num_cold = int(cold_items.sum())
    result.random_ranking = {
        f"all {num_items} items": random_ranking_metrics(num_items, cutoffs),
        **({f"{num_cold} cold items": random_ranking_metrics(num_cold, cutoffs)} if num_cold else {}),
    }


def format_groups(result: EvalResult, split_name: str) -> str | None:
    """The warm-target and cold-target groups beside a random ranking of each cold group; None without cold
    targets."""
    if not result.group_rows.get("cold targets"):
        return None
    return format_table(
        {f"{split_name}, {group} ({result.group_rows[group]} rows)": m for group, m in result.groups.items()}
        | {f"random ranking of {group}": m for group, m in result.random_ranking.items()}
    )


def format_table(results: dict[str, dict[str, float]], cutoffs=DEFAULT_CUTOFFS) -> str:
    """Markdown table: one row per named result, one column per metric (4 decimals)."""
    keys = shared_metric_keys(results.values(), cutoffs)
    rows = ([name, *(f"{metrics[k]:.4f}" for k in keys)] for name, metrics in results.items())
    return markdown_table(["model", *keys], rows, "l" + "r" * len(keys))
