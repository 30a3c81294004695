"""Training checkpoints: written atomically, rotated, found again and checked before use.

A checkpoint is a folder ``checkpoints/step-000123`` holding accelerate's state (model, optimizer, RNG of
every process) plus ``trainer_state.json`` (epoch, position in the epoch, early-stopping state, log), the
best weights so far, the weight average (``--ema_decay``) and ``run_config.json`` (the run's settings when it
was saved, so a resume with other settings is named as such). It is written under a temporary name and
renamed only when complete, so a crash mid-save never leaves a folder that looks finished;
``trainer_state.json`` is the last file written and marks completeness. Loading never changes a checkpoint.
The weights saved leave out the frozen parameters an item encoder loads by reference (a pretrained LM's own
weights, ``fixed_weight_names``): they never train and come back when the model is built, so a LoRA run's
checkpoint holds megabytes, not the whole LM. Checkpoints that hold them too still load.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import ConfigError

STATE_FILE = "trainer_state.json"
CHECKPOINT_BEST_MODEL = "best_model.safetensors"  # beside accelerate's own model.safetensors (the current weights)
CHECKPOINT_EMA = "weight_average.safetensors"  # the running weight average (--ema_decay)
CHECKPOINT_VALID_RANKS = "best_valid_ranks.safetensors"  # the best epoch's validation ranks (older checkpoints: none)
MODEL_FILE = "model.safetensors"  # accelerate's file of the current weights
RUN_CONFIG = "run_config.json"  # a copy of the run's config.json as it was when the checkpoint was saved
RUN_FILE = "config.json"  # the run folder's settings (hybrid.run_folder.CONFIG), written when training starts
IGNORED_CHANGES = {"data": {"cache_dir"}, "model": set()}  # data and model settings a resume may change
# The training settings that decide the run's path (its updates, draws and model selection); the others (epochs,
# patience, logging, saving, threads, output) may change on resume.
TRAJECTORY = (
    "seed", "batch_size", "learning_rate", "weight_decay", "max_grad_norm", "ema_decay", "gradient_accumulation_steps",
    "split_invariant_dropout", "prl_warmup_epochs", "exclude_history", "softmax_items", "length_groups",
    "select_on",
)  # fmt: skip
OLDER_DEFAULTS = {"select_on": "all"}  # what a checkpoint written before the setting existed ran with
PATTERN = re.compile(r"^step-(\d+)$")
REPLACED = ".replaced-"  # the name's prefix while a new save of the same step replaces it (replace_folder)


@dataclass
class TrainerState:
    """Where training stands: enough to continue exactly where it stopped."""

    epoch: int = 1  # the epoch in progress (1-based)
    batches_done: int = 0  # batches of that epoch already trained
    step: int = 0  # optimizer steps so far
    best_ndcg: float = float("-inf")
    best_epoch: int = 0
    best_valid: dict = field(default_factory=dict)  # EvalResult.to_dict() of the best epoch
    bad_evals: int = 0
    epoch_seconds: list[float] = field(default_factory=list)
    train_log: list[dict] = field(default_factory=list)  # the loss every log_every steps
    epoch_log: list[dict] = field(default_factory=list)  # each epoch's loss, validation NDCG@10 and seconds
    epoch_loss_sum: float = 0.0  # summed loss of the epoch in progress (for its mean)
    epoch_seconds_so_far: float = 0.0  # training seconds of the epoch in progress (its time counts them too)
    data_signature: str | None = None  # RecDataset.signature() of the data trained on (older checkpoints: None)
    text_signature: str | None = None  # RecDataset.text_signature() of its texts, for text encoders (else None)
    fixed_weights_signature: str | None = None  # of the weights it leaves out (a LoRA encoder's LM; else None)
    mixed_precision: str | None = None  # the precision that ran (the config's or accelerate's); older: None


def fixed_weight_names(model: torch.nn.Module) -> set[str]:
    """State-dict names a checkpoint leaves out (``model`` unwrapped): the frozen parameters under the item
    encoder's ``external_state_prefixes``, which the model's builder loads again from the LM's own files."""
    external = tuple(f"item_encoder.{prefix}" for prefix in model.item_encoder.external_state_prefixes)
    return {name for name, p in model.named_parameters() if not p.requires_grad and name.startswith(external)}


def leave_out_fixed_weights(accelerator, model: torch.nn.Module) -> None:
    """Make ``accelerator.save_state`` skip the fixed weights of ``model`` (unwrapped; a wrapper's state-dict
    names carry a ``module.`` prefix)."""
    fixed = fixed_weight_names(model)
    if not fixed:
        return

    def drop(models, weights: list[dict], output_dir) -> None:
        for state in weights:
            for name in [name for name in state if name.removeprefix("module.") in fixed]:
                del state[name]

    accelerator.register_save_state_pre_hook(drop)


def fixed_weights_signature(model: torch.nn.Module) -> str | None:
    """A hash of the fixed weights' names and values (None without any): a resume checks that the LM the model
    was built from now is the one the checkpoint trained on, since the checkpoint does not hold it."""
    fixed = fixed_weight_names(model)
    if not fixed:
        return None
    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(fixed):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype
    return digest.hexdigest()[:16]


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: Path | str) -> None:
    """Load saved ``weights`` into ``model`` (unwrapped), with or without its fixed weights; any other name
    missing or unexpected is an error naming ``source``."""
    check_weight_names(set(model.state_dict()), fixed_weight_names(model), set(weights), source)
    model.load_state_dict(weights, strict=False)


def check_weight_names(expected: set[str], fixed: set[str], saved: set[str], source: Path | str) -> None:
    """Refuse ``saved`` names unless they are the ``expected`` ones, of which only ``fixed`` may be absent."""
    missing, unexpected = expected - saved - fixed, saved - expected
    if missing or unexpected:
        raise ConfigError(
            f"{source} does not hold this model's weights ({len(missing)} missing, e.g. {sorted(missing)[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {sorted(unexpected)[:2]}): it was saved by another model or "
            "is damaged. Resume with the run's own settings from another checkpoint, or start a new run; "
            "nothing was changed."
        )


def checkpoint_step(path: Path) -> int | None:
    """The step of a checkpoint folder named step-N or .replaced-step-N; None for any other name."""
    match = PATTERN.match(path.name.removeprefix(REPLACED))
    return int(match.group(1)) if match else None


def checkpoint_folders(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first. A kill between :func:`replace_folder`'s two renames leaves a
    step's earlier save as .replaced-step-N and no step-N: that folder stands for the step until it is saved again,
    so a resume never finds fewer checkpoints than were published."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [
        p for p in folder.iterdir()
        if checkpoint_step(p) is not None and (p / STATE_FILE).exists()
        and not (p.name.startswith(REPLACED) and (folder / p.name.removeprefix(REPLACED)).exists())
    ]  # fmt: skip
    return sorted(found, key=checkpoint_step)


def save_checkpoint(
    accelerator, run_dir: Path, state: TrainerState, keep: int, extra: dict[str, dict] | None = None
) -> Path:
    """Save on every process (accelerate writes each rank's RNG), publish atomically on the main one.
    ``extra`` maps file names to tensor dicts saved beside the state (e.g. the best model so far)."""
    final = run_dir / "checkpoints" / f"step-{state.step:09d}"
    temporary = run_dir / "checkpoints" / f".incomplete-step-{state.step:09d}"
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for name, tensors in (extra or {}).items():
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, temporary / name)
        if (run_dir / RUN_FILE).exists():
            shutil.copyfile(run_dir / RUN_FILE, temporary / RUN_CONFIG)
        state_path = temporary / STATE_FILE
        state_path.write_text(json.dumps(asdict(state)))
        replace_folder(temporary, final)
        for old in checkpoint_folders(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in (run_dir / "checkpoints").glob(".incomplete-step-*"):  # an earlier save killed midway
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def replace_folder(new: Path, final: Path) -> None:
    """Publish ``new`` as ``final``; a folder already there (the same step saved twice: the last batch's save
    and the epoch's end) is renamed aside to .replaced-NAME first and deleted only after. A kill between the two
    renames leaves only .replaced-NAME, which :func:`checkpoint_folders` counts as the checkpoint: it is kept
    until ``new`` is in place."""
    old = final.with_name(f"{REPLACED}{final.name}")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)  # a leftover of a kill during the last deletion below
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


def set_aside_newer(run_dir: Path, checkpoint: Path) -> Path | None:
    """Resuming from an older checkpoint of ``run_dir`` abandons the checkpoints after it: they move to
    checkpoints/abandoned-TIMESTAMP/, so rotation keeps the new branch's and --resume latest never picks the old
    one's (nothing is deleted). Returns that folder, or None when nothing was newer. Main process only."""
    step = checkpoint_step(checkpoint)
    if step is None or checkpoint.resolve().parent != (run_dir / "checkpoints").resolve():
        return None  # another run's checkpoint: this run's folder has no branch to abandon
    newer = [p for p in checkpoint_folders(run_dir) if checkpoint_step(p) > step]
    if not newer:
        return None
    aside = run_dir / "checkpoints" / f"abandoned-{datetime.now():%Y%m%d-%H%M%S-%f}"
    aside.mkdir()
    for folder in newer:
        os.replace(folder, aside / folder.name.removeprefix(REPLACED))  # a stand-in keeps its step's name there
    return aside


def resolve_checkpoint(run_dir: Path, resume: str) -> Path:
    """``resume`` is 'latest' (the newest complete checkpoint of run_dir) or a checkpoint folder."""
    if resume == "latest":
        found = checkpoint_folders(run_dir)
        if not found:
            raise ConfigError(
                f"--resume latest: no complete checkpoint under {str(run_dir / 'checkpoints')!r}. "
                "Pass the run's --output_dir, or start without --resume."
            )
        return found[-1]
    path = published_or_stand_in(Path(resume))
    if not path.exists() and not path.is_absolute() and (in_run := published_or_stand_in(run_dir / resume)).exists():
        path = in_run  # 'checkpoints/step-N' of the run being continued, from any directory
    if not (path / STATE_FILE).exists():
        raise ConfigError(
            f"--resume {resume!r} is not a complete checkpoint (no {STATE_FILE}, looked for in {str(path)!r}); "
            "use 'latest' or a checkpoints/step-N folder (a relative one starts at --output_dir or here)."
        )
    return path


def published_or_stand_in(path: Path) -> Path:
    """``path``, or its .replaced-NAME when only that is left (a kill while the step was saved again)."""
    if path.exists() or not path.name:  # '.' or '/' has no name to prefix
        return path
    stand_in = path.with_name(f"{REPLACED}{path.name}")
    return stand_in if stand_in.exists() else path


def changed_settings(path: Path, now: dict) -> list[str]:
    """Data and model settings of this run (``now``, as its config.json will hold them) that differ from those
    the checkpoint was trained with, as 'key: then -> now' (none when the checkpoint predates run_config.json)."""
    if not (path / RUN_CONFIG).exists():
        return []
    try:
        then = json.loads((path / RUN_CONFIG).read_text())
    except (OSError, ValueError) as error:  # a damaged settings file is reported like any damaged file
        raise damaged(path, error) from None
    checked = {section: [key for key in then.get(section, {}) if key not in ignored]
               for section, ignored in IGNORED_CHANGES.items()}  # fmt: skip
    then["train"] = {**OLDER_DEFAULTS, **then.get("train", {})}  # a setting added since: its former behaviour
    checked["train"] = [key for key in TRAJECTORY if key in then["train"]]  # older checkpoints: fewer keys
    return [
        f"{key}: {then[section][key]!r} in the checkpoint, {now[section].get(key)!r} now"
        for section, keys in checked.items()
        for key in keys
        if then[section][key] != now.get(section, {}).get(key)
    ]


def check_settings(path: Path, now: dict) -> None:
    """Refuse to resume with other data or model settings than the checkpoint's, naming them and the two ways on."""
    changed = changed_settings(path, now)
    if changed:
        raise ConfigError(
            f"checkpoint {str(path)!r} was trained with other settings than this run's ({'; '.join(changed[:5])}). "
            f"Resume it as trained with `python scripts/train.py --config {path / RUN_CONFIG} --output_dir "
            f"{now.get('train', {}).get('output_dir')} --resume {path}` "
            "(through `accelerate launch` if it ran on several processes), or start fresh with these settings: "
            "another --output_dir, or --overwrite. The checkpoint was not changed."
        )


def check_tensor_files(path: Path) -> None:
    """Open every extra tensor file of a checkpoint (the best weights, the weight average): a damaged one is
    named before anything is loaded."""
    for name in (CHECKPOINT_BEST_MODEL, CHECKPOINT_EMA, CHECKPOINT_VALID_RANKS):
        if not (path / name).exists():
            continue
        try:
            with safe_open(path / name, "pt") as tensors:
                list(tensors.keys())
        except Exception as error:  # safetensors raises its own error types for a damaged header or body
            raise ConfigError(
                f"{path / name} is corrupt or truncated ({type(error).__name__}: {error}). Resume from an older "
                f"checkpoint (--resume {path.parent}/step-N) or start a new run; nothing was changed."
            ) from None


def load_checkpoint(
    accelerator,
    path: Path,
    settings: dict | None = None,
    signatures: dict[str, str | None] | None = None,
    model: torch.nn.Module | None = None,
) -> TrainerState:
    """Restore model, optimizer and RNG; a damaged checkpoint, one trained with other settings than ``settings``
    (the run's {"data", "model", "train"}, when given) or on other data than ``signatures`` (TrainerState's
    ``data_signature``/``text_signature``/``fixed_weights_signature`` as read now, each checked where the
    checkpoint records one) is reported, never half-loaded silently. ``model`` (as prepared by accelerate, when
    given) may lack its fixed weights in the checkpoint: its names are checked as saved before anything loads."""
    if settings is not None:
        check_settings(path, settings)
    check_tensor_files(path)
    try:
        state = TrainerState(**json.loads((path / STATE_FILE).read_text()))
    except Exception as error:  # noqa: BLE001 - an unreadable state: the same report as any damage below
        raise damaged(path, error) from error
    check_signatures(path, state, signatures or {})
    fixed = set()
    if model is not None:  # accelerate saves and loads the unwrapped model (DDP's wrapper adds module.)
        model = accelerator.unwrap_model(model)
        fixed = fixed_weight_names(model)
    try:
        if model is not None:  # names checked as saved; only fixed ones may be missing (then loaded unstrictly)
            with safe_open(path / MODEL_FILE, "pt") as tensors:
                check_weight_names(set(model.state_dict()), fixed, set(tensors.keys()), path / MODEL_FILE)
        accelerator.load_state(str(path), strict=not fixed)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure means this checkpoint cannot be trusted
        if "size mismatch" in str(error):  # a checkpoint saved before run_config.json existed
            raise ConfigError(
                f"checkpoint {str(path)!r} holds weights of other shapes than this model (a model setting such as "
                "hidden_size differs from the one it was trained with). Resume with the run's own settings, or "
                "start fresh: another --output_dir, or --overwrite. The checkpoint was not changed."
            ) from None
        raise damaged(path, error) from error
    return state


def check_signatures(path: Path, state: TrainerState, signatures: dict[str, str | None]) -> None:
    """Refuse a resume on data that changed since the checkpoint: its rows and catalogue, or its item texts."""
    what = {
        "data_signature": "its items, users or rows",
        "text_signature": "the item texts the encoder reads",
        "fixed_weights_signature": "the pretrained LM's weights (the checkpoint leaves them out)",
    }
    for key, now in signatures.items():
        recorded = getattr(state, key)
        if now is not None and recorded is not None and recorded != now:
            raise ConfigError(
                f"checkpoint {str(path)!r} was trained on other data than the dataset holds now ({what[key]} "
                "changed since). Resume with the data it was trained on, or start a new run (another "
                "--output_dir, or --overwrite). If the files did not change, the processed copy in the cache "
                "may be damaged: delete its data/ folder (--cache_dir, default ~/.cache/hybrid-rearec) to rebuild "
                "it. The checkpoint was not changed."
            )


def damaged(path: Path, error: Exception) -> ConfigError:
    return ConfigError(
        f"checkpoint {str(path)!r} is corrupt or incomplete ({type(error).__name__}: {error}). "
        "Resume from an older one under checkpoints/ or start a new run; nothing was changed."
    )
