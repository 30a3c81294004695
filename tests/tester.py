"""One tiny-config tester shared by the model tests (transformers' ModelTester pattern).

``RecommenderTester(item_encoder)`` builds a tiny config with every dropout on, a tiny catalogue with texts,
the model (for ``lm_lora`` a tiny random BERT saved to a temporary folder, loaded like any LM) and batches.
``ENCODER_KINDS`` comes from the encoders' registry, so a new encoder kind meets the shared suite
(tests/test_encoder_suite.py) as soon as it is registered.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from hybrid_rearec.encoders.registry import ENCODERS
from hybrid_rearec.encoders.text import load_or_encode_texts, resolve_text_model
from hybrid_rearec.hybrid.config import ModelConfig
from hybrid_rearec.hybrid.model import HybridRecommender
from hybrid_rearec.hybrid.recommend import ItemCatalogue

ENCODER_KINDS = tuple(ENCODERS)
TOPICS = ["space", "love", "war", "crime", "music", "ghosts", "cooking", "trains", "robots", "islands", "chess"]


def tiny_config(method: str = "prl", steps: int = 3, dropout: float = 0.0, **kwargs) -> ModelConfig:
    """A 2-layer, 16-wide model config (reasoning ``method`` with ``steps`` steps, both dropouts ``dropout``
    unless given on their own)."""
    settings = dict(hidden_size=16, num_layers=2, num_heads=2, inner_size=32)
    settings |= dict(hidden_dropout=dropout, attention_dropout=dropout, reasoning_steps=steps, reasoning_method=method)
    return ModelConfig(**(settings | kwargs))


def tiny(method: str = "prl", steps: int = 3, dropout: float = 0.0, **kwargs) -> HybridRecommender:
    """An ID model of :func:`tiny_config` over 20 items with histories of up to 12."""
    return HybridRecommender(tiny_config(method, steps, dropout, **kwargs), num_items=20, max_history=12)


def save_tiny_lm(folder: Path) -> str:
    """A 2-layer random BERT with the packaged MiniLM tokenizer, saved as a transformers folder."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(resolve_text_model("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@dataclasses.dataclass
class RecommenderTester:
    item_encoder: str = "id"
    folder: Path | None = None  # where a tiny LM is saved (lm_lora)
    num_items: int = 11
    max_history: int = 6
    overrides: dict = dataclasses.field(default_factory=dict)

    def texts(self, count: int | None = None) -> list[str]:
        return [f"a film about {topic}" for topic in TOPICS[: count or self.num_items]]

    def config(self) -> ModelConfig:
        settings = dict(
            hidden_dropout=0.2,
            attention_dropout=0.2,
            reasoning_steps=2,
            reasoning_method="erl",
            item_encoder=self.item_encoder,
            text_adaptor_dropout=0.2,
            id_dropout=0.5,
            lora_r=4,
            lora_dropout=0.1,
            lm_max_length=16,
        )
        if self.item_encoder == "lm_lora":
            settings["lm_model"] = save_tiny_lm(self.folder / "tiny-lm")
        settings |= self.overrides
        method, steps = settings.pop("reasoning_method"), settings.pop("reasoning_steps")
        return tiny_config(method, steps, **settings)

    def model(self, num_items: int | None = None, config: ModelConfig | None = None) -> HybridRecommender:
        """The tiny model over the first ``num_items`` items (every item but the last one is warm)."""
        config, num_items = config or self.config(), num_items or self.num_items
        texts = self.texts(num_items)
        vectors = None
        if ENCODERS[config.item_encoder].needs_text_vectors:
            vectors = load_or_encode_texts(texts, config.text_model, progress=False)
        warm = torch.ones(num_items + 1, dtype=torch.bool)
        warm[0] = warm[-1] = False
        torch.manual_seed(0)
        model = HybridRecommender(config, num_items, self.max_history, vectors, warm, texts)
        model.catalogue = ItemCatalogue([str(k) for k in range(1, num_items + 1)], texts)
        return model

    def batch(self, rows: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded histories [rows, max_history] and next items [rows]."""
        generator = torch.Generator().manual_seed(seed)
        history = torch.randint(1, self.num_items + 1, (rows, self.max_history), generator=generator)
        lengths = torch.randint(1, self.max_history + 1, (rows,), generator=generator)
        history[torch.arange(self.max_history)[None, :] < (self.max_history - lengths)[:, None]] = 0
        target = torch.randint(1, self.num_items + 1, (rows,), generator=generator)
        return history, target
