"""Reasoning at every position in one pass: each position's states are those of its own prefix row."""

import pytest
import torch

from tests.tester import RecommenderTester, tiny


@pytest.mark.parametrize("item_encoder", ["id", "text", "hybrid"])
@pytest.mark.parametrize("method,steps", [("prl", 0), ("erl", 2), ("prl", 3)])
def test_every_position_reasons_exactly_as_its_prefix_row(tmp_path, item_encoder, method, steps):
    overrides = {"reasoning_method": method, "reasoning_steps": steps}
    tester = RecommenderTester(item_encoder, tmp_path, overrides=overrides)
    model = tester.model().eval()
    history, _ = tester.batch(rows=6)  # [B, L] left-padded, lengths 1..L
    with torch.no_grad():
        states = model.position_states(history)  # [B, L, S, D]
        assert states.shape == (6, tester.max_history, steps + 1, 16)
        for t in range(tester.max_history):
            real = history[:, t] > 0  # rows with an item at position t: a target of the prefix layout
            prefix = model.user_states(history[real, : t + 1])  # [R, S, D]: the prefix layout's rows
            assert torch.allclose(states[real, t], prefix, atol=1e-5), f"position {t}"


def test_a_chain_never_sees_another_positions_reasoning_tokens():
    """Changing the reasoning tokens of position u (through its r_0) moves u's chain only: every other
    position's states stay as they were (the history keys of u are not changed: only u's own chain)."""
    model = tiny("prl", steps=3).eval()
    history = torch.randint(1, 21, (2, 8))
    inputs, key_valid = model.history_inputs(history)
    with torch.no_grad():
        loop = model.reasoning.loop_positions(model.backbone, inputs, key_valid)
        clean = loop.run(3)  # [B, L, 4, D]
        loop = model.reasoning.loop_positions(model.backbone, inputs, key_valid)
        loop.state = loop.state.clone()
        loop.state[:, 4] += 5.0  # position 4's chain starts elsewhere
        moved = loop.run(3)
    assert not torch.allclose(moved[:, 4, 1:], clean[:, 4, 1:])
    others = [t for t in range(8) if t != 4]
    assert torch.equal(moved[:, others, 1:], clean[:, others, 1:])


def test_a_bidirectional_backbone_is_refused():
    model = tiny("prl", steps=2, backbone="bert4rec")
    with pytest.raises(ValueError, match="causal backbone"):
        model.position_states(torch.randint(1, 21, (2, 5)))
