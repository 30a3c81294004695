"""Chunked full-softmax loss and memory-bounded ranking equal the one-piece computations."""

import pytest
import torch
from hybrid_rearec.hybrid.config import ModelConfig
from hybrid_rearec.hybrid.errors import ConfigError
from hybrid_rearec.hybrid.model import HybridRecommender
from hybrid_rearec.reasoning.chunked import chunked_cross_entropy
from hybrid_rearec.reasoning.objectives import cross_entropy, item_logits


@pytest.mark.parametrize("chunk_size,temperature", [(1, 1.0), (7, 0.5), (64, 0.07), (1000, 1.0)])
def test_chunked_cross_entropy_matches_the_full_softmax_and_its_gradients(chunk_size, temperature):
    torch.manual_seed(0)
    states = torch.randn(16, 8, dtype=torch.float64, requires_grad=True)
    table = torch.randn(51, 8, dtype=torch.float64)
    table[0] = 0
    table.requires_grad_(True)
    target = torch.randint(1, 51, (16,))
    exact = cross_entropy(item_logits(states, table), target, temperature)
    exact_grads = torch.autograd.grad(exact, (states, table))
    chunked = chunked_cross_entropy(states, table, target, temperature, chunk_size)
    chunked_grads = torch.autograd.grad(chunked, (states, table))
    assert abs(chunked.item() - exact.item()) < 1e-10
    for got, want in zip(chunked_grads, exact_grads):
        assert torch.allclose(got, want, atol=1e-10)
    assert torch.equal(chunked_grads[1][0], torch.zeros(8, dtype=torch.float64))  # padding is never a candidate


def test_chunked_cross_entropy_stays_fp32_under_bf16_autocast():
    """Autocast would otherwise run every chunk's logits in bf16: the loss must match fp32 outside it."""
    torch.manual_seed(0)
    states = torch.randn(32, 16, requires_grad=True)
    table = torch.randn(501, 16)
    target = torch.randint(1, 501, (32,))
    exact = chunked_cross_entropy(states, table, target, 0.5, 64)
    exact_grad = torch.autograd.grad(exact, states)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = chunked_cross_entropy(states, table, target, 0.5, 64)
    mixed_grad = torch.autograd.grad(mixed, states)[0]
    assert mixed.dtype == torch.float32 and abs(mixed.item() - exact.item()) < 1e-5
    assert torch.allclose(mixed_grad, exact_grad, atol=1e-6)


@pytest.mark.parametrize("method", ["none", "prl", "erl"])
def test_model_loss_with_chunks_agrees_with_the_exact_loss_to_1e5(method):
    steps = 0 if method == "none" else 2
    settings = dict(hidden_size=16, num_heads=2, inner_size=32, hidden_dropout=0.0, attention_dropout=0.0)
    settings |= dict(reasoning_steps=steps, reasoning_method="prl" if method == "none" else method)
    if method == "erl":
        settings["erl_kl_weight"] = 0.0
    torch.manual_seed(0)
    exact_model = HybridRecommender(ModelConfig(**settings), num_items=300, max_history=6)
    chunked_model = HybridRecommender(ModelConfig(**settings, loss_chunk_size=37), num_items=300, max_history=6)
    chunked_model.load_state_dict(exact_model.state_dict())
    history, target = torch.randint(0, 301, (32, 6)), torch.randint(1, 301, (32,))
    history[:, -1] = torch.randint(1, 301, (32,))
    exact, chunked = exact_model(history, target).loss, chunked_model(history, target).loss
    assert abs(exact.item() - chunked.item()) < 1e-5
    exact.backward()
    chunked.backward()
    for (name, a), b in zip(exact_model.named_parameters(), chunked_model.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_erl_kl_with_a_chunked_loss_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="KL diversity.*--erl_kl_weight 0"):
        ModelConfig(reasoning_steps=2, reasoning_method="erl", loss_chunk_size=1000)


def one_piece_ranks(users, table, target, past=None, cold=None):
    """The reference: the whole [B, N + 1] score matrix, as the evaluation protocol defines ranks."""
    from hybrid_rearec.hybrid.metrics import target_ranks

    scores = item_logits(users, table)
    if past is not None:
        kept = scores.gather(1, target[:, None])
        scores[past[0], past[1]] = float("-inf")
        scores.scatter_(1, target[:, None], kept)
    ranks = target_ranks(scores, target)
    if cold is None:
        return ranks, None
    among = target_ranks(scores.masked_fill(~cold[None, :], float("-inf")), target)
    return ranks, torch.where(cold[target], among, -1)


@pytest.mark.parametrize("chunk_size", [1, 13, 100, 10_000])
def test_chunked_ranks_equal_the_one_piece_ranks_with_ties_masks_and_cold_items(chunk_size):
    from hybrid_rearec.hybrid.ranking import chunked_target_ranks

    torch.manual_seed(0)
    users = torch.randint(-2, 3, (40, 4)).float()  # small integers: many exact ties
    table = torch.randint(-2, 3, (301, 4)).float()
    users[3] = float("nan")  # a NaN target score ranks last
    target = torch.randint(1, 301, (40,))
    past = torch.randint(0, 40, (200,)), torch.randint(1, 301, (200,))
    past[1][:5] = target[past[0][:5]]  # a target that is also a past item stays unmasked
    cold = torch.rand(301) < 0.3
    cold[0] = False
    for kwargs in ({}, {"past": past}, {"cold": cold}, {"past": past, "cold": cold}):
        want = one_piece_ranks(users, table, target, kwargs.get("past"), kwargs.get("cold"))
        got = chunked_target_ranks(users, table, target, chunk_size, kwargs.get("past"), kwargs.get("cold"))
        assert torch.equal(got[0], want[0])
        assert (got[1] is None) == (want[1] is None) and (got[1] is None or torch.equal(got[1], want[1]))


@pytest.mark.parametrize("chunk_size", [10_000, 41])
def test_equal_item_vectors_tie_against_the_target_for_every_batch_size(chunk_size):
    from hybrid_rearec.hybrid.ranking import chunked_target_ranks

    torch.manual_seed(0)
    table = torch.randn(1, 64).expand(1 + 41 * 41, 64).contiguous()  # every item the same vector: all tie
    for batch in range(1, 17):  # small batches round a [B, B] product unlike a [B, C] one
        users = torch.randn(batch, 64)
        target = torch.randint(1, len(table), (batch,))
        ranks, _ = chunked_target_ranks(users, table, target, chunk_size)
        assert ranks.tolist() == [len(table) - 2] * batch, batch  # every other item ties: ranked behind them


def test_evaluation_metrics_do_not_depend_on_the_memory_budget(csv_data_config, tiny_model_config):
    from hybrid_rearec.hybrid.data import build_dataset
    from hybrid_rearec.hybrid.evaluate import evaluate

    dataset = build_dataset(csv_data_config)
    model = HybridRecommender(tiny_model_config, dataset.num_items, 8).eval()
    unchunked = evaluate(model, dataset.test, "test", exclude_history=True, memory_bytes=2**40)
    for budget in (1, 12 * 40 * 7):  # one item per chunk; 7 items per chunk
        chunked = evaluate(model, dataset.test, "test", exclude_history=True, memory_bytes=budget)
        assert torch.equal(chunked.ranks, unchunked.ranks) and chunked.metrics == unchunked.metrics


def test_evaluate_refuses_a_whole_dataset_and_a_split_beyond_the_models_items(csv_data_config, tiny_model_config):
    from hybrid_rearec.hybrid.data import build_dataset
    from hybrid_rearec.hybrid.errors import DataError
    from hybrid_rearec.hybrid.evaluate import evaluate

    dataset = build_dataset(csv_data_config)
    with pytest.raises(TypeError, match=r"takes a SplitData .*got a dataset: pass one of its splits, dataset.test"):
        evaluate(HybridRecommender(tiny_model_config, dataset.num_items, 8), dataset, "test")
    smaller = HybridRecommender(tiny_model_config, dataset.num_items - 1, 8)  # another catalogue
    with pytest.raises(DataError, match=rf"item id {dataset.num_items} but the model knows {dataset.num_items - 1}"):
        evaluate(smaller, dataset.test, "test")


def test_running_top_k_equals_a_full_sort():
    from hybrid_rearec.hybrid.ranking import chunked_top_k

    torch.manual_seed(1)
    users, table = torch.randn(9, 8), torch.randn(501, 8)
    exclude = torch.tensor([0, 0, 4]), torch.tensor([7, 300, 12])
    scores = item_logits(users, table)
    scores[exclude[0], exclude[1]] = float("-inf")
    want = scores.topk(25, dim=1)
    for chunk_size in (1, 24, 1000):
        values, items = chunked_top_k(users, table, 25, chunk_size, exclude)
        assert torch.allclose(values, want.values, atol=1e-5) and torch.equal(items, want.indices)
