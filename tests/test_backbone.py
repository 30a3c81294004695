import torch
from hybrid_rearec.encoders import IDItemEncoder
from hybrid_rearec.hybrid.config import ModelConfig
from hybrid_rearec.hybrid.model import HybridRecommender
from hybrid_rearec.reasoning.backbone import Backbone
from hybrid_rearec.reasoning.config import BackboneConfig


def tiny_backbone(dropout=0.0, **kwargs):
    config = BackboneConfig(
        hidden_size=16,
        num_layers=2,
        num_heads=2,
        inner_size=32,
        hidden_dropout=dropout,
        attention_dropout=dropout,
        **kwargs,
    )
    return Backbone(config, max_history=12).eval()


def left_padded(batch=4, length=8, num_items=20, seed=0):
    generator = torch.Generator().manual_seed(seed)
    history = torch.randint(1, num_items + 1, (batch, length), generator=generator)
    lengths = torch.tensor([length, length - 3, 2, 1])[:batch]
    history[torch.arange(length)[None, :] < (length - lengths)[:, None]] = 0
    return history


def test_cached_step_equals_full_recompute():
    torch.manual_seed(0)
    backbone, encoder = tiny_backbone(), IDItemEncoder(20, 16)
    history = left_padded()
    key_valid = history > 0
    x = backbone.embed(encoder.encode(history), key_valid)  # [B, L, D]
    states, cache = backbone.prefill(x, key_valid)
    new_tokens = torch.randn(4, 3, 16)  # three appended tokens, e.g. reasoning inputs
    cached = []
    for k in range(3):
        state, cache = backbone.step(backbone.embed_tokens(new_tokens[:, k]), cache)
        cached.append(state)
    full_inputs = torch.cat([x, backbone.embed_tokens(new_tokens)], dim=1)  # [B, L + 3, D]
    full_valid = torch.cat([key_valid, torch.ones(4, 3, dtype=torch.bool)], dim=1)
    full_states, _ = backbone.prefill(full_inputs, full_valid)
    for k in range(3):
        assert (cached[k] - full_states[:, 8 + k]).abs().max() < 1e-5
    assert cache.length == 11


def test_last_only_equals_full_prefill_last_row():
    backbone, encoder = tiny_backbone(), IDItemEncoder(20, 16)
    history = left_padded()
    x = backbone.embed(encoder.encode(history), history > 0)
    full, _ = backbone.prefill(x, history > 0)
    last, _ = backbone.prefill(x, history > 0, last_only=True)
    assert last.shape == (4, 1, 16)
    assert (full[:, -1] - last[:, 0]).abs().max() < 1e-6


def test_extra_left_padding_does_not_change_real_states():
    config = ModelConfig(
        hidden_size=16, num_layers=2, num_heads=2, inner_size=32, hidden_dropout=0.0, attention_dropout=0.0
    )
    model = HybridRecommender(config, num_items=20, max_history=12).eval()
    history = left_padded()
    padded = torch.cat([torch.zeros(4, 4, dtype=torch.long), history], dim=1)
    assert (model.user_vectors(history) - model.user_vectors(padded)).abs().max() < 1e-5


def test_causality_future_items_do_not_leak():
    backbone, encoder = tiny_backbone(), IDItemEncoder(20, 16)
    history = left_padded()
    changed = history.clone()
    changed[:, -1] = (changed[:, -1] % 20) + 1  # change only the most recent item
    outputs = []
    for h in (history, changed):
        states, _ = backbone.prefill(backbone.embed(encoder.encode(h), h > 0), h > 0)
        outputs.append(states)
    real = history[:, :-1] > 0
    assert (outputs[0][:, :-1][real] - outputs[1][:, :-1][real]).abs().max() < 1e-6


def test_padding_row_is_zero_and_outside_the_softmax():
    config = ModelConfig(hidden_size=16, num_layers=1, num_heads=2, inner_size=32)
    model = HybridRecommender(config, num_items=20, max_history=12)
    assert model.item_encoder.item_table()[0].abs().sum() == 0
    history, target = left_padded(), torch.tensor([1, 2, 3, 4])
    output = model(history, target)
    scores = model.score(output.user_vector)
    assert scores.shape == (4, 21) and torch.isinf(scores[:, 0]).all() and (scores[:, 0] < 0).all()
    output.loss.backward()
    assert model.item_encoder.embedding.weight.grad[0].abs().sum() == 0
    assert torch.isfinite(output.loss)


def test_fast_cpu_dropout_keeps_rate_and_expectation():
    from hybrid_rearec.foundation.dropout import dropout

    x = torch.ones(200_000)
    for p in (0.2, 0.5):
        y = dropout(x, p, training=True)
        assert abs((y == 0).float().mean().item() - p) < 0.01
        assert abs(y.mean().item() - 1.0) < 0.02
    assert torch.equal(dropout(x, 0.5, training=False), x)
