"""Speed and memory on MovieLens-100k; writes benchmarks/<suite>.{md,json}.

    python scripts/benchmark.py                       # both suites
    python scripts/benchmark.py --suite foundation    # SASRec training/evaluation speed and peak memory
    python scripts/benchmark.py --suite reasoning     # evaluation cost of K = 0..5 reasoning steps
    python scripts/benchmark.py --suite prl           # PRL training step: warm-up, and each noisy view
    python scripts/benchmark.py --suite precision     # training step in fp32 and with bf16 autocast
    python scripts/benchmark.py --suite scale         # catalogues of 10^3..10^6 items (benchmark_scale.py)

Foundation:
Measured here, in this process: training instances per second over whole epochs (the same train_step the
training loop runs) and evaluation users per second over the 943 test users. Peak memory is the peak RSS
of a separate `scripts/train.py` process running whole epochs with evaluation, measured by the OS.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid.config import DataConfig, ModelConfig, TrainConfig  # noqa: E402
from hybrid.data import load_dataset, sequence_rows, shard_batches  # noqa: E402
from hybrid.evaluate import evaluate  # noqa: E402
from hybrid.model import HybridRecommender  # noqa: E402
from hybrid.train import step_noise_seed, train_step  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
import benchmark_scale  # noqa: E402
from benchmark_scale import SIZES  # noqa: E402

# RecBole 1.2.1 SASRec on ML-100k, same settings, on this machine kind (figures given in issue 2; not rerun).
RECBOLE_REFERENCE = {
    "epoch_seconds": 104.0,
    "instances_per_second": 930.0,
    "eval_seconds_943_users": 0.41,
    "peak_rss_gb": 1.2,
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def time_training(epochs: int, threads: int, loss_positions: str = "last") -> tuple:
    """Seconds of each whole training epoch, the number of training rows, the model and the dataset."""
    from accelerate import Accelerator

    torch.set_num_threads(threads)
    torch.manual_seed(2020)
    dataset = load_dataset(DataConfig())
    rows = sequence_rows(dataset.train, DataConfig().max_history) if loss_positions == "all" else dataset.train
    model = HybridRecommender(ModelConfig(loss_positions=loss_positions), dataset.num_items)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    accelerator = Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(model, optimizer)
    config = TrainConfig(batch_size=256, report_to="none")
    seconds, step = [], 0
    for epoch in range(1, epochs + 1):
        model.train()
        started = time.perf_counter()
        for batch in shard_batches(len(rows), config.batch_size, config.seed, epoch):
            step += 1
            train_step(model, optimizer, accelerator, rows, batch, config, noise_seed=step_noise_seed(config, step))
        seconds.append(time.perf_counter() - started)
    return seconds, len(rows), accelerator.unwrap_model(model), dataset


def time_evaluation(model, dataset, repeats: int = 7) -> list[float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        evaluate(model, dataset.test, "test", batch_size=1024)
        seconds.append(time.perf_counter() - started)
    return seconds


def peak_rss_of_training_run(epochs: int, threads: int) -> float:
    """Peak RSS (GB) of a real `scripts/train.py` process (data, model, epochs with validation, test)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        command = [
            sys.executable,
            str(ROOT / "scripts" / "train.py"),
            "--epochs",
            str(epochs),
            "--output_dir",
            folder + "/run",
            "--progress",
            "false",
            "--num_threads",
            str(threads),
        ]
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2  # KiB -> GiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="timed training epochs")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (RecBole's figure used 2)")
    parser.add_argument("--rss_epochs", type=int, default=2, help="epochs of the separate peak-memory run")
    parser.add_argument(
        "--suite",
        default="all",
        choices=("all", "foundation", "reasoning", "prl", "precision", "scale"),
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="scale: catalogue sizes")
    parser.add_argument("--users", type=int, default=10_000, help="scale: synthetic users (all evaluated)")
    parser.add_argument("--mean_length", type=float, default=6.0, help="scale: interactions per user")
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats per reasoning depth")
    parser.add_argument("--output_dir", default=str(ROOT / "benchmarks"))
    args = parser.parse_args()
    if args.suite in ("all", "foundation"):
        foundation(args)
    if args.suite in ("all", "reasoning"):
        reasoning(args)
    if args.suite in ("all", "prl"):
        prl_training(args)
    if args.suite in ("all", "precision"):
        precision(args)
    if args.suite in ("all", "scale"):
        benchmark_scale.run(args, header(args), write)


def write(results: dict, text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    path.with_suffix(".md").write_text(text)
    print(text)


def header(args) -> dict:
    return {
        "command": "python " + " ".join(sys.argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu": cpu_name(),
            "threads": args.threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }


def report_text(title: str, results: dict, body: str, explanation: str) -> str:
    """A benchmark's Markdown: title, setting, machine, date, the command, its table and what it means."""
    machine = results["machine"]
    return (
        f"# {title}\n\n{results['setting']}.\n\n"
        f"Machine: {machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}. "
        f"Date: {results['date']}.\n\nCommand: `{results['command']}`\n\n{body}\n\n{explanation}\n"
    )


def foundation(args) -> None:
    epoch_seconds, instances, model, dataset = time_training(args.epochs, args.threads)
    window_epoch_seconds, windows, _, _ = time_training(args.epochs, args.threads, loss_positions="all")
    eval_seconds = time_evaluation(model, dataset)
    peak = peak_rss_of_training_run(args.rss_epochs, args.threads)
    median_epoch = statistics.median(epoch_seconds)
    median_eval = statistics.median(eval_seconds)
    results = {
        **header(args),
        "setting": "SASRec, ML-100k leave-one-out, hidden 64, inner 256, 2 layers, 2 heads, dropout 0.5, "
        "batch 256, max length 50, full-softmax CE",
        "train": {
            "instances": instances,
            "epoch_seconds": epoch_seconds,
            "median_epoch_seconds": median_epoch,
            "instances_per_second": instances / median_epoch,
        },
        "train_loss_positions_all": {
            "windows": windows,
            "epoch_seconds": window_epoch_seconds,
            "median_epoch_seconds": statistics.median(window_epoch_seconds),
        },
        "evaluation": {
            "users": len(dataset.test),
            "seconds": eval_seconds,
            "median_seconds": median_eval,
            "users_per_second": len(dataset.test) / median_eval,
        },
        "peak_rss_gb_training_run": peak,
        "recbole_reference": RECBOLE_REFERENCE,
    }
    speedup = RECBOLE_REFERENCE["epoch_seconds"] / median_epoch
    table = "\n".join(
        [
            "| measure | hybrid-rearec | RecBole 1.2.1 (reference) | ratio |",
            "|---|---:|---:|---:|",
            f"| training epoch (s, median of {len(epoch_seconds)}) | {median_epoch:.1f} | "
            f"{RECBOLE_REFERENCE['epoch_seconds']:.0f} | {speedup:.2f}x faster |",
            f"| training instances / s | {instances / median_epoch:.0f} | "
            f"{RECBOLE_REFERENCE['instances_per_second']:.0f} | |",
            f"| training epoch with `--loss_positions all` ({windows} windows; s, median of "
            f"{len(window_epoch_seconds)}) | {statistics.median(window_epoch_seconds):.1f} | | "
            f"{median_epoch / statistics.median(window_epoch_seconds):.1f}x faster than the prefix rows |",
            f"| evaluation of {len(dataset.test)} test users (s, median of {len(eval_seconds)}) | {median_eval:.3f} | "
            f"{RECBOLE_REFERENCE['eval_seconds_943_users']:.2f} | "
            f"{RECBOLE_REFERENCE['eval_seconds_943_users'] / median_eval:.1f}x faster |",
            f"| evaluation users / s | {len(dataset.test) / median_eval:.0f} | | |",
            f"| peak RSS of a training run (GB) | {peak:.2f} | {RECBOLE_REFERENCE['peak_rss_gb']:.1f} | |",
        ]
    )
    text = report_text(
        "Foundation benchmark: SASRec on MovieLens-100k",
        results,
        table,
        "RecBole's figures were measured on this machine kind with the same settings and are quoted, not rerun "
        "side by side; this machine is shared and noisy, so compare ratios within one run where possible. "
        "`--loss_positions all` (plain SASRec only) trains every target of a user's window at once instead of "
        "one (prefix, next item) row per target: the same targets per epoch, with contexts cut at window "
        "starts; its accuracy is in benchmarks/quality/tuning_ml100k.md.",
    )
    write(results, text, Path(args.output_dir) / "foundation")


def interleaved_samples(functions: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds of each function in every round; the functions run in turn in each round (after one warm-up
    round), so machine noise hits all of them alike and round r of two functions can be compared. Each round
    starts one function later than the last, so no function always runs right after the same one."""
    seconds = {name: [] for name in functions}
    names = list(functions)
    for round_ in range(rounds + 1):
        shift = round_ % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            function = functions[name]
            started = time.perf_counter()
            function()
            if round_:
                seconds[name].append(time.perf_counter() - started)
    return seconds


def interleaved_seconds(functions: dict, rounds: int) -> dict[str, float]:
    """Median seconds of each function over interleaved rounds (see :func:`interleaved_samples`)."""
    return {name: statistics.median(values) for name, values in interleaved_samples(functions, rounds).items()}


def median_seconds(function, repeats: int) -> float:
    return interleaved_seconds({"": function}, repeats)[""]


@torch.no_grad()
def reasoning(args, max_steps: int = 5) -> None:
    """Whole-test-set evaluation time for K = 0..5 (cached one-row steps), and the reasoning states alone
    with the cache against a full recompute of the appended sequence at every step."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dataset = load_dataset(DataConfig())
    model = HybridRecommender(ModelConfig(reasoning_steps=max_steps), dataset.num_items).eval()
    history, _ = dataset.test.batch(torch.arange(len(dataset.test)))
    key_valid = history > 0
    inputs = model.backbone.embed(model.item_encoder.encode(history), key_valid)
    rows = []
    evaluation = {k: [] for k in range(max_steps + 1)}
    for _ in range(args.repeats):  # interleaved so machine noise hits every depth alike
        for k in range(max_steps + 1):
            started = time.perf_counter()
            evaluate(model, dataset.test, "test", steps=k)
            evaluation[k].append(time.perf_counter() - started)
    for k in range(max_steps + 1):
        cached = median_seconds(lambda k=k: model.reasoning(model.backbone, inputs, key_valid, k), args.repeats)
        recompute = median_seconds(
            lambda k=k: model.reasoning.forward_recompute(model.backbone, inputs, key_valid, k), args.repeats
        )
        rows.append(
            {
                "steps": k,
                "evaluation_seconds": statistics.median(evaluation[k]),
                "states_seconds_cached": cached,
                "states_seconds_recompute": recompute,
            }
        )
    base = rows[0]
    lines = [
        "| K | test-set evaluation (s) | vs K=0 | states, cached (s) | states, full recompute (s) | "
        "recompute / cached |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['steps']} | {row['evaluation_seconds']:.4f} | "
            f"{row['evaluation_seconds'] / base['evaluation_seconds']:.3f}x | {row['states_seconds_cached']:.4f} | "
            f"{row['states_seconds_recompute']:.4f} | "
            f"{row['states_seconds_recompute'] / row['states_seconds_cached']:.2f} |"
        )
    results = {
        **header(args),
        "setting": f"ReaRec head on SASRec (hidden 64, 2 layers), ML-100k test set "
        f"({len(dataset.test)} users, {dataset.num_items} items), medians of {args.repeats} runs",
        "rows": rows,
    }
    text = report_text(
        "Reasoning benchmark: cost of K steps",
        results,
        "\n".join(lines),
        "Evaluation = user states + scores against every item + ranks, for all test users. 'Cached' runs one "
        "new row per reasoning step over the key/value cache; 'full recompute' re-encodes the whole appended "
        "sequence at every step (the cost the released code's half-used cache approaches).",
    )
    write(results, text, Path(args.output_dir) / "reasoning")


def training_step_seconds(args, settings: dict, batch_size: int) -> tuple[dict[str, float], str]:
    """Median seconds of one training step (forward, backward, AdamW) per setting {name: (model config,
    contrastive, bf16)}, all on the same batch of ML-100k training rows, timed in interleaved rounds. Also
    returns the setting's description."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dataset = load_dataset(DataConfig())
    rows = torch.randperm(len(dataset.train), generator=torch.Generator().manual_seed(0))[:batch_size]
    history, target = dataset.train.batch(rows, dataset.train.width(rows))
    steps = {}
    for name, (config, contrastive, bf16) in settings.items():
        model = HybridRecommender(config, dataset.num_items).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step(model=model, optimizer=optimizer, contrastive=contrastive, bf16=bf16) -> None:
            # What accelerate's --mixed_precision bf16 does on CPU: autocast the forward, fp32 weights.
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(history, target, contrastive=contrastive).loss
            optimizer.zero_grad(set_to_none=True)
            loss.float().backward()
            optimizer.step()

        steps[name] = step
    setting = (
        f"one batch of {batch_size} ML-100k training rows (width {history.shape[1]}), hidden 64, 2 layers, "
        f"{dataset.num_items} items, medians of {args.repeats} interleaved rounds"
    )
    return interleaved_seconds(steps, args.repeats), setting


def prl_training(args, batch_size: int = 256) -> None:
    """Seconds per training step of SASRec and of ReaRec-PRL (K = 2) before its contrastive warm-up ends
    and after it with each noisy view."""
    prl = dict(reasoning_steps=2, reasoning_method="prl", prl_contrastive_similarity="cosine")
    settings = {  # name: (model config, contrastive, bf16)
        "SASRec (K = 0)": (ModelConfig(), False, False),
        "PRL, warm-up (no contrastive loss)": (ModelConfig(**prl), False, False),
        "PRL, contrastive, noisy view 'sequence' (released code)": (
            ModelConfig(**prl, prl_noisy_view="sequence"),
            True,
            False,
        ),
        "PRL, contrastive, noisy view 'reasoning'": (ModelConfig(**prl, prl_noisy_view="reasoning"), True, False),
    }
    seconds, setting = training_step_seconds(args, settings, batch_size)
    base = seconds["PRL, warm-up (no contrastive loss)"]
    lines = ["| training step | seconds | vs PRL warm-up | rows/s |", "|---|---:|---:|---:|"]
    for name, value in seconds.items():
        lines.append(f"| {name} | {value:.4f} | {value / base:.2f}x | {batch_size / value:,.0f} |")
    results = {**header(args), "setting": setting, "seconds": seconds}
    text = report_text(
        "PRL training step: cost of the contrastive views",
        results,
        "\n".join(lines),
        "After its warm-up PRL adds a noisy second view of every row. 'sequence' (the released code) encodes the "
        "whole batch twice; 'reasoning' encodes the history once and runs only the K reasoning steps twice. "
        "The rounds are interleaved, so on a shared machine the ratios hold better than the seconds.",
    )
    write(results, text, Path(args.output_dir) / "prl_training")


def precision(args, batch_size: int = 256) -> None:
    """Seconds per training step in fp32 and with bf16 autocast, for each model family."""
    models = {
        "SASRec": (ModelConfig(), False),
        "ReaRec-ERL (K = 2, js_mean)": (
            ModelConfig(reasoning_steps=2, reasoning_method="erl", erl_kl_pairs="js_mean"),
            False,
        ),
        "ReaRec-PRL (K = 2, contrastive)": (
            ModelConfig(reasoning_steps=2, reasoning_method="prl", prl_contrastive_similarity="cosine"),
            True,
        ),
        "BERT4Rec (cloze 0.2)": (ModelConfig(backbone="bert4rec", cloze_prob=0.2), False),
    }
    settings = {
        (name, bf16): (config, contrastive, bf16)
        for name, (config, contrastive) in models.items()
        for bf16 in (False, True)
    }
    seconds, setting = training_step_seconds(args, settings, batch_size)
    lines = ["| model | fp32 (s) | bf16 autocast (s) | fp32 / bf16 |", "|---|---:|---:|---:|"]
    for name in models:
        fp32, bf16 = seconds[(name, False)], seconds[(name, True)]
        lines.append(f"| {name} | {fp32:.4f} | {bf16:.4f} | {fp32 / bf16:.2f}x |")
    results = {
        **header(args),
        "setting": setting,
        "seconds": {name: {"fp32": seconds[(name, False)], "bf16": seconds[(name, True)]} for name in models},
    }
    text = report_text(
        "Training precision on CPU: fp32 against bf16 autocast",
        results,
        "\n".join(lines),
        "bf16 autocast (`--mixed_precision bf16`) runs matrix products in bfloat16 while the weights, the "
        "optimizer and evaluation stay fp32. The gain needs a CPU with native bf16 instructions (AVX512-BF16 "
        "or AMX); on others bf16 can be slower. Whether it changes quality is a separate, seed-level "
        "question (benchmarks/quality/tuning_ml100k.md). The rounds are interleaved, so on a shared machine the "
        "ratios hold better than the seconds.",
    )
    write(results, text, Path(args.output_dir) / "precision")


if __name__ == "__main__":
    main()
