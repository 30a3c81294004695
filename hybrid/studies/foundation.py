"""The foundation suite: SASRec training and evaluation speed and peak memory on MovieLens-100k, next to
RecBole's figures for the same settings.

Measured here, in this process: training instances per second over whole epochs (the same train_step the
training loop runs) and evaluation users per second over the 943 test users. Peak memory is the peak RSS of
a separate scripts/train.py process running whole epochs with evaluation, measured by the OS.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from accelerate import Accelerator

from ..build import make_optimizer, use_length_groups
from ..config import DataConfig, ModelConfig, TrainConfig
from ..data import RecDataset, load_dataset, sequence_rows, shard_batches
from ..evaluate import evaluate
from ..model import HybridRecommender
from ..tables import markdown_table
from ..train import step_noise_seed, train_step
from .paths import REPO_ROOT, TRAIN_SCRIPT
from .reports import BenchmarkConfig, header, report_text, write

# RecBole 1.2.1 SASRec on ML-100k, same settings, on this machine kind (figures given in issue 2; not rerun).
RECBOLE_REFERENCE = {
    "epoch_seconds": 104.0,
    "instances_per_second": 930.0,
    "eval_seconds_943_users": 0.41,
    "peak_rss_gb": 1.2,
}
SETTING = (
    "SASRec, ML-100k leave-one-out, hidden 64, inner 256, 2 layers, 2 heads, dropout 0.5, batch 256, max length "
    "50, full-softmax CE"
)
EXPLANATION = (
    "RecBole's figures were measured on this machine kind with the same settings and are quoted, not rerun "
    "side by side; this machine is shared and noisy, so compare ratios within one run where possible. "
    "`--loss_positions all` (plain SASRec only) trains every target of a user's window at once instead of "
    "one (prefix, next item) row per target: the same targets per epoch, with contexts cut at window "
    "starts; its accuracy is in benchmarks/quality/tuning_ml100k.md."
)


def time_training(
    epochs: int, threads: int, loss_positions: str = "last"
) -> tuple[list[float], int, HybridRecommender, RecDataset]:
    """Seconds of each whole training epoch, the number of training rows, the model and the dataset."""
    torch.set_num_threads(threads)
    torch.manual_seed(2020)
    dataset = load_dataset(DataConfig())
    rows = sequence_rows(dataset.train, DataConfig().max_history) if loss_positions == "all" else dataset.train
    model = HybridRecommender(ModelConfig(loss_positions=loss_positions), dataset.num_items)
    model.group_lengths = use_length_groups(TrainConfig().length_groups, dataset.train.history)  # as training
    optimizer = make_optimizer(model, TrainConfig().learning_rate)  # training's optimizer
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


def time_evaluation(model: HybridRecommender, dataset: RecDataset, repeats: int = 7) -> list[float]:
    """Seconds of each full-ranking evaluation of the test users."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        evaluate(model, dataset.test, "test", batch_size=1024)
        seconds.append(time.perf_counter() - started)
    return seconds


def peak_rss_of_training_run(epochs: int, threads: int) -> float:
    """Peak RSS (GB) of a real scripts/train.py process (data, model, epochs with validation, test)."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, str(TRAIN_SCRIPT), "--epochs", str(epochs), "--output_dir", folder + "/run"]
        command += ["--progress", "false", "--num_threads", str(threads)]
        subprocess.run(command, check=True, capture_output=True, cwd=REPO_ROOT)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2  # KiB -> GiB


def foundation_table(results: dict) -> str:
    """Our figures against RecBole's, with the ratios."""
    train, windows, evaluation = results["train"], results["train_loss_positions_all"], results["evaluation"]
    epoch, window_epoch, eval_seconds = (
        train["median_epoch_seconds"],
        windows["median_epoch_seconds"],
        evaluation["median_seconds"],
    )
    users, reference = evaluation["users"], RECBOLE_REFERENCE
    rows = [
        [f"training epoch (s, median of {len(train['epoch_seconds'])})", f"{epoch:.1f}",
         f"{reference['epoch_seconds']:.0f}", f"{reference['epoch_seconds'] / epoch:.2f}x faster"],
        ["training instances / s", f"{train['instances_per_second']:.0f}",
         f"{reference['instances_per_second']:.0f}", ""],
        [f"training epoch with `--loss_positions all` ({windows['windows']} windows; s, median of "
         f"{len(windows['epoch_seconds'])})", f"{window_epoch:.1f}", "",
         f"{epoch / window_epoch:.1f}x faster than the prefix rows"],
        [f"evaluation of {users} test users (s, median of {len(evaluation['seconds'])})", f"{eval_seconds:.3f}",
         f"{reference['eval_seconds_943_users']:.2f}",
         f"{reference['eval_seconds_943_users'] / eval_seconds:.1f}x faster"],
        ["evaluation users / s", f"{evaluation['users_per_second']:.0f}", "", ""],
        ["peak RSS of a training run (GB)", f"{results['peak_rss_gb_training_run']:.2f}",
         f"{reference['peak_rss_gb']:.1f}", ""],
    ]  # fmt: skip
    return markdown_table(["measure", "hybrid-rearec", "RecBole 1.2.1 (reference)", "ratio"], rows, "lrrr")


def report(results: dict) -> str:
    """The suite's Markdown page from its figures."""
    title = "Foundation benchmark: SASRec on MovieLens-100k"
    return report_text(title, results, foundation_table(results), EXPLANATION)


def run(config: BenchmarkConfig) -> dict:
    """Time training (prefix rows and whole windows), evaluation and a training run's peak memory; write
    OUTPUT/foundation.{md,json} and return the figures."""
    epoch_seconds, instances, model, dataset = time_training(config.epochs, config.threads)
    window_epoch_seconds, windows, _, _ = time_training(config.epochs, config.threads, loss_positions="all")
    eval_seconds = time_evaluation(model, dataset)
    peak = peak_rss_of_training_run(config.rss_epochs, config.threads)
    median_epoch, median_eval = statistics.median(epoch_seconds), statistics.median(eval_seconds)
    results = {
        **header(config.threads),
        "setting": SETTING,
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
    write(results, report(results), config.output_dir / "foundation")
    return results
