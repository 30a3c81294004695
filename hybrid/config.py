"""Dataclass configs for data, model and training, with help text and validation.

They are parsed by ``transformers.HfArgumentParser`` from the command line and/or a preset file (JSON or
YAML, flat or sectioned by ``data``/``model``/``train``). Every key is checked: a typo is an error that
suggests the closest known key, never a silently ignored setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import os
import re
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..encoders.config import EncoderConfig
from ..encoders.registry import ENCODER_SETTINGS, ENCODERS
from ..foundation.config import check_choices, component, help_field
from ..foundation.errors import ConfigError
from ..reasoning.config import BackboneConfig, ObjectiveConfig, ReasoningConfig
from .formats import PathError, infer_data_format

Split = Literal["leave_one_out", "global_time", "cold_items"]
NO_TIME = "none"  # time_column for files without timestamps: the rows' order is the time order
DataFormat = Literal["auto", "recbole", "recbole_split", "amazon2023", "rechorus", "csv", "json", "parquet"]
ColdSelection = Literal["newest", "random"]
SPLITS, FORMATS = typing.get_args(Split), typing.get_args(DataFormat)
_help = help_field


TAB_SPELLINGS = ("\\t", "tab")  # --delimiter spellings of a tab (any case)


@dataclass
class DataConfig:
    """Where the interactions come from and how they become training and evaluation rows."""

    dataset: str = _help(
        "Dataset: 'ml-100k' (MovieLens-100k embedded in the recbole package) or a path to a file/folder.",
        "ml-100k",
    )
    data_format: DataFormat = _help(
        f"Format of `dataset`: one of {FORMATS}. 'auto' tells it from the name: .csv/.tsv (the standard "
        "quoted dialect), .parquet, .jsonl/.json (Amazon Reviews 2023 files by their parent_asin field), a "
        "folder of RecBole atomic files, of pre-split benchmark files or of ReChorus files. 'recbole_split': a "
        "folder of pre-split benchmark files as UniSRec publishes them (NAME.train/valid/test.inter with "
        "item_id_list histories, NAME.text + NAME.item2index for texts); their split is kept exactly.",
        "auto",
    )
    item_file: str | None = _help(
        "Item metadata file (texts) for csv/json/parquet/amazon2023 data; recbole and rechorus read it in place "
        "of the NAME.item / item_meta.csv they otherwise find.",
        None,
    )
    user_column: str = _help("Column holding user ids (csv/json/parquet).", "user_id")
    item_column: str = _help("Column holding item ids (csv/json/parquet).", "item_id")
    item_id_column: str | None = _help(
        "Column of the item file holding the item id (csv/json/parquet item files; default: item_column).", None
    )
    time_column: str = _help(
        "Column holding timestamps (numbers such as Unix seconds, or date-times); 'none': the files hold no time "
        "column and their rows are in time order (each user's rows oldest first).",
        "timestamp",
    )
    rating_column: str | None = _help("Column holding ratings; only needed with min_rating.", None)
    item_text_columns: str | None = _help(
        "Comma-separated item-file columns joined into the item text (default: every non-id column).", None
    )
    item_text_template: str | None = _help(
        "Template of the item text over item-file columns, e.g. '{movie_title} ({release_year}). Genres: {class}' "
        "(overrides item_text_columns and the built-in MovieLens/Amazon texts).",
        None,
    )
    delimiter: str | None = _help(
        "Field delimiter of delimited files (default: ',' for .csv, tab for .tsv, recbole and rechorus).", None
    )
    min_rating: float | None = _help("Keep only interactions with rating >= this (e.g. 4 for 'rating > 3').", None)
    k_core: int = _help("Iterative k-core: drop users and items with fewer than k interactions (0 = off).", 0)
    max_history: int = _help("Most recent history items kept per training/evaluation row.", 50)
    split: Split = _help(f"Split protocol: one of {SPLITS}.", "leave_one_out")
    valid_time: float | None = _help("global_time: targets at or after this timestamp are validation.", None)
    test_time: float | None = _help("global_time: targets at or after this timestamp are test.", None)
    cold_fraction: float = _help(
        "cold_items: the fraction of the catalogue's items that are cold (chosen by cold_selection): every "
        "interaction with them leaves the training data (as a target and from histories); validation/test rows "
        "keep their full histories, and their targets may be cold.",
        0.1,
    )
    cold_selection: ColdSelection = _help(
        "cold_items: how the cold items are chosen: 'newest' (the newest cold_fraction of items by first "
        "appearance; needs timestamps) or 'random' (a uniform random cold_fraction of the catalogue drawn with "
        "cold_seed; for data without timestamps, such as data_format 'recbole_split').",
        "newest",
    )
    cold_seed: int = _help(
        "cold_items with cold_selection 'random': seed of the draw of cold items, independent of the training "
        "--seed (runs with several training seeds share one cold set).",
        0,
    )
    cache_dir: str | None = _help(
        "Where processed datasets are cached (default: $HYBRID_REAREC_CACHE or ~/.cache/hybrid-rearec); the "
        "frozen text vectors are cached under $HYBRID_REAREC_CACHE (or ~/.cache/hybrid-rearec) either way.",
        None,
    )

    # Settings that pre-split benchmark files (data_format 'recbole_split') decide themselves, and why.
    PRESPLIT_FIXED: typing.ClassVar[dict[str, str]] = {
        "split": "the files are already split (leave-one-out) and carry no timestamps; only --split cold_items "
        "(with --cold_selection random) changes their rows, taking the cold items out of the training rows",
        "valid_time": "the files are already split and carry no timestamps",
        "test_time": "the files are already split and carry no timestamps",
        "k_core": "filtering would drop published rows, which are kept exactly",
        "min_rating": "the files carry no ratings",
        "item_file": "texts come from NAME.text and NAME.item2index in the dataset folder",
        "user_column": "the columns are fixed by the files' headers (user_id, item_id_list, item_id)",
        "item_column": "the columns are fixed by the files' headers (user_id, item_id_list, item_id)",
        "item_id_column": "texts come from NAME.text and NAME.item2index in the dataset folder",
        "time_column": "the files carry no timestamps (the order in item_id_list is the time order)",
        "rating_column": "the files carry no ratings",
        "item_text_columns": "the item text is NAME.text's text column",
        "item_text_template": "the item text is NAME.text's text column",
        "delimiter": "the files are tab-separated",
    }

    # Settings that other formats' files decide themselves (their readers never read them), and why.
    FORMAT_FIXED: typing.ClassVar[dict[str, dict[str, str]]] = {
        "amazon2023": {
            **dict.fromkeys(
                ("user_column", "item_column", "time_column", "rating_column", "item_id_column"),
                "Amazon Reviews 2023 files name their columns (user_id, parent_asin, rating, timestamp)",
            ),
            "item_text_columns": "the text is the meta record's title, categories, features and description "
            "(--item_text_template picks other fields)",
        },
        "rechorus": dict.fromkeys(
            ("user_column", "item_column", "item_id_column"), "ReChorus files name their columns (user_id, item_id)"
        ),
        "recbole": {"item_id_column": "NAME.item's id column is --item_column, as in NAME.inter"},
    }

    def __post_init__(self):
        check_choices(self)
        if self.delimiter is not None and not isinstance(self.delimiter, str):
            raise ConfigError(f"delimiter must be a string such as ';' or 'tab', got {self.delimiter!r}.")
        if self.delimiter is not None and self.delimiter.lower() in TAB_SPELLINGS:
            self.delimiter = "\t"  # a shell passes '\t' as two characters, and a tab is hard to type
        if self.data_format == "auto":  # resolved once, so a run saves the format it read
            try:
                self.data_format = infer_data_format(self.dataset)
            except PathError as error:  # no format would help
                raise ConfigError(str(error)) from None
            except ValueError as error:
                raise ConfigError(f"{error}. Set --data_format to one of {FORMATS[1:]}.") from None
        if self.max_history < 1:
            raise ConfigError(f"max_history must be >= 1, got {self.max_history}.")
        if self.k_core < 0:
            raise ConfigError(f"k_core must be >= 0 (0 disables it), got {self.k_core}.")
        if self.data_format == "recbole_split":
            self._refuse_presplit_options()
        self._check_cold_options()
        for name in ("valid_time", "test_time"):
            if self.split != "global_time" and getattr(self, name) is not None:
                raise ConfigError(
                    f"{name}={getattr(self, name)!r} applies to split='global_time' only, but split={self.split!r}. "
                    f"Add --split global_time, or leave --{name} unset."
                )
        if self.split == "global_time":
            if self.time_column == NO_TIME:
                raise ConfigError(
                    "split=global_time cuts at timestamps, which time_column='none' says the files lack: use "
                    "--split leave_one_out, or name the time column."
                )
            if self.valid_time is None or self.test_time is None:
                raise ConfigError("split=global_time needs both --valid_time and --test_time (timestamps).")
            if self.valid_time > self.test_time:
                raise ConfigError(f"valid_time ({self.valid_time}) must be <= test_time ({self.test_time}).")

    def _check_cold_options(self) -> None:
        """The cold_items options: meaningful values only, and never set where nothing reads them."""
        if not 0.0 < self.cold_fraction < 1.0:
            raise ConfigError(f"cold_fraction must be in (0, 1), e.g. 0.1; got {self.cold_fraction}.")
        if self.cold_seed < 0:
            raise ConfigError(f"cold_seed must be >= 0, got {self.cold_seed}.")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name in ("cold_fraction", "cold_selection", "cold_seed"):
            if self.split != "cold_items" and getattr(self, name) != defaults[name]:
                raise ConfigError(
                    f"{name}={getattr(self, name)!r} applies to split='cold_items' only, but split={self.split!r}. "
                    f"Add --split cold_items, or leave --{name} at its default ({defaults[name]!r})."
                )
        if self.cold_selection == "newest" and self.cold_seed != defaults["cold_seed"]:
            raise ConfigError(
                f"cold_seed={self.cold_seed} seeds cold_selection='random' only ('newest' draws nothing). "
                "Add --cold_selection random, or leave --cold_seed at 0."
            )
        if self.split == "cold_items" and self.cold_selection == "newest" and self.data_format == "recbole_split":
            raise ConfigError(
                "cold_selection='newest' picks the newest items by first appearance in time, but "
                "data_format='recbole_split' files carry no timestamps. Use --cold_selection random (drawn with "
                "--cold_seed)."
            )

    def refuse_fixed_columns(self) -> None:
        """A column setting this format's reader never reads is refused for a new run (a saved run that set one
        still loads: its reader ignored it then as now)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name, why in self.FORMAT_FIXED.get(self.data_format, {}).items():
            if getattr(self, name) != defaults[name]:
                raise ConfigError(
                    f"{name}={getattr(self, name)!r} does not apply to data_format={self.data_format!r}: {why}. "
                    f"Leave {name} at its default ({defaults[name]!r})."
                )

    def _refuse_presplit_options(self) -> None:
        """Pre-split files fix their rows, columns and texts: a setting that would change them is an error,
        never silently ignored (split='cold_items' is the one change: it takes cold items out of training)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name, why in self.PRESPLIT_FIXED.items():
            if name == "split" and self.split == "cold_items":
                continue
            if getattr(self, name) != defaults[name]:
                raise ConfigError(
                    f"{name}={getattr(self, name)!r} does not apply to data_format='recbole_split': {why}. "
                    f"Leave --{name} at its default ({defaults[name]!r}), or use data_format='recbole' on "
                    "unsplit atomic files."
                )


@dataclass
class ModelConfig(ObjectiveConfig, ReasoningConfig, BackboneConfig, EncoderConfig):
    """The recommender: item encoder + sequence backbone + reasoning head + objective.

    One flat set of keys (the command line, presets and saved models stay flat); each component's own
    settings are ``config.encoder``, ``config.backbone_config``, ``config.reasoning`` and ``config.objective``,
    and each component validates its own fields. Checks across components live here.
    """

    def __post_init__(self):
        check_choices(self)  # the flat fields' own types (16.0 -> 16), before the components copy them
        for part in COMPONENTS:
            component(self, part)  # each component validates its own fields
        if self.loss_positions == "all":
            refused = {
                "backbone": (self.backbone != "sasrec", "BERT4Rec's history is not causal"),
                "item_encoder": (
                    ENCODERS[self.item_encoder].no_all_positions is not None,
                    ENCODERS[self.item_encoder].no_all_positions,
                ),
            }
            for name, (clash, why) in refused.items():
                if clash:
                    raise ConfigError(
                        f"loss_positions='all' trains causal models only, not with {name}={getattr(self, name)!r} "
                        f"({why}). Use loss_positions='last'."
                    )
        if self.loss_chunk_size and self.averages_states and self.erl_kl_weight:
            raise ConfigError(
                "ERL's KL diversity needs every step's full item distribution, which a chunked loss never builds: "
                "set --erl_kl_weight 0, use --reasoning_method prl, or leave --loss_chunk_size unset."
            )

    @property
    def encoder(self) -> EncoderConfig:
        return component(self, EncoderConfig)

    @property
    def backbone_config(self) -> BackboneConfig:
        return component(self, BackboneConfig)

    @property
    def reasoning(self) -> ReasoningConfig:
        return component(self, ReasoningConfig)

    @property
    def objective(self) -> ObjectiveConfig:
        return component(self, ObjectiveConfig)


COMPONENTS = (EncoderConfig, BackboneConfig, ReasoningConfig, ObjectiveConfig)


@dataclass
class TrainConfig:
    """Optimisation, early stopping, evaluation and where the run is written."""

    output_dir: str | None = _help("Run directory (default: runs/<name>-<date>-<time>).", None)
    run_name: str | None = _help(
        "Name of the run: in the console, the model card and the default output_dir. Unset: dataset, item "
        "encoder and method, e.g. 'ml-100k-text-rearec-erl' or 'ml-100k-id-bert4rec'.",
        None,
    )
    overwrite: bool = _help(
        "Start a new run in an output_dir that already holds one: the old run moves to "
        "output_dir/replaced-TIMESTAMP/ (nothing is deleted).",
        False,
    )
    seed: int = _help("Random seed (model init, shuffling, dropout).", 2020)
    epochs: int = _help("Maximum training epochs.", 200)
    patience: int = _help("Stop after this many evaluations without a better validation NDCG@10.", 10)
    batch_size: int = _help(
        "Training targets per global batch (split across processes): prefix rows, or the scored positions of "
        "the one-pass windows (loss_positions 'all').",
        256,
    )
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
    select_on: Literal["all", "warm_targets"] = _help(
        "Validation rows whose NDCG@10 chooses the best epoch and the inference depth: 'all', or 'warm_targets' "
        "(rows whose target has training interactions: on a cold-item split the cold items' validation "
        "interactions then choose nothing; with no cold target the same as 'all').",
        "all",
    )
    gradient_accumulation_steps: int = _help(
        "Split each batch into this many micro-batches (same result, less memory).", 1
    )
    mixed_precision: Literal["no", "bf16", "fp16"] | None = _help(
        "Autocast training to 'bf16' (recent CPUs and GPUs) or 'fp16' (CUDA GPUs), or 'no'; unset: the "
        "`accelerate launch --mixed_precision` setting. Evaluation always scores in fp32.",
        None,
    )
    split_invariant_dropout: bool = _help(
        "Draw dropout masks per row of the global batch, so 1 or N processes and any gradient accumulation "
        "train identically (draws N x the random numbers; off: each process's own RNG).",
        True,
    )
    prl_warmup_epochs: int = _help("PRL: epochs before the contrastive loss starts (0 = from the start).", 2)
    save_every_steps: int = _help("Also checkpoint every this many steps (0 = at each epoch end only).", 0)
    keep_checkpoints: int = _help("Complete checkpoints kept under output_dir/checkpoints (oldest removed).", 2)
    resume: str | None = _help("Resume from 'latest' (in output_dir) or a checkpoints/step-N folder.", None)
    exclude_history: bool = _help("Mask the user's past items when ranking (off in RecBole too).", False)
    softmax_items: Literal["auto", "seen", "all"] = _help(
        "Candidates of the training softmax: 'seen' (items with training interactions; the others do not exist "
        "when the model is trained, so they are neither pushed down as negatives nor fitted), 'all', or 'auto' "
        "('seen' on the cold_items split, 'all' otherwise). Evaluation always ranks every item.",
        "auto",
    )
    length_groups: Literal["auto", "on", "off"] = _help(
        "Encode training rows in groups of similar history length, each only as wide as it "
        "needs: the same loss and gradients as one padded batch, faster where most histories are far shorter "
        "than max_history, slower where they fill it. 'auto': on when the training histories fill less than "
        "half of max_history on average.",
        "auto",
    )
    num_threads: int = _help("CPU threads per process (0 = cores / processes on this machine).", 0)
    log_every: int = _help("Log the training loss every this many steps.", 50)
    report_to: Literal["tensorboard", "none"] = _help("Experiment tracker: 'tensorboard' or 'none'.", "tensorboard")
    progress: bool = _help("Show tqdm progress bars (main process only).", True)

    def __post_init__(self):
        check_choices(self)
        if self.prl_warmup_epochs < 0:
            raise ConfigError(f"prl_warmup_epochs must be >= 0, got {self.prl_warmup_epochs}.")
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
        if not 0 <= self.seed < 2**32:  # numpy's range; set_seed seeds numpy too
            raise ConfigError(f"seed must be in [0, 2**32), got {self.seed}.")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}.")
        for name in ("weight_decay", "save_every_steps", "num_threads"):  # 0 = off / automatic
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ConfigError(
                f"max_grad_norm must be > 0 (e.g. 1.0), or unset to turn clipping off; got {self.max_grad_norm}."
            )
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(
                f"ema_decay must be in (0, 1) (e.g. 0.999), or unset to turn it off; got {self.ema_decay}."
            )
        if self.gradient_accumulation_steps > self.batch_size:
            raise ConfigError("gradient_accumulation_steps cannot exceed batch_size.")
        if self.resume is not None and self.output_dir is None and self.resume == "latest":
            raise ConfigError("--resume latest needs --output_dir (the run to continue).")


def run_name_of(data: DataConfig, model: ModelConfig) -> str:
    """The name of a run nobody named: dataset, item encoder and method, so runs of different models never share
    a title. The method is the backbone ('sasrec', 'bert4rec') and, when it reasons, 'rearec-erl'/'rearec-prl'
    (ReaRec on SASRec, its own backbone, is plain 'rearec-...')."""
    # A built-in name ('ml-100k') is its own name; a path gives its folder's name or its file's without the
    # extension.
    path = Path(data.dataset.rstrip("/\\"))
    dataset = path.name if path.is_dir() else path.stem
    method = [model.backbone] if model.backbone != "sasrec" or model.reasoning_steps == 0 else []
    if model.reasoning_steps > 0:
        method.append(f"rearec-{model.reasoning_method}")
    return "-".join([dataset, model.item_encoder, *method])


def named_run(data: DataConfig, model: ModelConfig, train: TrainConfig) -> TrainConfig:
    """``train`` with its run name set (derived when unset); the caller's config is left as given."""
    if train.run_name is not None:
        return train
    return dataclasses.replace(train, run_name=run_name_of(data, model))


CONFIG_CLASSES = (DataConfig, ModelConfig, TrainConfig)
SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def known_keys() -> dict[str, type]:
    """Every config key and the dataclass it belongs to (keys are unique across the three)."""
    return {f.name: cls for cls in CONFIG_CLASSES for f in dataclasses.fields(cls)}


def not_a_setting(cls: type, key: str) -> ConfigError:
    """A name ``cls`` has no field for: the config that has it, or the closest of its own."""
    owner = known_keys().get(key)
    if owner is not None:
        return ConfigError(f"{key!r} is a {owner.__name__} setting, not a {cls.__name__} one.")
    close = difflib.get_close_matches(key, [f.name for f in dataclasses.fields(cls)], n=1)
    hint = recbole_hint(key) or (f" Did you mean {close[0]!r}?" if close else "")
    return ConfigError(f"{cls.__name__} has no setting {key!r}.{hint}")


@functools.cache
def field_names(cls: type) -> frozenset[str]:
    """A config class's settings (a subclass's own fields too)."""
    return frozenset(f.name for f in dataclasses.fields(cls))


def strict_settings(cls: type) -> None:
    """A typo'd setting is refused with the right name, given to the constructor or set afterwards (Python
    would take ``config.hiden_size = 3`` and ignore it)."""
    init = cls.__init__

    @functools.wraps(init)
    def checked_init(self, *args, **kwargs):
        for key in kwargs:
            if key not in field_names(type(self)):
                raise not_a_setting(type(self), key)
        init(self, *args, **kwargs)

    def checked_setattr(self, key: str, value: Any) -> None:
        if not key.startswith("_") and key not in field_names(type(self)):
            raise not_a_setting(type(self), key)
        object.__setattr__(self, key, value)

    cls.__init__, cls.__setattr__ = checked_init, checked_setattr


for _cls in CONFIG_CLASSES:
    strict_settings(_cls)


# RecBole's names for settings that have another name here (a RecBole user's presets and flags)
RECBOLE_NAMES = {
    "n_layers": "num_layers", "n_heads": "num_heads", "hidden_dropout_prob": "hidden_dropout",
    "attn_dropout_prob": "attention_dropout", "MAX_ITEM_LIST_LENGTH": "max_history",
    "train_batch_size": "batch_size", "stopping_step": "patience", "USER_ID_FIELD": "user_column",
    "ITEM_ID_FIELD": "item_column", "TIME_FIELD": "time_column", "RATING_FIELD": "rating_column",
    "field_separator": "delimiter", "data_path": "dataset", "checkpoint_dir": "output_dir",
    "embedding_size": "hidden_size", "show_progress": "progress", "clip_grad_norm": "max_grad_norm",
}  # fmt: skip
# RecBole's names for what is no setting here, and what does their job
RECBOLE_FIXED = {
    "model": "the model is --backbone (sasrec or bert4rec) with --reasoning_steps K (0: the plain backbone) and "
    "--reasoning_method (erl or prl) for ReaRec",
    "config_files": "a preset is given with --config FILE (JSON or YAML)",
    "valid_metric": "the model is always chosen on validation NDCG@10",
    "eval_step": "validation runs after every epoch",
    "topk": "every evaluation reports Recall, NDCG and MRR at 5, 10, 20 and 50",
    "metrics": "every evaluation reports Recall, NDCG and MRR at 5, 10, 20 and 50",
    "loss_type": "the loss is the full softmax cross-entropy (RecBole's 'CE'); --softmax_items picks its candidates",
    "train_neg_sample_args": "training uses the full softmax (no negative sampling); --softmax_items picks its items",
    "eval_args": "--split picks the split (leave_one_out, global_time or cold_items); evaluation ranks every item",
    "gpu_id": "devices come from accelerate (accelerate launch --gpu_ids 0,1, or CUDA_VISIBLE_DEVICES)",
    "hidden_act": "the feed-forward activation is GELU (erf), RecBole's SASRec default",
    "learner": "the optimizer is AdamW (--learning_rate, --weight_decay)",
}


def recbole_hint(key: str) -> str:
    """' RecBole's 'n_layers' is 'num_layers' here.' for a RecBole name, else ''."""
    if key in RECBOLE_FIXED:
        return f" RecBole's {key!r} has no setting here: {RECBOLE_FIXED[key]}."
    if key not in RECBOLE_NAMES:
        return ""
    ours = RECBOLE_NAMES[key]
    return f" RecBole's {key!r} is {known_keys()[ours].__name__}'s {ours!r} here."


def unknown_key_error(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known_keys(), n=1)
    hint = recbole_hint(key) or (f" Did you mean {close[0]!r}?" if close else " Run with --help for the list of keys.")
    return ConfigError(f"unknown config key {key!r} in {where}.{hint}")


def flatten_preset(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """A preset's sections and top-level keys merged into one {key: value} dict; a key set twice is refused."""
    flat: dict[str, Any] = {}
    where: dict[str, str] = {}  # key -> where the file sets it, for a key set twice
    for key, value in raw.items():
        if key in SECTIONS and isinstance(value, (dict, type(None))):  # None: a YAML section left empty
            entries = [(inner, item, f"section {key!r}") for inner, item in (value or {}).items()]
        elif isinstance(value, dict) and key not in known_keys() and not recbole_hint(key):  # a misspelled section
            close = difflib.get_close_matches(key, SECTIONS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown section {key!r} in {str(path)!r}: the sections are {tuple(SECTIONS)}.{hint}")
        else:
            entries = [(key, value, "the top level")]
        for inner, item, place in entries:
            if inner in flat:  # one would silently win over the other
                raise ConfigError(
                    f"{str(path)!r} sets {inner!r} twice, in {where[inner]} ({flat[inner]!r}) and in {place} "
                    f"({item!r}): keep one."
                )
            flat[inner], where[inner] = item, place
    return flat


def load_preset(path: str | Path) -> dict[str, Any]:
    """Read a preset file into one flat {key: value} dict, rejecting unknown keys."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"config file {str(path)!r} {what}; pass an existing .json or .yaml preset.")
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
    flat = flatten_preset(raw, path)
    keys = known_keys()
    for key in flat:
        if key not in keys:
            raise unknown_key_error(key, str(path))
    return flat


def holds_run_sections(raw: object) -> bool:
    """Whether parsed JSON is a run's config.json as scripts/train.py writes it (its data and train sections)."""
    return isinstance(raw, dict) and {"data", "train"} <= raw.keys()


def to_dict(*configs) -> dict[str, dict[str, Any]]:
    """Sectioned plain dict of resolved configs, as written to a run's config.json."""
    names = {cls: name for name, cls in SECTIONS.items()}
    return {names[type(config)]: dataclasses.asdict(config) for config in configs}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds each key's default to its help. An unset key's help says what unset means, so None is not added;
    a preset's value for such a key is added as the preset's."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        if "(default:" in (action.help or "") and action.default is not argparse.SUPPRESS:
            return f"{action.help} (this preset: %(default)s)"
        return super()._get_help_string(action)


def build_parser(preset: dict[str, Any] | None = None, description: str | None = None):
    """The command line of every config key (what ``--help`` prints), with a preset's values as defaults."""
    from transformers import HfArgumentParser

    # Its own spellings (dashes, --no_ switches) and never abbreviations: `--hidden 32` would be a silent guess.
    parser = HfArgumentParser(
        CONFIG_CLASSES,
        exit_on_error=False,
        allow_abbrev=False,
        usage="%(prog)s [--config PRESET] [--KEY VALUE ...]",
        description=description,
        formatter_class=_HelpFormatter,
    )
    config = parser.add_argument(
        "--config", default=None, metavar="PRESET", help="Preset file (JSON/YAML); command-line values win."
    )
    options = parser._optionals._group_actions  # listed first in --help, right after -h
    options.insert(1, options.pop(options.index(config)))
    if preset:  # before the --no_KEY switches, which would otherwise take a preset's value as theirs
        parser.set_defaults(**preset)
    for action in parser._actions:  # the --no_KEY switches would otherwise repeat KEY's help, with default False
        if isinstance(action, argparse._StoreFalseAction):
            action.help, action.default = f"Same as --{action.dest} false.", argparse.SUPPRESS
    return parser


def check_flags(parser, argv: list[str]) -> None:
    """Refuse a flag the parser does not print in --help, suggesting the key meant."""
    for token in argv:
        if token.startswith("--") and token.split("=", 1)[0] not in parser._option_string_actions:
            raise unknown_key_error(token[2:].split("=", 1)[0], "the command line")


def parse_configs(
    argv: list[str] | None = None, description: str | None = None
) -> tuple[DataConfig, ModelConfig, TrainConfig]:
    """Parse ``--config PRESET`` plus command-line overrides into the three configs (``description`` heads
    ``--help``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    known.config = known.config or resumed_run_config(rest)
    preset = load_preset(known.config) if known.config else {}
    parser = build_parser(preset, description)
    check_flags(parser, rest)
    try:
        data, model, train, _, stray = parser.parse_args_into_dataclasses(args=rest, return_remaining_strings=True)
    except argparse.ArgumentError as error:
        name = (error.argument_name or "").split("/")[0].lstrip("-")  # "--max_history/--max-history": the first
        given = any(token.split("=", 1)[0] in (f"--{name}", f"--{name.replace('_', '-')}") for token in rest)
        where = f" (set in {known.config})" if name in preset and not given else ""
        raise ConfigError(f"{argument_error(error)}{where}") from None
    except ValueError as error:
        raise ConfigError(str(error)) from error
    if stray:
        raise stray_arguments_error(stray)
    return data, model, train


def resumed_run_config(argv: list[str]) -> str | None:
    """When the command line resumes without a ``--config``: ``RUN/config.json`` of ``--output_dir RUN``, else
    the ``run_config.json`` inside the checkpoint folder ``--resume`` names. The run goes on with the settings it
    was trained with (flags given still override them), as a resume must."""
    probe = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    probe.add_argument("--output_dir", "--output-dir", default=None)
    probe.add_argument("--resume", default=None)
    seen, _ = probe.parse_known_args(argv)
    if not seen.resume:
        return None
    candidates = [Path(seen.output_dir) / "config.json"] if seen.output_dir else []
    candidates.append(Path(seen.resume) / "run_config.json")  # checkpoint.RUN_CONFIG ('latest' has none)
    config = next((path for path in candidates if path.is_file()), None)
    if config is None:
        return None
    try:
        sections = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # not readable: the run's own checks name it when training starts
    if not holds_run_sections(sections):
        return None
    print(f"note: resuming with the settings of {config} (flags given override them)", file=sys.stderr)
    return str(config)


def stray_arguments_error(stray: list[str]) -> ConfigError:
    """Words the command line holds outside any --KEY VALUE pair (a preset given without --config, most often)."""
    preset = next((word for word in stray if word.endswith((".json", ".yaml", ".yml"))), None)
    hint = f" Did you mean --config {preset}?" if preset else " Every setting is given as --KEY VALUE (see --help)."
    return ConfigError(f"stray command-line argument(s) {' '.join(stray)!r}: they belong to no setting.{hint}")


def check_configs(data: DataConfig, model: ModelConfig, train: TrainConfig) -> None:
    """What the three configs must agree on, checked where training starts (command line and Python alike):
    their types, one way of setting the depth; settings without effect said in `note:` lines."""
    for config, kind in ((data, DataConfig), (model, ModelConfig), (train, TrainConfig)):
        if not isinstance(config, kind):
            raise TypeError(f"train(data, model, train) takes a {kind.__name__} here, got {type(config).__name__}")
    if not train.resume:  # a saved run that set one goes on as it was trained (its reader ignored it)
        data.refuse_fixed_columns()
    if train.select_inference_steps and model.inference_steps is not None:
        raise ConfigError(
            f"inference_steps={model.inference_steps} sets the reasoning depth by hand and select_inference_steps "
            "chooses it on validation: give one of the two."
        )
    if os.environ.get("RANK", "0") == "0":  # once, under a multi-process launch too
        for note in settings_without_effect(model, train):
            print(f"note: {note}", file=sys.stderr)


REASONING_KEYS = ("inference_steps", "separate_reasoning_norm", "reasoning_dropout", "select_inference_steps")
ERL_KEYS = ("erl_kl_weight", "erl_kl_pairs")
PRL_KEYS = (*(f.name for f in dataclasses.fields(ModelConfig) if f.name.startswith("prl_")), "prl_warmup_epochs")


def settings_without_effect(model: ModelConfig, train: TrainConfig) -> list[str]:
    """Settings given another value than their default that this model never reads (a PRL weight on an ERL
    model, a LoRA rank on an ID model), and a PRL warm-up as long as the run: each said in one line."""
    steps, method = model.reasoning_steps, model.reasoning_method
    method_reason = "reasoning_steps is 0" if steps == 0 else f"reasoning_method is {method!r}"
    groups = (
        (  # every encoder kind's settings but this kind's own: never read
            tuple(key for key in ENCODER_SETTINGS if key not in ENCODERS[model.item_encoder].settings),
            False,
            f"item_encoder is {model.item_encoder!r}",
        ),
        (("cloze_prob", "cloze_weight"), model.backbone == "bert4rec", f"backbone is {model.backbone!r}"),
        (REASONING_KEYS, steps > 0, "reasoning_steps is 0"),
        (ERL_KEYS, steps > 0 and method == "erl", method_reason),
        (PRL_KEYS, steps > 0 and method == "prl", method_reason),
    )
    defaults = {f.name: f.default for config in (model, train) for f in dataclasses.fields(config)}
    value = {**dataclasses.asdict(model), **dataclasses.asdict(train)}
    notes = [
        f"{', '.join(f'{key}={value[key]!r}' for key in changed)} {'has' if len(changed) == 1 else 'have'} no "
        f"effect: {reason}."
        for keys, applies, reason in groups
        for changed in [[key for key in keys if value[key] != defaults[key]]]
        if changed and not applies
    ]
    if steps > 0 and method == "prl" and model.prl_contrastive_weight > 0 and train.prl_warmup_epochs >= train.epochs:
        notes.append(
            f"PRL's contrastive loss starts after prl_warmup_epochs={train.prl_warmup_epochs} epochs and the run "
            f"trains at most epochs={train.epochs}: it never runs. Lower --prl_warmup_epochs to use it."
        )
    return notes


def argument_error(error) -> ConfigError:
    """argparse's complaint about one value, worded like the configs' own checks."""
    choice = re.fullmatch(r"invalid choice: '?(.*?)'? \(choose from (.*)\)", error.message)
    name = (error.argument_name or "").split("/")[0].lstrip("-")  # "--max_history/--max-history": the first
    if choice:
        allowed = tuple(value.strip(" '") for value in choice.group(2).split(","))
        return ConfigError(f"{name}={choice.group(1)!r} is not one of {allowed}.")
    return ConfigError(f"--{name}: {error.message}")
