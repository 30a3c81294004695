"""The import names of release 0.1 (``hybrid``, ``encoders``, ``reasoning``, ``foundation``), on request.

Release 0.1 installed those four generic top-level names; model cards saved then show
``from hybrid.model import HybridRecommender``. The package now installs ``hybrid_rearec`` only (ARCHITECTURE.md,
"Installed names"). Code written for 0.1 runs unchanged after one added line::

    import hybrid_rearec.legacy  # noqa: F401  (before the old imports)
    from hybrid.model import HybridRecommender

Importing this module registers every module of the four subpackages under its old name too (the same module
objects, so classes compare equal). A name that another installed package already provides is left alone and
named in a warning: the alias never shadows someone else's module.
"""

import importlib
import importlib.util
import pkgutil
import sys
import warnings

OLD_NAMES = ("hybrid", "encoders", "reasoning", "foundation")


def _taken_by_another_package(name: str) -> bool:
    """True when ``name`` imports as something other than our own folder (the repository root may be on the path)."""
    if name in sys.modules:
        return not sys.modules[name].__name__.startswith("hybrid_rearec.")
    spec = importlib.util.find_spec(name)
    ours = importlib.util.find_spec(f"hybrid_rearec.{name}")
    return spec is not None and spec.origin != ours.origin


def register_old_names() -> list[str]:
    """Alias ``hybrid_rearec.X...`` as ``X...`` for each old top-level name that is free; returns those aliased."""
    aliased = []
    for old in OLD_NAMES:
        if old not in sys.modules and _taken_by_another_package(old):
            message = f"hybrid_rearec.legacy: another package provides {old!r}; its old name is not aliased"
            warnings.warn(message, stacklevel=2)
            continue
        package = importlib.import_module(f"hybrid_rearec.{old}")
        sys.modules[old] = package
        for module in pkgutil.walk_packages(package.__path__, prefix=f"hybrid_rearec.{old}."):
            sys.modules[module.name.removeprefix("hybrid_rearec.")] = importlib.import_module(module.name)
        aliased.append(old)
    return aliased


register_old_names()
