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

from ..foundation import noise
from ..foundation.dropout import Dropout
from .backbone import Backbone


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

    def token(
        self, backbone: Backbone, previous: torch.Tensor, step: int, jitter_std: float = 0.0, jitter_from: int = 0
    ) -> torch.Tensor:
        """Step ``step``'s input: r_{step-1} [B, D] + p_step, LayerNorm'd and dropped out like an item input
        -> [B, D]. Rows from ``jitter_from`` on get Gaussian noise of std ``jitter_std`` first (PRL's noisy view)."""
        token = previous + self.position_embedding.weight[step - 1]  # [B, D]
        if jitter_std > 0:
            jitter = noise.randn(token[jitter_from:].shape, token.device, token.dtype) * jitter_std
            token = torch.cat([token[:jitter_from], token[jitter_from:] + jitter], dim=0)
        return self.embed_token(backbone, token)

    def loop(self, backbone: Backbone, inputs: torch.Tensor, key_valid: torch.Tensor, every_position: bool = False):
        """Encode the history (inputs [B, L, D] from ``Backbone.embed``, key_valid [B, L]) and return the
        :class:`ReasoningLoop` that runs the steps over its cache."""
        hidden, cache = backbone.prefill(inputs, key_valid, last_only=not every_position)  # [B, 1 or L, D]
        return ReasoningLoop(self, backbone, hidden[:, -1], cache, hidden if every_position else None)

    def loop_positions(self, backbone: Backbone, inputs: torch.Tensor, key_valid: torch.Tensor) -> ReasoningLoop:
        """Like :meth:`loop`, but every history position reasons (one pass for every target of a causal
        history): position t's chain starts from its own r_0 and sees the history up to t only. States are
        [B, L, D] per step."""
        if backbone.config.bidirectional:
            raise ValueError("reasoning at every position needs a causal backbone (BERT4Rec's history is not)")
        hidden, cache = backbone.prefill(inputs, key_valid)  # [B, L, D]: position t sees items <= t
        return ReasoningLoop(self, backbone, hidden, cache, hidden, every_position=True)

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
        every_position: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """States R = [r_0, ..., r_steps]: [B, steps + 1, D]; with ``every_position`` each history position
        reasons (see :meth:`loop_positions`): [B, L, steps + 1, D].

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
        if every_position:
            loop = self.loop_positions(backbone, inputs, key_valid)
        else:
            loop = self.loop(backbone, inputs, key_valid, every_position=return_prefill)
        if noisy_view and share_history:
            loop.keep(torch.arange(inputs.shape[0], device=inputs.device).repeat(2))  # [2B]: the views share r_0
        states = loop.run(steps, noise_std if noisy_view else None, noisy_from_clean)  # [B, steps + 1, D]
        return (states, loop.prefill) if return_prefill else states

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
            tokens.append(self.token(backbone, states[-1], k)[:, None])
            sequence = torch.cat([inputs, *tokens], dim=1)  # [B, L + k, D]
            valid = torch.cat([key_valid, key_valid.new_ones(batch, k)], dim=1)
            # The history sees itself only (causally, or bidirectionally for BERT4Rec); reasoning tokens are causal.
            prefix = inputs.shape[1] if backbone.config.bidirectional else 0
            hidden, _ = backbone.prefill(sequence, valid, last_only=True, prefix=prefix)
            states.append(hidden[:, -1])
        return torch.stack(states, dim=1)  # [B, steps + 1, D]


class ReasoningLoop:
    """The K-step loop over one encoded batch, one step at a time: the only place a reasoning step runs.

    ``state`` is the newest state r_k of every row [B, D] and ``cache`` the keys/values of the history and of
    the step tokens so far. Between steps a caller may keep a subset of the rows (adaptive halting drops users
    who stopped; PRL's shared noisy view duplicates every row).
    """

    def __init__(
        self, head: ReasoningHead, backbone: Backbone, state, cache, prefill=None, every_position: bool = False
    ):
        self.head, self.backbone, self.cache = head, backbone, cache
        self.state, self.step_index = state, 0  # r_0: [B, D], or [B, L, D] when every position reasons
        self.prefill = prefill  # [B, L, D] last-layer states of every history position, when asked for
        self.every_position = every_position

    def keep(self, rows: torch.Tensor | slice) -> None:
        """Continue with these rows only (an index tensor copies their cache, a slice is a view)."""
        self.state, self.cache = self.state[rows], self.cache.select(rows)

    def step(self, previous: torch.Tensor | None = None, jitter_std: float = 0.0, jitter_from: int = 0) -> torch.Tensor:
        """Run the next step from ``previous`` (default: this loop's own newest state) -> r_k [B, D]; see
        :meth:`ReasoningHead.token` for the noise."""
        self.step_index += 1
        previous = self.state if previous is None else previous
        token = self.head.token(self.backbone, previous, self.step_index, jitter_std, jitter_from)
        step = self.backbone.step_positions if self.every_position else self.backbone.step
        self.state, self.cache = step(token, self.cache)
        return self.state

    def run(self, steps: int, noise_std: float | None = None, noisy_from_clean: bool = True) -> torch.Tensor:
        """r_0..r_steps [B, steps + 1, D] (every position: [B, L, steps + 1, D]). ``noise_std`` (not None) reads
        the rows as [clean; noisy] views: the noisy half's step inputs get that noise and, with
        ``noisy_from_clean``, start from the clean half's previous state (PRL)."""
        states, half = [self.state], self.state.shape[0] // 2
        for _ in range(steps):
            if noise_std is None:
                states.append(self.step())
                continue
            previous = torch.cat([self.state[:half], self.state[:half]]) if noisy_from_clean else None
            states.append(self.step(previous, noise_std, jitter_from=half))
        return torch.stack(states, dim=-2)


def aggregate(states: torch.Tensor, average: bool) -> torch.Tensor:
    """States r_0..r_k [B, S, D] -> the user vector [B, D]: their mean (ERL) or the last one (PRL, SASRec)."""
    return states.mean(dim=1) if average else states[:, -1]
