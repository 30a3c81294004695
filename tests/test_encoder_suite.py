"""The suite every item encoder kind passes: split invariance of the gradients with its dropouts on, save and
reload, and adding items by text where the encoder can."""

import pytest
import torch
from hybrid_rearec.foundation.noise import global_batch_noise
from hybrid_rearec.hybrid.errors import ConfigError
from hybrid_rearec.hybrid.model import HybridRecommender

from tests.tester import ENCODER_KINDS, RecommenderTester


def gradients(model, pieces, history, target, contrastive: bool):
    """Gradients of the global batch's mean loss, computed as the given row slices (sum of slice mean x share)."""
    model.zero_grad(set_to_none=True)
    rows = len(history)
    candidates = None
    if model.item_encoder.encodes_batch_items:  # every slice softmaxes over the global batch's items
        candidates = torch.cat([history.flatten(), target]).unique()
    for start, end in pieces:
        with global_batch_noise(seed=123, offset=start, rows=end - start, global_size=rows):
            output = model(history[start:end], target[start:end], contrastive=contrastive, candidates=candidates)
        (output.loss * (end - start) / rows).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method", ["erl", "prl"])
@pytest.mark.parametrize("item_encoder", ENCODER_KINDS)
def test_one_global_batch_and_its_slices_give_the_same_gradients(tmp_path, item_encoder, method):
    tester = RecommenderTester(item_encoder, tmp_path, overrides={"reasoning_method": method})
    model = tester.model().train()
    history, target = tester.batch(rows=8)
    whole = gradients(model, [(0, 8)], history, target, contrastive=False)
    sliced = gradients(model, [(0, 3), (3, 8)], history, target, contrastive=False)
    assert whole.keys() == sliced.keys() and len(whole) > 5
    worst = max((whole[name] - sliced[name]).abs().max().item() for name in whole)
    assert worst <= 1e-6, f"{item_encoder}: gradients differ by {worst}"
    # The dropouts are really on: another step's masks give other gradients.
    with global_batch_noise(seed=124, offset=0, rows=8, global_size=8):
        model.zero_grad(set_to_none=True)
        candidates = torch.cat([history.flatten(), target]).unique() if model.item_encoder.encodes_batch_items else None
        model(history, target, candidates=candidates).loss.backward()
    assert any(not torch.equal(p.grad, whole[name]) for name, p in model.named_parameters() if name in whole)


@pytest.mark.parametrize("item_encoder", ENCODER_KINDS)
def test_save_and_reload_gives_the_same_scores(tmp_path, item_encoder):
    tester = RecommenderTester(item_encoder, tmp_path)
    model = tester.model().eval()
    model.save_pretrained(tmp_path / "saved")
    loaded = HybridRecommender.from_pretrained(tmp_path / "saved")
    history, _ = tester.batch()
    assert torch.equal(model.score(model.user_vectors(history)), loaded.score(loaded.user_vectors(history)))
    assert loaded.catalogue.item_ids == model.catalogue.item_ids


@pytest.mark.parametrize("item_encoder", ENCODER_KINDS)
def test_items_added_by_text_score_as_if_they_were_there_all_along(tmp_path, item_encoder):
    tester = RecommenderTester(item_encoder, tmp_path)
    config = tester.config()
    model = tester.model(tester.num_items - 1, config).eval()  # the last item is not in the catalogue yet
    if not model.item_encoder.adds_items_by_text:
        with pytest.raises(ConfigError, match="add items by text"):
            model.add_items(tester.texts()[-1:])
        return
    assert model.add_items(tester.texts()[-1:], item_ids=[str(tester.num_items)]) == [str(tester.num_items)]
    along = tester.model(tester.num_items, config).eval()  # had it (as a cold item) from the start
    along.load_state_dict(model.state_dict())
    assert torch.allclose(model.item_encoder.item_table(), along.item_encoder.item_table(), atol=1e-6)
    history, _ = tester.batch()
    assert torch.allclose(model.score(model.user_vectors(history)), along.score(along.user_vectors(history)), atol=1e-5)


@pytest.mark.parametrize("item_encoder", ENCODER_KINDS)
def test_recommend_encodes_the_catalogue_once_until_the_model_changes(tmp_path, item_encoder):
    model = RecommenderTester(item_encoder, tmp_path).model().eval()
    calls = []
    encode = model.item_encoder.item_table
    model.item_encoder.item_table = lambda: calls.append(1) or encode()
    first = model.recommend([["1", "2"]], k=3)
    assert model.recommend([["1", "2"]], k=3) == first and len(calls) == 1  # the second request reuses the table
    with torch.no_grad():
        next(model.backbone.parameters()).add_(0.5)  # a weight changed in place: the table is not reused
    model.recommend([["1", "2"]], k=3)
    assert len(calls) == 2
    if model.item_encoder.adds_items_by_text:
        model.add_items(["a film about a brand new thing"], item_ids=["new"])
        assert torch.equal(model.served_table(), model.scoring_table()) and len(model.served_table()) == 13
    model.train()
    before = len(calls)
    model.served_table(), model.served_table()
    assert len(calls) == before + 2  # never kept in training, where the weights move
