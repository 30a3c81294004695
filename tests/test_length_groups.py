"""Training rows encoded in groups of similar history length: the same loss and gradients as one padded
batch, and dropout masks that stay each row's own however the batch is split."""

import pytest
import torch
from hybrid_rearec.foundation.noise import global_batch_noise
from hybrid_rearec.hybrid.model import length_groups

from tests.tester import tiny

LENGTHS = [1, 2, 3, 7, 12, 5, 9, 2]  # widths 4, 4, 4, 8, 12, 8, 12, 4 in a batch 12 wide


def batch():
    generator = torch.Generator().manual_seed(0)
    history = torch.randint(1, 21, (len(LENGTHS), 12), generator=generator)
    for row, length in enumerate(LENGTHS):
        history[row, : 12 - length] = 0
    return history, torch.randint(1, 21, (len(LENGTHS),), generator=generator)


def test_rows_go_to_the_narrowest_power_of_two_width_from_4_that_holds_them():
    history, _ = batch()
    groups = {width: rows.tolist() for rows, width in length_groups(history)}
    assert groups == {4: [0, 1, 2, 7], 8: [3, 5], 12: [4, 6]}
    assert [width for _, width in length_groups(history[:, -3:])] == [3]  # never wider than the batch


def gradients(model, pieces, seed=7, contrastive=True):
    history, target = batch()
    model.zero_grad(set_to_none=True)
    for start, end in pieces:
        with global_batch_noise(seed=seed, offset=start, rows=end - start, global_size=len(history)):
            loss = model(history[start:end], target[start:end], contrastive=contrastive).loss
        (loss * (end - start) / len(history)).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method,view", [("erl", "sequence"), ("prl", "sequence"), ("prl", "reasoning")])
def test_grouped_rows_give_the_padded_batchs_loss_and_gradients(method, view, monkeypatch):
    torch.manual_seed(0)
    model = tiny(method, steps=2, prl_noisy_view=view, prl_noise_std=0.0, prl_contrastive_weight=0.1).train()
    grouped = gradients(model, [(0, 8)])
    monkeypatch.setattr("hybrid_rearec.hybrid.model.length_groups", lambda h: [(torch.arange(len(h)), h.shape[1])])
    padded = gradients(model, [(0, 8)])
    assert grouped.keys() == padded.keys() and len(grouped) > 10
    assert max((grouped[n] - padded[n]).abs().max().item() for n in grouped) <= 1e-6


@pytest.mark.parametrize("method", ["erl", "prl"])
def test_grouped_rows_keep_their_dropout_masks_however_the_batch_is_split(method):
    torch.manual_seed(0)
    model = tiny(method, steps=2, dropout=0.3).train()
    whole = gradients(model, [(0, 8)], contrastive=False)
    sliced = gradients(model, [(0, 3), (3, 5), (5, 8)], contrastive=False)  # the slices hold other groups
    assert max((whole[n] - sliced[n]).abs().max().item() for n in whole) <= 1e-6
    other = gradients(model, [(0, 8)], seed=8, contrastive=False)
    assert any(not torch.equal(whole[n], other[n]) for n in whole)  # the masks are on


@pytest.mark.parametrize("method", ["erl", "prl"])
def test_one_pass_windows_in_length_groups_give_the_padded_loss_and_gradients(method, monkeypatch):
    torch.manual_seed(0)
    model = tiny(method, steps=2, loss_positions="all", prl_noise_std=0.0, prl_contrastive_weight=0.1).train()
    history, _ = batch()
    target = torch.roll(history, -1, dims=1) * (history > 0)  # next item at every position, 0 at padding
    target[:, -1] = torch.arange(1, len(LENGTHS) + 1)

    def run():
        model.zero_grad(set_to_none=True)
        loss = model(history, target, contrastive=True).loss
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    grouped_loss, grouped = run()
    monkeypatch.setattr("hybrid_rearec.hybrid.model.length_groups", lambda h: [(torch.arange(len(h)), h.shape[1])])
    padded_loss, padded = run()
    model.group_lengths = False  # length_groups off: the plain padded forward
    plain_loss, plain = run()
    assert grouped_loss == pytest.approx(padded_loss, rel=1e-6) and grouped_loss == pytest.approx(plain_loss, rel=1e-6)
    assert len(grouped) > 10
    assert max((grouped[n] - padded[n]).abs().max().item() for n in grouped) <= 1e-6
    assert max((grouped[n] - plain[n]).abs().max().item() for n in grouped) <= 1e-6


def test_auto_use_length_groups_only_where_histories_fill_less_than_half_their_width():
    from hybrid_rearec.hybrid.build import use_length_groups

    short, full = torch.zeros(4, 10, dtype=torch.long), torch.ones(4, 10, dtype=torch.long)
    short[:, -3:] = 1  # 30 % filled
    assert use_length_groups("auto", short) and not use_length_groups("auto", full)
    assert use_length_groups("on", full) and not use_length_groups("off", short)


def cloze_gradients(model, pieces, seed=7):
    """gradients() for BERT4Rec: the cloze loss divided by the whole global batch's masked items."""
    history, target = batch()
    with global_batch_noise(seed=seed, offset=0, rows=len(history), global_size=len(history)):
        per_row = model.cloze_per_row(history)
    model.zero_grad(set_to_none=True)
    total = 0.0
    for start, end in pieces:
        with global_batch_noise(seed=seed, offset=start, rows=end - start, global_size=len(history)):
            loss = model(history[start:end], target[start:end], cloze_per_row=per_row).loss
        (loss * (end - start) / len(history)).backward()
        total += loss.item() * (end - start) / len(history)
    return total, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("steps", [0, 2])
def test_bert4rec_rows_in_length_groups_give_the_padded_loss_and_gradients(steps, monkeypatch):
    # Bidirectional rows: positions count from the oldest real item and padding is never attended to, so a
    # group cut to its width gives the same outputs, cloze outputs included.
    torch.manual_seed(0)
    model = tiny("erl", steps=steps, backbone="bert4rec", cloze_prob=0.3).train()
    grouped_loss, grouped = cloze_gradients(model, [(0, 8)])
    model.group_lengths = False
    padded_loss, padded = cloze_gradients(model, [(0, 8)])
    with global_batch_noise(seed=7, offset=0, rows=8, global_size=8):
        assert model(*batch()).loss_parts["cloze"] > 0  # the cloze term is part of the compared loss
    assert grouped_loss == pytest.approx(padded_loss, rel=1e-6) and len(grouped) > 10
    assert max((grouped[n] - padded[n]).abs().max().item() for n in grouped) <= 1e-6
    monkeypatch.setattr("hybrid_rearec.hybrid.model.length_groups", lambda h: [(torch.arange(len(h)), h.shape[1])])
    model.group_lengths = True
    one_group_loss, _ = cloze_gradients(model, [(0, 8)])
    assert one_group_loss == pytest.approx(padded_loss, rel=1e-6)


def test_bert4rec_groups_keep_their_masks_however_the_batch_is_split():
    torch.manual_seed(0)
    model = tiny("erl", steps=0, backbone="bert4rec", cloze_prob=0.3, dropout=0.3).train()
    whole_loss, whole = cloze_gradients(model, [(0, 8)])
    sliced_loss, sliced = cloze_gradients(model, [(0, 3), (3, 5), (5, 8)])
    assert whole_loss == pytest.approx(sliced_loss, rel=1e-6)
    assert max((whole[n] - sliced[n]).abs().max().item() for n in whole) <= 1e-6
    _, other = cloze_gradients(model, [(0, 8)], seed=8)
    assert any(not torch.equal(whole[n], other[n]) for n in whole)  # the masks are on
