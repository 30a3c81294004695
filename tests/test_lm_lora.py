"""The LoRA-tuned LM item encoder: tiny random LMs built in code (encoder and decoder-only), the packaged MiniLM."""

import pytest
import torch
from hybrid_rearec.encoders.lm_lora import LoRALMItemEncoder
from hybrid_rearec.encoders.text import resolve_text_model
from hybrid_rearec.hybrid.model import HybridRecommender
from transformers import AutoTokenizer, BertConfig, BertModel, Qwen2Config, Qwen2Model

from tests.tester import tiny_config

TEXTS = [f"movie {k} about {topic}" for k, topic in enumerate(["space", "love", "war", "crime", "music", "ghosts"])]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_text_model("all-MiniLM-L6-v2"))


def tiny_lm(kind, vocab_size):
    torch.manual_seed(0)
    if kind == "bert":
        config = BertConfig(
            vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
        )
        return BertModel(config)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
    )
    return Qwen2Model(config)


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


@pytest.mark.parametrize("kind,pooling", [("bert", "mean"), ("qwen2", "last_token")])
def test_top_layer_lora_with_cached_prefix_equals_the_full_forward(tokenizer, kind, pooling, tmp_path):
    lm = tiny_lm(kind, tokenizer.vocab_size)
    encoder = LoRALMItemEncoder(TEXTS, lm, tokenizer, dim=8, pooling=pooling, lora_layers=1).eval()
    with torch.no_grad():
        for name, parameter in encoder.named_parameters():
            if "lora_B" in name:
                parameter.normal_()  # as if trained, so the adapter changes the output
    lora_names = [name for name, _ in encoder.named_parameters() if "lora_" in name]
    assert lora_names and all(".1." in name for name in lora_names)  # layer 1 of 0..1 only
    cached = encoder.item_table()  # runs layer 1 on the cached output of layer 0
    assert encoder.prefix_states.shape[:2] == encoder.token_ids.shape
    object.__setattr__(encoder, "top", None)
    assert torch.allclose(cached, encoder.item_table(), atol=1e-5)  # the whole LM, layer 0 recomputed
    encoder.save_adapter(tmp_path / "adapter")  # peft names are those of the full model
    fresh = LoRALMItemEncoder(TEXTS, tiny_lm(kind, tokenizer.vocab_size), tokenizer, 8, pooling, lora_layers=1)
    fresh.project.load_state_dict(encoder.project.state_dict())
    fresh.load_adapter(tmp_path / "adapter")
    assert torch.allclose(fresh.eval().item_table(), cached, atol=1e-5)
    with pytest.raises(ValueError, match="between 1 and the LM's 2 layers"):
        LoRALMItemEncoder(TEXTS, tiny_lm(kind, tokenizer.vocab_size), tokenizer, dim=8, lora_layers=3)
