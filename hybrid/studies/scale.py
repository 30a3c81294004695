"""The scale suite: training and full-ranking evaluation against catalogues of 10^3..10^6 items (synthetic
data, hybrid/synthetic.py), with time and peak memory for each size.

Each size runs in its own process (scripts/benchmark_scale.py --child ITEMS ...), so its peak RSS (measured
by the OS) belongs to that size alone: data, an ID model of hidden size 64, one whole training epoch with the
chunked full-softmax loss, and the evaluation of every test user against the whole catalogue.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator

from ..build import make_optimizer, use_length_groups
from ..config import ModelConfig, TrainConfig
from ..data import shard_batches
from ..evaluate import evaluate
from ..model import HybridRecommender
from ..synthetic import SyntheticConfig, item_title, synthetic_dataset
from ..tables import markdown_table
from ..train import step_noise_seed, train_step
from .paths import REPO_ROOT, SCALE_SCRIPT
from .reports import BenchmarkConfig, header, report_text, write

LOSS_CHUNK = 65_536  # items per chunk of the training softmax when the catalogue is larger
EXPLANATION = (
    "Growth between sizes. Time approaches the items factor once the catalogue work dominates the fixed "
    "per-instance cost of the sequence encoder; memory is the process baseline (Python, torch, data) plus a "
    "part linear in the items (item table, its gradient and Adam state):"
)


def train_one_epoch(dataset, chunk: int | None) -> tuple[HybridRecommender, float]:
    """A fresh ID model trained for one epoch on ``dataset``, and the epoch's seconds."""
    model = HybridRecommender(ModelConfig(loss_chunk_size=chunk), dataset.num_items)
    model.group_lengths = use_length_groups(TrainConfig().length_groups, dataset.train.history)  # as training
    optimizer = make_optimizer(model, TrainConfig().learning_rate)  # training's optimizer
    accelerator = Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(model, optimizer)
    config = TrainConfig(batch_size=256, report_to="none")
    model.train()
    started = time.perf_counter()
    for step, batch in enumerate(shard_batches(len(dataset.train), config.batch_size, config.seed, 1), 1):
        train_step(
            model, optimizer, accelerator, dataset.train, batch, config, noise_seed=step_noise_seed(config, step)
        )
    return accelerator.unwrap_model(model), time.perf_counter() - started


def measure_size(items: int, users: int, mean_length: float, threads: int) -> dict:
    """One catalogue size, in this process (whose peak RSS is then this size's): data, one epoch, evaluation."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    started = time.perf_counter()
    dataset = synthetic_dataset(SyntheticConfig(users=users, items=items, mean_length=mean_length, seed=0))
    data_seconds = time.perf_counter() - started
    chunk = LOSS_CHUNK if items > LOSS_CHUNK else None
    model, epoch_seconds = train_one_epoch(dataset, chunk)
    started = time.perf_counter()
    result = evaluate(model, dataset.test, "test", batch_size=1024)
    eval_seconds = time.perf_counter() - started
    return {
        "items": items,
        "train_instances": len(dataset.train),
        "test_users": len(dataset.test),
        "loss": "chunked full softmax" if chunk else "full softmax",
        "data_seconds": data_seconds,
        "epoch_seconds": epoch_seconds,
        "train_instances_per_second": len(dataset.train) / epoch_seconds,
        "eval_seconds": eval_seconds,
        "eval_users_per_second": len(dataset.test) / eval_seconds,
        "test_ndcg@10": result.metrics["ndcg@10"],
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,  # KiB -> GiB
    }


def measure_in_child(items: int, config: BenchmarkConfig) -> dict:
    """:func:`measure_size` in a fresh process, so the OS's peak RSS is this size's alone."""
    command = [sys.executable, str(SCALE_SCRIPT), "--child", str(items), "--users", str(config.users)]
    command += ["--mean_length", str(config.mean_length), "--threads", str(config.threads)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise SystemExit(f"size {items} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def text_encoding_rate(threads: int, count: int = 2000) -> dict:
    """Items/s of the packaged MiniLM on synthetic item texts (no cache)."""
    from sentence_transformers import SentenceTransformer

    from ...encoders.text import resolve_text_model

    torch.set_num_threads(threads)
    model = SentenceTransformer(resolve_text_model("all-MiniLM-L6-v2"), device="cpu")
    texts = [f"{item_title(i)}. Category {i % 50}" for i in range(count)]
    model.encode(texts[:64], batch_size=64)  # warm-up
    started = time.perf_counter()
    vectors = model.encode(texts, batch_size=256, convert_to_tensor=True)
    seconds = time.perf_counter() - started
    return {"texts": count, "dim": int(vectors.shape[1]), "seconds": seconds, "items_per_second": count / seconds}


def plot(rows: list[dict], path: Path) -> None:
    """Time (log-log) and peak memory against the catalogue size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [r["items"] for r in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.loglog(items, [r["epoch_seconds"] for r in rows], "o-", label="training epoch")
    left.loglog(items, [r["eval_seconds"] for r in rows], "s-", label="evaluation (all test users)")
    left.set(xlabel="catalogue size (items)", ylabel="seconds", title="Time")
    left.legend()
    right.semilogx(items, [r["peak_rss_gib"] for r in rows], "o-")
    right.set(xlabel="catalogue size (items)", ylabel="peak RSS (GiB)", title="Peak memory (whole process)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def size_table(rows: list[dict]) -> str:
    """One row per catalogue size."""
    cells = (
        [f"{r['items']:,}", r["loss"], f"{r['train_instances']:,}", f"{r['epoch_seconds']:.1f}",
         f"{r['train_instances_per_second']:.0f}", f"{r['test_users']:,}", f"{r['eval_seconds']:.2f}",
         f"{r['eval_users_per_second']:.0f}", f"{r['peak_rss_gib']:.2f}", f"{r['test_ndcg@10']:.4f}"]
        for r in rows
    )  # fmt: skip
    header_cells = ["items", "loss", "train instances", "epoch (s)", "instances / s", "eval users", "eval (s)",
                    "users / s", "peak RSS (GiB)", "test NDCG@10"]  # fmt: skip
    return markdown_table(header_cells, cells, "rlrrrrrrrr")


def growth_table(rows: list[dict]) -> str:
    """How time and memory grow from each size to the next."""
    cells = (
        [f"{small['items']:,} -> {large['items']:,} ({large['items'] / small['items']:.0f}x items)",
         f"{large['epoch_seconds'] / small['epoch_seconds']:.1f}x",
         f"{large['eval_seconds'] / small['eval_seconds']:.1f}x",
         f"{large['peak_rss_gib'] / small['peak_rss_gib']:.2f}x"]
        for small, large in zip(rows, rows[1:])
    )  # fmt: skip
    return markdown_table(["step", "epoch time", "evaluation time", "peak RSS"], cells, "lrrr")


def report(results: dict) -> str:
    """The suite's Markdown page from its figures (the plot, scale.png, sits next to it)."""
    rows, text_rate = results["rows"], results["text_encoding"]
    explanation = (
        f"{EXPLANATION}\n\n{growth_table(rows)}\n\nText encoding (packaged all-MiniLM-L6-v2, {text_rate['texts']} "
        f"synthetic item texts, no cache): {text_rate['items_per_second']:.0f} items/s.\n\n"
        "![time and memory against catalogue size](scale.png)"
    )
    return report_text("Scale benchmark: catalogue size", results, size_table(rows), explanation)


def run(config: BenchmarkConfig) -> dict:
    """Measure every size of ``config.sizes`` in its own process and the text encoder's rate; write
    OUTPUT/scale.{md,json,png} and return the figures."""
    head = header(config.threads)  # the date the suite started
    rows = []
    for items in config.sizes:
        rows.append(measure_in_child(items, config))
        print(json.dumps(rows[-1]), flush=True)
    results = {
        **head,
        "setting": f"synthetic data ({config.users:,} users, mean {config.mean_length} interactions, Zipf "
        "popularity, planted transitions), ID SASRec hidden 64, batch 256, one training epoch after data "
        "generation, then full-ranking evaluation of every test user against the whole catalogue (memory budget "
        "256 MiB per score block); each size in its own process",
        "rows": rows,
        "text_encoding": text_encoding_rate(config.threads),
    }
    config.output_dir.mkdir(parents=True, exist_ok=True)
    plot(rows, config.output_dir / "scale.png")
    write(results, report(results), config.output_dir / "scale")
    return results
