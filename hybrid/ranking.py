"""Memory-bounded full ranking: a chunk of users against a chunk of items at a time.

The users x items score matrix never exists. Evaluation keeps a running count, per user, of the items that
score at or above the target (that count is the rank, DESIGN.md section 4); recommendation keeps a running
top-k. Scores come from the same matrix product as the one-piece computation, chunked along the items. BLAS
may round a product differently for another shape, and even one product's entries differently for equal
vectors (small batches take other code paths), so a rank can differ from the one-piece rank where two items
score within one rounding step of each other. Equal vectors (duplicate texts, a constant model) are found by
comparing the vectors themselves: they tie, and count against the target, for every batch size and chunking.

Shape legend: B users, D hidden size, N items (tables have N + 1 rows, row 0 padding), C items per chunk.
"""

from __future__ import annotations

import torch

DEFAULT_MEMORY_BYTES = 256 * 2**20  # scores and masks of one user-chunk x item-chunk block


def item_chunk_size(users: int, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> int:
    """Items per chunk so that a [users, chunk] block (float scores + two boolean masks + temporaries, about 12
    bytes per entry) fits in ``memory_bytes``."""
    return max(1, memory_bytes // (12 * max(users, 1)))


@torch.no_grad()
def chunked_target_ranks(
    users: torch.Tensor,  # [B, D] user vectors
    item_table: torch.Tensor,  # [N + 1, D]
    target: torch.Tensor,  # [B] item ids
    chunk_size: int,
    past: tuple[torch.Tensor, torch.Tensor] | None = None,  # (row, item id) pairs masked as already seen
    cold_items: torch.Tensor | None = None,  # [N + 1] bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rank [B] of each target = number of OTHER unmasked items scoring >= it (a NaN target ranks last);
    with ``cold_items`` also the rank among cold items only (-1 where the target is warm)."""
    users, item_table = users.float(), item_table.float()  # the rounding bound below is float32's
    rows = torch.arange(users.shape[0], device=users.device)
    targets = item_table[target]  # [B, D]
    target_score = (users @ targets.T).diagonal()  # [B]
    # Any float32 rounding of u.v lies within gamma_D * sum|u_i v_i| of it: the target and its equals within 2x.
    unit = torch.finfo(torch.float32).eps / 2
    gamma = users.shape[1] * unit / (1 - users.shape[1] * unit)
    slack = 2 * gamma * (users.abs() * targets.abs()).sum(dim=1)  # [B]
    above, unmasked = torch.zeros_like(target), torch.zeros_like(target)  # [B] counts
    cold_above, cold_unmasked = torch.zeros_like(target), torch.zeros_like(target)
    for start in range(1, item_table.shape[0], chunk_size):
        end = min(start + chunk_size, item_table.shape[0])
        scores = users @ item_table[start:end].T  # [B, C]
        here = (target >= start) & (target < end)
        scores[rows[here], target[here] - start] = float("-inf")  # the target itself is not counted
        if past is not None:
            past_rows, past_items = past
            seen = (past_items >= start) & (past_items < end)
            scores[past_rows[seen], past_items[seen] - start] = float("-inf")
        at_or_above = at_or_above_target(scores, target_score, slack, targets, item_table[start:end])
        live = ~torch.isneginf(scores)  # [B, C]
        above += at_or_above.sum(dim=1)
        unmasked += live.sum(dim=1)
        if cold_items is not None:
            cold = cold_items[start:end]  # [C]
            cold_above += (at_or_above & cold).sum(dim=1)
            cold_unmasked += (live & cold).sum(dim=1)
    nan = torch.isnan(target_score)  # compares false with everything: rank it behind every unmasked item
    ranks = torch.where(nan, unmasked, above)
    if cold_items is None:
        return ranks, None
    cold_ranks = torch.where(nan, cold_unmasked, cold_above)
    return ranks, torch.where(cold_items[target], cold_ranks, -1)


def at_or_above_target(
    scores: torch.Tensor,  # [B, C] a chunk's float32 scores, masked items at -inf
    target_score: torch.Tensor,  # [B]
    slack: torch.Tensor,  # [B] bound on a rounding of the target's score
    targets: torch.Tensor,  # [B, D] each row's target vector
    chunk: torch.Tensor,  # [C, D] the chunk's item vectors
    pairs_at_once: int = 2**16,
) -> torch.Tensor:
    """[B, C] bool: items scoring at or above the target, an item with the target's very vector included
    however its score was rounded (those rounded below it lie within ``slack`` of it)."""
    at_or_above = scores >= target_score[:, None]  # [B, C]
    near_rows, near_items = ((scores >= (target_score - slack)[:, None]) & ~at_or_above).nonzero(as_tuple=True)
    for first in range(0, len(near_rows), pairs_at_once):  # a constant model puts every pair here
        row, item = near_rows[first : first + pairs_at_once], near_items[first : first + pairs_at_once]
        equal = (chunk[item] == targets[row]).all(dim=1)  # [P] the target's vector: a tie
        at_or_above[row[equal], item[equal]] = True
    return at_or_above


@torch.no_grad()
def chunked_top_k(
    users: torch.Tensor,  # [B, D]
    item_table: torch.Tensor,  # [N + 1, D]
    k: int,
    chunk_size: int,
    exclude: tuple[torch.Tensor, torch.Tensor] | None = None,  # (row, item id) pairs never recommended
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best ``k`` scores and item ids [B, k] over items 1..N, merged chunk by chunk (padding never returned)."""
    k = min(k, item_table.shape[0] - 1)
    best_scores = users.new_full((users.shape[0], 0), float("-inf"))
    best_items = torch.zeros(users.shape[0], 0, dtype=torch.long, device=users.device)
    for start in range(1, item_table.shape[0], chunk_size):
        end = min(start + chunk_size, item_table.shape[0])
        scores = users @ item_table[start:end].T  # [B, C]
        if exclude is not None:
            rows, items = exclude
            inside = (items >= start) & (items < end)
            scores[rows[inside], items[inside] - start] = float("-inf")
        ids = torch.arange(start, end, device=users.device).expand_as(scores)
        merged_scores = torch.cat([best_scores, scores], dim=1)
        merged_items = torch.cat([best_items, ids], dim=1)
        top = merged_scores.topk(min(k, merged_scores.shape[1]), dim=1)
        best_scores, best_items = top.values, merged_items.gather(1, top.indices)
    return best_scores, best_items
