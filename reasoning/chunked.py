"""Full-softmax cross-entropy over a large catalogue without the B x N logit matrix.

Forward keeps a running log-sum-exp over item chunks; backward recomputes each chunk's logits and adds its
share of the gradient, so memory is B x chunk whatever N is. The result is the exact full softmax (same loss
to float rounding), not a sampled approximation.

Shape legend: B rows, D hidden size, N items (the table has N + 1 rows, row 0 padding, never a candidate),
C items per chunk.
"""

from __future__ import annotations

import torch


def _chunks(num_rows: int, chunk_size: int):
    """Item row ranges [start, end) covering 1..N (row 0 is padding)."""
    return [(start, min(start + chunk_size, num_rows)) for start in range(1, num_rows, chunk_size)]


class ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, states, item_table, target, temperature: float, chunk_size: int):
        # states [B, D], item_table [N + 1, D], target [B]; at least float32 inside (bf16/fp16 are upcast, and
        # autocast is off: it would round every chunk's logits and partial sums to half precision)
        with torch.autocast(states.device.type, enabled=False):
            return ChunkedCrossEntropy._forward(ctx, states, item_table, target, temperature, chunk_size)

    @staticmethod
    def _forward(ctx, states, item_table, target, temperature: float, chunk_size: int):
        ctx.dtypes = (states.dtype, item_table.dtype)
        dtype = torch.promote_types(torch.promote_types(states.dtype, item_table.dtype), torch.float32)
        states, item_table = states.to(dtype), item_table.to(dtype)
        ranges = _chunks(item_table.shape[0], chunk_size)
        running_max = states.new_full((states.shape[0],), float("-inf"))  # [B]
        running_sum = states.new_zeros(states.shape[0])  # [B] sum of exp(logit - running_max)
        for start, end in ranges:
            logits = states @ item_table[start:end].T / temperature  # [B, C]
            chunk_max = logits.max(dim=1).values
            new_max = torch.maximum(running_max, chunk_max)
            running_sum = running_sum * torch.exp(running_max - new_max) + torch.exp(logits - new_max[:, None]).sum(
                dim=1
            )
            running_max = new_max
        log_partition = running_max + running_sum.log()  # [B]
        target_logit = (states * item_table[target]).sum(dim=1) / temperature  # [B]
        ctx.save_for_backward(states, item_table, target, log_partition)
        ctx.temperature, ctx.ranges = temperature, ranges
        return (log_partition - target_logit).mean()

    @staticmethod
    def backward(ctx, grad_output):
        states, item_table, target, log_partition = ctx.saved_tensors
        scale = grad_output / (states.shape[0] * ctx.temperature)  # d mean / d logit, times 1 / tau
        grad_states = torch.zeros_like(states)  # [B, D]
        grad_table = torch.zeros_like(item_table) if ctx.needs_input_grad[1] else None  # [N + 1, D]
        for start, end in ctx.ranges:
            chunk = item_table[start:end]  # [C, D]
            probs = torch.exp(states @ chunk.T / ctx.temperature - log_partition[:, None])  # [B, C] softmax share
            grad_states += probs @ chunk
            if grad_table is not None:
                grad_table[start:end] += probs.T @ states
        grad_states -= item_table[target]  # the target's own logit
        if grad_table is not None:
            grad_table.index_add_(0, target, -states)
            grad_table *= scale
        grad_table = None if grad_table is None else grad_table.to(ctx.dtypes[1])
        return (grad_states * scale).to(ctx.dtypes[0]), grad_table, None, None, None


def chunked_cross_entropy(
    states: torch.Tensor, item_table: torch.Tensor, target: torch.Tensor, temperature: float, chunk_size: int
) -> torch.Tensor:
    """Mean CE of softmax(states @ item_table[1:].T / temperature) against target ids [B]; memory B x chunk."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return ChunkedCrossEntropy.apply(states, item_table, target, temperature, chunk_size)
