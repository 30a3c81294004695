"""Adaptive reasoning depth: the halting rules, halted users frozen, the batch really shrinking."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hybrid_rearec.hybrid import halting
from hybrid_rearec.hybrid.config import ModelConfig
from hybrid_rearec.hybrid.evaluate import evaluate
from hybrid_rearec.hybrid.halting import (
    AdaptiveDepth,
    HistoryDepth,
    KLHalting,
    LearnedHalting,
    PopularityDepth,
    StateHalting,
    adaptive_user_vectors,
    kl_divergence,
    log_popularity,
    top_item_popularity,
)
from hybrid_rearec.hybrid.model import HybridRecommender
from hybrid_rearec.reasoning.backbone import KVCache

from tests.tester import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def test_kl_rule_on_hand_made_distributions():
    same = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    moved = torch.log(torch.tensor([[0.1, 0.2, 0.7]]))
    assert kl_divergence(same, same).item() == pytest.approx(0.0, abs=1e-7)
    expected = 0.7 * math.log(7) + 0.1 * math.log(1 / 7)
    assert kl_divergence(same, moved).item() == pytest.approx(expected, rel=1e-5)
    rule = KLHalting(epsilon=0.01, min_steps=2)
    both = torch.cat([same, same]), torch.cat([same, moved])  # row 0 converged, row 1 moved
    states = torch.zeros(2, 4)
    assert rule.stop(1, *both, states, states, 0.5).tolist() == [False, False]  # below the minimum depth
    assert rule.stop(2, *both, states, states, 1.0).tolist() == [True, False]
    never = KLHalting(epsilon=0.0).stop(2, *both, states, states, 1.0)  # KL of equal rows may round below 0
    assert never.tolist() == [False, False]


def test_state_rule_on_hand_made_vectors():
    previous = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    current = torch.tensor([[3.0, 0.0], [1.0, 0.01], [0.0, 1.0]])  # same direction, nudged, turned 90 degrees
    rule = StateHalting(epsilon=1e-3, min_steps=1)
    assert rule.stop(0, None, None, previous, current, 0.0).tolist() == [False, False, False]  # below min depth
    assert rule.stop(1, None, None, previous, current, 0.5).tolist() == [True, True, False]  # 1 - cos: 0, 5e-5, 1


def forbid_item_scoring(monkeypatch, why: str) -> None:
    """Makes any scoring of the catalogue during reasoning fail with ``why``."""

    def no_scoring(*args):
        raise AssertionError(why)

    monkeypatch.setattr(halting, "answer_log_probs", no_scoring)


def tiny_model_and_histories(method: str):
    """A random K = 3 model of ``method`` and 7 full histories of 6 items."""
    torch.manual_seed(0)
    model = HybridRecommender(tiny_config(method, steps=3), num_items=40, max_history=6).eval()
    return model, torch.randint(1, 41, (7, 6))


def model_and_answers(method: str):
    """A random K = 3 model, 8 histories and the users' answers at every fixed depth 0..3 ([8, D] each)."""
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=16, num_heads=2, inner_size=32, reasoning_steps=3, reasoning_method=method)
    model = HybridRecommender(config, num_items=40, max_history=6).eval()
    history = torch.randint(1, 41, (8, 6))
    with torch.no_grad():
        return model, history, [model.user_vectors(history, k) for k in range(4)]


def test_state_rule_scores_no_items_and_matches_fixed_depths(monkeypatch):
    model, history, vectors = model_and_answers("erl")  # ERL answers: means of the states so far
    distances = torch.stack([1 - F.cosine_similarity(vectors[k - 1], vectors[k], dim=-1) for k in (1, 2, 3)])
    epsilon = float(distances.median())  # some users halt early, some run on

    forbid_item_scoring(monkeypatch, "the state rule must not score items")
    answers, steps = adaptive_user_vectors(model, history, StateHalting(epsilon))
    expected = torch.full((8,), 3)
    for k in (2, 1):  # the first step after which the user's answer moved less than epsilon
        expected = torch.where(distances[k - 1] < epsilon, torch.full_like(expected, k), expected)
    assert steps.tolist() == expected.tolist() and 0 < int((steps < 3).sum()) < 8
    for row, depth in enumerate(steps.tolist()):
        assert torch.allclose(answers[row], vectors[depth][row], atol=1e-5)


class Recorder:
    """A rule that halts chosen rows after chosen steps and records how many rows each step ran on."""

    def __init__(self, halt_after):
        self.halt_after, self.active_rows, self.seen = halt_after, [], None

    def stop(self, step, previous_log_q, log_q, previous_state, state, depth):
        self.active_rows.append(log_q.shape[0])
        if self.seen is None:
            self.seen = torch.arange(log_q.shape[0])
        halt = torch.tensor([self.halt_after.get(int(row), 99) <= step for row in self.seen])
        self.seen = self.seen[~halt]
        return halt


def step_batch_sizes(model, monkeypatch) -> list[int]:
    """Records the number of rows every reasoning step of ``model`` runs on."""
    sizes, step = [], model.backbone.step

    def recording_step(x, cache):
        sizes.append(x.shape[0])
        return step(x, cache)

    monkeypatch.setattr(model.backbone, "step", recording_step)
    return sizes


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
@pytest.mark.parametrize("method", ["prl", "erl"])
@pytest.mark.parametrize(("compact_ratio", "batch_sizes"), [(0.0, [5, 4, 3]), (1.0, [5, 5, 5]), (math.inf, [5, 5, 5])])
def test_halted_users_keep_their_state_and_leave_the_batch(method, similarity, compact_ratio, batch_sizes, monkeypatch):
    torch.manual_seed(0)
    # temperature: read by halting under cosine scoring only
    config = tiny_config(method, steps=3, score_similarity=similarity, temperature=0.1)
    model = HybridRecommender(config, num_items=40, max_history=6).eval()
    history = torch.randint(1, 41, (5, 6))
    sizes = step_batch_sizes(model, monkeypatch)
    rule = Recorder({0: 1, 3: 2})  # row 0 halts after step 1, row 3 after step 2, the rest run all 3
    vectors, steps = adaptive_user_vectors(model, history, rule, compact_ratio=compact_ratio)
    assert steps.tolist() == [1, 3, 3, 2, 3]
    assert rule.active_rows == [5, 4, 3]  # the rule judges only the users still reasoning
    # 0 drops halted rows at once; at 1 one halted row x 2 steps left < 4 reasoning rows: carrying is cheaper
    assert sizes == batch_sizes
    for row, depth in enumerate(steps.tolist()):
        fixed = model.user_vectors(history[row : row + 1], steps=depth)[0]
        assert torch.allclose(vectors[row], fixed, atol=1e-5)  # frozen at its halting depth
    never = adaptive_user_vectors(model, history, KLHalting(epsilon=-1.0))[0]  # KL is never below -1
    assert torch.allclose(never, model.user_vectors(history), atol=1e-5)
    always = adaptive_user_vectors(model, history, KLHalting(epsilon=float("inf"), min_steps=1))
    assert always[1].tolist() == [1] * 5 and torch.allclose(always[0], model.user_vectors(history, 1), atol=1e-5)
    wrapped = AdaptiveDepth(model, KLHalting(epsilon=float("inf"), min_steps=2))
    wrapped.user_vectors(history)
    assert wrapped.mean_steps() == 2.0
    with pytest.raises(ValueError, match=r"steps=1: AdaptiveDepth's rule picks each user's depth"):
        wrapped.user_vectors(history, 1)  # evaluate(..., steps=1) would report a depth the rule never ran


def test_adaptive_depth_builds_the_item_table_once_per_evaluation(monkeypatch):
    """A rule that scores the catalogue reuses the table ``evaluate`` built, batch after batch (a text encoder's
    table is a forward pass); changed weights get a new table, through evaluate or not."""
    from hybrid_rearec.hybrid.data import SplitData

    model, history = tiny_model_and_histories("erl")
    split = SplitData(history, torch.randint(1, 41, (7,)), torch.arange(7), torch.zeros(8, dtype=torch.long),
                      torch.zeros(0, dtype=torch.long))  # fmt: skip
    builds = []
    build = model.scoring_table
    monkeypatch.setattr(model, "scoring_table", lambda: builds.append(1) or build())
    rule = KLHalting(epsilon=0.05, min_steps=1)
    wrapped = AdaptiveDepth(model, rule)
    evaluate(wrapped, split, "valid", batch_size=3)  # three batches
    assert len(builds) == 1
    batches = torch.arange(7).split(3)
    uncached = torch.cat([adaptive_user_vectors(model, history[rows], rule)[0] for rows in batches])
    assert len(builds) == 4  # given no table, every batch builds its own
    wrapped.scoring_table()
    cached = torch.cat([wrapped.user_vectors(history[rows]) for rows in batches])
    assert len(builds) == 5 and torch.equal(cached, uncached)
    with torch.no_grad():
        model.item_encoder.embedding.weight.neg_()  # other weights: a table kept from before would be stale
    evaluate(wrapped, split, "valid", batch_size=3)
    assert len(builds) == 6
    cached = torch.cat([wrapped.user_vectors(history[rows]) for rows in batches])  # the table of the new weights
    assert torch.equal(cached, torch.cat([adaptive_user_vectors(model, history[rows], rule)[0] for rows in batches]))
    assert not torch.equal(cached, uncached)
    with torch.no_grad():
        model.item_encoder.embedding.weight.neg_()  # changed again, and no evaluate to rebuild the table
    rebuilt = torch.cat([wrapped.user_vectors(history[rows]) for rows in batches])
    assert len(builds) == 10 and torch.equal(rebuilt, uncached)  # rebuilt once, for the first batch only
    model.item_encoder.register_buffer("features", torch.zeros(3))  # as a text encoder's item features
    wrapped.scoring_table()
    model.item_encoder.features.add_(1)
    wrapped.user_vectors(history[:3])
    assert len(builds) == 12  # a changed buffer, too, gets a new table
    wrapped.reset()
    wrapped.user_vectors(history)
    assert len(builds) == 13  # after reset it builds its own again


def test_halted_rows_leave_once_dropping_them_pays(monkeypatch):
    torch.manual_seed(0)
    model = HybridRecommender(tiny_config("erl", steps=3), num_items=40, max_history=6).eval()
    history = torch.randint(1, 41, (6, 6))
    sizes = step_batch_sizes(model, monkeypatch)
    # after step 1 three of six halt: 3 halted x 2 steps left >= 1 x 3 reasoning rows, so they leave
    vectors, steps = adaptive_user_vectors(model, history, Recorder({0: 1, 2: 1, 4: 1}), compact_ratio=1.0)
    assert sizes == [6, 3, 3] and steps.tolist() == [1, 3, 1, 3, 1, 3]
    carried = adaptive_user_vectors(model, history, Recorder({0: 1, 2: 1, 4: 1}), compact_ratio=math.inf)[0]
    assert torch.allclose(vectors, carried, atol=1e-6)  # the policy changes the cost, never the answers
    with pytest.raises(ValueError, match="compact_ratio"):
        adaptive_user_vectors(model, history, KLHalting(0.1), compact_ratio=-1)


def test_history_rule_plans_the_depth_from_the_history_length():
    history = torch.tensor([[0, 0, 0, 5], [0, 0, 3, 4], [0, 2, 3, 4], [1, 2, 3, 4]])  # lengths 1, 2, 3, 4
    assert HistoryDepth(max_length=2, short_steps=3, long_steps=1).planned_steps(history).tolist() == [3, 3, 1, 1]
    assert HistoryDepth(max_length=0, short_steps=0, long_steps=2).planned_steps(history).tolist() == [2, 2, 2, 2]
    with pytest.raises(ValueError, match=">= 0"):
        HistoryDepth(max_length=2, short_steps=-1, long_steps=1)


@pytest.mark.parametrize("method", ["prl", "erl"])
@pytest.mark.parametrize("compact_ratio", [0.0, 1.0, math.inf])
def test_history_rule_runs_each_user_to_its_planned_depth(method, compact_ratio, monkeypatch):
    model, history = tiny_model_and_histories(method)
    history[-2:, :4] = 0  # the last two users have 2 items: planned at depth 3; the five others at depth 0
    history[2:4, :1] = 0  # two users with 5 items: still "long" under max_length 2

    forbid_item_scoring(monkeypatch, "the history rule must not score items")
    sizes = step_batch_sizes(model, monkeypatch)
    rule = HistoryDepth(max_length=2, short_steps=3, long_steps=0)
    vectors, steps = adaptive_user_vectors(model, history, rule, compact_ratio=compact_ratio)
    assert steps.tolist() == [0, 0, 0, 0, 0, 3, 3]
    # the batch is ordered deepest plan first (the last two users move to the front), so the five depth-0 users
    # leave before step 1 by a slice of the cache, not a copy, whatever the ratio
    assert sizes == [2, 2, 2]
    for row, depth in enumerate(steps.tolist()):  # answers back in the users' order
        fixed = model.user_vectors(history[row : row + 1], steps=depth)[0]
        assert torch.allclose(vectors[row], fixed, atol=1e-5)
    mixed = HistoryDepth(max_length=5, short_steps=1, long_steps=2)  # short users stop after step 1
    sizes.clear()
    vectors, steps = adaptive_user_vectors(model, history, mixed, compact_ratio=compact_ratio)
    assert steps.tolist() == [2, 2, 1, 1, 2, 1, 1] and sizes == [7, 3]
    for row, depth in enumerate(steps.tolist()):
        assert torch.allclose(vectors[row], model.user_vectors(history[row : row + 1], steps=depth)[0], atol=1e-5)
    with pytest.raises(ValueError, match="plans up to 4 reasoning steps but the model was trained with 3"):
        adaptive_user_vectors(model, history, HistoryDepth(max_length=2, short_steps=4, long_steps=0))
    with pytest.raises(ValueError, match="plans up to 4"):  # even on a batch where no user gets that depth
        adaptive_user_vectors(model, history[:5], HistoryDepth(max_length=2, short_steps=4, long_steps=0))


def test_top_item_popularity_on_a_hand_made_catalogue(monkeypatch):
    table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, -1.0]])  # 5 items
    popularity = log_popularity(torch.tensor([10**6, 100, 50, 1, 0, 1000]))  # [N + 1]; count 0 reads as 1
    # user 0 ranks items 1, 2 first; user 1 items 3, 4; user 2 item 5, then padding (score 0) would come before
    # items 1-4 (< 0) if it were a candidate: it must never be
    answers = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.5]])
    expected = [(math.log(100) + math.log(50)) / 2, 0.0, (math.log(1000) + math.log(100)) / 2]
    assert top_item_popularity(answers, table, popularity, top_k=2).tolist() == pytest.approx(expected)
    monkeypatch.setattr(halting, "_TOP_ITEM_CHUNK", 2)  # items scored two at a time: the same top items
    assert top_item_popularity(answers, table, popularity, top_k=2).tolist() == pytest.approx(expected)
    rule = PopularityDepth(popularity, max_popularity=1.0, steps=2, top_k=2)  # popular top items: no step
    assert rule.planned_steps_after_answer(answers, table).tolist() == [0, 2, 0]
    with pytest.raises(ValueError, match="popularity table has 4 rows but the model scores 6"):
        PopularityDepth(popularity[:4], 1.0, 2).feature(answers, table)
    with pytest.raises(ValueError, match="depths >= 0"):
        PopularityDepth(popularity, 1.0, -1)


@pytest.mark.parametrize("method", ["prl", "erl"])
@pytest.mark.parametrize("compact_ratio", [0.0, 1.0, math.inf])
def test_popularity_rule_runs_each_user_to_its_planned_depth(method, compact_ratio, monkeypatch):
    model, history = tiny_model_and_histories(method)
    table = model.scoring_table()
    with torch.no_grad():
        first = model.user_vectors(history, steps=0)  # r_0 answers [7, D]
    popularity = torch.rand(41)
    features = top_item_popularity(first, table, popularity, top_k=5)  # [7]
    cut = float(features.sort().values[3])  # the three users above it are "popular": depth 0

    forbid_item_scoring(monkeypatch, "the popularity rule scores the catalogue at depth 0 only")
    sizes = step_batch_sizes(model, monkeypatch)
    rule = PopularityDepth(popularity, max_popularity=cut, steps=3, top_k=5)
    vectors, steps = adaptive_user_vectors(model, history, rule, compact_ratio=compact_ratio)
    assert steps.tolist() == torch.where(features > cut, 0, 3).tolist()
    assert sizes == [4, 4, 4]  # reordered deepest plan first: the depth-0 users leave before step 1
    for row, depth in enumerate(steps.tolist()):  # answers back in the users' order
        fixed = model.user_vectors(history[row : row + 1], steps=depth)[0]
        assert torch.allclose(vectors[row], fixed, atol=1e-5)
    with pytest.raises(ValueError, match="plans up to 4 reasoning steps but the model was trained with 3"):
        adaptive_user_vectors(model, history, PopularityDepth(popularity, cut, 4))
    both = PopularityDepth(popularity, cut, 3)
    both.planned_steps = HistoryDepth(2, 3, 0).planned_steps  # a rule that would plan twice is refused
    with pytest.raises(ValueError, match="either from the history or after depth 0, not both"):
        adaptive_user_vectors(model, history, both)


@pytest.mark.parametrize("compact_ratio", [0.0, 1.0, math.inf])
def test_kl_halting_compacts_its_distributions_with_the_rows(compact_ratio):
    """KL halting reads the previous step's distribution of every row still reasoning: it must be dropped with
    its rows. Depths and answers against a brute force over the fixed depths."""
    torch.manual_seed(0)
    model = HybridRecommender(tiny_config("prl", steps=4), num_items=40, max_history=6).eval()
    history = torch.randint(1, 41, (16, 6))
    with torch.no_grad():
        fixed = [model.user_vectors(history, k) for k in range(5)]
        log_qs = [halting.answer_log_probs(vectors, model.scoring_table()) for vectors in fixed]
        kls = torch.stack([kl_divergence(log_qs[k - 1], log_qs[k]).clamp(min=0) for k in range(1, 5)])  # [4, B]
    epsilon = float(kls[:3].median())
    below = kls < epsilon  # [4, B]
    expected = torch.where(below.any(0), below.float().argmax(0) + 1, torch.full((16,), 4))
    vectors, steps = adaptive_user_vectors(model, history, KLHalting(epsilon), compact_ratio=compact_ratio)
    assert steps.tolist() == expected.tolist() and 0 < int((steps < 4).sum()) < 16
    for row, depth in enumerate(steps.tolist()):
        assert torch.allclose(vectors[row], fixed[depth][row], atol=1e-5)


def test_nobody_halted_copies_no_cache(monkeypatch):
    torch.manual_seed(0)
    model = HybridRecommender(tiny_config("erl", steps=3), num_items=40, max_history=6).eval()
    copies = []
    select = KVCache.select
    monkeypatch.setattr(KVCache, "select", lambda cache, rows: copies.append(rows) or select(cache, rows))
    adaptive_user_vectors(model, torch.randint(1, 41, (5, 6)), KLHalting(epsilon=-1.0), compact_ratio=0.0)
    assert copies == []


def test_learned_head_separates_steps_that_help_from_steps_that_do_not():
    torch.manual_seed(0)
    features = torch.randn(400, 7)
    improves = features[:, 0] > 0.3  # the first feature decides
    head = LearnedHalting(threshold=0.5).fit(features, improves)
    accuracy = ((head.probability(features) > 0.5) == improves).float().mean()
    assert accuracy > 0.95


def test_state_feature_head_scores_no_items_and_halts_where_it_predicts_no_gain(monkeypatch):
    model, history, vectors = model_and_answers("prl")  # PRL answers: r_0..r_3
    features = halting.state_features(vectors[0], vectors[1], 1 / 3)  # [8, 4] after step 1
    assert features.shape == (8, 4)
    assert torch.allclose(features[:, 0], 1 - F.cosine_similarity(vectors[0], vectors[1], dim=-1))
    assert torch.allclose(features[:, 1], vectors[1].norm(dim=-1).log())
    # Fitted so that "another step helps" exactly when the first step turned the answer by more than the median.
    moved = features[:, 0] > features[:, 0].median()
    head = LearnedHalting("state").fit(features, moved)
    assert not head.needs_distribution and LearnedHalting("answer").needs_distribution

    forbid_item_scoring(monkeypatch, "the state-feature head must not score items")
    answers, steps = adaptive_user_vectors(model, history, head, item_table=None)
    halted_at_1 = steps == 1
    assert halted_at_1.tolist() == (~moved).tolist()  # the users it predicted no gain for stopped after step 1
    for row, depth in enumerate(steps.tolist()):
        assert torch.allclose(answers[row], vectors[depth][row], atol=1e-5)
    copy = head.at(0.9)  # a threshold copy shares the weights and leaves the head's own threshold alone
    assert copy.threshold == 0.9 and head.threshold == 0.5 and copy.linear is head.linear


def test_learned_head_rejects_features_of_the_other_set():
    with pytest.raises(ValueError, match="takes 4 features"):
        LearnedHalting("state").fit(torch.randn(10, 7), torch.rand(10) > 0.5)
    with pytest.raises(ValueError, match="unknown halting features 'states'"):
        LearnedHalting("states")


def adaptive_depth_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("adaptive_depth", ROOT / "scripts" / "adaptive_depth.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_history_plans_are_read_off_the_fixed_depths_ranks():
    # 6 users, depths 0..2: short histories (<= 3 items) rank best at depth 2, long ones at depth 0
    lengths = torch.tensor([2, 3, 3, 9, 10, 12])
    ranks = torch.tensor([[50, 9, 0], [50, 9, 0], [50, 9, 0], [0, 9, 50], [0, 9, 50], [0, 9, 50]])
    results = {
        setting: (ndcg, steps) for setting, ndcg, steps in adaptive_depth_script().history_settings(ranks, lengths)
    }
    assert results[(3, 2, 0)] == (pytest.approx(1.0), pytest.approx(1.0))  # every user at its best depth
    assert results[(3, 0, 2)][0] == pytest.approx(0.0)  # the opposite plan: every user at its worst
    for k in range(3):  # a plan with equal depths is fixed depth k
        fixed = adaptive_depth_script().metric_means(ranks[:, k])["ndcg@10"]
        assert results[(3, k, k)] == (pytest.approx(fixed), pytest.approx(k))


class Rows:
    """The part of a split learned_head_data reads: len and batch(rows)."""

    def __init__(self, history, target):
        self.history, self.target = history, target

    def __len__(self):
        return len(self.target)

    def batch(self, rows):
        return self.history[rows], self.target[rows]


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_the_head_is_fitted_on_the_features_it_sees_when_it_runs(similarity):
    """Under cosine scoring the inference softmax divides by the temperature: fitting must do the same."""
    torch.manual_seed(0)
    config = tiny_config("prl", steps=2, score_similarity=similarity, temperature=0.1)
    model = HybridRecommender(config, num_items=40, max_history=6).eval()
    history, target = torch.randint(1, 41, (8, 6)), torch.randint(1, 41, (8,))
    head = LearnedHalting("answer")
    (fitted,), _ = adaptive_depth_script().learned_head_data(model, Rows(history, target), 8, [head])
    seen = []
    head.step_features = lambda *args: seen.append(LearnedHalting.step_features(head, *args)) or seen[-1]
    adaptive_user_vectors(model, history, head)
    chosen = torch.randperm(8, generator=torch.Generator().manual_seed(0))  # the rows the script drew, in order
    assert torch.allclose(fitted, seen[0][chosen], atol=1e-5)  # after step 1, every user still active


@pytest.mark.parametrize("head_split", ["train", "valid"])
def test_adaptive_depth_command_times_the_trained_depth_of_a_run_saved_with_fewer(
    tmp_path, csv_data_config, monkeypatch, head_split
):
    """A run saved with a validation-chosen inference depth (K = 1 of 2) is still compared with fixed K = 2."""
    import json

    from hybrid_rearec.hybrid.train import train

    from tests.test_train import quick_train_config

    config = ModelConfig(
        hidden_size=16, num_layers=1, num_heads=2, inner_size=32, reasoning_steps=2, reasoning_method="prl",
        inference_steps=1,
    )  # fmt: skip
    excluded = head_split == "valid"  # one run of each: the study ranks as the run was evaluated
    train(csv_data_config, config, quick_train_config(tmp_path, epochs=1, exclude_history=excluded))
    script = adaptive_depth_script()
    depths, exclusions = [], set()  # the depth of every evaluation of the plain model; every exclusion setting

    def recording(model, split, name, **kwargs):
        if isinstance(model, HybridRecommender):
            depths.append(kwargs.get("steps", model.config.inference_steps))
        exclusions.add(kwargs.get("exclude_history"))
        return evaluate(model, split, name, **kwargs)

    monkeypatch.setattr(script, "evaluate", recording)
    run = str(tmp_path / "run")
    report = tmp_path / "halting"
    monkeypatch.setattr(
        "sys.argv",
        [
            "adaptive_depth.py",
            run,
            "--timing_rounds",
            "2",
            "--head_rows",
            "64",
            "--report",
            str(report),
            "--head_split",
            head_split,
        ],  # fmt: skip
    )
    assert script.main() == 0
    assert exclusions == {excluded}
    results = json.loads((tmp_path / "run" / "analysis" / "adaptive_depth.json").read_text())
    assert sorted(results["fixed"]) == ["0", "1", "2"]
    assert {"kl", "state", "learned", "learned_state", "history", "popularity"} <= set(results)
    assert results["head_split"] == head_split and len(results["history"]["setting"]) == 3
    assert results["popularity"]["setting"][2] == 0  # the popular users run no step
    for plan in ("history", "popularity"):  # chosen on figures read off the fixed depths, run through halting
        assert results[plan]["valid"]["ndcg@10"] == pytest.approx(results[plan]["valid_read_off"], abs=1e-6)
    timed = ["fixed K = 0", "fixed K = 1", "fixed K = 2", "fixed K = 2, halting path", "KL halting",
             "state halting", "learned head", "learned head on state features", "history-length depth",
             "popularity depth"]  # fmt: skip
    assert list(results["eval_seconds"]) == timed
    assert all(len(rounds) == 2 for rounds in results["eval_seconds_by_round"].values())
    # 2 x 3 fixed depths, then a warm-up and 2 timed rounds of fixed K = 0, 1, 2 (the last at the trained
    # K = 2, not the saved K = 1) besides the rules; each round starts one entry later
    assert depths[:6] == [0, 1, 2, 0, 1, 2] and depths[6:] == [0, 1, 2] + [1, 2] + [0] + [2, 0, 1]
    benchmark = json.loads(report.with_suffix(".json").read_text())
    assert benchmark["rounds_faster_than_fixed_K"]["fixed K = 2"] == 0  # never faster than itself
    assert benchmark["rounds_faster_than_the_halting_path_at_K"]["fixed K = 2, halting path"] == 0
    assert "rounds faster than fixed K = 2" in report.with_suffix(".md").read_text()


def test_the_heads_labels_rank_as_the_run_is_evaluated_with_past_items_excluded(csv_data_config):
    from hybrid_rearec.hybrid.data import load_dataset

    torch.manual_seed(0)
    dataset = load_dataset(csv_data_config)  # 30 items, histories of up to 11: the mask moves many ranks
    model = HybridRecommender(tiny_config("prl", steps=3), dataset.num_items, csv_data_config.max_history).eval()
    for parameter in model.parameters():  # large random weights: every step moves the ranks
        torch.nn.init.normal_(parameter, std=1.0)
    split = dataset.split("valid")
    chosen = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))  # the rows the study draws
    head = LearnedHalting("answer")
    for excluded in (True, False):
        _, labels = adaptive_depth_script().learned_head_data(model, split, len(split), [head], 0, excluded)
        ranks = [evaluate(model, split, "valid", steps=k, exclude_history=excluded).ranks[chosen] for k in range(4)]
        assert torch.equal(labels, torch.cat([ranks[k + 1] < ranks[k] for k in (1, 2)]))
        if excluded:
            masked = labels
    assert not torch.equal(masked, labels)  # the mask changes labels here: the check above can tell them apart
