"""An encoder setting that cannot work is a ConfigError naming the setting (one line from scripts/train.py),
not a traceback from the library underneath."""

import pytest
import torch
from hybrid_rearec.encoders.text import pca_basis
from hybrid_rearec.hybrid.config import ModelConfig
from hybrid_rearec.hybrid.errors import ConfigError
from hybrid_rearec.hybrid.model import HybridRecommender, item_text_vectors

from tests.tester import save_tiny_lm

TEXTS = ["a red thing", "a blue thing", "a green thing"]


def lora_model(**settings) -> HybridRecommender:
    config = ModelConfig(hidden_size=16, num_heads=2, inner_size=32, item_encoder="lm_lora", **settings)
    return HybridRecommender(config, len(TEXTS), 4, item_texts=TEXTS)


def test_a_model_name_that_does_not_load_names_the_setting(tmp_path):
    missing = str(tmp_path / "no-such-model")
    expected = rf"^text_model='{missing}' does not load \(.*packaged copy\. .*from_pretrained\(folder, text_model="
    with pytest.raises(ConfigError, match=expected):
        item_text_vectors(ModelConfig(item_encoder="text", text_model=missing), TEXTS, progress=False)
    with pytest.raises(ConfigError, match=rf"^lm_model='{missing}' does not load"):
        lora_model(lm_model=missing)


def test_lora_layers_and_target_modules_the_model_lacks_are_named(tmp_path):
    lm = save_tiny_lm(tmp_path / "lm")
    with pytest.raises(ConfigError, match=r"lora_layers=3 must be between 1 and the LM's 2 layers"):
        lora_model(lm_model=lm, lora_layers=3)
    with pytest.raises(ConfigError, match=r"lora_target_modules='nonexistent' names no layer of BertModel.*query"):
        lora_model(lm_model=lm, lora_target_modules="nonexistent")
    assert lora_model(lm_model=lm, lora_layers=2, lm_max_length=8).num_items == 3  # the same LM, sound settings


def test_a_pca_size_beyond_the_data_and_a_token_limit_below_three_are_refused():
    with pytest.raises(ConfigError, match=r"text_pca_dim=6 is more than this data allows: at most 5 \(the smaller"):
        pca_basis(torch.randn(5, 8), 6)
    with pytest.raises(ConfigError, match=r"lm_max_length must be >= 3"):
        ModelConfig(item_encoder="lm_lora", lm_max_length=2)
