"""foundation.dropout.HashedDropout: the stand-in for a third-party model's own dropout modules."""

import pytest
import torch
from hybrid_rearec.foundation import noise
from hybrid_rearec.foundation.dropout import HashedDropout, use_hashed_dropout
from torch import nn


def test_hashed_dropout_keeps_one_minus_p_of_the_values_scaled_up_and_only_in_training():
    drop = HashedDropout(0.2)
    x = torch.ones(50, 40, 64)
    torch.manual_seed(0)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.8) < 0.01
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.8))
    assert kept.any(dim=-1).all() and not kept.all(dim=-1).any()  # columns differ within a row
    assert drop.eval()(x) is x and HashedDropout(0.0)(x) is x
    half = drop.train()(x.bfloat16())
    assert half.dtype == torch.bfloat16 and set(half.unique().tolist()) == {0.0, 1.25}  # 1 / 0.8, exact in bf16
    assert drop(torch.tensor(2.0)).shape == ()  # a 0-d tensor (torch's dropout decides its one value)


def test_hashed_dropout_follows_the_seed_and_its_gradient_is_its_mask():
    drop, x = HashedDropout(0.3), torch.randn(20, 16, requires_grad=True)
    torch.manual_seed(1)
    first = drop(x)
    torch.manual_seed(1)
    again = drop(x)
    torch.manual_seed(2)
    other = drop(x)
    assert torch.equal(first, again) and not torch.equal(first, other)
    first.sum().backward()
    assert torch.allclose(x.grad, (first != 0).float() / 0.7)


def test_slices_of_a_global_batch_making_the_same_calls_draw_the_same_masks():
    """A third-party model runs on the same inputs in every slice, under noise.shared_global_rng (the LoRA
    encoder encodes the global batch's items everywhere): its masks must not depend on the slice."""
    drop, x = HashedDropout(0.5), torch.ones(8, 32)

    def masks(offset, rows):
        with noise.global_batch_noise(7, offset, rows, 6), noise.shared_global_rng(x.device, "model"):
            return drop(x), drop(x)

    whole, first, rest = masks(0, 6), masks(0, 2), masks(2, 4)
    for a, b, c in zip(whole, first, rest):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(*whole)  # the second call draws its own mask


def test_use_hashed_dropout_replaces_every_dropout_module_with_its_p():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1), nn.ModuleDict({"a": nn.Dropout(0.05), "b": nn.ReLU()}))
    model.append(nn.Dropout(1.0))  # drops everything: left as it is
    assert use_hashed_dropout(model) == 2 and type(model[-1]) is nn.Dropout
    dropouts = [type(m) for m in model.modules() if "Dropout" in type(m).__name__]
    assert dropouts == [HashedDropout, HashedDropout, nn.Dropout]
    assert [m.p for m in model.modules() if isinstance(m, HashedDropout)] == [0.1, 0.05]
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        HashedDropout(1.0)
