"""BERT4Rec backbone: prefix masking, the appended [MASK], the cloze objective, ReaRec on top."""

import pytest
import torch
from hybrid_rearec.foundation import noise
from hybrid_rearec.hybrid.model import HybridRecommender
from hybrid_rearec.reasoning.backbone import attention_mask

from tests.tester import tiny_config


def test_prefix_mask_shape_and_causality():
    key_valid = torch.tensor([[False, True, True, True, True, True]])  # one padded slot, then 5 tokens
    mask = attention_mask(key_valid, prefix=4)[0, 0]  # [6, 6]: positions 0..3 history, 4..5 reasoning
    assert mask.shape == (6, 6)
    assert not mask[1:, 0].any() and mask[0, 0]  # padding is never seen (a padded query sees itself)
    assert mask[1:4, 1:4].all()  # the history sees all of itself, later items included
    assert not mask[1:4, 4:].any()  # ... but never a reasoning token
    assert mask[4, 1:5].all() and not mask[4, 5]  # a reasoning token sees everything before it, not after
    assert mask[5, 1:6].all()
    assert torch.equal(attention_mask(key_valid, 0)[0, 0, 1:, 1:], torch.ones(5, 5, dtype=torch.bool).tril())


@pytest.mark.parametrize("backbone,bidirectional", [("sasrec", False), ("bert4rec", True)])
def test_an_earlier_position_sees_later_items_only_when_bidirectional(backbone, bidirectional):
    torch.manual_seed(0)
    model = HybridRecommender(tiny_config(backbone=backbone), num_items=30, max_history=6).eval()
    history = torch.tensor([[0, 3, 4, 5, 6, 7]])
    changed = history.clone()
    changed[0, -1] = 9
    outputs = []
    for h in (history, changed):
        inputs, key_valid = model.history_inputs(h)
        outputs.append(model.backbone.prefill(inputs, key_valid)[0][0, 1])  # the oldest real item's output
    assert (not torch.allclose(outputs[0], outputs[1], atol=1e-6)) == bidirectional


@pytest.mark.parametrize("method", ["prl", "erl"])
def test_cached_reasoning_equals_a_full_recompute_under_prefix_masking(method):
    torch.manual_seed(0)
    model = HybridRecommender(tiny_config(method, 3, backbone="bert4rec"), num_items=30, max_history=6).eval()
    history = torch.randint(0, 31, (5, 6))
    history[:, -1] = torch.randint(1, 31, (5,))
    inputs, key_valid = model.history_inputs(history)  # [B, 7, D] with the appended [MASK]
    assert inputs.shape[1] == 7
    cached = model.reasoning(model.backbone, inputs, key_valid)
    recomputed = model.reasoning.forward_recompute(model.backbone, inputs, key_valid)
    assert (cached - recomputed).abs().max() < 1e-5


def test_cloze_masks_real_items_only_and_does_not_depend_on_the_batch_split():
    torch.manual_seed(0)
    model = HybridRecommender(tiny_config("prl", 0, backbone="bert4rec", cloze_prob=0.5), 30, max_history=8)
    model.train()
    history = torch.randint(1, 31, (4, 8))
    history[0, :5] = 0  # a short history: the batch's first half is narrower
    with noise.global_batch_noise(7, 0, 4, 4):
        whole = model.cloze_positions(history)
    with noise.global_batch_noise(7, 0, 2, 4):
        first = model.cloze_positions(history[:2, 2:])  # a process that got the first two rows, trimmed
    with noise.global_batch_noise(7, 2, 2, 4):
        second = model.cloze_positions(history[2:])
    assert not whole[history == 0].any() and whole.any()
    assert torch.equal(first, whole[:2, 2:]) and torch.equal(second, whole[2:])
    output = model(history, torch.randint(1, 31, (4,)))
    assert "cloze" in output.loss_parts and torch.isfinite(output.loss)


@pytest.mark.parametrize("method,steps", [("prl", 0), ("erl", 2), ("prl", 2)])
def test_bert4rec_learns_a_planted_sequence(method, steps):
    torch.manual_seed(0)
    config = tiny_config(method, steps, backbone="bert4rec", temperature=0.2, prl_alpha=2.0)
    model = HybridRecommender(config, num_items=20, max_history=5)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    starts = torch.randint(0, 20, (64,))
    history = (starts[:, None] + torch.arange(5)) % 20 + 1
    target = (starts + 5) % 20 + 1
    losses = []
    for _ in range(150):
        loss = model(history, target, contrastive=True).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    top = model.score(model.user_vectors(history)).argmax(dim=1)
    assert (top == target).float().mean() > 0.8


@pytest.mark.parametrize("item_encoder", ["text", "hybrid"])
def test_bert4rec_works_with_text_item_encoders(item_encoder):
    torch.manual_seed(0)
    config = tiny_config("prl", 2, backbone="bert4rec", item_encoder=item_encoder, text_adaptor="linear")
    model = HybridRecommender(config, num_items=12, max_history=5, text_vectors=torch.randn(12, 24))
    history, target = torch.randint(1, 13, (6, 5)), torch.randint(1, 13, (6,))
    output = model(history, target, contrastive=True)
    output.loss.backward()
    assert torch.isfinite(output.loss) and {"cloze", "contrastive"} <= set(output.loss_parts)
    assert model.backbone.mask_token.grad is not None
