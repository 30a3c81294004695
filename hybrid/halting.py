"""Adaptive reasoning depth: train with K steps, decide per user at inference how many to run.

After each step k the user's current answer (the model's aggregate of r_0..r_k: r_k for PRL, their mean for
ERL) is compared with the previous one; a user who halts keeps that answer and leaves the batch (as soon as
dropping rows costs less than carrying them), so the remaining steps really run on fewer rows. The rules:

- ``KLHalting``: stop once KL(q_{k-1} || q_k) < epsilon (the item distribution has converged), after at
  least ``min_steps`` steps.
- ``StateHalting``: stop once the answer's direction has converged, 1 - cos(answer_{k-1}, answer_k) <
  epsilon. Rankings depend on the answer's direction only, and this rule scores no items, so halting
  saves time instead of adding a softmax over the catalogue per step.
- ``LearnedHalting``: a small logistic head on features of the current step predicts whether one more step
  would improve the target's rank; stop when that probability is below ``threshold``. It is fitted on
  training rows of a frozen model. Feature sets: ``answer`` (KL to the previous answer, entropy, top
  probability over the catalogue, plus the state features) or ``state`` (the answer's direction change, norm
  and relative change, depth), which scores no items and so can save time like ``StateHalting``.
- ``HistoryDepth``: the depth is planned per user before reasoning starts, from the history length alone
  (users with at most ``max_length`` items run ``short_steps``, the others ``long_steps``). It reads no
  state and scores no items. Why: how much a step helps differs with the history length (on BERT4Rec + PRL
  short histories gain from the last step, long ones lose), and the length is known for free.
- ``PopularityDepth``: the depth is planned per user after depth 0, from how popular the items are that rank
  first for r_0's answer: users whose top items are the most popular run ``popular_steps`` (default 0), the
  others ``steps``. Why: popular targets lose from more reasoning steps and long-tail targets gain (ReaRec
  paper); the top of the depth-0 ranking says, without the label, which kind of answer a user is heading for.

Shape legend: B users (A still active), D hidden size, N items, K trained steps, F features.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .ranking import chunked_top_k


def answer_log_probs(user_vectors: torch.Tensor, item_table: torch.Tensor) -> torch.Tensor:
    """log q over items 1..N of user vectors [A, D] -> [A, N] (the inference softmax, no temperature)."""
    return F.log_softmax(user_vectors @ item_table[1:].T, dim=-1)


def answer_scale(model) -> float:
    """What user vectors are multiplied by before :func:`answer_log_probs`. Under cosine scoring the inference
    softmax divides by the temperature: cosine logits in [-1, 1] alone give near-uniform distributions."""
    return 1.0 / model.config.temperature if model.config.score_similarity == "cosine" else 1.0


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row of log-probabilities [A, N] -> [A]."""
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def state_features(previous_state: torch.Tensor, state: torch.Tensor, depth: float) -> torch.Tensor:
    """Features [A, 4] of the answer vectors [A, D] alone (no item scoring): direction change, log norm,
    relative change, depth."""
    norm = state.norm(dim=-1)
    return torch.stack(
        [
            1 - F.cosine_similarity(previous_state, state, dim=-1),
            norm.clamp(min=1e-12).log(),
            (state - previous_state).norm(dim=-1) / previous_state.norm(dim=-1).clamp(min=1e-12),
            torch.full_like(norm, depth),
        ],
        dim=-1,
    )


def step_features(
    previous_log_q: torch.Tensor, log_q: torch.Tensor, previous_state: torch.Tensor, state: torch.Tensor, depth: float
) -> torch.Tensor:
    """Features [A, 7] of the answer after a step, for the learned rule: the item distribution's change,
    entropy and top probability, then :func:`state_features`."""
    probs = log_q.exp()
    distribution = torch.stack(
        [kl_divergence(previous_log_q, log_q), -(probs * log_q).sum(dim=-1), probs.max(dim=-1).values], dim=-1
    )
    return torch.cat([distribution, state_features(previous_state, state, depth)], dim=-1)


FEATURE_SETS = {"answer": 7, "state": 4}  # name -> number of features


@dataclass
class KLHalting:
    epsilon: float
    min_steps: int = 1
    needs_distribution = True  # reads log q over the catalogue after every step

    def stop(self, step: int, previous_log_q, log_q, previous_state, state, depth) -> torch.Tensor:
        """[A] bool: which active users halt after ``step``."""
        if step < self.min_steps:
            return torch.zeros(log_q.shape[0], dtype=torch.bool, device=log_q.device)
        # Clamped: rounding makes KL of (nearly) equal rows slightly negative, so epsilon 0 never halts.
        return kl_divergence(previous_log_q, log_q).clamp(min=0) < self.epsilon


@dataclass
class StateHalting:
    epsilon: float
    min_steps: int = 1
    needs_distribution = False  # reads the answer vectors only: no item scoring during reasoning

    def stop(self, step: int, previous_log_q, log_q, previous_state, state, depth) -> torch.Tensor:
        """[A] bool: which active users halt after ``step`` (``previous_log_q``/``log_q`` are unused)."""
        if step < self.min_steps:
            return torch.zeros(state.shape[0], dtype=torch.bool, device=state.device)
        return (1 - F.cosine_similarity(previous_state, state, dim=-1)).clamp(min=0) < self.epsilon


class LearnedHalting(nn.Module):
    """Logistic regression on standardised step features: P(one more step improves the rank).
    ``features``: ``answer`` (:func:`step_features`, reads the item distribution after every step) or
    ``state`` (:func:`state_features`, scores no items)."""

    def __init__(self, features: str = "answer", threshold: float = 0.5, min_steps: int = 0):
        super().__init__()
        if features not in FEATURE_SETS:
            raise ValueError(f"unknown halting features {features!r}: choose one of {sorted(FEATURE_SETS)}")
        self.features, self.needs_distribution = features, features == "answer"
        num_features = FEATURE_SETS[features]
        self.linear = nn.Linear(num_features, 1)
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))
        self.threshold, self.min_steps = threshold, min_steps

    def step_features(self, previous_log_q, log_q, previous_state, state, depth) -> torch.Tensor:
        """This head's features [A, F] (``previous_log_q``/``log_q`` unused, and may be None, for ``state``)."""
        if self.features == "state":
            return state_features(previous_state, state, depth)
        return step_features(previous_log_q, log_q, previous_state, state, depth)

    def at(self, threshold: float) -> LearnedHalting:
        """The same fitted head (weights shared) halting at another threshold."""
        head = copy.copy(self)
        head.threshold = threshold
        return head

    def probability(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear((features - self.mean) / self.std)[:, 0])  # [A]

    def fit(self, features: torch.Tensor, improves: torch.Tensor, iterations: int = 200) -> LearnedHalting:
        """Features [M, F], labels [M] (1 = the next step ranked the target better); full-batch L-BFGS."""
        if features.ndim != 2 or features.shape[1] != self.linear.in_features:
            raise ValueError(
                f"the {self.features!r} halting head takes {self.linear.in_features} features per row, got a "
                f"tensor of shape {tuple(features.shape)}: build them with this head's step_features"
            )
        self.mean, self.std = features.mean(0), features.std(0).clamp(min=1e-6)
        optimizer = torch.optim.LBFGS(self.linear.parameters(), max_iter=iterations, line_search_fn="strong_wolfe")
        x, y = (features - self.mean) / self.std, improves.float()

        def closure():
            optimizer.zero_grad()
            loss = (
                F.binary_cross_entropy_with_logits(self.linear(x)[:, 0], y) + 1e-4 * self.linear.weight.square().sum()
            )
            loss.backward()
            return loss

        optimizer.step(closure)
        return self

    def stop(self, step: int, previous_log_q, log_q, previous_state, state, depth) -> torch.Tensor:
        if step < self.min_steps:
            return torch.zeros(state.shape[0], dtype=torch.bool, device=state.device)
        with torch.no_grad():
            features = self.step_features(previous_log_q, log_q, previous_state, state, depth)
            head = self.linear.weight.device  # fitted on the CPU; the model may run on a GPU
            return (self.probability(features.to(head)) < self.threshold).to(state.device)


class PlannedDepth:
    """A rule that plans each user's depth in advance (``planned_steps`` from the history, or
    ``planned_steps_after_answer`` from the depth-0 answer); the plan alone ends a user's reasoning.
    Subclasses give ``deepest``, the most steps a plan can give, checked against the model before any batch."""

    @property
    def deepest(self) -> int:
        raise NotImplementedError

    def stop(self, step: int, previous_log_q, log_q, previous_state, state, depth) -> torch.Tensor:
        """Never halts on what it sees: the planned depth alone ends a user's reasoning."""
        return torch.zeros(state.shape[0], dtype=torch.bool, device=state.device)


@dataclass
class HistoryDepth(PlannedDepth):
    max_length: int  # users with at most this many history items run short_steps, the others long_steps
    short_steps: int
    long_steps: int
    needs_distribution = False  # plans from the history alone: no item scoring, no state read

    def __post_init__(self):
        if min(self.max_length, self.short_steps, self.long_steps) < 0:
            raise ValueError(f"HistoryDepth takes lengths and depths >= 0, got {self}")

    @property
    def deepest(self) -> int:
        """The most steps this plan can give a user (checked against the model before any batch runs)."""
        return max(self.short_steps, self.long_steps)

    def planned_steps(self, history: torch.Tensor) -> torch.Tensor:
        """[B] the depth of each user of ``history`` [B, L] (0 pads)."""
        return self.steps_for_lengths((history > 0).sum(dim=1))

    def steps_for_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """[B] the depth of users with ``lengths`` [B] history items."""
        short, long = torch.full_like(lengths, self.short_steps), torch.full_like(lengths, self.long_steps)
        return torch.where(lengths <= self.max_length, short, long)


def top_item_popularity(
    answers: torch.Tensor, item_table: torch.Tensor, item_log_popularity: torch.Tensor, top_k: int
) -> torch.Tensor:
    """[A] mean of ``item_log_popularity`` [N + 1] over the ``top_k`` items (1..N) that score highest for each
    answer [A, D] against ``item_table`` [N + 1, D]. Items are scored in chunks so large catalogues stay bounded."""
    best_items = chunked_top_k(answers, item_table, top_k, _TOP_ITEM_CHUNK)[1]  # [A, top_k] item ids
    return item_log_popularity[best_items].mean(dim=-1)


_TOP_ITEM_CHUNK = 65_536  # items scored at once by top_item_popularity


def log_popularity(counts: torch.Tensor) -> torch.Tensor:
    """log max(count, 1) of item counts [N + 1]: items seen once and never count the same (0)."""
    return counts.float().clamp(min=1).log()


@dataclass
class PopularityDepth(PlannedDepth):
    item_log_popularity: torch.Tensor  # [N + 1] log max(training count, 1) of every item (see log_popularity)
    max_popularity: float  # users whose top items' mean log popularity is at most this run `steps`
    steps: int
    popular_steps: int = 0  # depth of the users above max_popularity
    top_k: int = 10  # how many of the depth-0 answer's first items are read
    needs_distribution = False  # reads one ranking, at depth 0; no item scoring during reasoning

    def __post_init__(self):
        if min(self.steps, self.popular_steps) < 0 or self.top_k < 1:
            raise ValueError(
                f"PopularityDepth takes depths >= 0 and top_k >= 1, got steps {self.steps}, popular_steps "
                f"{self.popular_steps}, top_k {self.top_k}"
            )
        if self.item_log_popularity.dim() != 1:
            raise ValueError("item_log_popularity must be one value per item row [N + 1]")

    @property
    def deepest(self) -> int:
        return max(self.steps, self.popular_steps)

    def feature(self, answers: torch.Tensor, item_table: torch.Tensor) -> torch.Tensor:
        """[A] mean log popularity of the top items of depth-0 answers [A, D]."""
        if self.item_log_popularity.shape[0] != item_table.shape[0]:
            raise ValueError(
                f"the popularity table has {self.item_log_popularity.shape[0]} rows but the model scores "
                f"{item_table.shape[0]} (items + padding): count the popularity on this model's dataset"
            )
        popularity = self.item_log_popularity.to(answers.device)
        return top_item_popularity(answers, item_table, popularity, self.top_k)

    def planned_steps_after_answer(self, answers: torch.Tensor, item_table: torch.Tensor) -> torch.Tensor:
        """[A] the depth of each user from its depth-0 answer [A, D]."""
        popular = self.feature(answers, item_table) > self.max_popularity
        return torch.where(popular, self.popular_steps, self.steps)


def _rows(tensor: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor | None:
    return tensor if tensor is None or mask is None else tensor[mask]


@torch.no_grad()
def adaptive_user_vectors(
    model, history: torch.Tensor, rule, item_table: torch.Tensor | None = None, compact_ratio: float = 1.0
):
    """User vectors [B, D] and steps used [B] with per-user halting.

    ``model`` is a trained HybridRecommender in eval mode; ``rule`` a KLHalting, StateHalting, LearnedHalting,
    HistoryDepth or PopularityDepth (a rule with ``planned_steps`` or ``planned_steps_after_answer`` also halts
    every user at its planned depth). A halted user's answer is frozen at once; the user leaves the batch when that
    pays. Dropping rows copies the cache of every row that stays (about what one step reads per row), so halted rows
    are dropped only once (halted rows in the batch) x (steps left) >= ``compact_ratio`` x (rows still reasoning);
    until then they ride along and their results are discarded. 0 drops them at every halt. Halted rows at the end
    of the batch leave at once, whatever the ratio: that is a slice of the cache, not a copy. A rule that plans
    depths in advance gets this every time, since the batch is then ordered deepest plan first.
    """
    if compact_ratio < 0:
        raise ValueError(f"compact_ratio must be >= 0 (0 drops halted rows at once), got {compact_ratio}")
    if hasattr(rule, "planned_steps_after_answer") and hasattr(rule, "planned_steps"):
        raise ValueError("a halting rule plans depths either from the history or after depth 0, not both")
    steps = model.reasoning.reasoning_steps
    if (hasattr(rule, "planned_steps") or hasattr(rule, "planned_steps_after_answer")) and rule.deepest > steps:
        # the rule's depths, not this batch's: every batch fails alike
        raise ValueError(
            f"the halting rule plans up to {rule.deepest} reasoning steps but the model was trained with "
            f"{steps}: plan at most {steps}"
        )
    run = HaltingRun(model, history, rule, item_table, compact_ratio)
    if steps and run.compact(0):
        for step in range(1, steps + 1):
            run.advance(step)
            if step == steps or not run.compact(step):
                break
    return run.answer, run.steps_used


class HaltingRun:
    """One batch's reasoning under a halting rule: the rows still in the batch (``rows``, their users), which
    of them still reason (``live``), their running answers, and every user's answer and depth so far."""

    def __init__(self, model, history: torch.Tensor, rule, item_table: torch.Tensor | None, compact_ratio: float):
        self.model, self.rule, self.compact_ratio = model, rule, compact_ratio
        self.steps = model.reasoning.reasoning_steps
        self.scores = getattr(rule, "needs_distribution", True)
        plans_after_answer = hasattr(rule, "planned_steps_after_answer")  # plans from the depth-0 ranking
        self.table = item_table
        if self.table is None and (self.scores or plans_after_answer):  # a text encoder's table costs a pass
            self.table = model.scoring_table()
        self.rows = torch.arange(len(history), device=history.device)  # user of each row of the batch [C]
        self.planned = rule.planned_steps(history) if hasattr(rule, "planned_steps") else None  # [B] or None
        if self.planned is not None:
            # Deepest plans first: users then leave the batch from its end, so dropping them is a slice, not a copy.
            self.rows = torch.argsort(self.planned, descending=True, stable=True)
        self.loop = model.reasoning_loop(history if self.planned is None else history[self.rows])
        self.scale = answer_scale(model)  # under cosine scoring the answers are built from unit states
        self.total = model.unit(self.loop.state).clone()  # running sum of unit states (ERL's mean) [C, D]
        if plans_after_answer:
            self.plan_after_answer()
        self.answer = torch.empty_like(self.total)  # current user vector of every user [B, D]
        self.answer[self.rows] = self.total
        self.steps_used = torch.zeros(len(history), dtype=torch.long, device=history.device)
        # [C] rows still reasoning; users planned at depth 0 answer with r_0
        self.live = (
            torch.ones_like(self.rows, dtype=torch.bool) if self.planned is None else self.planned[self.rows] > 0
        )
        self.log_q = answer_log_probs(self.total * self.scale, self.table) if self.scores else None  # [C, N]

    def plan_after_answer(self) -> None:
        """Plan every user's depth from r_0's ranking, then order the batch deepest plan first."""
        self.planned = self.rule.planned_steps_after_answer(self.total, self.table)  # [B] (rows in user order)
        if len(self.planned) > 1 and not bool((self.planned[:-1] >= self.planned[1:]).all()):
            self.rows = torch.argsort(self.planned, descending=True, stable=True)  # deepest plans first
            self.total = self.total[self.rows]
            self.loop.keep(self.rows)  # one copy of the cache

    def compact(self, step: int) -> bool:
        """Drop the halted rows if that pays (see ``adaptive_user_vectors``); False once nobody is reasoning."""
        alive = int(self.live.sum())
        halted = len(self.live) - alive  # rows riding along with frozen answers
        if not (alive and halted):
            return alive > 0
        if bool(self.live[:alive].all()):  # the reasoning rows lead the batch: a slice, no copy, always pays
            keep = slice(0, alive)
        elif halted * (self.steps - step) >= self.compact_ratio * alive:
            keep = self.live.nonzero()[:, 0]
        else:
            return True
        self.rows, self.total, self.live = self.rows[keep], self.total[keep], self.live[keep]
        self.log_q = None if self.log_q is None else self.log_q[keep]
        self.loop.keep(keep)
        return True

    def advance(self, step: int) -> None:
        """Run reasoning step ``step`` for the rows in the batch; the rule halts some of those still reasoning."""
        unit_state = self.model.unit(self.loop.step())  # [C, D]
        self.total = self.total + unit_state
        # The answer so far (see reasoning.rearec.aggregate): the mean of r_0..r_step (ERL) or r_step.
        current = self.total / (step + 1) if self.model.config.averages_states else unit_state
        new_log_q = answer_log_probs(current * self.scale, self.table) if self.scores else None
        mine = None if self.live.all() else self.live.clone()  # rows whose step this was (None: all)
        reasoning = _rows(self.rows, mine)  # their users [A]
        halt = self.rule.stop(
            step,
            _rows(self.log_q, mine),
            _rows(new_log_q, mine),
            self.answer[reasoning],
            _rows(current, mine),
            step / self.steps,
        )  # [A]
        if self.planned is not None:
            halt = halt | (self.planned[reasoning] <= step)
        self.answer[reasoning] = _rows(current, mine)
        self.steps_used[reasoning] = step
        self.log_q = new_log_q
        self.live[self.live.clone()] = ~halt  # [C]


class AdaptiveDepth(nn.Module):
    """A trained model whose ``user_vectors`` halt per user: drop-in for ``hybrid.evaluate.evaluate``.
    ``steps_used`` collects the depth of every user scored since the last ``reset``.

    The item table a rule scores against is the one the last ``scoring_table`` call built (``evaluate`` builds
    it once per split), so a text or LoRA encoder is not run again for every batch; ``reset`` forgets it. A
    kept table is rebuilt when any parameter or buffer has changed since (in place, replaced, or moved to
    another device)."""

    def __init__(self, model, rule, compact_ratio: float = 1.0):
        super().__init__()
        self.model, self.rule, self.compact_ratio, self.steps_used = model, rule, compact_ratio, []
        self._table: torch.Tensor | None = None  # [N + 1, D] from the last scoring_table call
        self._table_weights: tuple = ()  # the weights' storage and version counters when it was built

    @property
    def item_encoder(self):
        return self.model.item_encoder

    @property
    def num_items(self) -> int:
        return self.model.num_items

    def _weights(self) -> tuple:
        # An optimizer step or an in-place edit bumps a tensor's version; a new tensor or .to(device) has new
        # storage. Buffers count: a text encoder's item features are one.
        tensors = [*self.model.parameters(), *self.model.buffers()]
        return tuple((t.data_ptr(), t._version) for t in tensors)

    def scoring_table(self) -> torch.Tensor:
        self._table, self._table_weights = self.model.scoring_table(), self._weights()
        return self._table

    def reset(self) -> None:
        self.steps_used, self._table = [], None

    def user_vectors(self, history: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        if steps is not None:  # evaluate(..., steps=k) would print k steps while the rule decides them
            raise ValueError(
                f"steps={steps}: AdaptiveDepth's rule picks each user's depth; evaluate the model itself for a fixed "
                "depth (or leave steps unset)."
            )
        if self._table is not None and self._table_weights != self._weights():
            self.scoring_table()  # the kept table is of other weights
        vectors, used = adaptive_user_vectors(
            self.model, history, self.rule, item_table=self._table, compact_ratio=self.compact_ratio
        )
        self.steps_used.append(used.cpu())
        return vectors

    def mean_steps(self) -> float:
        return float(torch.cat(self.steps_used).float().mean()) if self.steps_used else 0.0
