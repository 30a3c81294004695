"""A trained recommender as a self-contained folder: what `save_pretrained` writes and `from_pretrained` reads.

    config.json               format version, the model config, catalogue size and history length, and a
                              signature of the referenced LM's weights (written last: it marks a whole folder)
    model.safetensors         trainable weights (and small fixed tensors: PCA basis, warm-item mask), nothing
                              frozen: a frozen text model or LM is referenced by name/path, never copied
    catalogue.json            raw ids, texts and titles of items 1..N (recommendations are reported in these)
    text_vectors.safetensors  frozen text vectors of items 1..N ('text' and 'hybrid' encoders)
    adapter/                  the LoRA adapter in peft's own format ('lm_lora')
    README.md                 the model card

Loading is strict: a missing or unexpected weight, a file from another format version or a damaged file is
an error naming the file. Nothing is pickled and loading never writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..encoders.lm_lora import ADAPTER
from ..encoders.registry import encoder_kind
from ..encoders.text import TEXT_VECTORS
from .checkpoint import fixed_weights_signature
from .config import ConfigError, ModelConfig, holds_run_sections
from .recommend import ItemCatalogue

FORMAT_VERSION = 1
CONFIG, WEIGHTS, CATALOGUE = "config.json", "model.safetensors", "catalogue.json"
# Training settings that older versions kept in the model config: ignored when such a model is loaded.
MOVED_TO_TRAINING = ("prl_warmup_epochs",)


class ModelFileError(ValueError):
    """A saved model folder cannot be used: the message names the file and what to do."""


def saved_weight_names(model: torch.nn.Module) -> set[str]:
    """State-dict entries a saved folder holds: everything but frozen parameters and what the item encoder
    keeps outside the weights (a pretrained LM by reference, its LoRA weights in the adapter folder)."""
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    external = tuple(f"item_encoder.{prefix}" for prefix in model.item_encoder.external_state_prefixes)
    return {name for name in model.state_dict() if name not in frozen and not name.startswith(external)}


def write_atomically(path: Path, write) -> None:
    """``write(temporary)``, then the temporary file renamed to ``path``: a kill mid-write leaves the file that
    was there (or none), never a truncated one."""
    temporary = path.with_name(f".{path.name}.incomplete")
    write(temporary)
    os.replace(temporary, path)


ENCODER_FILES = (TEXT_VECTORS, ADAPTER)  # what some item encoders write beside the weights
MODEL_FILES = (CONFIG, WEIGHTS, CATALOGUE, *ENCODER_FILES, "README.md")  # a saved folder, its card included


def save_folder(model: torch.nn.Module, folder: str | Path) -> None:
    """Write the model (a ``HybridRecommender``) (see the module docstring); each file appears whole or not at
    all. Saving over an earlier model first removes its config.json and its encoder's files and writes
    config.json last, so an interrupted save leaves a folder that refuses to load, never a mix of two models."""
    folder = Path(folder)
    refuse_unsaveable(model, folder)
    folder.mkdir(parents=True, exist_ok=True)
    remove_model_files(folder, (CONFIG, *ENCODER_FILES))
    names = saved_weight_names(model)
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k in names}
    write_atomically(folder / WEIGHTS, lambda p: save_file(weights, p, metadata={"format": "pt"}))
    catalogue = json.dumps(model.catalogue.to_dict(), ensure_ascii=False)
    write_atomically(folder / CATALOGUE, lambda p: p.write_text(catalogue, encoding="utf-8"))
    model.item_encoder.save_files(folder)  # frozen text vectors, a LoRA adapter: whatever the encoder needs
    config = {
        "format_version": FORMAT_VERSION,
        "library": "hybrid-rearec",
        "num_items": model.num_items,
        "max_history": model.backbone.max_history,
        "model": dataclasses.asdict(model.config),
        "frozen_weights": fixed_weights_signature(model),  # the pretrained LM the model needs (None: none)
        "results": model.results,  # metrics and training config, shown in the model card
    }
    write_atomically(folder / CONFIG, lambda p: p.write_text(json.dumps(config, indent=2)))


def remove_model_files(folder: Path, names: tuple[str, ...]) -> None:
    """Remove these files (or folders) of a saved model from ``folder``; nothing else of it is touched."""
    for name in names:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def model_files(folder: Path) -> list[Path]:
    """The files of the saved model in ``folder`` (what an upload sends), leaving out anything else there: an
    unfinished write's temporary file, or files of the user's own."""
    found = []
    for name in MODEL_FILES:
        path = folder / name
        if path.is_dir():  # the adapter folder, whole
            found += sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            found.append(path)
    return found


def refuse_unsaveable(model: torch.nn.Module, folder: Path) -> None:
    """What would make a folder that does not load again, or overwrite a run's settings, is refused first."""
    refuse_run_folder(folder)
    if model.catalogue is None:
        raise ValueError("the model has no item catalogue: set model.catalogue = ItemCatalogue(ids, texts) first")
    if len(model.catalogue) != model.num_items:
        raise ValueError(
            f"the catalogue has {len(model.catalogue)} items but the model {model.num_items}: give it one id per item "
            "(ItemCatalogue(ids, texts) in the model's index order) before saving."
        )


def refuse_run_folder(folder: Path) -> None:
    """A training run's folder is not a model folder: saving there would overwrite the run's config.json (its
    data and training settings) with the model's; nor is a folder whose config.json is another program's."""
    config = folder / CONFIG
    kind = config_kind(config) if config.exists() else None
    if kind == "run" or (folder / "checkpoints").is_dir() or (folder / "metrics.json").exists():
        raise ModelFileError(
            f"{folder} holds a training run, not a saved model: saving there would overwrite the run's settings. "
            f"Save into another folder (the run's own model is in {folder / 'model'})."
        )
    if kind == "other" and not (folder / CATALOGUE).exists():  # beside a catalogue: a damaged model's, replaced
        raise ModelFileError(
            f"{config} is not a hybrid-rearec model's (e.g. a transformers model's): saving there would replace "
            "it. Save into another folder."
        )


def config_kind(config: Path) -> str:
    """What wrote a config.json: 'model' (save_pretrained: it has format_version), 'run' (scripts/train.py:
    data and train sections) or 'other' (another program, or not JSON)."""
    try:
        raw = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "other"
    if not isinstance(raw, dict):
        return "other"
    if "format_version" in raw:
        return "model"
    return "run" if holds_run_sections(raw) else "other"


def _read_json(path: Path, what: str) -> dict:
    if not path.exists():
        raise ModelFileError(f"{path} is missing: {what}. Is this a folder written by save_pretrained?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{path} is not valid JSON ({error}); re-save or re-download the model.") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise ModelFileError(f"{path} is missing; re-save or re-download the model.")
    try:
        return load_file(path)
    except Exception as error:  # safetensors raises its own error types for a damaged header or body
        raise ModelFileError(
            f"{path} is corrupt or truncated ({type(error).__name__}: {error}); re-save or re-download it."
        ) from None


def run_folder_given(folder: Path) -> str:
    """What to pass instead of a training run's folder (scripts/train.py saves its model in RUN/model)."""
    saved = folder / "model"
    if (saved / CONFIG).exists():
        return f"{folder} is a training run folder, not a saved model: pass {saved} (the run's best model)."
    return (
        f"{folder} is a training run folder whose model/ is missing: the run did not finish. Continue it with "
        f"`python scripts/train.py --config {folder / CONFIG} --output_dir {folder} --resume latest` (the folder "
        f"named: its config.json may name where it was first trained), then pass {saved}."
    )


def read_config(folder: Path) -> tuple[ModelConfig, dict]:
    raw = _read_json(folder / CONFIG, "it holds the model configuration")
    if not isinstance(raw, dict):
        raise ModelFileError(
            f"{folder / CONFIG} holds no JSON object (a {type(raw).__name__}); re-save or re-download."
        )
    if "format_version" not in raw and holds_run_sections(raw):
        raise ModelFileError(run_folder_given(folder))
    version = raw.get("format_version")
    if version is None:
        raise ModelFileError(
            f"{folder} is not a model folder written by save_pretrained: its config.json has no format_version "
            "(e.g. a transformers or sentence-transformers model's folder). Give a folder that save_pretrained "
            "or scripts/train.py (RUN/model) wrote, or a Hub repo id of one."
        )
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{folder / CONFIG} has format_version {version!r}, but this hybrid-rearec reads version "
            f"{FORMAT_VERSION}: load it with the hybrid-rearec version that saved it, or re-save the model."
        )
    if not isinstance(raw.get("model"), dict):
        raise ModelFileError(f"{folder / CONFIG} has no 'model' settings; re-save or re-download the model.")
    lacking = [key for key in ("num_items", "max_history") if not isinstance(raw.get(key), int)]
    if lacking:
        raise ModelFileError(f"{folder / CONFIG} lacks the integer(s) {lacking}; re-save or re-download the model.")
    model = {key: value for key, value in raw["model"].items() if key not in MOVED_TO_TRAINING}
    unknown = sorted(model.keys() - {f.name for f in dataclasses.fields(ModelConfig)})
    if unknown:  # a key this version does not know
        raise ModelFileError(
            f"{folder / CONFIG} does not fit this hybrid-rearec version (unknown settings {unknown[:5]}); load it "
            "with the version that saved it."
        )
    try:
        config = ModelConfig(**model)
    except ConfigError as error:
        raise ModelFileError(f"{folder / CONFIG} holds an invalid model config: {error}") from None
    return config, raw


def check_files(folder: Path) -> None:
    """The folder's config, catalogue and weights read whole (a damaged file is named), without building the
    model: its encoder may need a base LM that is not on this machine (push_to_hub uploads it as it is)."""
    read_config(folder)
    read_catalogue(folder)
    _read_tensors(folder / WEIGHTS)


def read_catalogue(folder: Path) -> ItemCatalogue:
    """The saved catalogue; a damaged one (keys missing, repeated ids, lists of different lengths) is an error
    naming the file."""
    entries = _read_json(folder / CATALOGUE, "it lists the items the model recommends")
    try:
        return ItemCatalogue(entries["item_ids"], entries["item_texts"], entries.get("item_titles"))
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(
            f"{folder / CATALOGUE} is damaged ({type(error).__name__}: {error}); re-save or re-download the model."
        ) from None


HUB_ARGUMENTS = ("revision", "cache_dir", "force_download", "token", "local_files_only", "map_location")
PRETRAINED_SETTINGS = ("text_model", "lm_model")  # where a saved model's pretrained model is now (from_pretrained)


def model_folder_or_download(name_or_path: str | Path, **download) -> Path:
    """A local folder as it is, else a Hub repo downloaded with huggingface_hub's ``snapshot_download``
    (``download``: its revision, cache_dir, force_download, token, local_files_only)."""
    folder = Path(name_or_path)
    if folder.is_dir():
        return folder
    if folder.is_file():
        raise ModelFileError(f"{str(folder)!r} is a file: give the folder that holds it ({str(folder.parent)!r}).")
    if folder.is_absolute() or str(name_or_path).startswith((".", "~")) or str(name_or_path).count("/") > 1:
        raise ModelFileError(  # no Hub id has these forms: say what is missing, not why a download failed
            f"no folder {str(folder)!r} (looked for from {os.getcwd()!r}); give a folder written by save_pretrained "
            "(a run's model/) or a Hub repo id such as 'user/model'."
        )
    import huggingface_hub

    name = str(name_or_path)
    try:
        return Path(huggingface_hub.snapshot_download(name, **download))
    except Exception as error:  # offline, unknown repo, no access: one clear message
        raise ModelFileError(
            f"{name!r} is neither a local folder nor a Hub repo that could be downloaded "
            f"({type(error).__name__}: {error}). Check the path, the repo id, your network and HF_TOKEN."
        ) from None


def load_folder(cls: type[torch.nn.Module], folder: str | Path, pretrained: dict | None = None) -> torch.nn.Module:
    """Rebuild a model of class ``cls`` (``HybridRecommender``) saved by :func:`save_folder`, strictly; in eval
    mode. ``pretrained``: where the pretrained model the encoder references is now ({"lm_model": path}),
    in place of the saved name; it must hold the weights the model was trained on."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFileError(f"{folder} is not a folder; give a folder written by save_pretrained or a Hub repo id.")
    config, raw = read_config(folder)
    if pretrained:
        config = relocated(config, pretrained)
    catalogue = read_catalogue(folder)
    if len(catalogue) != raw["num_items"]:
        raise ModelFileError(f"{folder / CATALOGUE} lists {len(catalogue)} items, {folder / CONFIG} {raw['num_items']}")
    text_vectors = None
    if encoder_kind(config.encoder).needs_text_vectors:
        text_vectors = _read_tensors(folder / TEXT_VECTORS).get("text_vectors")
        if text_vectors is None or text_vectors.shape[0] != len(catalogue):
            raise ModelFileError(f"{folder / TEXT_VECTORS} does not hold one text vector per catalogue item.")
    weights = _read_tensors(folder / WEIGHTS)
    model = cls(config, len(catalogue), raw["max_history"], text_vectors=text_vectors, item_texts=catalogue.item_texts)
    expected = saved_weight_names(model)
    missing, unexpected = sorted(expected - weights.keys()), sorted(weights.keys() - expected)
    if missing or unexpected:
        raise ModelFileError(
            f"{folder / WEIGHTS} does not fit {folder / CONFIG}: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}; the two files come from different models."
        )
    try:
        model.load_state_dict(weights, strict=False)  # strict on the saved names, checked above
    except RuntimeError as error:  # a shape that differs from the config
        raise ModelFileError(f"{folder / WEIGHTS} does not fit {folder / CONFIG}: {error}") from None
    check_frozen_weights(model, raw.get("frozen_weights"), folder)
    try:
        model.item_encoder.load_files(folder)  # e.g. a LoRA adapter folder
    except Exception as error:
        raise ModelFileError(
            f"the item encoder's files in {folder} cannot be loaded ({error}); re-save or re-download the model."
        ) from None
    model.catalogue, model.results = catalogue, raw.get("results")
    return model.eval()


def relocated(config: ModelConfig, pretrained: dict) -> ModelConfig:
    """``config`` with its encoder's pretrained model named where it is now (``pretrained``: that one setting)."""
    setting = encoder_kind(config.encoder).frozen_model
    other = sorted(pretrained.keys() - {setting})
    if other:
        uses = f"uses {setting}" if setting else "uses no pretrained model"
        raise TypeError(f"this model's {config.item_encoder!r} item encoder {uses}; {other} cannot be set")
    return dataclasses.replace(config, **pretrained)


def check_frozen_weights(model: torch.nn.Module, saved: str | None, folder: Path) -> None:
    """The pretrained LM a model was trained on is referenced, not saved: one with other weights under the same
    name (a moved folder, a Hub model changed since) would score differently without any error, so refused."""
    if saved is None:  # nothing frozen, or saved before the signature was kept
        return
    found = fixed_weights_signature(model)
    if found != saved:
        setting = encoder_kind(model.config.encoder).frozen_model
        raise ModelFileError(
            f"the {setting} {getattr(model.config, setting)!r} does not hold the weights {folder} was trained on "
            f"(signature {found}, saved {saved}): give the model it was trained on, e.g. "
            f"HybridRecommender.from_pretrained({str(folder)!r}, {setting}='path/to/that/model')."
        )
