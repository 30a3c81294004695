"""loss_positions='all': per-position windows of the training rows and SASRec's causal loss at every position."""

from collections import Counter
from dataclasses import replace

import pytest
import torch
from hybrid_rearec.foundation.noise import global_batch_noise
from hybrid_rearec.hybrid.config import ModelConfig
from hybrid_rearec.hybrid.data import SplitData, load_dataset, packed_batches, sequence_rows
from hybrid_rearec.hybrid.errors import ConfigError, DataError
from hybrid_rearec.hybrid.model import HybridRecommender
from hybrid_rearec.hybrid.train import train

from tests.test_train import quick_train_config


def test_windows_score_every_training_pair_once_with_half_a_window_of_context(csv_data_config):
    train_rows = load_dataset(csv_data_config).train  # 40 users x 9 training rows
    windows = sequence_rows(train_rows, max_history=4)  # stride 2: windows end at rows 8, 6, 4, 2 of a user
    assert windows.history.shape == (40 * 4, 4) and windows.target.shape == (40 * 4, 4)
    scored = windows.target > 0
    assert bool((windows.history[scored] > 0).all())  # a scored target always has its input
    pairs = Counter(zip(windows.history[scored].tolist(), windows.target[scored].tolist()))
    assert pairs == Counter(zip(train_rows.history[:, -1].tolist(), train_rows.target.tolist()))  # once each
    # Context: a scored position sees at least max_history - stride = 2 items (itself included), or, in a
    # user's oldest window, the user's whole past.
    context = (windows.history > 0).long().cumsum(dim=1)  # [W, L] items up to each position
    oldest = torch.arange(len(windows)) % 4 == 3
    assert bool((context[~oldest][scored[~oldest]] >= 3).all())
    assert bool(scored[oldest].sum(dim=1).eq(3).all())  # the oldest window scores its 3 positions
    # A user's most recent window ends with their most recent training row.
    assert windows.target[0, -1] == train_rows.target[8] and windows.history[0, -1] == train_rows.history[8, -1]
    history, target = windows.batch(torch.tensor([3]))  # padding beyond the longest row dropped
    assert history.shape == target.shape == (1, 3) and target[0, 0] == train_rows.target[0]


def prefix_rows(sequences: list[list[int]], max_history: int) -> SplitData:
    """Training rows (every item after a user's first, as the target of the items before it) of hand-made users."""
    history, target, user = [], [], []
    for index, items in enumerate(sequences):
        for position in range(1, len(items)):
            past = items[max(0, position - max_history) : position]
            history.append([0] * (max_history - len(past)) + past)
            target.append(items[position])
            user.append(index)
    empty = torch.zeros(len(target) + 1, dtype=torch.long)
    return SplitData(torch.tensor(history), torch.tensor(target), torch.tensor(user), empty, empty[:0])


def test_windows_of_users_of_uneven_lengths():
    rows = prefix_rows([[1, 2], [3, 4, 5, 6, 7, 8], [9, 10, 11, 12]], max_history=3)  # 1, 5 and 3 rows
    windows = sequence_rows(rows, max_history=2)  # stride 1: each window scores its last position
    assert windows.history.tolist() == [[0, 1], [6, 7], [5, 6], [4, 5], [3, 4], [10, 11], [9, 10]]
    assert windows.target.tolist() == [[0, 2], [0, 8], [0, 7], [0, 6], [4, 5], [0, 12], [10, 11]]
    assert windows.loss_per_target(10.0) == pytest.approx(10.0 / 9)  # 9 targets
    shuffled = prefix_rows([[1, 2, 3, 4]], max_history=3)
    shuffled.history, shuffled.target = shuffled.history.flip(0), shuffled.target.flip(0)
    with pytest.raises(DataError, match="not grouped by user in time order"):
        sequence_rows(shuffled, max_history=2)


@pytest.mark.parametrize(
    "reasoning",
    [{}, {"reasoning_steps": 2, "reasoning_method": "erl"}, {"reasoning_steps": 3, "reasoning_method": "prl"}],
    ids=["sasrec", "erl", "prl"],
)
def test_all_positions_loss_is_the_prefix_rows_loss_when_nothing_is_truncated(reasoning):
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=16, num_heads=2, inner_size=32, loss_positions="all", **reasoning)
    model = HybridRecommender(config, num_items=30, max_history=8).eval()  # eval: no dropout
    items = torch.tensor([[0, 0, 3, 7, 1, 9, 4, 2], [0, 0, 0, 0, 0, 5, 6, 8]])  # two left-padded users
    inputs, targets = items[:, :-1], items[:, 1:] * (items[:, :-1] > 0)  # [2, 7] each, 0 at padding
    window_loss = model(inputs, targets).loss
    # The same targets as separate (prefix, next item) rows, each with the last-position loss.
    prefixes, next_items = [], []
    for row in range(2):
        for column in range(7):
            if targets[row, column] > 0:
                prefix = torch.zeros(7, dtype=torch.long)
                prefix[7 - column - 1 :] = inputs[row, : column + 1]
                prefixes.append(prefix)
                next_items.append(targets[row, column])
    prefix_loss = model(torch.stack(prefixes), torch.stack(next_items)).loss  # mean over the 7 targets
    assert len(prefixes) == 7
    assert window_loss.item() == pytest.approx(prefix_loss.item(), rel=1e-5)  # both: the mean over the 7 targets


def test_all_positions_is_refused_where_the_history_is_not_causal_or_the_softmax_is_in_batch():
    for settings in ({"backbone": "bert4rec"}, {"item_encoder": "lm_lora"}):
        ((name, value),) = settings.items()
        with pytest.raises(ConfigError, match=f"trains causal models only, not with {name}={value!r}"):
            ModelConfig(loss_positions="all", **settings)
    with pytest.raises(ConfigError, match="loss_positions="):
        ModelConfig(loss_positions="every")
    model = HybridRecommender(ModelConfig(hidden_size=16, num_heads=2, inner_size=32), num_items=30, max_history=8)
    with pytest.raises(ValueError, match="loss_positions='all'"):
        model(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long))


def test_training_with_all_positions_learns_the_planted_walk(tmp_path, csv_data_config, tiny_model_config):
    config = replace(tiny_model_config, loss_positions="all")
    results = train(csv_data_config, config, quick_train_config(tmp_path, epochs=30))
    losses = [entry["loss"] for entry in results["train_log"]]
    assert losses[-1] < losses[0]
    assert results["test"]["metrics"]["ndcg@10"] > 0.5  # random ranking of 30 items gives about 0.1
    # 40 users x 9 training targets in 80 windows, packed into batches of at most 32 targets: about as many
    # optimizer steps per epoch as the prefix layout's 12 batches of 32 rows
    windows = sequence_rows(load_dataset(csv_data_config).train, max_history=8)
    per_epoch = windows.batches_per_epoch(32)
    assert 12 <= per_epoch <= 14
    assert results["train_log"][-1]["step"] <= per_epoch * results["epochs_run"]


def test_packed_batches_hold_every_window_once_within_the_target_budget():
    targets = torch.tensor([5, 1, 4, 4, 2, 6, 3, 5])
    batches = list(packed_batches(targets, budget=8, seed=1, epoch=2))
    rows = torch.cat([batch.global_rows for batch in batches])
    assert sorted(rows.tolist()) == list(range(8))
    assert all(int(targets[batch.global_rows].sum()) <= 8 for batch in batches)
    again = [batch.global_rows.tolist() for batch in packed_batches(targets, budget=8, seed=1, epoch=2)]
    assert again == [batch.global_rows.tolist() for batch in batches]  # fixed by (seed, epoch)
    two = [list(packed_batches(targets, 8, 1, 2, rank, 2)) for rank in (0, 1)]
    for whole, first, second in zip(batches, *two):  # two processes split every global batch between them
        assert torch.equal(torch.cat([first.rows, second.rows]), whole.global_rows) and second.offset == len(first.rows)


@pytest.mark.parametrize("view", ["sequence", "reasoning"])
def test_all_positions_trains_prl_with_its_contrastive_views(view):
    torch.manual_seed(0)
    config = ModelConfig(
        hidden_size=16, num_heads=2, inner_size=32, loss_positions="all", reasoning_steps=2,
        reasoning_method="prl", prl_noisy_view=view, prl_contrastive_weight=0.1,
    )  # fmt: skip
    model = HybridRecommender(config, num_items=30, max_history=8).train()
    items = torch.tensor([[0, 0, 3, 7, 1, 9, 4, 2], [0, 0, 0, 0, 0, 5, 6, 8]])
    inputs, targets = items[:, :-1], items[:, 1:] * (items[:, :-1] > 0)
    output = model(inputs, targets, contrastive=True)
    assert {"ce", "progressive", "contrastive"} <= output.loss_parts.keys() and torch.isfinite(output.loss)
    output.loss.backward()
    assert model.reasoning.position_embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("method", ["erl", "prl"])
def test_one_pass_gradients_do_not_depend_on_how_the_windows_are_split(method):
    """Dropout on everywhere: the gathered reasoning rows draw their masks per (window, position) of the global
    batch, so one forward of four windows and three forwards of slices of them give the same gradients."""
    torch.manual_seed(0)
    config = ModelConfig(
        hidden_size=16, num_heads=2, inner_size=32, loss_positions="all", reasoning_steps=2,
        reasoning_method=method, hidden_dropout=0.3, attention_dropout=0.3,
    )  # fmt: skip
    model = HybridRecommender(config, num_items=30, max_history=8).train()
    items = torch.randint(1, 31, (4, 8))
    items[1, :3] = 0
    inputs, targets = items[:, :-1], items[:, 1:] * (items[:, :-1] > 0)
    targets[2, :4] = 0  # a window whose first positions are context only

    def gradients(pieces, seed=5):
        model.zero_grad(set_to_none=True)
        total = int((targets > 0).sum())
        for start, end in pieces:
            with global_batch_noise(seed=seed, offset=start, rows=end - start, global_size=4):
                loss = model(inputs[start:end], targets[start:end]).loss
            (loss * int((targets[start:end] > 0).sum()) / total).backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    whole, sliced = gradients([(0, 4)]), gradients([(0, 1), (1, 3), (3, 4)])
    assert len(whole) == len(sliced) > 10
    assert max((a - b).abs().max().item() for a, b in zip(whole, sliced)) <= 1e-6
    assert any(not torch.equal(a, b) for a, b in zip(whole, gradients([(0, 4)], seed=6)))  # the masks are on
