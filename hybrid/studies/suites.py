"""The benchmark suites by name, so one command can run any of them or all in turn."""

from __future__ import annotations

from collections.abc import Callable

from ...foundation.memory import keep_freed_memory
from . import foundation, lora_cache, one_pass, reasoning_cost, scale, training_steps
from .reports import BenchmarkConfig

SUITES: dict[str, Callable[[BenchmarkConfig], dict]] = {
    "foundation": foundation.run,  # SASRec training/evaluation speed and peak memory
    "reasoning": reasoning_cost.run,  # evaluation cost of K = 0..5 reasoning steps
    "prl": training_steps.run_prl,  # PRL training step: warm-up, and each noisy view
    "precision": training_steps.run_precision,  # training step in fp32 and with bf16 autocast
    "scale": scale.run,  # catalogues of 10^3..10^6 items
    "one_pass": one_pass.run,  # an epoch of the prefix layout against the one-pass layout, per preset
    "lora_cache": lora_cache.run,  # LoRA-MiniLM + ReaRec training steps with the frozen LM layers cached or rerun
}


def run_suites(config: BenchmarkConfig, suite: str = "all") -> dict[str, dict]:
    """Run ``suite`` (or every suite, in order, for "all"); each writes its report. Returns the figures by suite."""
    if suite != "all" and suite not in SUITES:
        raise ValueError(f"unknown benchmark suite {suite!r}: choose 'all' or one of {', '.join(SUITES)}")
    keep_freed_memory()  # the allocator as training sets it up
    return {name: run(config) for name, run in SUITES.items() if suite in ("all", name)}
