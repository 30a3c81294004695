"""Suites timing one training step (forward, backward, AdamW) under different settings, all on the same
batch of ML-100k training rows in interleaved rounds: ``prl`` (PRL's contrastive views against its warm-up
and SASRec) and ``precision`` (fp32 against bf16 autocast, per model family)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

import torch

from ..build import make_optimizer
from ..config import DataConfig, ModelConfig
from ..data import load_dataset
from ..model import HybridRecommender
from ..tables import markdown_table
from .reports import BenchmarkConfig, header, report_text, write
from .timing import interleaved_seconds

PRL = dict(reasoning_steps=2, reasoning_method="prl", prl_contrastive_similarity="cosine")
PRL_EXPLANATION = (
    "After its warm-up PRL adds a noisy second view of every row. 'sequence' (the released code) encodes the "
    "whole batch twice; 'reasoning' encodes the history once and runs only the K reasoning steps twice. "
    "The rounds are interleaved, so on a shared machine the ratios hold better than the seconds."
)
PRECISION_EXPLANATION = (
    "bf16 autocast (`--mixed_precision bf16`) runs matrix products in bfloat16 while the weights, the "
    "optimizer and evaluation stay fp32. The gain needs a CPU with native bf16 instructions (AVX512-BF16 "
    "or AMX); on others bf16 can be slower. Whether it changes quality is a separate, seed-level "
    "question (benchmarks/quality/tuning_ml100k.md). The rounds are interleaved, so on a shared machine the "
    "ratios hold better than the seconds."
)


def step_function(
    model: HybridRecommender, history: torch.Tensor, target: torch.Tensor, contrastive: bool, bf16: bool
) -> Callable[[], None]:
    """One optimizer step of ``model`` on this batch (history [B, L], target [B])."""
    optimizer = make_optimizer(model, 1e-3)

    def step() -> None:
        # What accelerate's --mixed_precision bf16 does on CPU: autocast the forward, fp32 weights.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(history, target, contrastive=contrastive).loss
        optimizer.zero_grad(set_to_none=True)
        loss.float().backward()
        optimizer.step()

    return step


def training_step_seconds(
    config: BenchmarkConfig, settings: Mapping[Hashable, tuple[ModelConfig, bool, bool]], batch_size: int
) -> tuple[dict, str]:
    """Median seconds of one training step per setting {name: (model config, contrastive, bf16)}, all on the
    same batch of ML-100k training rows, timed in interleaved rounds; and the setting's description."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(0)
    dataset = load_dataset(DataConfig())
    rows = torch.randperm(len(dataset.train), generator=torch.Generator().manual_seed(0))[:batch_size]
    history, target = dataset.train.batch(rows, dataset.train.width(rows))
    steps = {}
    for name, (model_config, contrastive, bf16) in settings.items():
        model = HybridRecommender(model_config, dataset.num_items).train()
        steps[name] = step_function(model, history, target, contrastive, bf16)
    setting = (
        f"one batch of {batch_size} ML-100k training rows (width {history.shape[1]}), hidden 64, 2 layers, "
        f"{dataset.num_items} items, medians of {config.repeats} interleaved rounds"
    )
    return interleaved_seconds(steps, config.repeats), setting


def prl_report(results: dict, batch_size: int = 256) -> str:
    """The prl suite's Markdown page from its figures."""
    base = results["seconds"]["PRL, warm-up (no contrastive loss)"]
    rows = (
        [name, f"{value:.4f}", f"{value / base:.2f}x", f"{batch_size / value:,.0f}"]
        for name, value in results["seconds"].items()
    )
    table = markdown_table(["training step", "seconds", "vs PRL warm-up", "rows/s"], rows, "lrrr")
    return report_text("PRL training step: cost of the contrastive views", results, table, PRL_EXPLANATION)


def precision_report(results: dict) -> str:
    """The precision suite's Markdown page from its figures."""
    rows = (
        [name, f"{s['fp32']:.4f}", f"{s['bf16']:.4f}", f"{s['fp32'] / s['bf16']:.2f}x"]
        for name, s in results["seconds"].items()
    )
    table = markdown_table(["model", "fp32 (s)", "bf16 autocast (s)", "fp32 / bf16"], rows, "lrrr")
    title = "Training precision on CPU: fp32 against bf16 autocast"
    return report_text(title, results, table, PRECISION_EXPLANATION)


def run_prl(config: BenchmarkConfig, batch_size: int = 256) -> dict:
    """Seconds per training step of SASRec and of ReaRec-PRL (K = 2) before its contrastive warm-up ends and
    after it with each noisy view; writes OUTPUT/prl_training.{md,json}."""
    settings = {  # name: (model config, contrastive, bf16)
        "SASRec (K = 0)": (ModelConfig(), False, False),
        "PRL, warm-up (no contrastive loss)": (ModelConfig(**PRL), False, False),
        "PRL, contrastive, noisy view 'sequence' (released code)": (
            ModelConfig(**PRL, prl_noisy_view="sequence"),
            True,
            False,
        ),
        "PRL, contrastive, noisy view 'reasoning'": (ModelConfig(**PRL, prl_noisy_view="reasoning"), True, False),
    }
    seconds, setting = training_step_seconds(config, settings, batch_size)
    results = {**header(config.threads), "setting": setting, "seconds": seconds}
    write(results, prl_report(results, batch_size), config.output_dir / "prl_training")
    return results


def run_precision(config: BenchmarkConfig, batch_size: int = 256) -> dict:
    """Seconds per training step in fp32 and with bf16 autocast, for each model family; writes
    OUTPUT/precision.{md,json}."""
    models = {
        "SASRec": (ModelConfig(), False),
        "ReaRec-ERL (K = 2, js_mean)": (
            ModelConfig(reasoning_steps=2, reasoning_method="erl", erl_kl_pairs="js_mean"),
            False,
        ),
        "ReaRec-PRL (K = 2, contrastive)": (ModelConfig(**PRL), True),
        "BERT4Rec (cloze 0.2)": (ModelConfig(backbone="bert4rec", cloze_prob=0.2), False),
    }
    settings = {
        (name, bf16): (model_config, contrastive, bf16)
        for name, (model_config, contrastive) in models.items()
        for bf16 in (False, True)
    }
    seconds, setting = training_step_seconds(config, settings, batch_size)
    by_model = {name: {"fp32": seconds[(name, False)], "bf16": seconds[(name, True)]} for name in models}
    results = {**header(config.threads), "setting": setting, "seconds": by_model}
    write(results, precision_report(results), config.output_dir / "precision")
    return results
