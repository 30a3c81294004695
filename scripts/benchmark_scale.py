"""The `scale` suite of scripts/benchmark.py: training and full-ranking evaluation against catalogues of
10^3..10^6 items (synthetic data, hybrid/synthetic.py), with time and peak memory for each size.

Each size runs in its own process (`python scripts/benchmark_scale.py --child ITEMS ...`), so its peak RSS
(measured by the OS) belongs to that size alone: data, an ID model of hidden size 64, one whole training
epoch with the chunked full-softmax loss, and the evaluation of every test user against the whole catalogue.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid.config import ModelConfig, TrainConfig  # noqa: E402
from hybrid.data import shard_batches  # noqa: E402
from hybrid.evaluate import evaluate  # noqa: E402
from hybrid.model import HybridRecommender  # noqa: E402
from hybrid.synthetic import SyntheticConfig, synthetic_dataset  # noqa: E402

SIZES = (1_000, 10_000, 100_000, 1_000_000)
LOSS_CHUNK = 65_536  # items per chunk of the training softmax when the catalogue is larger


def child(items: int, users: int, mean_length: float, threads: int) -> dict:
    """One catalogue size, in this process: returns the measurements (printed as JSON by main)."""
    from accelerate import Accelerator

    from hybrid.train import step_noise_seed, train_step

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    started = time.perf_counter()
    dataset = synthetic_dataset(SyntheticConfig(users=users, items=items, mean_length=mean_length, seed=0))
    data_seconds = time.perf_counter() - started
    chunk = LOSS_CHUNK if items > LOSS_CHUNK else None
    model = HybridRecommender(ModelConfig(loss_chunk_size=chunk), dataset.num_items)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    accelerator = Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(model, optimizer)
    config = TrainConfig(batch_size=256, report_to="none")
    model.train()
    started = time.perf_counter()
    for step, batch in enumerate(shard_batches(len(dataset.train), config.batch_size, config.seed, 1), 1):
        train_step(
            model, optimizer, accelerator, dataset.train, batch, config, noise_seed=step_noise_seed(config, step)
        )
    epoch_seconds = time.perf_counter() - started
    started = time.perf_counter()
    result = evaluate(accelerator.unwrap_model(model), dataset.test, "test", batch_size=1024)
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


def text_encoding_rate(threads: int, count: int = 2000) -> dict:
    """Items/s of the packaged MiniLM on synthetic item texts (no cache)."""
    from sentence_transformers import SentenceTransformer

    from encoders.text import resolve_text_model
    from hybrid.synthetic import item_title

    torch.set_num_threads(threads)
    model = SentenceTransformer(resolve_text_model("all-MiniLM-L6-v2"), device="cpu")
    texts = [f"{item_title(i)}. Category {i % 50}" for i in range(count)]
    model.encode(texts[:64], batch_size=64)  # warm-up
    started = time.perf_counter()
    vectors = model.encode(texts, batch_size=256, convert_to_tensor=True)
    seconds = time.perf_counter() - started
    return {"texts": count, "dim": int(vectors.shape[1]), "seconds": seconds, "items_per_second": count / seconds}


def plot(rows: list[dict], path: Path) -> None:
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


def run(args, header: dict, write) -> None:
    rows = []
    for items in args.sizes:
        command = [sys.executable, __file__, "--child", str(items), "--users", str(args.users)]
        command += ["--mean_length", str(args.mean_length), "--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"size {items} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    text_rate = text_encoding_rate(args.threads)
    lines = [
        "| items | loss | train instances | epoch (s) | instances / s | eval users | eval (s) | users / s | "
        "peak RSS (GiB) | test NDCG@10 |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['items']:,} | {r['loss']} | {r['train_instances']:,} | {r['epoch_seconds']:.1f} | "
            f"{r['train_instances_per_second']:.0f} | {r['test_users']:,} | {r['eval_seconds']:.2f} | "
            f"{r['eval_users_per_second']:.0f} | {r['peak_rss_gib']:.2f} | {r['test_ndcg@10']:.4f} |"
        )
    growth = []
    for small, large in zip(rows, rows[1:]):
        factor = large["items"] / small["items"]
        growth.append(
            f"| {small['items']:,} -> {large['items']:,} ({factor:.0f}x items) | "
            f"{large['epoch_seconds'] / small['epoch_seconds']:.1f}x | "
            f"{large['eval_seconds'] / small['eval_seconds']:.1f}x | "
            f"{large['peak_rss_gib'] / small['peak_rss_gib']:.2f}x |"
        )
    results = {
        **header,
        "setting": f"synthetic data ({args.users:,} users, mean {args.mean_length} interactions, Zipf popularity, "
        "planted transitions), ID SASRec hidden 64, batch 256, one training epoch after data generation, then "
        "full-ranking evaluation of every test user against the whole catalogue (memory budget 256 MiB per "
        "score block); each size in its own process",
        "rows": rows,
        "text_encoding": text_rate,
    }
    folder = Path(args.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    plot(rows, folder / "scale.png")
    text = (
        f"# Scale benchmark: catalogue size\n\n{results['setting']}.\n\n"
        f"Machine: {header['machine']['cpu']}, {args.threads} threads, torch {torch.__version__}. "
        f"Date: {header['date']}.\n\nCommand: `{header['command']}`\n\n" + "\n".join(lines) + "\n\n"
        "Growth between sizes. Time approaches the items factor once the catalogue work dominates the fixed "
        "per-instance cost of the sequence encoder; memory is the process baseline (Python, torch, data) plus a "
        "part linear in the items (item table, its gradient and Adam state):\n\n"
        "| step | epoch time | evaluation time | peak RSS |\n|---|---:|---:|---:|\n"
        + "\n".join(growth)
        + f"\n\nText encoding (packaged all-MiniLM-L6-v2, {text_rate['texts']} synthetic item texts, no cache): "
        f"{text_rate['items_per_second']:.0f} items/s.\n\n![time and memory against catalogue size](scale.png)\n"
    )
    write(results, text, folder / "scale")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", type=int, help="measure one catalogue size in this process, print JSON")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--mean_length", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.child is None:
        raise SystemExit("run the scale suite with: python scripts/benchmark.py --suite scale")
    print(json.dumps(child(args.child, args.users, args.mean_length, args.threads)))


if __name__ == "__main__":
    main()
