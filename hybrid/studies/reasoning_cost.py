"""The reasoning suite: what K reasoning steps cost at evaluation, and what the key/value cache saves.

Evaluation = user states + scores against every item + ranks, for all test users, at K = 0..5. The states
alone are also timed with the cache (one new row per step) against re-encoding the whole appended sequence
at every step.
"""

from __future__ import annotations

import statistics
import time

import torch

from ..config import DataConfig, ModelConfig
from ..data import RecDataset, load_dataset
from ..evaluate import evaluate
from ..model import HybridRecommender
from ..tables import markdown_table
from .reports import BenchmarkConfig, header, report_text, write
from .timing import median_seconds

EXPLANATION = (
    "Evaluation = user states + scores against every item + ranks, for all test users. 'Cached' runs one "
    "new row per reasoning step over the key/value cache; 'full recompute' re-encodes the whole appended "
    "sequence at every step (the cost the released code's half-used cache approaches)."
)


def evaluation_seconds(model: HybridRecommender, dataset: RecDataset, max_steps: int, repeats: int) -> list[float]:
    """Median seconds of a whole test-set evaluation at each depth 0..max_steps, interleaved so machine
    noise hits every depth alike."""
    seconds: dict[int, list[float]] = {k: [] for k in range(max_steps + 1)}
    for _ in range(repeats):
        for k in range(max_steps + 1):
            started = time.perf_counter()
            evaluate(model, dataset.test, "test", steps=k)
            seconds[k].append(time.perf_counter() - started)
    return [statistics.median(seconds[k]) for k in range(max_steps + 1)]


@torch.no_grad()
def depth_rows(model: HybridRecommender, dataset: RecDataset, max_steps: int, repeats: int) -> list[dict]:
    """Per depth K: evaluation seconds, and the reasoning states' seconds cached and fully recomputed."""
    history, _ = dataset.test.batch(torch.arange(len(dataset.test)))
    key_valid = history > 0  # [R, L]
    inputs = model.backbone.embed(model.item_encoder.encode(history), key_valid)  # [R, L, D]
    evaluation = evaluation_seconds(model, dataset, max_steps, repeats)
    rows = []
    for k in range(max_steps + 1):
        cached = median_seconds(lambda k=k: model.reasoning(model.backbone, inputs, key_valid, k), repeats)
        recompute = median_seconds(
            lambda k=k: model.reasoning.forward_recompute(model.backbone, inputs, key_valid, k), repeats
        )
        rows.append(
            {
                "steps": k,
                "evaluation_seconds": evaluation[k],
                "states_seconds_cached": cached,
                "states_seconds_recompute": recompute,
            }
        )
    return rows


def depth_table(rows: list[dict]) -> str:
    """Each depth's seconds, against K = 0 and cached against recomputed."""
    base = rows[0]["evaluation_seconds"]
    cells = (
        [str(row["steps"]), f"{row['evaluation_seconds']:.4f}", f"{row['evaluation_seconds'] / base:.3f}x",
         f"{row['states_seconds_cached']:.4f}", f"{row['states_seconds_recompute']:.4f}",
         f"{row['states_seconds_recompute'] / row['states_seconds_cached']:.2f}"]
        for row in rows
    )  # fmt: skip
    header_cells = ["K", "test-set evaluation (s)", "vs K=0", "states, cached (s)", "states, full recompute (s)",
                    "recompute / cached"]  # fmt: skip
    return markdown_table(header_cells, cells, "rrrrrr")


def report(results: dict) -> str:
    """The suite's Markdown page from its figures."""
    return report_text("Reasoning benchmark: cost of K steps", results, depth_table(results["rows"]), EXPLANATION)


def run(config: BenchmarkConfig, max_steps: int = 5) -> dict:
    """Time K = 0..``max_steps`` on an untrained ReaRec head (the cost does not depend on training); write
    OUTPUT/reasoning.{md,json} and return the figures."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(0)
    dataset = load_dataset(DataConfig())
    model = HybridRecommender(ModelConfig(reasoning_steps=max_steps), dataset.num_items).eval()
    rows = depth_rows(model, dataset, max_steps, config.repeats)
    results = {
        **header(config.threads),
        "setting": f"ReaRec head on SASRec (hidden 64, 2 layers), ML-100k test set "
        f"({len(dataset.test)} users, {dataset.num_items} items), medians of {config.repeats} runs",
        "rows": rows,
    }
    write(results, report(results), config.output_dir / "reasoning")
    return results
