"""The SASRec sequence encoder: a post-LN causal Transformer over left-padded histories, with a KV cache.

Histories are left-padded, so the most recent item always sits in the last column and a reasoning token
is simply appended after it. ``prefill`` encodes a history and returns the per-layer key/value cache;
``step`` runs ONE new token through every layer, computing only that token's row (its attention over the
cached keys and its feed-forward), which is what makes each reasoning step cheap.

Shape legend: B batch, L history length, S cached positions (L plus reasoning tokens so far), T query
positions, D hidden size, H heads, Dh = D / H.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..foundation import noise
from ..foundation.dropout import Dropout, dropout
from .config import BackboneConfig


@dataclass
class KVCache:
    """Per-layer keys and values of the encoded history (written once by ``prefill``, never copied again),
    which history positions are real, and the keys and values of the tokens added by ``step`` since."""

    keys: list[torch.Tensor]  # num_layers x [B, H, L, Dh]
    values: list[torch.Tensor]  # num_layers x [B, H, L, Dh]
    key_valid: torch.Tensor  # [B, L] bool, False at padding
    step_keys: list[torch.Tensor] | None = None  # num_layers x [B, H, k, Dh], k tokens added so far
    step_values: list[torch.Tensor] | None = None
    key_bias: torch.Tensor | None = None  # [B, 1, 1, L] 0 at real history positions, -inf at padding

    @property
    def length(self) -> int:
        return self.key_valid.shape[1] + (0 if self.step_keys is None else self.step_keys[0].shape[2])

    def select(self, rows: torch.Tensor | slice) -> KVCache:
        """The cache of a subset of the batch rows: an index tensor copies them, a slice is a view (free)."""
        pick = lambda tensors: None if tensors is None else [t[rows] for t in tensors]  # noqa: E731
        bias = None if self.key_bias is None else self.key_bias[rows]
        return KVCache(
            pick(self.keys), pick(self.values), self.key_valid[rows], pick(self.step_keys), pick(self.step_values), bias
        )


class TransformerLayer(nn.Module):
    """One post-LN block: h = LN(x + Drop(MHA(x))); out = LN(h + Drop(W2 gelu(W1 h)))."""

    def __init__(self, config: BackboneConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.hidden_size // config.num_heads
        self.attention_dropout = config.attention_dropout
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.attention_output = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(config.hidden_size, config.inner_size)
        self.ffn_out = nn.Linear(config.inner_size, config.hidden_size)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, T, Dh]

    def forward(
        self,
        x: torch.Tensor,  # [B, T, D] inputs of the new positions
        attention_mask: torch.Tensor,  # [B, 1, Tq, S] bool, True where a query may attend
        query_last_only: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        query, key, value = self.qkv(x).chunk(3, dim=-1)  # 3 x [B, T, D]
        # Contiguous heads: attention here reads them faster, and reasoning steps reuse them as the cache
        # without a copy per step.
        key, value = self._heads(key).contiguous(), self._heads(value).contiguous()  # [B, H, T, Dh]
        if query_last_only:  # only the last row is needed downstream: skip the others' attention and FFN
            x, query = x[:, -1:], query[:, -1:]  # [B, 1, D]
        query = self._heads(query)  # [B, H, Tq, Dh]
        if self.training and self.attention_dropout > 0 and (x.device.type == "cpu" or noise.active()):
            # Explicit attention so the probabilities go through our dropout (fast on CPU, split-invariant).
            scores = query @ key.transpose(-1, -2) * self.head_dim**-0.5  # [B, H, Tq, S]
            scores = scores.masked_fill(~attention_mask, float("-inf"))
            probs = dropout(scores.softmax(dim=-1), self.attention_dropout, training=True)
            attended = probs @ value  # [B, H, Tq, Dh]
        else:
            attended = F.scaled_dot_product_attention(
                query,
                key,
                value,
                attn_mask=attention_mask,
                dropout_p=self.attention_dropout if self.training else 0.0,
            )  # [B, H, Tq, Dh]
        return self._output(x, attended), (key, value)

    def _output(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Heads [B, H, Tq, Dh] -> attention output, residual + LN, FFN, residual + LN: [B, Tq, D]."""
        attended = attended.transpose(1, 2).reshape(x.shape)  # [B, Tq, D]
        hidden = self.attention_norm(x + self.dropout(self.attention_output(attended)))
        ffn = self.ffn_out(F.gelu(self.ffn_in(hidden)))  # erf GeLU, as SASRec/BERT
        return self.ffn_norm(hidden + self.dropout(ffn))

    def step(
        self,
        x: torch.Tensor,  # [B, 1, D] the new token
        history_key: torch.Tensor,  # [B, H, L, Dh]
        history_value: torch.Tensor,  # [B, H, L, Dh]
        history_bias: torch.Tensor,  # [B, 1, 1, L] 0 at real positions, -inf at padding
        previous: tuple[torch.Tensor, torch.Tensor] | None,  # earlier step tokens' keys/values [B, H, k, Dh]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One new row attending to the history and to the step tokens so far (itself included). Returns the
        row's output [B, 1, D] and the step tokens' keys/values extended by it [B, H, k + 1, Dh]."""
        query, key, value = self.qkv(x).chunk(3, dim=-1)  # 3 x [B, 1, D]
        query, key, value = self._heads(query), self._heads(key), self._heads(value)  # [B, H, 1, Dh]
        if previous is not None:
            key, value = torch.cat([previous[0], key], dim=2), torch.cat([previous[1], value], dim=2)
        scale = self.head_dim**-0.5
        # The history's keys/values are contiguous (see forward): read in place, never copied per step.
        history_scores = query @ history_key.transpose(-1, -2)  # [B, H, 1, L]
        history_scores = history_scores * scale + history_bias
        scores = torch.cat([history_scores, (query @ key.transpose(-1, -2)) * scale], dim=-1)  # [B, H, 1, L + k + 1]
        probs = dropout(scores.softmax(dim=-1), self.attention_dropout, training=self.training)
        length = history_key.shape[2]
        attended = probs[..., :length] @ history_value + probs[..., length:] @ value  # [B, H, 1, Dh]
        return self._output(x, attended), (key, value)

    def step_positions(
        self,
        x: torch.Tensor,  # [B, L, D] one new token per history position
        history_key: torch.Tensor,  # [B, H, L, Dh]
        history_value: torch.Tensor,  # [B, H, L, Dh]
        history_bias: torch.Tensor,  # [B, 1, L, L] 0 where position t may see history key j (j <= t, real)
        previous: tuple[torch.Tensor, torch.Tensor] | None,  # each position's chain so far [B, H, L, k, Dh]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`step` for every position at once: position t's token attends to the history up to t and
        to its own chain of step tokens (itself included), never to another position's chain. Returns the
        tokens' outputs [B, L, D] and the chains extended by them [B, H, L, k + 1, Dh]."""
        query, key, value = self.qkv(x).chunk(3, dim=-1)  # 3 x [B, L, D]
        query, key, value = self._heads(query), self._heads(key), self._heads(value)  # [B, H, L, Dh]
        key, value = key.unsqueeze(3), value.unsqueeze(3)  # [B, H, L, 1, Dh]
        if previous is not None:
            key, value = torch.cat([previous[0], key], dim=3), torch.cat([previous[1], value], dim=3)
        scale = self.head_dim**-0.5
        history_scores = (query @ history_key.transpose(-1, -2)) * scale + history_bias  # [B, H, L, L]
        chain_scores = torch.einsum("bhld,bhlkd->bhlk", query, key) * scale  # [B, H, L, k + 1]
        probs = torch.cat([history_scores, chain_scores], dim=-1).softmax(dim=-1)
        probs = dropout(probs, self.attention_dropout, training=self.training)
        length = history_key.shape[2]
        attended = probs[..., :length] @ history_value  # [B, H, L, Dh]
        attended = attended + torch.einsum("bhlk,bhlkd->bhld", probs[..., length:], value)
        return self._output(x, attended), (key, value)


def attention_mask(key_valid: torch.Tensor, prefix: int = 0) -> torch.Tensor:
    """[B, 1, T, T] bool, True where query i may attend to key j: the first ``prefix`` positions see each other
    (bidirectional), every later position sees itself and everything before it (causal); padding is never
    seen. ``prefix`` 0 is SASRec's causal mask; BERT4Rec + ReaRec uses the history (+ [MASK]) as prefix."""
    length = key_valid.shape[1]
    visible = torch.ones(length, length, dtype=torch.bool, device=key_valid.device).tril()  # [T, T]
    visible[:prefix, :prefix] = True
    eye = torch.eye(length, dtype=torch.bool, device=key_valid.device)
    # A padded query may attend to itself only: keeps its row finite (an all-masked row would be NaN and
    # poison later layers through 0 * NaN) while real queries never see padding.
    return (visible & (key_valid[:, None, :] | eye))[:, None]


class Backbone(nn.Module):
    """SASRec: position embeddings + input LayerNorm/dropout + a stack of causal post-LN layers.

    The item vectors come from an item encoder (see ``encoders/``); the backbone never owns them.
    """

    def __init__(self, config: BackboneConfig, max_history: int = 50):
        super().__init__()
        if max_history < 1:
            raise ValueError(f"max_history must be >= 1, got {max_history}")
        self.config, self.max_history = config, max_history
        # Position 0 is the OLDEST real item of the history (RecBole/ReaRec convention); the bidirectional
        # mode needs one more for its appended [MASK] token.
        positions = max_history + int(config.bidirectional)
        self.position_embedding = nn.Embedding(positions, config.hidden_size)
        # BERT4Rec's [MASK] input: where the next item (and, in training, masked history items) is predicted.
        self.mask_token = nn.Parameter(torch.zeros(config.hidden_size)) if config.bidirectional else None
        self.input_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.input_dropout = Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_layers))
        self.apply(self._init_weights)
        if self.mask_token is not None:
            nn.init.normal_(self.mask_token, std=config.initializer_range)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def embed(self, item_vectors: torch.Tensor, key_valid: torch.Tensor) -> torch.Tensor:
        """Item vectors [B, L, D] of a left-padded history -> Transformer inputs [B, L, D]."""
        positions = (key_valid.long().cumsum(dim=1) - 1).clamp(min=0)  # [B, L], 0 at the oldest real item
        if positions.shape[1] > self.position_embedding.num_embeddings:
            raise ValueError(f"history of length {positions.shape[1]} exceeds max_history={self.max_history}")
        return self.embed_tokens(item_vectors + self.position_embedding(positions))

    def embed_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The input LayerNorm + dropout applied to every token fed to the stack: [..., D] -> [..., D]."""
        return self.input_dropout(self.input_norm(x))

    def prefill(
        self,
        x: torch.Tensor,  # [B, L, D] embedded inputs (see ``embed``)
        key_valid: torch.Tensor,  # [B, L] bool, False at padding
        last_only: bool = False,
        prefix: int | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """Encode a whole history (causally, or bidirectionally in the bidirectional mode; ``prefix`` overrides
        how many leading positions see each other). Returns last-layer states ([B, L, D], or [B, 1, D] for
        the last position only when ``last_only``) and the cache for ``step``."""
        if prefix is None:
            prefix = x.shape[1] if self.config.bidirectional else 0
        mask = attention_mask(key_valid, prefix)  # [B, 1, L, L]
        keys, values = [], []
        for index, layer in enumerate(self.layers):
            is_last = index == len(self.layers) - 1
            query_last = last_only and is_last
            x, (key, value) = layer(x, mask[:, :, -1:] if query_last else mask, query_last_only=query_last)
            keys.append(key)
            values.append(value)
        return x, KVCache(keys, values, key_valid)

    def step(self, x: torch.Tensor, cache: KVCache) -> tuple[torch.Tensor, KVCache]:
        """Run ONE new token [B, D] (already embedded) through every layer, attending to the cache.

        Only the new row is computed: O(S * D) attention plus O(D^2) projections and FFN per layer. The
        history's keys and values are read where prefill left them (appending to them would copy the
        whole cache at every step); only the few step tokens' keys and values grow.
        Returns its last-layer state [B, D] and the cache extended by one position.
        """
        hidden = x[:, None, :]  # [B, 1, D]
        bias = cache.key_bias
        if bias is None:  # once per sequence, shared by every layer and step
            bias = torch.zeros(cache.key_valid.shape, dtype=x.dtype, device=x.device)
            bias = bias.masked_fill(~cache.key_valid, float("-inf"))[:, None, None, :]  # [B, 1, 1, L]
        step_keys, step_values = [], []
        for index, layer in enumerate(self.layers):
            previous = None if cache.step_keys is None else (cache.step_keys[index], cache.step_values[index])
            hidden, (key, value) = layer.step(hidden, cache.keys[index], cache.values[index], bias, previous)
            step_keys.append(key)
            step_values.append(value)
        return hidden[:, 0], KVCache(cache.keys, cache.values, cache.key_valid, step_keys, step_values, bias)

    def step_positions(self, x: torch.Tensor, cache: KVCache) -> tuple[torch.Tensor, KVCache]:
        """Run one new token per history position, x [B, L, D] (already embedded), through every layer: the
        token at position t sees the history up to t (causal, padding never) and its own earlier tokens.

        Each call costs about one causal pass over L positions: attention O(L^2 D) plus projections and FFN
        O(L D^2) per layer, whatever the step (a chain adds O(L k D)). K steps at every position cost about
        K + 1 passes over the sequence, where the prefix layout runs K steps for each of its L rows.
        Returns the last-layer states [B, L, D] and the cache extended by one token per position.
        """
        bias = cache.key_bias
        if bias is None:  # once per batch, shared by every layer and step
            visible = attention_mask(cache.key_valid)  # [B, 1, L, L], causal, padding never seen
            bias = torch.zeros(visible.shape, dtype=x.dtype, device=x.device).masked_fill(~visible, float("-inf"))
        hidden, step_keys, step_values = x, [], []
        for index, layer in enumerate(self.layers):
            previous = None if cache.step_keys is None else (cache.step_keys[index], cache.step_values[index])
            hidden, (key, value) = layer.step_positions(hidden, cache.keys[index], cache.values[index], bias, previous)
            step_keys.append(key)
            step_values.append(value)
        return hidden, KVCache(cache.keys, cache.values, cache.key_valid, step_keys, step_values, bias)
