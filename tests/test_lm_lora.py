"""The LoRA-tuned LM item encoder: tiny random LMs built in code (encoder and decoder-only), the packaged MiniLM."""

import warnings

import pytest
import torch
from hybrid_rearec.encoders.config import EncoderConfig
from hybrid_rearec.encoders.lm_lora import LoRALMItemEncoder
from hybrid_rearec.encoders.text import resolve_text_model
from hybrid_rearec.foundation.errors import ConfigError
from hybrid_rearec.hybrid.model import HybridRecommender
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, BertConfig, BertModel, LlamaConfig, LlamaModel, Qwen2Config, Qwen2Model

from tests.tester import RecommenderTester, tiny_config

TEXTS = [f"movie {k} about {topic}" for k, topic in enumerate(["space", "love", "war", "crime", "music", "ghosts"])]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_text_model("all-MiniLM-L6-v2"))


def tiny_lm(kind, vocab_size, layers=2):
    """A random LM of `kind` ('bert', 'qwen2' with sliding-window attention in its top half, or 'llama')."""
    torch.manual_seed(0)
    shape = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=layers, intermediate_size=64)
    if kind == "bert":
        return BertModel(BertConfig(**shape, num_attention_heads=2))
    if kind == "llama":
        return LlamaModel(LlamaConfig(**shape, num_attention_heads=4, num_key_value_heads=2))
    window = dict(use_sliding_window=True, sliding_window=3, max_window_layers=layers // 2) if layers > 2 else {}
    return Qwen2Model(Qwen2Config(**shape, num_attention_heads=2, num_key_value_heads=1, **window))


@pytest.mark.parametrize("kind,pooling", [("bert", "mean"), ("qwen2", "last_token")])
def test_batch_encoding_matches_the_catalogue_and_only_lora_and_projection_train(tokenizer, kind, pooling):
    encoder = LoRALMItemEncoder(TEXTS, tiny_lm(kind, tokenizer.vocab_size), tokenizer, dim=8, pooling=pooling)
    encoder.eval()
    table = encoder.item_table()  # [N + 1, D], chunked, no grad
    assert table.shape == (7, 8) and torch.equal(table[0], torch.zeros(8)) and not table.requires_grad
    ids = torch.tensor([[0, 3, 1], [6, 3, 0]])
    assert torch.allclose(encoder.encode(ids), table[ids], atol=1e-5)  # any batch padding gives the same
    trainable = {name for name, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name or name.startswith("project.") for name in trainable)


@pytest.mark.parametrize("method,steps", [("prl", 0), ("erl", 2)])
def test_recommender_with_a_tiny_decoder_lm_learns_from_batch_items(tokenizer, method, steps):
    torch.manual_seed(0)
    texts = [f"item number {k}" for k in range(12)]
    encoder = LoRALMItemEncoder(texts, tiny_lm("qwen2", tokenizer.vocab_size), tokenizer, 16, "last_token", lora_r=4)
    model = HybridRecommender(tiny_config(method, steps, 0.0, temperature=0.2), 12, 8, item_encoder=encoder)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    history = torch.randint(1, 13, (16, 5))
    target = (history[:, -1] % 12) + 1
    losses = []
    for _ in range(60):
        loss = model(history, target).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(map(torch.isfinite, map(torch.tensor, losses))) and sum(losses[-3:]) / 3 < losses[0] - 0.3
    lora = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora)  # LoRA B starts at zero: it moved, so gradients reached the LM
    model.eval()
    assert model.score(model.user_vectors(history)).shape == (16, 13)


def test_packaged_minilm_keeps_trainable_parameters_below_one_percent(tokenizer):
    from transformers import AutoModel

    lm = AutoModel.from_pretrained(resolve_text_model("all-MiniLM-L6-v2"))
    encoder = LoRALMItemEncoder(TEXTS, lm, tokenizer, dim=64)
    trainable, base = encoder.trainable_share()
    assert trainable / base < 0.01
    with pytest.raises(ValueError, match="lora_target_modules"):
        LoRALMItemEncoder(TEXTS, torch.nn.Sequential(torch.nn.Linear(2, 2)), tokenizer, dim=4)


def test_building_the_encoder_warns_nothing(tokenizer):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LoRALMItemEncoder(TEXTS, tiny_lm("bert", tokenizer.vocab_size), tokenizer, dim=8)
    assert [str(w.message) for w in caught] == []  # peft's probe of a renamed transformers attribute is hidden


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # peft's own probe
def test_adapter_saves_and_reloads_in_peft_format(tokenizer, tmp_path):
    from peft import PeftModel

    encoder = LoRALMItemEncoder(TEXTS, tiny_lm("bert", tokenizer.vocab_size), tokenizer, dim=8).eval()
    with torch.no_grad():
        for name, parameter in encoder.named_parameters():
            if "lora_B" in name:
                parameter.normal_()  # as if trained
    encoder.save_adapter(tmp_path / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (tmp_path / "adapter").iterdir()}
    fresh = LoRALMItemEncoder(TEXTS, tiny_lm("bert", tokenizer.vocab_size), tokenizer, dim=8).eval()
    fresh.project.load_state_dict(encoder.project.state_dict())
    assert not torch.allclose(fresh.item_table(), encoder.item_table())
    fresh.load_adapter(tmp_path / "adapter")
    assert torch.allclose(fresh.item_table(), encoder.item_table(), atol=1e-6)
    peft_model = PeftModel.from_pretrained(tiny_lm("bert", tokenizer.vocab_size), str(tmp_path / "adapter"))
    assert any("lora_B" in name for name, _ in peft_model.named_parameters())  # peft reads it directly
    with pytest.raises(FileNotFoundError, match="adapter_config.json is missing"):
        fresh.load_adapter(tmp_path)
    weights = tmp_path / "adapter" / "adapter_model.safetensors"
    tensors = load_file(weights)
    save_file(dict(list(tensors.items())[1:]), weights)  # one LoRA weight lost
    with pytest.raises(ValueError, match=r"lacks 1 LoRA weight\(s\)"):
        fresh.load_adapter(tmp_path / "adapter")


@pytest.mark.parametrize("kind,pooling", [("bert", "mean"), ("qwen2", "last_token")])
def test_top_layer_lora_with_cached_prefix_equals_the_full_forward(tokenizer, kind, pooling, tmp_path):
    lm = tiny_lm(kind, tokenizer.vocab_size)
    encoder = LoRALMItemEncoder(TEXTS, lm, tokenizer, 8, pooling, lora_layers=1, cache_dtype="float32").eval()
    with torch.no_grad():
        for name, parameter in encoder.named_parameters():
            if "lora_B" in name:
                parameter.normal_()  # as if trained, so the adapter changes the output
    lora_names = [name for name, _ in encoder.named_parameters() if "lora_" in name]
    assert lora_names and all(".1." in name for name in lora_names)  # layer 1 of 0..1 only
    cached = encoder.item_table()  # runs layer 1 on the cached output of layer 0
    assert encoder.prefix_states.shape[:2] == encoder.token_ids.shape
    object.__setattr__(encoder, "views", None)
    assert torch.allclose(cached, encoder.item_table(), atol=1e-5)  # the whole LM, layer 0 recomputed
    encoder.save_adapter(tmp_path / "adapter")  # peft names are those of the full model
    lm = tiny_lm(kind, tokenizer.vocab_size)
    fresh = LoRALMItemEncoder(TEXTS, lm, tokenizer, 8, pooling, lora_layers=1, cache_dtype="float32")
    fresh.project.load_state_dict(encoder.project.state_dict())
    fresh.load_adapter(tmp_path / "adapter")
    assert torch.allclose(fresh.eval().item_table(), cached, atol=1e-5)
    with pytest.raises(ValueError, match="between 1 and the LM's 2 layers"):
        LoRALMItemEncoder(TEXTS, tiny_lm(kind, tokenizer.vocab_size), tokenizer, dim=8, lora_layers=3)


def randomise_lora(encoder):
    with torch.no_grad():
        for name, parameter in encoder.named_parameters():
            if "lora_B" in name:
                parameter.normal_()  # as if trained, so the adapter changes the output


def vectors_loss_gradients(encoder, item_ids):
    """Item vectors, a loss of them and its gradients (dropout masks from a fixed seed)."""
    encoder.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    vectors = encoder.encode(item_ids)
    loss = torch.nn.functional.cross_entropy(vectors.flatten(0, -2) @ vectors.flatten(0, -2).T, torch.arange(6))
    loss.backward()
    gradients = {name: p.grad.clone() for name, p in encoder.named_parameters() if p.grad is not None}
    return vectors.detach(), loss.detach(), gradients


def assert_same(first, second, tolerance=1e-5):
    (vectors, loss, gradients), (vectors_2, loss_2, gradients_2) = first, second
    assert torch.allclose(vectors, vectors_2, atol=tolerance) and torch.allclose(loss, loss_2, atol=tolerance)
    assert gradients.keys() == gradients_2.keys() and any("lora_A" in name for name in gradients)
    assert all(torch.allclose(gradients[n], gradients_2[n], atol=tolerance) for n in gradients)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize(
    "kind,pooling", [("bert", "mean"), ("bert", "last_token"), ("qwen2", "last_token"), ("llama", "mean")]
)
def test_cached_lower_layers_give_the_whole_models_vectors_loss_and_gradients(tokenizer, kind, pooling, train):
    """4 layers, LoRA on the top 2: the cached path runs layers 2-3 on the cached output of layer 1, with the
    attention mask, the positions and rotary embedding, and (Qwen2) the sliding-window layers of the top half.
    The LM's own dropouts stay on in training (BERT's 0.1): the frozen layers have none on either path."""
    lm = tiny_lm(kind, tokenizer.vocab_size, layers=4)
    encoder = LoRALMItemEncoder(
        TEXTS, lm, tokenizer, 8, pooling, lora_dropout=0.0, lora_layers=2, cache_dtype="float32", progress=False
    )
    randomise_lora(encoder)
    encoder.train(train)
    ids = torch.tensor([[1, 3, 2], [6, 4, 5]])
    cached = vectors_loss_gradients(encoder, ids)
    object.__setattr__(encoder, "views", None)  # the whole LM from the token ids, every layer recomputed
    assert_same(cached, vectors_loss_gradients(encoder, ids))


@pytest.mark.parametrize("kind,pooling", [("bert", "mean"), ("qwen2", "last_token")])
def test_uncached_fp16_and_checkpointed_paths_match_the_cached_one(tokenizer, kind, pooling):
    def build(**settings):
        lm = tiny_lm(kind, tokenizer.vocab_size, layers=4)
        encoder = LoRALMItemEncoder(TEXTS, lm, tokenizer, 8, pooling, lora_dropout=0.0, lora_layers=2, **settings)
        torch.manual_seed(2)
        randomise_lora(encoder)
        return encoder.train()

    ids = torch.tensor([[1, 3, 2], [6, 4, 5]])
    reference = vectors_loss_gradients(build(cache_dtype="float32"), ids)
    uncached = build(cache_frozen_layers=False)
    assert uncached.prefix_states is None
    assert_same(reference, vectors_loss_gradients(uncached, ids))  # the frozen layers rerun every step
    assert_same(reference, vectors_loss_gradients(build(cache_dtype="float32", gradient_checkpointing=True), ids))
    half = build()  # the default: an fp16 cache
    assert half.prefix_states.dtype == torch.float16
    assert_same(reference, vectors_loss_gradients(half, ids), tolerance=1e-2)


def test_the_cache_shows_a_labelled_progress_bar_unless_progress_is_off(tokenizer, capsys):
    for progress in (True, False):
        LoRALMItemEncoder(TEXTS, tiny_lm("bert", tokenizer.vocab_size), tokenizer, 8, lora_layers=1, progress=progress)
        assert ("Caching LM layers below the first tuned one" in capsys.readouterr().err) == progress


def test_a_cache_over_the_budget_is_refused_before_it_is_computed(tokenizer, monkeypatch):
    def never(*args):
        raise AssertionError("the cache was computed")

    monkeypatch.setattr(LoRALMItemEncoder, "_frozen_prefix", never)
    lm = tiny_lm("bert", tokenizer.vocab_size)
    with pytest.raises(ConfigError, match=r"needs 0\.\d+ GB .* over lm_cache_max_gb=1e-06\. Raise lm_cache_max_gb"):
        LoRALMItemEncoder(TEXTS, lm, tokenizer, 8, lora_layers=1, cache_max_gb=1e-6)
    with pytest.raises(ConfigError, match="lm_cache_max_gb must be > 0"):
        EncoderConfig(lm_cache_max_gb=0)
    with pytest.raises(ConfigError, match="lm_cache_dtype"):
        EncoderConfig(lm_cache_dtype="float64")


def test_the_cache_is_not_saved_and_is_recomputed_on_load_and_for_added_items(tmp_path):
    tester = RecommenderTester("lm_lora", tmp_path, overrides={"lora_layers": 1})
    config = tester.config()
    model = tester.model(tester.num_items - 1, config).eval()
    assert not any("prefix_states" in name for name in model.state_dict())
    model.save_pretrained(tmp_path / "saved")
    loaded = HybridRecommender.from_pretrained(tmp_path / "saved")
    assert torch.equal(loaded.item_encoder.prefix_states, model.item_encoder.prefix_states)
    model.add_items(tester.texts()[-1:], item_ids=[str(tester.num_items)])
    along = tester.model(tester.num_items, config).eval()  # had the item from the start
    assert torch.equal(model.item_encoder.prefix_states, along.item_encoder.prefix_states)


@pytest.mark.parametrize("kind", ["bert", "qwen2"])
def test_bf16_autocast_with_checkpointing_trains_every_tuned_lora_weight(tokenizer, kind):
    """What accelerate's bf16 mixed precision does: the cached states enter bf16 tuned layers, recomputed in
    backward; the vectors keep the weights' dtype and every LoRA B of the tuned layers gets a gradient."""
    lm = tiny_lm(kind, tokenizer.vocab_size, layers=4)
    encoder = LoRALMItemEncoder(TEXTS, lm, tokenizer, 8, lora_layers=2, gradient_checkpointing=True, progress=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        vectors = encoder.train().encode(torch.tensor([[1, 2, 0], [3, 2, 6]]))
    vectors.pow(2).sum().backward()
    lora_b = [p for name, p in encoder.named_parameters() if "lora_B" in name]
    assert vectors.dtype == torch.float32 and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)


def test_the_lms_dropout_modules_and_loras_are_hashed_with_their_p(tokenizer):
    from hybrid_rearec.foundation.dropout import HashedDropout

    lm = tiny_lm("bert", tokenizer.vocab_size, layers=2)
    encoder = LoRALMItemEncoder(TEXTS, lm, tokenizer, 8, "mean", lora_dropout=0.05, lora_layers=1, progress=False)
    modules = list(encoder.language_model.modules())
    assert not [m for m in modules if type(m) is torch.nn.Dropout]
    assert {m.p for m in modules if isinstance(m, HashedDropout)} == {0.05, lm.config.hidden_dropout_prob}


def test_checkpointed_layers_redraw_the_same_dropout_masks_inside_a_training_step(tokenizer):
    """Training runs every forward inside global_batch_noise; a checkpointed layer runs its forward again in
    backward and must drop the same values there (LoRA's and the LM's own dropout on)."""
    from hybrid_rearec.foundation import noise

    def build(**settings):
        lm = tiny_lm("bert", tokenizer.vocab_size, layers=4)
        encoder = LoRALMItemEncoder(TEXTS, lm, tokenizer, 8, "mean", lora_dropout=0.3, lora_layers=2, **settings)
        torch.manual_seed(2)
        randomise_lora(encoder)
        return encoder.train()

    ids = torch.tensor([[1, 3, 2], [6, 4, 5]])
    with noise.global_batch_noise(5, 0, 2, 2):
        plain = vectors_loss_gradients(build(cache_dtype="float32"), ids)
    with noise.global_batch_noise(5, 0, 2, 2):
        checkpointed = vectors_loss_gradients(build(cache_dtype="float32", gradient_checkpointing=True), ids)
    assert_same(plain, checkpointed)


def test_checkpoints_leave_out_the_lms_own_weights_and_know_them_again_by_their_signature(tokenizer):
    from hybrid_rearec.hybrid.checkpoint import fixed_weight_names, fixed_weights_signature, load_weights

    def build():
        encoder = LoRALMItemEncoder(TEXTS, tiny_lm("bert", tokenizer.vocab_size), tokenizer, 8, "mean", lora_r=4)
        return HybridRecommender(tiny_config("erl", 2, 0.0), 6, 8, item_encoder=encoder)

    model = build()
    fixed = fixed_weight_names(model)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert fixed and not fixed & trainable and all(name.startswith("item_encoder.language_model.") for name in fixed)
    assert not any("lora_" in name for name in fixed)  # the LoRA weights train: they are saved
    signature = fixed_weights_signature(model)
    assert signature == fixed_weights_signature(build())  # the same LM built again
    with torch.no_grad():
        next(p for name, p in model.named_parameters() if name in fixed).add_(1e-3)
    assert fixed_weights_signature(model) != signature  # another LM under the same name
    saved = {k: v for k, v in build().state_dict().items() if k not in fixed}
    load_weights(model, saved, "saved")  # without the fixed weights: loads
    with pytest.raises(ConfigError, match="saved does not hold this model's weights"):
        load_weights(model, {k: v for k, v in saved.items() if "lora_" not in k}, "saved")
