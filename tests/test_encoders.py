"""Item encoders behind one interface: text vector cache, adaptors, PCA, ID + text fusion, cold items."""

import pytest
import torch
from hybrid_rearec.encoders.hybrid import HybridItemEncoder
from hybrid_rearec.encoders.id import IDItemEncoder
from hybrid_rearec.encoders.text import (
    MoEWhiteningAdaptor,
    TextItemEncoder,
    load_or_encode_texts,
    resolve_text_model,
    text_cache_key,
)
from hybrid_rearec.hybrid.config import ModelConfig
from hybrid_rearec.hybrid.data import warm_item_mask
from hybrid_rearec.hybrid.errors import DataError
from hybrid_rearec.hybrid.model import HybridRecommender, item_text_vectors

from tests.tester import tiny_config

TEXTS = ["Toy Story (1995), Animation", "Heat (1995), Action", "Casablanca (1942), Romance", "Alien (1979), Horror"]


class CountingEncoder:
    """Stands in for sentence-transformers: deterministic vectors, counts forward passes."""

    def __init__(self, size=8):
        self.calls, self.size = 0, size

    def __call__(self, texts, model, revision, batch_size, progress):
        self.calls += 1
        seeds = [sum(map(ord, text + model)) for text in texts]
        return torch.stack([torch.randn(self.size, generator=torch.Generator().manual_seed(s)) for s in seeds])


def test_cache_hit_runs_no_encoder_pass_and_any_change_misses(tmp_path):
    encode = CountingEncoder()
    first = load_or_encode_texts(TEXTS, "model-a", cache_dir=tmp_path, encode=encode)
    again = load_or_encode_texts(TEXTS, "model-a", cache_dir=tmp_path, encode=encode)
    assert encode.calls == 1 and torch.equal(first, again)
    load_or_encode_texts([*TEXTS[:3], "Alien (1979), Sci-Fi"], "model-a", cache_dir=tmp_path, encode=encode)
    load_or_encode_texts(TEXTS, "model-b", cache_dir=tmp_path, encode=encode)
    load_or_encode_texts(TEXTS, "model-a", revision="v2", cache_dir=tmp_path, encode=encode)
    assert encode.calls == 4
    entry = tmp_path / f"{text_cache_key('model-a', None, TEXTS)}.safetensors"
    entry.write_bytes(b"damaged")  # a damaged entry is recomputed, not trusted
    load_or_encode_texts(TEXTS, "model-a", cache_dir=tmp_path, encode=encode)
    assert encode.calls == 5 and not list(tmp_path.glob("*.tmp"))


def test_a_cache_folder_that_cannot_be_written_is_a_warning_and_the_vectors_still_come(tmp_path):
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")  # refused even to root, unlike permissions
    encode = CountingEncoder()
    with pytest.warns(UserWarning, match=r"could not be cached in .*cache.*HYBRID_REAREC_CACHE"):
        vectors = load_or_encode_texts(TEXTS, "model-a", cache_dir=blocked, encode=encode)
    assert vectors.shape == (len(TEXTS), 8) and encode.calls == 1 and blocked.read_text().startswith("a file")


def test_a_cache_write_that_fails_inside_safetensors_is_a_warning_too(tmp_path, monkeypatch):
    from hybrid_rearec.encoders import text
    from safetensors import SafetensorError

    def full_disk(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error")

    monkeypatch.setattr(text, "save_file", full_disk)
    with pytest.warns(UserWarning, match="could not be cached .*I/O error"):
        vectors = load_or_encode_texts(TEXTS, "model-a", cache_dir=tmp_path, encode=CountingEncoder())
    assert vectors.shape == (len(TEXTS), 8) and not list(tmp_path.iterdir())  # no half-written entry left


def test_packaged_minilm_encodes_offline_and_puts_similar_texts_closer(tmp_path):
    assert resolve_text_model("all-MiniLM-L6-v2").endswith("model")
    vectors = load_or_encode_texts(
        ["a space horror movie with an alien", "alien monster horror in space", "a romantic comedy in Paris"],
        cache_dir=tmp_path,
        progress=False,
    )
    assert vectors.shape == (3, 384)
    similarity = torch.nn.functional.normalize(vectors, dim=1) @ torch.nn.functional.normalize(vectors, dim=1).T
    assert similarity[0, 1] > similarity[0, 2] + 0.2


def test_the_pca_is_fitted_on_the_trained_items_only():
    """A cold item's text must not shape the projection every item goes through (it is unseen in training)."""
    vectors = torch.randn(8, 6, generator=torch.Generator().manual_seed(0))
    trained = torch.tensor([True] * 6 + [False] * 2)
    encoder = TextItemEncoder(vectors, dim=4, pca_dim=3, pca_rows=trained)
    changed = vectors.clone()
    changed[6:] += 10.0  # other texts for the two cold items
    again = TextItemEncoder(changed, dim=4, pca_dim=3, pca_rows=trained)
    assert torch.equal(encoder.pca_mean, again.pca_mean) and torch.equal(encoder.pca_basis, again.pca_basis)
    assert not torch.equal(TextItemEncoder(changed, dim=4, pca_dim=3).pca_mean, encoder.pca_mean)  # all items


@pytest.mark.parametrize("adaptor", ["linear", "moe"])
@pytest.mark.parametrize("pca_dim", [None, 3])
def test_text_encoder_padding_lookup_frozen_vectors_and_added_items(adaptor, pca_dim):
    vectors = CountingEncoder(size=6)(TEXTS, "m", None, 1, False)  # [4, 6]
    encoder = TextItemEncoder(vectors[:3], dim=5, adaptor=adaptor, pca_dim=pca_dim, adaptor_dropout=0.0).eval()
    table = encoder.item_table()
    ids = torch.tensor([[0, 1, 3], [2, 0, 0]])
    assert table.shape == (4, 5) and torch.equal(table[0], torch.zeros(5))
    assert torch.allclose(encoder.encode(ids), table[ids], atol=1e-6)
    assert "text_vectors" not in encoder.state_dict()  # frozen vectors are data, not weights
    assert all(name.startswith("adaptor.") for name, _ in encoder.named_parameters())
    before = table.clone()
    encoder.add_items(vectors[3:])  # a new item, from its text alone
    assert encoder.num_items == 4 and torch.allclose(encoder.item_table()[:4], before, atol=1e-6)
    assert torch.isfinite(encoder.item_table()[4]).all() and encoder.item_table()[4].abs().sum() > 0
    encoder.to(torch.bfloat16).add_items(vectors[3:])  # float32 vectors join a bf16 model's table in its dtype
    assert encoder.text_vectors.dtype == torch.bfloat16 and encoder.item_table().dtype == torch.bfloat16


@pytest.mark.parametrize("fusion", ["sum", "concat", "gate"])
def test_hybrid_fusion_uses_text_alone_for_cold_items(fusion):
    torch.manual_seed(0)
    vectors = torch.randn(4, 6)
    warm = torch.tensor([False, True, True, False, True])  # item 3 is cold
    encoder = HybridItemEncoder(
        IDItemEncoder(4, 5), TextItemEncoder(vectors, 5, "linear"), fusion=fusion, warm_items=warm
    ).eval()
    table = encoder.item_table()
    assert torch.equal(table[0], torch.zeros(5))
    ids = torch.tensor([[1, 3, 0]])
    assert torch.allclose(encoder.encode(ids), table[ids], atol=1e-6)
    with torch.no_grad():
        encoder.id_encoder.embedding.weight[1:] += 1.0  # move every ID vector
    moved = encoder.item_table()
    assert torch.allclose(moved[3], table[3], atol=1e-6)  # cold: text alone
    assert not torch.allclose(moved[1], table[1], atol=1e-3)  # warm: uses its ID vector


def test_id_dropout_shows_warm_items_as_cold_in_training_only():
    torch.manual_seed(0)
    warm = torch.ones(201, dtype=torch.bool)
    warm[0] = False
    encoder = HybridItemEncoder(
        IDItemEncoder(200, 5), TextItemEncoder(torch.randn(200, 6), 5, "linear"), warm_items=warm, id_dropout=0.5
    )
    text_only = encoder.text_encoder.item_table().detach()  # [N + 1, D]
    table = encoder.train().item_table().detach()
    dropped = torch.isclose(table, text_only, atol=1e-7).all(dim=1)[1:]  # [N]: ID part left out
    assert 0.3 < dropped.float().mean() < 0.7  # about half of the warm items, drawn at random
    evaluated = encoder.eval().item_table().detach()
    assert not torch.isclose(evaluated, text_only, atol=1e-7).all(dim=1)[1:].any()  # evaluation: never dropped
    with pytest.raises(ValueError, match="id_dropout"):
        HybridItemEncoder(IDItemEncoder(200, 5), TextItemEncoder(torch.randn(200, 6), 5, "linear"), id_dropout=1.0)


def test_warm_items_are_those_of_training_rows():
    warm = warm_item_mask(torch.tensor([[0, 1, 2], [0, 0, 2]]), torch.tensor([3, 1]), num_items=5)
    assert warm.tolist() == [False, True, True, True, False, False]


def test_text_encoders_need_texts():
    with pytest.raises(DataError, match=r"needs item texts.*--item_encoder id"):
        item_text_vectors(ModelConfig(item_encoder="text"), ["", ""])
    assert item_text_vectors(ModelConfig(), ["", ""]) is None


@pytest.mark.parametrize("item_encoder", ["id", "text", "hybrid"])
@pytest.mark.parametrize("method,steps", [("prl", 0), ("erl", 2), ("prl", 2)])
def test_every_encoder_with_every_reasoning_variant_learns_and_round_trips(item_encoder, method, steps):
    torch.manual_seed(0)
    num_items = 20
    config = tiny_config(method, steps, 0.1, temperature=0.2, item_encoder=item_encoder, text_adaptor_dropout=0.0)
    vectors = torch.randn(num_items, 12)
    model = HybridRecommender(config, num_items, 12, text_vectors=vectors)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = torch.randint(1, num_items + 1, (32, 6))
    target = (history[:, -1] % num_items) + 1  # next item = last item + 1
    losses = []
    for _ in range(60):
        loss = model(history, target, contrastive=True).loss
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < losses[0] - 0.5
    copy = HybridRecommender(config, num_items, 12, text_vectors=vectors)
    copy.load_state_dict(model.state_dict())  # strict
    model.eval(), copy.eval()
    assert torch.equal(model.score(model.user_vectors(history)), copy.score(copy.user_vectors(history)))


def test_moe_adaptor_equals_the_whitening_formula():
    torch.manual_seed(0)
    adaptor = MoEWhiteningAdaptor(6, 4, num_experts=3, dropout=0.0)
    with torch.no_grad():
        adaptor.bias.normal_(), adaptor.gate.weight.normal_()
    x = torch.randn(2, 5, 6)
    gate = (x @ adaptor.gate.weight.T).softmax(-1)  # [2, 5, 3]
    expected = sum(gate[..., e, None] * ((x - adaptor.bias[e]) @ adaptor.experts[e]) for e in range(3))
    assert torch.allclose(adaptor(x, torch.arange(10).view(2, 5)), expected, atol=1e-5)
