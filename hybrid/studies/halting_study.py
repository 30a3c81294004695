"""Adaptive reasoning depth on a trained ReaRec run (scripts/adaptive_depth.py is its command line).

Compares every fixed depth 0..K, KL-convergence halting, answer-direction (state) halting, the learned
halting head on the item distribution's features and on state features alone, the history-length depth plan
(users with at most L history items run depth a, the others depth b), the popularity depth plan (users whose
10 first items at depth 0 are the most popular fifth by validation run no step, the others depth a), and the
label-using ORACLE that picks each user's best depth. Each rule's epsilon, threshold or plan is chosen on
validation NDCG@10 (ties: fewer steps), so test figures stay untouched by the choice; the heads are fitted on
training (or validation) rows of the frozen model. Evaluation time of every fixed depth, of fixed K through
the halting code, and of each rule is taken in interleaved rounds, so machine noise hits all alike.

Shape legend: R rows of a split, K trained steps, M fitting rows, F features.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..analysis import load_run
from ..data import RecDataset, SplitData
from ..evaluate import EvalResult, evaluate
from ..halting import (
    AdaptiveDepth,
    HistoryDepth,
    KLHalting,
    LearnedHalting,
    PopularityDepth,
    StateHalting,
    answer_log_probs,
    answer_scale,
    log_popularity,
)
from ..metrics import metric_means
from ..model import HybridRecommender
from ..ranking import chunked_target_ranks, item_chunk_size
from ..run_folder import run_dataset
from .timing import interleaved_samples, rounds_faster

# 0 never halts (the fixed trained depth): validation may prefer it to any halting.
EPSILONS = (0.0, 1e-6, 1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
STATE_EPSILONS = (0.0, 1e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1)  # 1 - cosine between answers
THRESHOLDS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # 0 never halts
LENGTH_QUANTILES = torch.linspace(0.05, 0.95, 19)  # history-length cut-offs tried by the history rule
# The popularity plan's cut-off: the validation users above this quantile of the feature run no step. Fixed,
# not tuned (declared in benchmarks/quality/adaptive_depth_ml100k.md before any test figure).
POPULAR_QUANTILE = 0.8
TOP_K = 10  # the popularity plan reads this many first items of the depth-0 ranking

Evaluate = Callable[..., EvalResult]  # hybrid.evaluate.evaluate's signature


@dataclass
class HaltingStudyConfig:
    head_rows: int = 20_000  # rows the halting heads are fitted on (at most)
    # 'train' (the model has fitted their targets) or 'valid' (held out like test; the thresholds are then
    # chosen on the same rows)
    head_split: str = "train"
    timing_rounds: int = 11  # interleaved rounds of the evaluation timing
    # Halted users leave the batch once (halted rows) x (steps left) >= this x (rows still reasoning); 0 drops
    # them at every halt. Timing only: the rules are tuned at the default.
    compact_ratio: float = 1.0
    # The heads' labels rank with each user's past items excluded: set from the run, as it was evaluated
    # (the rules' evaluations follow the `evaluate` given to run_study).
    exclude_history: bool = False

    def __post_init__(self):
        if self.head_split not in ("train", "valid"):
            raise ValueError(f"head_split must be 'train' or 'valid', got {self.head_split!r}")
        if self.head_rows < 1 or self.timing_rounds < 1:
            raise ValueError(f"head_rows and timing_rounds must be >= 1, got {self.head_rows}, {self.timing_rounds}")
        if not self.compact_ratio >= 0:  # NaN too; checked here, not after the heads are fitted and rules tuned
            raise ValueError(
                f"compact_ratio must be >= 0 (0 drops halted users at every halt), got {self.compact_ratio}"
            )


@dataclass
class TunedRule:
    """A halting rule at its validation-chosen setting, with its validation and test results."""

    name: str  # e.g. "KL halting, epsilon"
    setting: object
    shown: str  # the setting as the table prints it
    valid: EvalResult
    test: EvalResult
    mean_steps: float  # on test
    rule: object
    valid_read_off: float | None = None  # for plans: the validation NDCG@10 read off the fixed depths' ranks

    @property
    def label(self) -> str:
        """The rule without its setting's name ("KL halting")."""
        return self.name.rsplit(",", 1)[0]


@dataclass
class Timing:
    """Test-set evaluation seconds of every fixed depth and rule, in interleaved rounds."""

    rounds: int
    mean_steps: dict[str, float]
    samples: dict[str, list[float]]  # seconds of every round
    seconds: dict[str, float]  # medians
    faster: dict[str, int]  # rounds in which each entry beat fixed K
    faster_on_path: dict[str, int]  # rounds in which each entry beat fixed K through the halting code


@dataclass
class HaltingStudy:
    """Everything the study measured: what its page, its JSON and its timing report are written from."""

    steps: int  # trained K
    fixed: dict[str, list[EvalResult]]  # split -> result at depth 0..K
    best_fixed: int  # chosen on validation
    oracle: dict[str, float]  # test metrics of each user's best depth (uses the label)
    rules: dict[str, TunedRule]
    timing: Timing
    config: HaltingStudyConfig = field(default_factory=HaltingStudyConfig)
    test_users: int = 0


def load_study_inputs(
    run_dir: str, dataset: str | None = None, item_file: str | None = None
) -> tuple[HybridRecommender, RecDataset]:
    """The trained model of ``run_dir`` and its dataset (at ``dataset``/``item_file`` when given: see
    run_folder.run_dataset); refuses models with fewer than 2 steps."""
    model, data_config, model_config, _ = load_run(run_dir)
    if model_config.reasoning_steps < 2:
        raise ValueError("adaptive depth needs a model trained with reasoning_steps >= 2")
    torch.manual_seed(0)
    return model, run_dataset(run_dir, data_config, model.catalogue, dataset, item_file)


def halting_result(
    model: HybridRecommender,
    split: SplitData,
    rule: object,
    name: str,
    compact_ratio: float = 1.0,
    evaluate: Evaluate = evaluate,
) -> tuple[EvalResult, float]:
    """The split's result with ``rule`` halting each user, and the mean depth it ran."""
    wrapped = AdaptiveDepth(model, rule, compact_ratio).eval()
    result = evaluate(wrapped, split, name)
    return result, wrapped.mean_steps()


def fixed_depths(model: HybridRecommender, dataset: RecDataset, evaluate: Evaluate = evaluate) -> dict:
    """Validation and test results at every fixed depth 0..K: {split: [EvalResult] * (K + 1)}."""
    steps = model.config.reasoning_steps
    return {split: [evaluate(model, dataset.split(split), split, steps=k) for k in range(steps + 1)]
            for split in ("valid", "test")}  # fmt: skip


@torch.no_grad()
def learned_head_data(
    model: HybridRecommender,
    split: SplitData,
    rows: int,
    heads: list[LearnedHalting],
    seed: int = 0,
    exclude_history: bool = False,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each head's features after each step k = 1..K-1 and whether step k + 1 ranks the target better (ranked
    as the run is evaluated: past items excluded with ``exclude_history``), on ``rows`` rows of ``split``:
    ([M, F] per head, [M])."""
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(split), generator=generator)[:rows]
    table = model.scoring_table()
    features, labels = [[] for _ in heads], []
    for batch in chosen.split(1024):
        history, target = (tensor.to(table.device) for tensor in split.batch(batch))  # the model's device
        answers = [model.user_vectors(history, k) for k in range(model.config.reasoning_steps + 1)]
        past = tuple(t.to(table.device) for t in split.past_mask_indices(batch)) if exclude_history else None
        ranks = [chunked_target_ranks(a, table, target, item_chunk_size(len(batch)), past)[0] for a in answers]
        log_qs = [answer_log_probs(a * answer_scale(model), table) for a in answers]  # as at inference
        for k in range(1, model.config.reasoning_steps):
            depth = k / model.config.reasoning_steps
            for collected, head in zip(features, heads):
                collected.append(head.step_features(log_qs[k - 1], log_qs[k], answers[k - 1], answers[k], depth).cpu())
            labels.append((ranks[k + 1] < ranks[k]).cpu())  # the heads are fitted on the CPU
    return [torch.cat(collected) for collected in features], torch.cat(labels)


def fit_heads(model: HybridRecommender, dataset: RecDataset, config: HaltingStudyConfig) -> list[LearnedHalting]:
    """The learned halting heads (distribution features, state features), fitted on the frozen model."""
    heads = [LearnedHalting("answer"), LearnedHalting("state")]
    split = dataset.split(config.head_split)
    features, improves = learned_head_data(model, split, config.head_rows, heads, 0, config.exclude_history)
    for head, head_features in zip(heads, features):
        head.fit(head_features, improves)
    return heads


def history_settings(valid_ranks: torch.Tensor, lengths: torch.Tensor) -> list[tuple]:
    """Every (max_length, short_steps, long_steps) of the history rule with its validation result, read off
    the fixed depths' ranks [R, K + 1] (a user's answer at depth k is the fixed depth-k answer): (setting,
    NDCG@10, mean steps) for each cut-off at a quantile of the history lengths [R] and every pair of depths."""
    depths = range(valid_ranks.shape[1])
    cut_offs = sorted(set(torch.quantile(lengths.float(), LENGTH_QUANTILES).round().long().tolist()))
    results = []
    for setting in ((cut, short, long) for cut in cut_offs for short in depths for long in depths):
        planned = HistoryDepth(*setting).steps_for_lengths(lengths)  # [R]
        ranks = valid_ranks.gather(1, planned[:, None])[:, 0]
        results.append((setting, metric_means(ranks)["ndcg@10"], float(planned.float().mean())))
    return results


@torch.no_grad()
def popularity_settings(
    model: HybridRecommender, split: SplitData, valid_ranks: torch.Tensor, rule: PopularityDepth
) -> list[tuple]:
    """The popularity plan's candidates, read off the fixed depths' validation ranks [R, K + 1]: the cut-off
    is the POPULAR_QUANTILE of the validation users' feature, users above it run depth 0, the others each depth
    a in 0..K: ((cut-off, a, 0), NDCG@10, mean steps) per a."""
    table = model.scoring_table()
    features = torch.cat(
        [
            rule.feature(model.user_vectors(split.batch(rows)[0].to(table.device), 0), table).cpu()
            for rows in torch.arange(len(split)).split(1024)
        ]
    )  # [R], beside the validation ranks (on the CPU)
    cut = float(torch.quantile(features, POPULAR_QUANTILE))
    results = []
    for steps in range(valid_ranks.shape[1]):
        planned = torch.where(features > cut, 0, steps)  # [R]
        ranks = valid_ranks.gather(1, planned[:, None])[:, 0]
        results.append(((cut, steps, 0), metric_means(ranks)["ndcg@10"], float(planned.float().mean())))
    return results


def history_plan_text(setting: tuple) -> str:
    """The history rule's plan (L, a, b) in words."""
    max_length, short_steps, long_steps = setting
    if short_steps == long_steps:
        return f"(every user: {short_steps} steps)"
    return f"<= {max_length} items: {short_steps} steps, longer: {long_steps}"


def popularity_plan_text(setting: tuple) -> str:
    """The popularity rule's plan (cut-off, a, b) in words."""
    cut, steps, popular_steps = setting
    return f"(top-{TOP_K} mean log popularity <= {cut:.3f}: {steps} steps, above: {popular_steps})"


def pick(candidates: list[tuple]) -> tuple:
    """(setting, valid NDCG@10, mean steps) with the best valid NDCG@10, fewer steps on ties."""
    return max(candidates, key=lambda c: (round(c[1], 6), -c[2]))


def tune(
    model: HybridRecommender,
    dataset: RecDataset,
    name: str,
    make_rule: Callable[[object], object],
    settings: Sequence[object],
    describe: Callable[[object], str] = lambda setting: f"{setting:g}",
    evaluate: Evaluate = evaluate,
) -> TunedRule:
    """The rule's setting with the best validation NDCG@10 (through the halting path), and its test result."""
    valid = {s: halting_result(model, dataset.valid, make_rule(s), "valid", evaluate=evaluate) for s in settings}
    setting = pick([(s, result.metrics["ndcg@10"], steps) for s, (result, steps) in valid.items()])[0]
    rule = make_rule(setting)
    test, mean_steps = halting_result(model, dataset.test, rule, "test", evaluate=evaluate)
    return TunedRule(name, setting, describe(setting), valid[setting][0], test, mean_steps, rule)


def tuned_rules(
    model: HybridRecommender,
    dataset: RecDataset,
    fixed: dict[str, list[EvalResult]],
    heads: list[LearnedHalting],
    evaluate: Evaluate = evaluate,
) -> dict[str, TunedRule]:
    """Every halting rule at its validation-chosen setting. The two plans are chosen on the fixed depths'
    validation ranks (no extra evaluation per candidate), then run through the halting path like the others."""
    answer_head, state_head = heads
    valid_ranks = torch.stack([result.ranks for result in fixed["valid"]], dim=1)  # [R, K + 1]
    plan, plan_read_off, _ = pick(history_settings(valid_ranks, (dataset.valid.history > 0).sum(dim=1)))
    item_log_popularity = log_popularity(torch.bincount(dataset.train.target, minlength=model.num_items + 1))
    popularity_plan, popularity_read_off, _ = pick(
        popularity_settings(model, dataset.valid, valid_ranks, PopularityDepth(item_log_popularity, 0.0, 0, TOP_K))
    )

    def popularity_rule(setting: tuple) -> PopularityDepth:
        return PopularityDepth(item_log_popularity, *setting, top_k=TOP_K)

    tuned = functools.partial(tune, model, dataset, evaluate=evaluate)
    rules = {
        "kl": tuned("KL halting, epsilon", KLHalting, EPSILONS),
        "state": tuned("state halting, epsilon", StateHalting, STATE_EPSILONS),
        "learned": tuned("learned head, threshold", answer_head.at, THRESHOLDS),
        "learned_state": tuned("learned head on state features, threshold", state_head.at, THRESHOLDS),
        "history": tuned("history-length depth, plan", lambda s: HistoryDepth(*s), [plan], history_plan_text),
        "popularity": tuned("popularity depth, plan", popularity_rule, [popularity_plan], popularity_plan_text),
    }
    # what chose the plans, to check the halting path against
    rules["history"].valid_read_off, rules["popularity"].valid_read_off = plan_read_off, popularity_read_off
    return rules


def fixed_label(steps: int) -> str:
    """The timing entry of fixed depth ``steps``."""
    return f"fixed K = {steps}"


def halting_path_label(steps: int) -> str:
    """The timing entry of every user run to depth ``steps`` through the halting code."""
    return f"fixed K = {steps}, halting path"


def time_evaluations(
    model: HybridRecommender,
    dataset: RecDataset,
    rules: dict[str, TunedRule],
    config: HaltingStudyConfig,
    evaluate: Evaluate = evaluate,
) -> Timing:
    """Test-set evaluation time of every fixed depth, of fixed K through the halting code (nobody halting: each
    rule's time against it is its net saving) and of each rule, in interleaved rounds."""
    steps = model.config.reasoning_steps
    # steps given: a run saved with a validation-chosen inference depth would otherwise time that one
    timed = {fixed_label(k): lambda k=k: evaluate(model, dataset.test, "test", steps=k) for k in range(steps + 1)}
    mean_steps = {fixed_label(k): float(k) for k in range(steps + 1)}
    everyone_to_k = HistoryDepth(0, steps, steps)
    timed[halting_path_label(steps)] = lambda: evaluate(
        AdaptiveDepth(model, everyone_to_k, config.compact_ratio), dataset.test, "test"
    )
    mean_steps[halting_path_label(steps)] = float(steps)
    for rule in rules.values():
        timed[rule.label] = lambda rule=rule.rule: evaluate(
            AdaptiveDepth(model, rule, config.compact_ratio), dataset.test, "test"
        )
        mean_steps[rule.label] = rule.mean_steps
    samples = interleaved_samples(timed, rounds=config.timing_rounds)
    seconds = {name: statistics.median(values) for name, values in samples.items()}
    return Timing(
        config.timing_rounds,
        mean_steps,
        samples,
        seconds,
        rounds_faster(samples, fixed_label(steps)),
        rounds_faster(samples, halting_path_label(steps)),
    )


def run_study(
    model: HybridRecommender,
    dataset: RecDataset,
    config: HaltingStudyConfig | None = None,
    evaluate: Evaluate = evaluate,
) -> HaltingStudy:
    """The whole study on a trained model with K >= 2 steps. Every evaluation goes through ``evaluate``, so a
    caller can watch or wrap them."""
    config = config or HaltingStudyConfig()
    steps = model.config.reasoning_steps
    if steps < 2:
        raise ValueError("adaptive depth needs a model trained with reasoning_steps >= 2")
    fixed = fixed_depths(model, dataset, evaluate)
    oracle = metric_means(torch.stack([r.ranks for r in fixed["test"]]).min(dim=0).values)
    best_fixed = max(range(steps + 1), key=lambda k: fixed["valid"][k].metrics["ndcg@10"])  # chosen on valid
    heads = fit_heads(model, dataset, config)
    rules = tuned_rules(model, dataset, fixed, heads, evaluate)
    timing = time_evaluations(model, dataset, rules, config, evaluate)
    return HaltingStudy(steps, fixed, best_fixed, oracle, rules, timing, config, len(dataset.test))
