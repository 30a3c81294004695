"""A training run's folder: what training writes there, and how every tool reads the trained model back.

    config.json              the resolved configs, written when training starts
    checkpoints/step-N/      resumable training state (hybrid.checkpoint)
    valid_ranks.safetensors  per-row validation ranks of the best epoch so far
    model/                   the best model, as save_pretrained writes it (hybrid.pretrained)
    ranks.safetensors        per-row validation and test ranks of the saved model
    metrics.json             validation and test metrics, protocol, training log
    .lock                    held by the training process while it runs (one run per folder at a time)

``model/`` is the run's one model format: evaluation, analysis, reload checks, recommending and the Hub
upload all read it with ``HybridRecommender.from_pretrained``. It is written when training ends, so a run
folder without it holds a run that has not finished.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from safetensors.torch import save_file

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; two runs in one folder are then the user's to avoid
    fcntl = None

from .checkpoint import STATE_FILE, checkpoint_folders
from .config import DataConfig, TrainConfig, holds_run_sections
from .data import RecDataset, load_dataset
from .errors import ConfigError, DataError
from .formats import BUILTIN_DATASETS
from .model import HybridRecommender
from .pretrained import CATALOGUE, ModelFileError, config_kind, write_atomically
from .recommend import ItemCatalogue
from .seed_runs import read_run_json

CONFIG, METRICS, MODEL, CHECKPOINTS = "config.json", "metrics.json", "model", "checkpoints"
VALID_RANKS, RANKS = "valid_ranks.safetensors", "ranks.safetensors"
RUN_FILES = (CONFIG, METRICS, MODEL, VALID_RANKS, RANKS, CHECKPOINTS)
RESULT_FILES = (METRICS, MODEL, RANKS)  # what a finished run adds: set aside when it is trained further
EXTRA_RUN_FILES = ("tensorboard", "analysis")  # written beside a run; set aside with it by --overwrite
LOCK = ".lock"


def resolve_output_dir(config: TrainConfig) -> Path:
    """The run folder, the same on every process; refuses to mix two runs in one folder. A run already there
    is set aside by :func:`take_output_dir` only once the new run's data and model are built."""
    name = [config.output_dir or f"runs/{config.run_name}-{datetime.now():%Y%m%d-%H%M%S}"]
    broadcast_object_list(name)  # the main process's timestamp wins
    folder = Path(name[0])
    existing = [f for f in RUN_FILES if (folder / f).exists()]
    busy = [bool(existing) and PartialState().is_main_process and in_use(folder)]  # only one process may try it
    broadcast_object_list(busy)
    if busy[0]:  # said before the advice below, which the lock would then refuse
        raise ConfigError(busy_message(folder))
    if (folder / CATALOGUE).exists() or (existing == [CONFIG] and not is_run_config(folder / CONFIG)):
        raise ConfigError(  # a saved model, a Hub snapshot, another project: never set aside as a run
            f"output_dir {str(folder)!r} holds a config.json that is no training run's"
            f"{' (a saved model folder)' if (folder / CATALOGUE).exists() else ''}: choose another --output_dir."
        )
    restartable = existing and stopped_before_first_checkpoint(folder, existing)
    if existing and not (config.overwrite or config.resume or restartable):
        raise ConfigError(
            f"output_dir {str(folder)!r} already holds a run ({', '.join(existing)}). "
            "Choose another --output_dir, pass --resume latest to continue it, or --overwrite to replace it (from "
            "Python: TrainConfig(resume='latest') or TrainConfig(overwrite=True))."
        )
    return folder


def take_output_dir(folder: Path, config: TrainConfig) -> None:
    """A new run's folder, emptied of the run before it (--overwrite, or a run that stopped before its first
    checkpoint): that run moves to folder/replaced-TIMESTAMP/. Called once the new run is built, so a bad
    setting or data file leaves the old run where it was."""
    kept = RESULT_FILES if config.resume else RUN_FILES  # a resumed run keeps its settings and checkpoints
    found = [[f for f in kept if (folder / f).exists()]]
    broadcast_object_list(found)  # the main process's view: another one may look after it wrote config.json
    existing = found[0]
    if not existing:
        return
    if config.resume:  # training a finished run further: its results stay whole beside the new ones
        if PartialState().is_main_process:
            print(f"output_dir {str(folder)!r} holds a finished run: its results move aside as training goes on.")
        set_aside(folder, existing, str(folder), extras=("analysis",))
        return
    if not config.overwrite and PartialState().is_main_process:
        print(f"output_dir {str(folder)!r} holds a run that stopped before its first checkpoint: starting it again.")
    set_aside(folder, existing, str(folder))


def busy_message(folder: Path) -> str:
    return (
        f"another training process is running in {str(folder)!r} (it holds {folder / LOCK}). Wait for it to end "
        "or stop it, or choose another --output_dir; nothing in the folder was changed."
    )


def in_use(folder: Path) -> bool:
    """Whether a training process holds folder's lock now (tried without waiting, and let go at once)."""
    if fcntl is None or not (folder / LOCK).exists():
        return False
    try:
        with (folder / LOCK).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # closing the file lets it go again
    except BlockingIOError:
        return True
    except OSError:  # a folder this user may not write to: run_lock says so
        return False
    return False


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """One training process per run folder: a second one (the same command started twice, two seed queues on
    one folder) is refused before it can set aside or write over the run in progress. The main process holds
    an flock on folder/.lock, which the system drops when the process ends, however it ends."""
    state = PartialState()
    handle, created, refused = None, not folder.exists(), None
    if state.is_main_process and fcntl is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = (folder / LOCK).open("a")
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            handle, refused = None, busy_message(folder)
        except OSError as error:  # a folder this user may not write to
            handle, refused = (
                None,
                (
                    f"cannot write in output_dir {str(folder)!r} ({error.strerror or error}): choose a folder you can "
                    "write to with --output_dir."
                ),
            )
    said = [refused]
    broadcast_object_list(said)  # every process stops if the main one could not take the folder
    if said[0]:
        raise ConfigError(said[0])
    try:
        yield
    finally:
        if handle is not None:
            handle.close()  # releases the lock
            if created and [p.name for p in folder.iterdir()] == [LOCK]:  # a run refused before it wrote anything
                (folder / LOCK).unlink()
                folder.rmdir()


def is_run_config(path: Path) -> bool:
    """Whether path is a run's config.json (its data and train sections), as scripts/train.py writes it."""
    try:
        sections = json.loads(path.read_text())
    except (OSError, ValueError):  # damaged: a run's that stopped while writing it, as far as can be told
        return True
    return holds_run_sections(sections)


def stopped_before_first_checkpoint(folder: Path, existing: list[str]) -> bool:
    """A run folder with settings but no complete checkpoint, model or metrics: nothing there can be resumed."""
    return not checkpoint_folders(folder) and not {METRICS, MODEL, RANKS} & set(existing)


def set_aside(folder: Path, existing: list[str], agreed: str, extras: tuple[str, ...] = EXTRA_RUN_FILES) -> None:
    """The run already in ``folder`` (its ``existing`` run files and ``extras``) moves to
    folder/replaced-TIMESTAMP/, so the new run starts in an empty folder (a later --resume latest can never pick
    up the old run's checkpoints) and nothing is deleted. The main process moves; the others wait for it."""
    state = PartialState()
    if state.is_main_process:
        aside = folder / f"replaced-{datetime.now():%Y%m%d-%H%M%S-%f}"
        aside.mkdir()
        for entry in [*existing, *(f for f in extras if (folder / f).exists())]:
            os.replace(folder / entry, aside / entry)
        print(f"the run that was in {agreed} moved to {aside}")
    state.wait_for_everyone()


def save_atomically(tensors: dict[str, torch.Tensor], path: Path) -> None:
    write_atomically(path, lambda p: save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, p))


def model_folder(path: str | Path) -> Path:
    """The saved model of a run folder (RUN/model), or ``path`` itself when it is a saved model folder."""
    path = Path(path)
    if (path / MODEL / CONFIG).exists():
        return path / MODEL
    if (path / CATALOGUE).exists():  # written by save_pretrained (a run folder has no catalogue)
        return path
    if (path / CONFIG).exists() and config_kind(path / CONFIG) == "other" and not (path / CHECKPOINTS).is_dir():
        raise ModelFileError(
            f"{path} is neither a run folder nor a model folder written by save_pretrained (its config.json is "
            "another program's, e.g. a transformers model's): give a run folder (runs/NAME) or its model/ folder."
        )
    if (path / CONFIG).exists():
        how = (
            f"continue it from its last checkpoint with `python scripts/train.py --config {path / CONFIG} "
            f"--output_dir {path} --resume latest` (through `accelerate launch` as before if it ran on several "
            "processes)"
            if (path / CHECKPOINTS).is_dir()
            else "it has no checkpoint to continue from either: train it again"
        )
        raise ModelFileError(
            f"{path} holds a run that did not finish: {path / MODEL} (the best model, saved when training "
            f"ends) is missing; {how}."
        )
    what = "is neither a run folder nor a model folder written by save_pretrained" if path.is_dir() else "is no folder"
    raise ModelFileError(f"{path} {what}: give a run folder (runs/NAME) or its model/ folder.")


def load_model(path: str | Path) -> HybridRecommender:
    """The model of a run folder or a saved model folder, or of a Hub repo id; in eval mode."""
    local = Path(path).is_dir()
    return HybridRecommender.from_pretrained(model_folder(path) if local else path).eval()


def run_user_histories(run_dir: str | Path, model: HybridRecommender) -> Callable[[str], list[str]] | None:
    """For a run folder: a user id -> that user's whole history in the run's data (read on the first call, said
    on stderr), as ``recommend.py`` answers {"user": ...}. None for a saved model or Hub repo (no data)."""
    run = Path(run_dir)
    if not (run / CONFIG).exists() or config_kind(run / CONFIG) != "run":
        return None
    histories: dict[str, list[str]] = {}

    def history(user: str) -> list[str]:
        if not histories:
            print(f"note: reading the data of {run} for the users' histories", file=sys.stderr)
            data_config, _ = run_configs(run)
            # no catalogue check: the histories are ids, and items added since (add_items) are not in the data
            histories.update(run_dataset(run, data_config).user_histories())
        if user not in histories:
            example = next(iter(histories), None)
            raise DataError(
                f"user {user!r} is not in the run's data (users with a training or evaluation row, e.g. "
                f'{example!r}); give the user\'s "history" instead'
            )
        return histories[user]

    return history


def model_folder_given(folder: Path) -> str:
    """What to pass instead of a saved model folder where a run folder (with its data config) is needed."""
    run = folder.absolute().parent
    if (run / CONFIG).exists() and folder.name == MODEL:
        return f"{folder} is a saved model folder; this needs the run that trained it: pass the run folder {run}."
    return (
        f"{folder} is a saved model folder, which holds no data config (the data to evaluate on): pass the run "
        "folder scripts/train.py wrote, or evaluate the model in Python with hybrid_rearec.hybrid.evaluate.evaluate."
    )


def run_dataset(
    run_dir: str | Path,
    data_config: DataConfig,
    catalogue: ItemCatalogue | None = None,
    dataset: str | None = None,
    item_file: str | None = None,
) -> RecDataset:
    """The data the run in ``run_dir`` was trained on, read with ``data_config``, or at ``dataset`` /
    ``item_file`` (their paths, when the run's own no longer resolve from here). A failure names the paths the
    run read; data whose items are not the model's ``catalogue`` is refused (its scores would go to other
    items); rows other than the run's are reported on stderr (its figures are then not the run's)."""
    paths = {"dataset": dataset, "item_file": item_file}
    paths |= from_launch_dir(Path(run_dir), data_config, dataset, item_file)
    try:
        loaded = load_dataset(dataclasses.replace(data_config, **{k: v for k, v in paths.items() if v}))
    except ValueError as error:  # a DataError or ConfigError naming the problem
        raise DataError(f"{error}{moved_data_hint(data_config, paths)}") from None
    renumbered = catalogue is not None and loaded.item_ids != catalogue.item_ids
    if renumbered:
        loaded = renumber(loaded, catalogue, data_config, dataset or data_config.dataset)
    trained = trained_signature(Path(run_dir))
    if trained is not None and not renumbered and trained != loaded.signature():
        print(
            "warning: the data read now has other users or rows than the run was trained on (its checkpoints "
            "record another signature), though the same items: the figures below are not the run's own.",
            file=sys.stderr,
        )
    return loaded


def renumber(loaded: RecDataset, catalogue: ItemCatalogue, data_config: DataConfig, where: str) -> RecDataset:
    """Data holding the model's items numbered in another order (items are numbered by first appearance),
    renumbered to the catalogue; other items, or a cold-item split (whose cold items follow the numbering), are
    refused."""
    if sorted(loaded.item_ids) != sorted(catalogue.item_ids):
        raise DataError(other_catalogue(loaded.item_ids, catalogue.item_ids, where))
    if data_config.split == "cold_items":
        raise DataError(
            f"the data at {where!r} numbers the model's items in another order, and a cold_items split picks its "
            "cold items by that order, so its split would not be the run's: evaluate on the run's own files."
        )
    print("note: the data numbers the model's items in another order (items are numbered by first appearance): "
          "renumbered to the model's catalogue. Its figures are the run's only if it holds the run's rows.",
          file=sys.stderr)  # fmt: skip
    return loaded.renumbered(catalogue.item_ids)


def from_launch_dir(
    run_dir: Path, data_config: DataConfig, dataset: str | None, item_file: str | None
) -> dict[str, str]:
    """The run's relative data paths that do not resolve from here but do from the folder it was launched in
    (metrics.json's launch_dir), each said on stderr: {key: path}."""
    try:
        launch = read_run_json(run_dir / METRICS).get("launch_dir")
    except DataError:  # no or a damaged metrics.json: the run's paths as given
        launch = None
    found = {}
    for key, given in (("dataset", dataset), ("item_file", item_file)):
        path = getattr(data_config, key)
        if launch is None or given or not path or path in BUILTIN_DATASETS or Path(path).is_absolute():
            continue
        if not Path(path).exists() and (Path(launch) / path).exists():
            found[key] = str(Path(launch) / path)
            print(f"note: reading --{key} {found[key]} (the run's {path!r}, from the folder it was trained in)",
                  file=sys.stderr)  # fmt: skip
    return found


def moved_data_hint(data_config: DataConfig, given: dict[str, str | None]) -> str:
    """What to pass when the run's data paths (those not given anew) do not resolve from here, and what data
    given anew must be."""
    fmt = data_config.data_format
    anew = (
        f" The data given anew must be the run's own, in its format (data_format {fmt!r})."
        if any(given.values())
        else ""
    )
    missing = [key for key in ("dataset", "item_file") if getattr(data_config, key) and not given[key]]
    if not missing:
        return anew
    read = " and ".join(f"--{key} {getattr(data_config, key)!r}" for key in missing)
    paths = "its path" if len(missing) == 1 else "their paths"
    flags = " and ".join(f"--{key} PATH" for key in missing)
    return f" The run read {read} ({fmt!r} files): if the data moved, give {paths} with {flags}.{anew}"


def other_catalogue(found: list[str], trained: list[str], where: str) -> str:
    """Which items of the data read and of the model's catalogue the other lacks."""
    extra, missing = sorted(set(found) - set(trained)), sorted(set(trained) - set(found))
    sides = ((missing, "of the model's items are not in it"), (extra, "of its items are not in the model"))
    differ = [f"{len(ids)} {what} (e.g. {ids[0]!r})" for ids, what in sides if ids]
    return (
        f"the data at {where!r} is not the data this model was trained on: it has {len(found)} items, the "
        f"model's catalogue {len(trained)}; {' and '.join(differ)}, so the model cannot score it. Evaluate on the "
        "run's own data (--dataset PATH, --item_file PATH: the files it was trained with)."
    )


def trained_signature(run_dir: Path) -> str | None:
    """RecDataset.signature() of the data the run was trained on, as its newest checkpoint records it."""
    found = checkpoint_folders(run_dir)
    if not found:
        return None
    try:
        return json.loads((found[-1] / STATE_FILE).read_text()).get("data_signature")
    except (OSError, ValueError):  # a damaged checkpoint says nothing here; resuming from it reports it
        return None


def not_a_run(folder: Path, config: Path) -> str:
    """Why ``folder`` (whose ``config`` holds no run's settings) is not a run folder, and what to pass."""
    if not config.exists() and any((seed / CONFIG).exists() for seed in folder.glob("seed-*")):
        return (
            f"{str(folder)!r} is a seed study (scripts/seeds.py), not one run: pass one of its seed-N folders, or "
            f"compare its seeds with scripts/compare.py --seed_groups {folder} OTHER."
        )
    what = "holds no config.json" if not config.exists() else f"has a {CONFIG} that is not a run's"
    return f"{str(folder)!r} {what}: give a run folder written by scripts/train.py (runs/NAME)."


def run_configs(run_dir: str | Path) -> tuple[DataConfig, TrainConfig]:
    """The data and training configs a run was trained with (its model's config is in model/)."""
    path = Path(run_dir) / CONFIG
    if not Path(run_dir).is_dir():
        raise ModelFileError(f"no folder {str(run_dir)!r}: give a run folder written by scripts/train.py (runs/NAME).")
    try:
        sections = read_run_json(path) if path.exists() else {}
    except DataError as error:  # a damaged file: named, as a file of the run's
        raise ModelFileError(str(error)) from None
    if not holds_run_sections(sections):
        if (Path(run_dir) / CATALOGUE).exists():
            raise ModelFileError(model_folder_given(Path(run_dir)))
        raise ModelFileError(not_a_run(Path(run_dir), path))
    try:
        return DataConfig(**sections["data"]), TrainConfig(**sections["train"])
    except (TypeError, ValueError) as error:  # a damaged or hand-edited file: its settings do not load
        raise ModelFileError(f"{path} holds settings that do not load ({error}): restore it.") from None
