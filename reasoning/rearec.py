"""ReaRec latent reasoning (Tang et al., "Think Before Recommend", arXiv 2503.22675, Sec. 3).

Step 0 encodes the history as SASRec does: r_0 is the last-layer state at the last real item. Reasoning
step k = 1..K feeds ONE new token r_{k-1} + p_k (p: a learned K x D table of reasoning position embeddings,
the only positional signal of reasoning tokens) through the same Transformer, attending causally to the
cached keys/values of the history and of the earlier reasoning tokens. Only the new row is computed, and
gradients flow through the whole chain.

Shape legend: B batch, L history length, K reasoning steps, D hidden size.
"""

from __future__ import annotations

import torch
from torch import nn

from reasoning import noise
from reasoning.backbone import Backbone, Dropout


class ReasoningHead(nn.Module):
    """Reasoning position embeddings and the K-step loop over a :class:`Backbone`'s KV cache."""

    def __init__(
        self,
        hidden_size: int,
        reasoning_steps: int,
        initializer_range: float = 0.02,
        separate_norm: bool = False,
        layer_norm_eps: float = 1e-12,
        dropout: float | None = None,
    ):
        super().__init__()
        if reasoning_steps < 0:
            raise ValueError(f"reasoning_steps must be >= 0, got {reasoning_steps}")
        self.reasoning_steps = reasoning_steps
        # No parameters at K = 0: the model is then exactly SASRec (and DDP sees no unused parameters).
        self.position_embedding = nn.Embedding(reasoning_steps, hidden_size) if reasoning_steps else None  # p_k
        if self.position_embedding is not None:
            nn.init.normal_(self.position_embedding.weight, std=initializer_range)
        # The released code normalises reasoning tokens with the item inputs' LayerNorm; an own one is a flag.
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps) if separate_norm and reasoning_steps else None
        # None: reasoning tokens share the item inputs' dropout (hidden_dropout). A token carries the whole
        # user state, so an own, lighter rate is a flag (the released code uses 0.2 on every input).
        self.dropout = Dropout(dropout) if dropout is not None else None

    def check_steps(self, steps: int | None) -> int:
        steps = self.reasoning_steps if steps is None else steps
        if not 0 <= steps <= self.reasoning_steps:
            raise ValueError(
                f"asked for {steps} reasoning steps, but the model was trained with reasoning_steps="
                f"{self.reasoning_steps}: use between 0 and {self.reasoning_steps} (there are no reasoning "
                "position embeddings beyond the trained depth)."
            )
        return steps

    def embed_token(self, backbone: Backbone, token: torch.Tensor) -> torch.Tensor:
        """Reasoning input [B, D] -> the embedded token fed to the stack (LayerNorm + input dropout)."""
        norm = backbone.input_norm if self.norm is None else self.norm
        dropout = backbone.input_dropout if self.dropout is None else self.dropout
        return dropout(norm(token))

    def forward(
        self,
        backbone: Backbone,
        inputs: torch.Tensor,  # [B, L, D] embedded history (Backbone.embed)
        key_valid: torch.Tensor,  # [B, L] bool
        steps: int | None = None,
        noisy_view: bool = False,
        noise_std: float = 0.0,
        noisy_from_clean: bool = True,
        return_prefill: bool = False,
        share_history: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """States R = [r_0, ..., r_steps]: [B, steps + 1, D].

        With ``noisy_view`` the batch is read as two views [clean; noisy] of the same rows (PRL's
        reasoning-aware contrastive learning; the views already differ by their dropout masks): the second
        half's reasoning inputs get Gaussian noise of std ``noise_std``. ``noisy_from_clean`` builds them
        from the clean half's r_{k-1}, as the released code does; otherwise from the noisy half's own state.
        ``return_prefill`` also returns the last-layer states of every input position [B, L, D] (BERT4Rec's
        cloze objective predicts masked history items from them).
        With ``noisy_view`` and ``share_history`` the batch holds each row ONCE: the history is encoded once
        and both views start from its cache and r_0, so they differ only in the reasoning steps (noise and
        the steps' dropout masks); the states are still [2B, steps + 1, D], clean rows first.
        """
        steps = self.check_steps(steps)
        hidden, cache = backbone.prefill(inputs, key_valid, last_only=not return_prefill)  # [B, 1 or L, D]
        states = [hidden[:, -1]]  # r_0: [B, D]
        half = inputs.shape[0] // 2
        if noisy_view and share_history:
            half = inputs.shape[0]
            both = torch.arange(half, device=inputs.device).repeat(2)  # [2B]: every row twice
            cache, states = cache.select(both), [states[0][both]]  # the views share the history's encoding
        for k in range(1, steps + 1):
            previous = states[-1]  # r_{k-1}: [B, D]
            if noisy_view and noisy_from_clean:
                previous = torch.cat([previous[:half], previous[:half]], dim=0)
            token = previous + self.position_embedding.weight[k - 1]  # [B, D]
            if noisy_view and noise_std > 0:
                jitter = noise.randn(token[half:].shape, token.device, token.dtype) * noise_std
                token = torch.cat([token[:half], token[half:] + jitter], dim=0)
            state, cache = backbone.step(self.embed_token(backbone, token), cache)  # [B, D]
            states.append(state)
        if return_prefill:
            return torch.stack(states, dim=1), hidden
        return torch.stack(states, dim=1)  # [B, steps + 1, D]

    def forward_recompute(
        self, backbone: Backbone, inputs: torch.Tensor, key_valid: torch.Tensor, steps: int | None = None
    ) -> torch.Tensor:
        """Reference path without the cache: every step re-encodes the whole appended sequence (every row of
        every layer). Same states as ``forward`` (in eval mode); for benchmarks and checks only."""
        steps = self.check_steps(steps)
        batch = inputs.shape[0]
        hidden, _ = backbone.prefill(inputs, key_valid, last_only=True)
        states, tokens = [hidden[:, -1]], []
        for k in range(1, steps + 1):
            tokens.append(self.embed_token(backbone, states[-1] + self.position_embedding.weight[k - 1])[:, None])
            sequence = torch.cat([inputs, *tokens], dim=1)  # [B, L + k, D]
            valid = torch.cat([key_valid, key_valid.new_ones(batch, k)], dim=1)
            # The history sees itself only (causally, or bidirectionally for BERT4Rec); reasoning tokens are causal.
            prefix = inputs.shape[1] if backbone.config.bidirectional else 0
            hidden, _ = backbone.prefill(sequence, valid, last_only=True, prefix=prefix)
            states.append(hidden[:, -1])
        return torch.stack(states, dim=1)  # [B, steps + 1, D]
