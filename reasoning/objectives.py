"""Training objectives: full-catalogue cross-entropy, ERL and PRL (ReaRec paper Sec. 3.2-3.3).

Every paper-vs-released-code difference is an argument (see ``reference/rearec.md``):
- ERL's KL diversity: ``kl_pairs="ordered_mean"`` (code: mean over ordered pairs i != j of
  KL(p_j || sg(p_i))) or ``"unordered_sum"`` (paper Eq. 7: sum over i < j of KL(p_i || p_j)); both are
  unbounded, so ``"js_mean"`` (ours: mean Jensen-Shannon divergence over i < j, at most log 2) is offered too.
- PRL's earlier-step CEs: ``step_reduction="mean"`` (code) or ``"sum"`` (paper Eq. 10).
- PRL's contrastive similarity: ``"dot"`` (code; logits of order 10^3 at tau 0.07) or ``"cosine"`` with its
  own temperature. Its in-batch negatives are the rows of the same forward on every process (gathered, with
  gradients flowing back to each process's rows), so N processes train as one; with gradient accumulation
  they are the rows of the micro-batch, as in the released code's smaller batch.

Shape legend: B batch, S = K + 1 reasoning states (r_0..r_K), D hidden size, N items; logits have N + 1
columns, column 0 is padding and never takes part in a softmax.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..foundation import noise
from .chunked import chunked_cross_entropy
from .config import ObjectiveConfig, ReasoningConfig


def item_logits(states: torch.Tensor, item_table: torch.Tensor) -> torch.Tensor:
    """Dot-product scores [..., N + 1] of states [..., D] against the item table [N + 1, D]; column 0 = -inf."""
    logits = states @ item_table.T
    # In place: the product's output is not saved for its backward, and a copy of [..., N + 1] costs a pass.
    return logits.index_fill_(-1, logits.new_zeros(1, dtype=torch.long), float("-inf"))


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean full-softmax CE of logits [B, N + 1] / temperature against target ids [B]."""
    return F.cross_entropy(scaled(logits, temperature), target)


def scaled(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """x / temperature, without the two passes over x (forward, backward) at temperature 1."""
    return x if temperature == 1.0 else x / temperature


def state_cross_entropy(
    states: torch.Tensor,  # [B, D]
    item_table: torch.Tensor,  # [N + 1, D]
    target: torch.Tensor,  # [B]
    temperature: float,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Full-softmax CE of states against every item: in one [B, N + 1] piece, or with ``chunk_size`` in item
    chunks that never build the logit matrix (same loss, bounded memory; see reasoning/chunked.py)."""
    if chunk_size is None or chunk_size >= item_table.shape[0] - 1:
        # Scores are linear in the state: dividing the states [B, D] by the temperature gives the scaled logits
        # without a pass over [B, N + 1] in the forward and another in the backward.
        return F.cross_entropy(item_logits(scaled(states, temperature), item_table), target)
    return chunked_cross_entropy(states, item_table, target, temperature, chunk_size)


def kl_diversity(step_logits: torch.Tensor, pairs: str = "ordered_mean") -> torch.Tensor:
    """How different the steps' item distributions are: a non-negative scalar that ERL maximises.

    step_logits: [B, S, N + 1], already divided by the temperature. Computed in fp32 even under bf16/fp16
    autocast: the divergences are small differences of entropies of order log N, which half precision
    cannot resolve.
    """
    with torch.autocast(step_logits.device.type, enabled=False):
        return _diversity(step_logits.float(), pairs)


class _MeanJensenShannon(torch.autograd.Function):
    """Mean Jensen-Shannon divergence over the pairs i < j of the S distributions, from log-probabilities
    [B, S, N]; returns a scalar. JS(p_i, p_j) = (KL(p_i || m) + KL(p_j || m)) / 2 with m = (p_i + p_j) / 2, and
    its gradient is closed-form: dJS / d log p_i = p_i (log p_i - log m) / 2. Written out because autograd
    through the same formula keeps and revisits several [B, pairs, N] tensors: this is most of ERL's loss."""

    @staticmethod
    def forward(ctx, log_p: torch.Tensor) -> torch.Tensor:
        p = log_p.exp()
        states = log_p.shape[1]
        tiny = torch.finfo(log_p.dtype).tiny  # m underflows only where both do; keep its log finite there
        grad_log_p = torch.zeros_like(log_p)  # d(sum of the pairs' JS) / d log p, filled on the way
        for i in range(states):
            for j in range(i + 1, states):
                log_m = ((p[:, i] + p[:, j]) * 0.5).clamp_min(tiny).log()  # [B, N]
                grad_log_p[:, i] += p[:, i] * (log_p[:, i] - log_m)  # p_i log(p_i / m): KL(p_i || m) summed
                grad_log_p[:, j] += p[:, j] * (log_p[:, j] - log_m)
        scale = 1.0 / (states * (states - 1) * log_p.shape[0])  # 2 x pairs x B: each JS is half the two KLs
        ctx.save_for_backward(grad_log_p)
        ctx.scale = scale
        return grad_log_p.sum() * scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (grad_log_p,) = ctx.saved_tensors
        return grad_log_p * (grad * ctx.scale)


def _diversity(step_logits: torch.Tensor, pairs: str) -> torch.Tensor:
    log_p = F.log_softmax(step_logits[..., 1:], dim=-1)  # [B, S, N], padding excluded
    p = log_p.exp()
    neg_entropy = (p * log_p).sum(-1)  # [B, S]
    states = step_logits.shape[1]
    if pairs == "ordered_mean":
        # KL(p_j || sg(p_i)) for all i != j: gradient flows through p_j only, as in the released code.
        cross = p @ log_p.detach().transpose(1, 2)  # [B, S(j), S(i)]: sum_n p_j log p_i
        kl = neg_entropy[:, :, None] - cross  # [B, S, S]
        off_diagonal = ~torch.eye(states, dtype=torch.bool, device=kl.device)
        return kl[:, off_diagonal].mean()
    if pairs == "unordered_sum":
        cross = p @ log_p.transpose(1, 2)  # [B, S(i), S(j)]
        kl = neg_entropy[:, :, None] - cross  # KL(p_i || p_j)
        upper = torch.ones(states, states, dtype=torch.bool, device=kl.device).triu(1)  # i < j
        return kl[:, upper].sum(-1).mean()
    if pairs == "js_mean":
        # JS(p_i, p_j) = H(m) - (H(p_i) + H(p_j)) / 2 with m = (p_i + p_j) / 2: bounded by log 2, so the
        # diversity cannot outgrow the recommendation loss.
        return _MeanJensenShannon.apply(log_p)
    raise ValueError(f"kl_pairs must be 'ordered_mean', 'unordered_sum' or 'js_mean', got {pairs!r}")


def erl_loss(
    states: torch.Tensor,  # [B, S, D]
    item_table: torch.Tensor,  # [N + 1, D]
    target: torch.Tensor,  # [B]
    temperature: float,
    kl_weight: float,
    kl_pairs: str = "ordered_mean",
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Ensemble Reasoning Learning: CE of the mean state minus kl_weight x the steps' KL diversity."""
    if kl_weight == 0:
        recommendation = state_cross_entropy(states.mean(dim=1), item_table, target, temperature, chunk_size)
        return recommendation, {"ce": recommendation.detach()}
    if chunk_size is not None and chunk_size < item_table.shape[0] - 1:
        raise ValueError(
            "ERL's KL diversity needs every step's full item distribution; with a chunked loss set "
            "erl_kl_weight 0, or leave loss_chunk_size unset"
        )
    # Scores are linear in the state: the steps' logits / temperature come from the scaled states [B, S, D] (no
    # pass over [B, S, N + 1]), and the mean state's are the mean of the steps' (one product less).
    step_logits = item_logits(scaled(states, temperature), item_table)  # [B, S, N + 1], already scaled
    recommendation = F.cross_entropy(step_logits.mean(dim=1), target)
    diversity = kl_diversity(step_logits, kl_pairs)
    loss = recommendation - kl_weight * diversity
    return loss, {"ce": recommendation.detach(), "kl": diversity.detach()}


def step_temperatures(temperature: float, alpha: float, reasoning_steps: int) -> list[float]:
    """Progressive temperature annealing: tau_k = tau * alpha^(K - k), k = 0..K (the last step uses tau)."""
    return [temperature * alpha ** (reasoning_steps - k) for k in range(reasoning_steps + 1)]


class _AllGather(torch.autograd.Function):
    """[M, ...] on each of P processes -> [P, M, ...] on all; backward sums every process's gradient for
    this process's rows. (All-reduce based: plain all_gather/all_reduce work on every backend, gloo too.)"""

    @staticmethod
    def forward(ctx, rows: torch.Tensor) -> torch.Tensor:
        ctx.rank = dist.get_rank()
        parts = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, rows.contiguous())
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank]


def rows_of_every_process(rows: torch.Tensor) -> tuple[torch.Tensor, int]:
    """This process's rows [B, ...] -> the rows of every process [B_all, ...], in rank order, and where this
    process's rows start. Gradients flow back to each process's own rows. A stand-in forward of a process
    with no rows (``noise.counted()`` False) contributes none. One process: (rows, 0)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows, 0
    rank = dist.get_rank()
    size = torch.tensor([rows.shape[0] if noise.counted() else 0], device=rows.device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    # all_gather needs equal shapes: pad to the largest share, then drop the padding
    padding = rows.new_zeros((max(sizes) - sizes[rank], *rows.shape[1:]))
    gathered = _AllGather.apply(torch.cat([rows[: sizes[rank]], padding]))  # [P, max share, ...]
    return torch.cat([part[:n] for part, n in zip(gathered, sizes)]), sum(sizes[:rank])


def info_nce(anchors: torch.Tensor, candidates: torch.Tensor, temperature: float, similarity: str) -> torch.Tensor:
    """Per-step InfoNCE: anchor b at step k must pick candidate b among the candidates at step k of every
    row of the batch (on every process: :func:`rows_of_every_process`).

    anchors, candidates: [B, K, D]. Returns the mean over this process's rows and steps. In fp32 even under
    autocast: dot logits reach 10^3 / temperature, where bf16 rounds by whole units.
    """
    with torch.autocast(anchors.device.type, enabled=False):
        candidates, offset = rows_of_every_process(candidates.float())  # [B_all, K, D]
        if not noise.counted():  # a stand-in with no rows of its own: joins the gathers, adds no loss
            return 0.0 * (anchors.sum() + candidates.sum())
        return _info_nce(anchors.float(), candidates, temperature, similarity, offset)


def _info_nce(
    anchors: torch.Tensor, candidates: torch.Tensor, temperature: float, similarity: str, offset: int = 0
) -> torch.Tensor:
    if similarity == "cosine":
        anchors, candidates = F.normalize(anchors, dim=-1), F.normalize(candidates, dim=-1)
    elif similarity != "dot":
        raise ValueError(f"contrastive similarity must be 'dot' or 'cosine', got {similarity!r}")
    logits = torch.einsum("bkd,jkd->kbj", anchors, candidates) / temperature  # [K, B, B_all]
    labels = offset + torch.arange(anchors.shape[0], device=anchors.device).expand(logits.shape[0], -1)  # [K, B]
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten())


def prl_loss(
    states: torch.Tensor,  # [B, S, D] clean view
    item_table: torch.Tensor,  # [N + 1, D]
    target: torch.Tensor,  # [B]
    temperature: float,
    alpha: float,
    step_weight: float = 1.0,
    step_reduction: str = "mean",
    noisy_states: torch.Tensor | None = None,  # [B, S, D] noisy view, or None before/without contrast
    contrastive_weight: float = 1.0,
    contrastive_similarity: str = "dot",
    contrastive_temperature: float | None = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Progressive Reasoning Learning: annealed per-step CEs plus reasoning-aware contrastive learning."""
    steps = states.shape[1] - 1
    temperatures = step_temperatures(temperature, alpha, steps)
    final = state_cross_entropy(states[:, -1], item_table, target, temperatures[-1], chunk_size)
    earlier = [state_cross_entropy(states[:, k], item_table, target, temperatures[k], chunk_size) for k in range(steps)]
    if step_reduction not in ("mean", "sum"):
        raise ValueError(f"step_reduction must be 'mean' or 'sum', got {step_reduction!r}")
    progressive = torch.stack(earlier).sum() if earlier else final.new_zeros(())
    if earlier and step_reduction == "mean":
        progressive = progressive / len(earlier)
    loss = final + step_weight * progressive
    parts = {"ce": final.detach(), "progressive": progressive.detach()}
    if noisy_states is not None and steps > 0:
        contrastive = info_nce(
            noisy_states[:, 1:], states[:, 1:], contrastive_temperature or temperature, contrastive_similarity
        )
        loss = loss + contrastive_weight * contrastive
        parts["contrastive"] = contrastive.detach()
    return loss, parts


class Objective:
    """A training loss over a batch's reasoning states, chosen once when the model is built.

    ``__call__(states [B, S, D], item_table [C + 1, D], target [B], noisy_states)`` returns the loss and its
    terms (detached, for logging). ``uses_noisy_view``: the loss wants PRL's second, noisy view of the batch.
    """

    uses_noisy_view = False

    def __init__(self, config: ObjectiveConfig):
        self.config = config

    def __call__(
        self,
        states: torch.Tensor,
        item_table: torch.Tensor,
        target: torch.Tensor,
        noisy_states: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError


class NextItemLoss(Objective):
    """SASRec (no reasoning steps): full-softmax CE of the last state."""

    def __call__(self, states, item_table, target, noisy_states=None):
        c = self.config
        return state_cross_entropy(states[:, -1], item_table, target, c.temperature, c.loss_chunk_size), {}


class ERLLoss(Objective):
    """Ensemble Reasoning Learning (see :func:`erl_loss`)."""

    def __call__(self, states, item_table, target, noisy_states=None):
        c = self.config
        return erl_loss(states, item_table, target, c.temperature, c.erl_kl_weight, c.erl_kl_pairs, c.loss_chunk_size)


class PRLLoss(Objective):
    """Progressive Reasoning Learning (see :func:`prl_loss`); its contrastive term needs the noisy view."""

    def __init__(self, config: ObjectiveConfig):
        super().__init__(config)
        self.uses_noisy_view = config.prl_contrastive_weight > 0

    def __call__(self, states, item_table, target, noisy_states=None):
        c = self.config
        return prl_loss(
            states,
            item_table,
            target,
            c.temperature,
            c.prl_alpha,
            c.prl_step_weight,
            c.prl_step_reduction,
            noisy_states,
            c.prl_contrastive_weight,
            c.prl_contrastive_similarity,
            c.prl_contrastive_temperature,
            c.loss_chunk_size,
        )


class ClozeLoss:
    """BERT4Rec's cloze objective: predict masked history items from their output states [M, D]. Divided by
    the global batch's masked positions when given (``per_row`` x rows), so any split of the batch weighs
    every masked item alike."""

    def __init__(self, config: ObjectiveConfig):
        self.config = config

    def __call__(
        self, masked: torch.Tensor, item_table: torch.Tensor, labels: torch.Tensor, rows: int, per_row: float | None
    ) -> torch.Tensor:
        c = self.config
        loss = state_cross_entropy(masked, item_table, labels, c.temperature, c.loss_chunk_size)
        if per_row:  # the global batch's masked positions, not this slice's, divide the sum
            loss = loss * (len(masked) / (rows * per_row))
        return loss


def build_objective(objective: ObjectiveConfig, reasoning: ReasoningConfig) -> Objective:
    """The loss of the configured reasoning method (CE alone without reasoning steps)."""
    if reasoning.reasoning_steps == 0:
        return NextItemLoss(objective)
    return ERLLoss(objective) if reasoning.reasoning_method == "erl" else PRLLoss(objective)
