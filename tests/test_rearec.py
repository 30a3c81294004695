import math

import pytest
import torch
import torch.nn.functional as F
from hybrid_rearec.foundation.noise import global_batch_noise
from hybrid_rearec.hybrid.errors import ConfigError
from hybrid_rearec.hybrid.model import HybridRecommender
from hybrid_rearec.reasoning.objectives import (
    _diversity,
    erl_loss,
    info_nce,
    item_logits,
    kl_diversity,
    prl_loss,
    step_temperatures,
)

from tests.test_backbone import left_padded
from tests.tester import tiny, tiny_config


@pytest.mark.parametrize("separate_norm", [False, True])
def test_cached_reasoning_equals_full_recompute(separate_norm):
    model = tiny(separate_reasoning_norm=separate_norm).eval()
    history = left_padded()
    states = model.user_states(history)  # [B, 4, D] through the cache, one new row per step
    key_valid = history > 0
    inputs = model.backbone.embed(model.item_encoder.encode(history), key_valid)
    previous, tokens = None, []
    for k in range(4):
        sequence = torch.cat([inputs, *tokens], dim=1) if tokens else inputs
        valid = torch.cat([key_valid, torch.ones(4, len(tokens), dtype=torch.bool)], dim=1)
        full, _ = model.backbone.prefill(sequence, valid)  # recompute every row of the appended sequence
        previous = full[:, -1]
        assert (previous - states[:, k]).abs().max() < 1e-5
        token = previous + model.reasoning.position_embedding.weight[k] if k < 3 else None
        if token is not None:
            tokens.append(model.reasoning.embed_token(model.backbone, token)[:, None])


def test_reasoning_dropout_is_its_own_rate_on_reasoning_tokens_only():
    token = torch.randn(64, 16)
    own = tiny(dropout=0.5, reasoning_dropout=0.0).train()
    # No dropout on reasoning tokens even though item inputs drop half.
    assert torch.equal(own.reasoning.embed_token(own.backbone, token), own.backbone.input_norm(token))
    assert not torch.equal(own.backbone.embed_tokens(token), own.backbone.input_norm(token))
    heavy = tiny(dropout=0.0, reasoning_dropout=0.9).train()
    history = left_padded()
    first, second = heavy.user_states(history), heavy.user_states(history)  # [B, 4, D] each
    assert torch.equal(first[:, 0], second[:, 0])  # the history path has no dropout at all
    assert not torch.allclose(first[:, 1], second[:, 1])  # reasoning tokens are dropped at 0.9
    with pytest.raises(ConfigError, match="reasoning_dropout"):
        tiny_config(reasoning_dropout=1.0)


def test_fewer_steps_than_trained_work_and_more_are_a_clear_error():
    model = tiny(steps=2).eval()
    history = left_padded()
    assert model.user_states(history, steps=1).shape == (4, 2, 16)
    assert torch.allclose(model.user_states(history, steps=1), model.user_states(history)[:, :2], atol=1e-6)
    with pytest.raises(ValueError, match=r"trained with reasoning_steps=2.*between 0 and 2"):
        model.user_vectors(history, steps=3)


def test_step_temperatures_follow_progressive_annealing():
    assert step_temperatures(0.07, 5.0, 2) == pytest.approx([1.75, 0.35, 0.07])
    assert step_temperatures(0.5, 2.0, 3) == pytest.approx([4.0, 2.0, 1.0, 0.5])


def manual_kl(p, q):
    return (p * (p.log() - q.log())).sum(-1)


def test_kl_diversity_pairs_and_sign():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6)
    logits[..., 0] = float("-inf")  # padding column never takes part
    p = F.softmax(logits[..., 1:], dim=-1)
    ordered = sum(manual_kl(p[:, j], p[:, i]) for i in range(3) for j in range(3) if i != j) / 6
    unordered = sum(manual_kl(p[:, i], p[:, j]) for i in range(3) for j in range(i + 1, 3))
    assert kl_diversity(logits, "ordered_mean").item() == pytest.approx(ordered.mean().item(), rel=1e-5)
    assert kl_diversity(logits, "unordered_sum").item() == pytest.approx(unordered.mean().item(), rel=1e-5)
    mixtures = [(p[:, i] + p[:, j]) / 2 for i in range(3) for j in range(i + 1, 3)]
    pairs = [(i, j) for i in range(3) for j in range(i + 1, 3)]
    js = sum(manual_kl(p[:, i], m) / 2 + manual_kl(p[:, j], m) / 2 for (i, j), m in zip(pairs, mixtures)) / 3
    assert kl_diversity(logits, "js_mean").item() == pytest.approx(js.mean().item(), rel=1e-5)
    same = torch.randn(2, 1, 6).expand(2, 3, 6).clone()
    for pairs in ("ordered_mean", "unordered_sum", "js_mean"):
        assert kl_diversity(same, pairs).abs() < 1e-6  # identical steps are not diverse
    # Disjoint one-hot distributions: KL grows without bound as they sharpen, JS stops at log 2.
    sharp = torch.full((1, 2, 3), -1e4)
    sharp[0, 0, 1] = sharp[0, 1, 2] = 0.0
    assert kl_diversity(sharp, "js_mean").item() == pytest.approx(math.log(2), rel=1e-5)
    assert kl_diversity(sharp, "unordered_sum").item() > 100
    # ERL subtracts the diversity: the loss is the CE of the mean state minus lambda * KL
    states, table, target = torch.randn(2, 3, 4), torch.randn(6, 4), torch.tensor([1, 5])
    loss, parts = erl_loss(states, table, target, temperature=0.5, kl_weight=0.1, kl_pairs="unordered_sum")
    assert parts["kl"] > 0 and loss.item() == pytest.approx((parts["ce"] - 0.1 * parts["kl"]).item(), rel=1e-6)


@pytest.mark.parametrize("pairs", ["ordered_mean", "unordered_sum", "js_mean"])
def test_kl_diversity_stays_fp32_under_bf16_autocast(pairs):
    """Entropies of order log N cancel in the divergence: in bf16 its error would be as large as its value."""
    torch.manual_seed(0)
    logits = torch.randn(8, 3, 501) * 0.3  # near-uniform steps over 500 items: small divergences
    logits[..., 0] = float("-inf")
    exact = kl_diversity(logits, pairs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = kl_diversity(logits, pairs)
    assert mixed.dtype == torch.float32 and torch.allclose(mixed, exact, rtol=1e-5)
    rounded = _diversity(logits.bfloat16(), pairs)  # what computing it in bf16 would cost
    assert abs(rounded.float() - exact) > 0.002 * exact  # JS sums p log(p / m): less cancellation, still off


def test_ordered_kl_detaches_the_log_side():
    logits = torch.randn(1, 2, 5, requires_grad=True)
    kl_diversity(logits, "ordered_mean").backward()
    reference = logits.detach().clone().requires_grad_(True)
    log_p = F.log_softmax(reference[..., 1:], -1)  # column 0 is padding
    p = log_p.exp()
    # KL(p_j || sg(p_i)) averaged over the two ordered pairs
    forward = (p[:, 1] * (log_p[:, 1] - log_p[:, 0].detach())).sum()
    backward = (p[:, 0] * (log_p[:, 0] - log_p[:, 1].detach())).sum()
    value = (forward + backward) / 2
    value.backward()
    assert torch.allclose(logits.grad, reference.grad, atol=1e-6)


def test_prl_loss_terms_and_reductions():
    torch.manual_seed(0)
    states, table, target = torch.randn(4, 3, 8), torch.randn(10, 8), torch.tensor([1, 2, 3, 9])
    logits = item_logits(states, table)
    ce = [F.cross_entropy(logits[:, k] / t, target) for k, t in enumerate([0.4, 0.2, 0.1])]
    mean_loss, parts = prl_loss(states, table, target, 0.1, 2.0, step_weight=0.5, step_reduction="mean")
    assert mean_loss.item() == pytest.approx((ce[2] + 0.5 * (ce[0] + ce[1]) / 2).item(), rel=1e-6)
    sum_loss, _ = prl_loss(states, table, target, 0.1, 2.0, step_weight=0.5, step_reduction="sum")
    assert sum_loss.item() == pytest.approx((ce[2] + 0.5 * (ce[0] + ce[1])).item(), rel=1e-6)
    noisy = states + 0.01 * torch.randn_like(states)
    with_contrast, parts = prl_loss(
        states,
        table,
        target,
        0.1,
        2.0,
        noisy_states=noisy,
        contrastive_weight=2.0,
        contrastive_similarity="cosine",
        contrastive_temperature=0.2,
    )
    expected = info_nce(noisy[:, 1:], states[:, 1:], 0.2, "cosine")
    without_contrast, _ = prl_loss(states, table, target, 0.1, 2.0)
    assert with_contrast.item() == pytest.approx((without_contrast + 2.0 * expected).item(), rel=1e-6)
    assert parts["contrastive"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_info_nce_prefers_matching_rows():
    anchors = torch.eye(4)[None].repeat(2, 1, 1).transpose(0, 1)  # [B=4, K=2, D=4], orthogonal rows
    perfect = info_nce(anchors, anchors, 0.1, "cosine")
    shuffled = info_nce(anchors, anchors.roll(1, dims=0), 0.1, "cosine")
    assert perfect < 0.01 and shuffled > 5
    assert math.isclose(
        info_nce(anchors, anchors, 1.0, "dot").item(), info_nce(anchors, anchors, 1.0, "cosine").item(), rel_tol=1e-6
    )


def test_info_nce_stays_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    anchors, candidates = torch.randn(16, 2, 64) * 4, torch.randn(16, 2, 64) * 4  # dot logits ~ 10^2 / tau
    exact = info_nce(anchors, candidates, 0.07, "dot")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = info_nce(anchors, candidates, 0.07, "dot")
    assert mixed.dtype == torch.float32 and torch.allclose(mixed, exact, rtol=1e-5)


@pytest.mark.parametrize("method", ["erl", "prl"])
@pytest.mark.parametrize("contrastive", [False, True])
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_loss_falls_on_a_toy_task_without_nan(method, contrastive, similarity):
    torch.manual_seed(0)
    temperature = 0.2 if similarity == "dot" else 0.1  # cosine logits lie in [-1, 1]
    model = tiny(method=method, steps=2, dropout=0.1, temperature=temperature, score_similarity=similarity)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = torch.randint(1, 20, (32, 6))
    target = (history[:, -1] % 20) + 1  # next item = last item + 1
    losses = []
    for _ in range(60):
        output = model(history, target, contrastive=contrastive)
        assert torch.isfinite(output.loss)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
    assert sum(losses[-5:]) / 5 < losses[0] - 0.5
    if contrastive and method == "prl":
        assert "contrastive" in output.loss_parts


@pytest.mark.parametrize("backbone", ["sasrec", "bert4rec"])
def test_prl_reasoning_view_encodes_the_history_once(backbone):
    """prl_noisy_view 'reasoning': one prefill of B rows, the steps run for both views; without randomness
    both views equal the released code's two-copy views."""
    torch.manual_seed(0)
    shared = tiny(steps=2, prl_noisy_view="reasoning", prl_noise_std=0.0, backbone=backbone)
    copies = tiny(steps=2, prl_noisy_view="sequence", prl_noise_std=0.0, backbone=backbone)
    copies.load_state_dict(shared.state_dict())
    history = left_padded()
    shared.eval(), copies.eval()
    both = shared.user_states(history, noisy_view=True, share_history=True)  # [2B, S, D]
    reference = copies.user_states(torch.cat([history, history]), noisy_view=True)
    assert both.shape == (2 * len(history), 3, 16)
    assert torch.allclose(both, reference, atol=1e-6)
    assert torch.allclose(both[: len(history)], shared.user_states(history), atol=1e-6)

    seen = []
    original = shared.backbone.prefill
    shared.backbone.prefill = lambda inputs, *a, **k: seen.append(len(inputs)) or original(inputs, *a, **k)
    shared.train()
    output = shared(history, torch.tensor([3, 4, 5, 6]), contrastive=True)
    # each row's history is encoded once (in groups of similar length: see HybridRecommender.training_states)
    assert sum(seen) == len(history) and torch.isfinite(output.loss) and output.loss_parts["contrastive"] > 0
    # with dropout the views differ in their reasoning steps only: r_0 is shared
    dropout = tiny(steps=2, dropout=0.3, prl_noisy_view="reasoning").train()
    clean, noisy = dropout.user_states(history, noisy_view=True, share_history=True).chunk(2)
    assert torch.equal(clean[:, 0], noisy[:, 0]) and not torch.allclose(clean[:, 1:], noisy[:, 1:])
    with pytest.raises(ConfigError, match="prl_noisy_view"):
        tiny_config(prl_noisy_view="history")


@pytest.mark.parametrize("view", ["sequence", "reasoning"])
def test_prl_views_do_not_depend_on_how_the_batch_is_split(view):
    """Each row's two views (dropout masks and noise) depend only on its place in the global batch, so
    processes and accumulation micro-batches see the views one big batch would. (The contrastive loss itself
    uses the rows of each forward as negatives, as in-batch losses do.)"""
    torch.manual_seed(0)
    model = tiny(steps=2, dropout=0.3, prl_noisy_view=view, prl_noise_std=0.1).train()
    history = torch.randint(1, 20, (8, 6))

    def views(rows: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        with global_batch_noise(7, offset, len(rows), len(history)):
            if view == "reasoning":
                both = model.user_states(history[rows], noisy_view=True, share_history=True)
            else:
                both = model.user_states(torch.cat([history[rows], history[rows]]), noisy_view=True)
        return both.chunk(2)  # clean [B, S, D], noisy [B, S, D]

    clean, noisy = views(torch.arange(8), 0)
    parts = [views(torch.arange(0, 3), 0), views(torch.arange(3, 8), 3)]
    assert torch.allclose(clean, torch.cat([p[0] for p in parts]), atol=1e-6)
    assert torch.allclose(noisy, torch.cat([p[1] for p in parts]), atol=1e-6)
    assert not torch.allclose(clean[:, 1:], noisy[:, 1:])


def test_inference_steps_sets_the_default_depth_of_user_vectors_only():
    torch.manual_seed(0)
    model = tiny(steps=2, inference_steps=1).eval()
    history = left_padded()
    assert torch.equal(model.user_vectors(history), model.user_vectors(history, steps=1))
    assert not torch.allclose(model.user_vectors(history), model.user_vectors(history, steps=2))
    assert model(history).user_states.shape[1] == 3  # the forward (training) runs every trained step
    with pytest.raises(ConfigError, match="inference_steps=3 must lie in 0..reasoning_steps"):
        tiny_config(steps=2, inference_steps=3)


def test_user_vector_is_mean_for_erl_and_last_for_prl():
    history = left_padded()
    for method in ("erl", "prl"):
        model = tiny(method=method, steps=2).eval()
        states = model.user_states(history)
        expected = states.mean(1) if method == "erl" else states[:, -1]
        assert torch.allclose(model.user_vectors(history), expected, atol=1e-6)
    sasrec = tiny(steps=0).eval()
    assert sasrec.reasoning.position_embedding is None
    assert sasrec.user_states(history).shape == (4, 1, 16)


def test_recompute_reference_path_matches_the_cached_path():
    model = tiny(steps=3).eval()
    history = left_padded()
    key_valid = history > 0
    inputs = model.backbone.embed(model.item_encoder.encode(history), key_valid)
    cached = model.reasoning(model.backbone, inputs, key_valid)
    recomputed = model.reasoning.forward_recompute(model.backbone, inputs, key_valid)
    assert (cached - recomputed).abs().max() < 1e-5


@pytest.mark.parametrize("method", ["erl", "prl"])
def test_cosine_scoring_normalises_states_and_items_and_ignores_item_norms(method):
    torch.manual_seed(0)
    model = tiny(method=method, steps=2, score_similarity="cosine", temperature=0.1).eval()
    history = left_padded()
    states = model.user_states(history)  # [B, 3, D]
    assert torch.allclose(states.norm(dim=-1), torch.ones(states.shape[:2]), atol=1e-5)
    # The raw (unnormalised) states are what a dot model with the same weights computes.
    dot = HybridRecommender(tiny_config(method, 2, 0.0, temperature=0.1), num_items=20, max_history=12).eval()
    dot.load_state_dict(model.state_dict())
    assert torch.allclose(states, F.normalize(dot.user_states(history), dim=-1), atol=1e-5)
    user = model.user_vectors(history)  # [B, D]
    scores = model.score(user)  # [B, N + 1]
    assert scores[:, 1:].abs().max() <= 1 + 1e-5  # cosines of (mean) unit vectors
    # Scaling an item's vector changes its dot score but not its cosine score.
    with torch.no_grad():
        model.item_encoder.embedding.weight[5] *= 10.0
    assert torch.allclose(model.score(user), scores, atol=1e-5)
    assert torch.allclose(dot.score(user)[:, 5] * 10, dot.score(user, model.item_encoder.item_table())[:, 5])
    # The loss is the method's loss of the unit states against the unit item table (no dropout: deterministic).
    target = torch.randint(1, 21, (history.shape[0],))
    states = model.user_states(history)  # item 5 (in the history) was scaled above: recompute
    user = model.aggregate(states)
    output = model.train()(history, target)
    unit_table = F.normalize(model.item_encoder.item_table(), dim=-1)
    config = model.config
    if method == "erl":
        expected = F.cross_entropy(model.score(user) / 0.1, target)
        assert torch.allclose(output.loss_parts["ce"], expected, atol=1e-4)
    else:
        expected, _ = prl_loss(
            states, unit_table, target, 0.1, config.prl_alpha, config.prl_step_weight, config.prl_step_reduction
        )
        assert torch.allclose(output.loss, expected, atol=1e-4)


def test_score_similarity_typo_is_a_clear_error():
    with pytest.raises(ConfigError, match="score_similarity"):
        tiny_config(score_similarity="cos")


@pytest.mark.parametrize("states", [2, 3, 4])
def test_js_diversity_closed_form_gradient_matches_autograd_of_the_definition(states):
    """The written-out JS (value and gradient) against autograd through H(m) - (H(p_i) + H(p_j)) / 2."""
    torch.manual_seed(states)
    logits = (torch.randn(5, states, 41, dtype=torch.double) * 3).requires_grad_()

    def definition(z):
        log_p = torch.log_softmax(z[..., 1:], dim=-1)
        p = log_p.exp()
        neg_entropy = (p * log_p).sum(-1)
        i, j = torch.ones(states, states, dtype=torch.bool).triu(1).nonzero().unbind(1)
        mixture = (p[:, i] + p[:, j]) / 2
        return ((neg_entropy[:, i] + neg_entropy[:, j]) / 2 - torch.special.xlogy(mixture, mixture).sum(-1)).mean()

    ours = _diversity(logits, "js_mean")
    (grad,) = torch.autograd.grad(ours, logits)
    (expected_grad,) = torch.autograd.grad(definition(logits), logits)
    assert torch.allclose(ours, definition(logits), atol=1e-12)
    assert torch.allclose(grad, expected_grad, atol=1e-12)
