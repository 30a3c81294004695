"""Settings of the sequence side: the Transformer backbone, the ReaRec reasoning head and the training
objectives (``reasoning.objectives`` builds the objective from ``ObjectiveConfig``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..foundation.config import check_choices, help_field
from ..foundation.errors import ConfigError


@dataclass
class BackboneConfig:
    """Size and regularisation of the Transformer (defaults: RecBole's SASRec)."""

    backbone: Literal["sasrec", "bert4rec"] = help_field(
        "Sequence encoder: 'sasrec' (causal) or 'bert4rec' (bidirectional over the history with an appended "
        "[MASK] token whose output is r_0; reasoning tokens stay causal: prefix masking).",
        "sasrec",
    )
    hidden_size: int = help_field("Hidden size D of item vectors and the Transformer.", 64)
    num_layers: int = help_field("Transformer layers.", 2)
    num_heads: int = help_field("Attention heads (must divide hidden_size).", 2)
    inner_size: int = help_field("Feed-forward inner size.", 256)
    hidden_dropout: float = help_field("Dropout on inputs, attention output and feed-forward output.", 0.5)
    attention_dropout: float = help_field("Dropout on attention probabilities.", 0.5)
    layer_norm_eps: float = help_field("LayerNorm epsilon.", 1e-12)
    initializer_range: float = help_field("Std of the normal init of weights and embeddings.", 0.02)

    @property
    def bidirectional(self) -> bool:
        """BERT4Rec: the history (plus an appended [MASK] token whose output is r_0) attends bidirectionally;
        tokens after it (ReaRec's reasoning tokens) stay causal: "prefix masking"."""
        return self.backbone == "bert4rec"

    def __post_init__(self):
        check_choices(self)
        for name in ("hidden_size", "num_layers", "num_heads", "inner_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive whole number, got {getattr(self, name)}.")
        if self.initializer_range <= 0:
            raise ConfigError(f"initializer_range must be > 0 (e.g. 0.02), got {self.initializer_range}.")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads}).")
        for name in ("hidden_dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}.")


@dataclass
class ReasoningConfig:
    """ReaRec's K latent reasoning steps after the history and how their states make the user vector."""

    reasoning_steps: int = help_field("ReaRec reasoning steps K after the history (0 = the plain backbone).", 0)
    reasoning_method: Literal["erl", "prl"] = help_field(
        "How the K + 1 states are trained and used: 'erl' (mean of all states) or 'prl' (last state).", "prl"
    )
    inference_steps: int | None = help_field(
        "Reasoning steps run at inference, 0..reasoning_steps (unset: all trained steps). Training always runs "
        "reasoning_steps. Set by train --select_inference_steps.",
        None,
    )
    separate_reasoning_norm: bool = help_field(
        "Own LayerNorm for reasoning tokens (the released code shares the item inputs' one).", False
    )
    reasoning_dropout: float | None = help_field(
        "Input dropout on reasoning tokens (default: hidden_dropout, like item inputs). A reasoning token "
        "carries the whole user state; the released code drops 0.2 of every input.",
        None,
    )
    prl_noise_std: float = help_field("PRL: std of the Gaussian noise on the noisy view's reasoning inputs.", 0.01)
    prl_noisy_from_clean: bool = help_field(
        "PRL: build the noisy view's reasoning inputs from the clean view's states (released code).", True
    )
    prl_noisy_view: Literal["sequence", "reasoning"] = help_field(
        "PRL: what the noisy view encodes again: 'sequence' (released code: the whole batch twice, the views "
        "differ by every dropout mask) or 'reasoning' (the history is encoded once and shared; only the K "
        "reasoning steps run twice, with the noise and their own dropout masks: a contrastive step costs about "
        "half as much).",
        "sequence",
    )

    def __post_init__(self):
        check_choices(self)
        if self.reasoning_steps < 0:
            raise ConfigError(f"reasoning_steps must be >= 0 (0 = the plain backbone), got {self.reasoning_steps}.")
        if self.inference_steps is not None and not 0 <= self.inference_steps <= self.reasoning_steps:
            raise ConfigError(
                f"inference_steps={self.inference_steps} must lie in 0..reasoning_steps ({self.reasoning_steps}): a "
                "model cannot run more reasoning steps than it was trained with. Unset it to use all of them."
            )
        if self.prl_noise_std < 0:
            raise ConfigError(f"prl_noise_std must be >= 0, got {self.prl_noise_std}.")
        if self.reasoning_dropout is not None and not 0.0 <= self.reasoning_dropout < 1.0:
            raise ConfigError(f"reasoning_dropout must be in [0, 1) or unset, got {self.reasoning_dropout}.")

    @property
    def averages_states(self) -> bool:
        """ERL's user vector is the mean of r_0..r_K; PRL's (and SASRec's, K = 0) is the last state."""
        return self.reasoning_steps > 0 and self.reasoning_method == "erl"


@dataclass
class ObjectiveConfig:
    """How states score items, and the training losses (CE; ERL's diversity; PRL's annealing and contrast;
    BERT4Rec's cloze)."""

    temperature: float = help_field("Softmax temperature of the training loss (does not change rankings).", 1.0)
    score_similarity: Literal["dot", "cosine"] = help_field(
        "How a user vector scores an item: 'dot' (SASRec) or 'cosine' (UniSRec: every reasoning state and item "
        "vector is L2-normalised, so an item's norm cannot carry its popularity; pair it with a low temperature "
        "such as 0.07). ERL's user vector is then the mean of unit step states.",
        "dot",
    )
    loss_chunk_size: int | None = help_field(
        "Items per chunk of the training softmax: the batch x catalogue logit matrix is never built (same "
        "loss, memory batch x chunk), for catalogues of 10^5+ items. None: the whole softmax in one piece.",
        None,
    )
    loss_positions: Literal["last", "all"] = help_field(
        "'last': one training row per (history prefix, next item), loss at the prefix's last position (RecBole, "
        "ReaRec). 'all' (causal models): each user's training items are cut into windows of max_history that "
        "overlap by half, and every position of a window is trained in one pass, its K reasoning steps "
        "included (each target once, after at least max_history/2 items or the user's whole past); windows are "
        "packed into batches of at most batch_size targets.",
        "last",
    )
    cloze_prob: float = help_field(
        "bert4rec: share of history items replaced by [MASK] in training and predicted (BERT4Rec's cloze "
        "objective), besides the next item predicted at the appended [MASK].",
        0.2,
    )
    cloze_weight: float = help_field("bert4rec: weight of the cloze loss on masked history items.", 1.0)
    erl_kl_weight: float = help_field(
        "ERL: weight lambda of the diversity between steps (KL, or JS with erl_kl_pairs js_mean; subtracted).", 0.05
    )
    erl_kl_pairs: Literal["ordered_mean", "unordered_sum", "js_mean"] = help_field(
        "ERL: 'ordered_mean' (released code: mean KL over i != j, one side detached), 'unordered_sum' (paper: "
        "sum of KL over i < j), or 'js_mean' (mean Jensen-Shannon divergence over i < j: bounded by log 2).",
        "ordered_mean",
    )
    prl_alpha: float = help_field("PRL: temperature decay alpha; step k uses temperature * alpha^(K - k).", 5.0)
    prl_step_weight: float = help_field("PRL: weight of the earlier steps' cross-entropies.", 1.0)
    prl_step_reduction: Literal["mean", "sum"] = help_field(
        "PRL: 'mean' (released code) or 'sum' (paper) of the earlier steps' CEs.", "mean"
    )
    prl_contrastive_weight: float = help_field("PRL: weight of the reasoning-aware contrastive loss.", 1.0)
    prl_contrastive_similarity: Literal["dot", "cosine"] = help_field(
        "PRL: 'dot' (released code) or 'cosine' similarity.", "dot"
    )
    prl_contrastive_temperature: float | None = help_field(
        "PRL: temperature of the contrastive loss (default: `temperature`).", None
    )

    def __post_init__(self):
        check_choices(self)
        for name in ("temperature", "prl_alpha", "prl_contrastive_temperature"):  # the last: None = temperature
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be > 0, got {value}.")
        if not 0 <= self.cloze_prob < 1 or self.cloze_weight < 0:
            raise ConfigError("cloze_prob must be in [0, 1) and cloze_weight >= 0.")
        for name in ("erl_kl_weight", "prl_step_weight", "prl_contrastive_weight"):  # a negative weight flips a loss
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (0 turns that loss off), got {getattr(self, name)}.")
        if self.loss_chunk_size is not None and self.loss_chunk_size < 1:
            raise ConfigError(f"loss_chunk_size must be >= 1 or unset, got {self.loss_chunk_size}.")
