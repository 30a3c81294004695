"""The lora_cache benchmark suite on a tiny LM and tiny data: every entry trains, the figures and pages are written."""

import dataclasses
import json

from hybrid_rearec.hybrid.config import TrainConfig
from hybrid_rearec.hybrid.data import load_dataset
from hybrid_rearec.hybrid.studies import lora_cache, suites
from hybrid_rearec.hybrid.studies.reports import BenchmarkConfig

from tests.tester import save_tiny_lm, tiny_config


def test_suite_times_cached_and_uncached_steps_and_writes_its_report(tmp_path, csv_data_config):
    dataset = load_dataset(csv_data_config)
    dataset = dataclasses.replace(dataset, item_texts=[f"a film about item {k}" for k in range(dataset.num_items)])
    settings = dict(item_encoder="lm_lora", lm_model=save_tiny_lm(tmp_path / "lm"), lora_layers=1, lm_max_length=8)
    model_config = tiny_config("erl", 2, **settings)
    train_config = TrainConfig(batch_size=64, report_to="none", progress=False)
    figures = lora_cache.measure(dataset, model_config, train_config, csv_data_config.max_history, rounds=1, steps=1)
    assert figures["uncached"]["s_per_step"] > 0 and figures["cached"]["s_per_epoch"] > 0 and figures["ratio"] > 0
    assert figures["every_layer"]["s_per_step"] > 0 and figures["ratio_every_layer"] > 0
    assert figures["cache_gb"] > 0 and figures["batches_per_epoch"] == dataset.train.batches_per_epoch(64)
    lora_cache.write_report(BenchmarkConfig(output_dir=tmp_path), figures)
    assert json.loads((tmp_path / "lora_cache.json").read_text()) == figures
    page = (tmp_path / "lora_cache.md").read_text()
    assert (
        "1 steps per entry in each of 1 interleaved rounds" in page
        and "| top layer tuned, frozen ones cached |" in page
    )
    assert suites.SUITES["lora_cache"] is lora_cache.run
