"""hybrid-rearec: sequential recommendation that thinks before it recommends.

The one import name the package installs. The repository's folders are its subpackages (see ARCHITECTURE.md,
"Installed names"): ``hybrid_rearec.hybrid`` (models, training, evaluation), ``hybrid_rearec.encoders``,
``hybrid_rearec.reasoning`` and ``hybrid_rearec.foundation``. The names below are the public surface::

    from hybrid_rearec import HybridRecommender
    model = HybridRecommender.from_pretrained("runs/demo/rearec-prl/model")

They load on first use, so importing a light subpackage (the foundation, a config) does not import the model.
"""

from importlib import import_module
from pathlib import Path

__version__ = "0.2.0"  # 0.2: the hybrid_rearec package layout (ARCHITECTURE.md, "Installed names")

# Installed (wheel or editable), the subpackages are found through setuptools' mapping. In a source checkout that
# is only on PYTHONPATH (a machine without an install step), they are the folders beside this one.
_checkout = Path(__file__).resolve().parent.parent
if not (Path(__file__).parent / "hybrid").is_dir() and (_checkout / "hybrid" / "__init__.py").is_file():
    if (_checkout / "pyproject.toml").is_file() and 'name = "hybrid-rearec"' in (
        _checkout / "pyproject.toml"
    ).read_text():
        __path__.append(str(_checkout))

_PUBLIC = {
    "HybridRecommender": "hybrid_rearec.hybrid.model",
    "Recommendation": "hybrid_rearec.hybrid.recommend",
    "ModelConfig": "hybrid_rearec.hybrid.config",
    "DataConfig": "hybrid_rearec.hybrid.config",
    "TrainConfig": "hybrid_rearec.hybrid.config",
    "ConfigError": "hybrid_rearec.foundation.errors",
    "DataError": "hybrid_rearec.foundation.errors",
    "ItemCatalogue": "hybrid_rearec.hybrid.recommend",
    "UnknownItemError": "hybrid_rearec.hybrid.recommend",
    "ModelFileError": "hybrid_rearec.hybrid.pretrained",
    "train": "hybrid_rearec.hybrid.train",
}

__all__ = [*_PUBLIC, "__version__"]


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])  # tab completion offers the names that load on first use


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'hybrid_rearec' has no attribute {name!r}")
    return getattr(import_module(_PUBLIC[name]), name)
