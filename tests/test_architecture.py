"""The layering of the packages (import-linter contracts in pyproject.toml) and the one installed name."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hybrid", "encoders", "reasoning", "foundation")


def lint_imports(layout: Path) -> subprocess.CompletedProcess:
    """Run the contracts over ``layout/hybrid_rearec`` (first on the path, ahead of the editable install)."""
    script = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"
    environment = {**os.environ, "PYTHONPATH": str(layout)}
    return subprocess.run(
        [sys.executable, "-c", script], cwd=layout, env=environment, capture_output=True, text=True, timeout=300
    )


def installed_layout(tmp_path: Path, copy: bool = False) -> Path:
    """The folders as a wheel installs them (``hybrid_rearec/hybrid``, ...): import-linter walks folders on disk and
    does not see setuptools' package-dir mapping. Links to the repository's folders, or copies to edit."""
    package = tmp_path / "hybrid_rearec"
    package.mkdir()
    shutil.copy(ROOT / "hybrid_rearec" / "__init__.py", package / "__init__.py")
    for name in PACKAGES:
        if copy:
            shutil.copytree(ROOT / name, package / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (package / name).symlink_to(ROOT / name, target_is_directory=True)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_packages_keep_every_import_contract(tmp_path):
    result = lint_imports(installed_layout(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, line, broken",
    [
        ("encoders/id.py", "from ..hybrid import config  # noqa", "Layers"),  # upward: encoders -> hybrid
        ("reasoning/rearec.py", "from ..encoders import base  # noqa", "Layers"),  # sideways
        ("foundation/noise.py", "from ..reasoning import config  # noqa", "Layers"),  # the foundation imports up
        ("hybrid/ranking.py", "from . import model  # noqa", "No import circles"),  # model -> ... -> ranking
    ],
)
def test_an_import_against_the_layers_fails_the_contracts(tmp_path, module, line, broken):
    layout = installed_layout(tmp_path, copy=True)
    path = layout / "hybrid_rearec" / module
    path.write_text(path.read_text() + f"\n{line}\n")
    result = lint_imports(layout)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout


def test_every_package_folder_is_installed_under_the_one_name():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {path.parent for name in PACKAGES for path in (ROOT / name).rglob("__init__.py")}
    expected = {"hybrid_rearec." + ".".join(folder.relative_to(ROOT).parts) for folder in folders}
    assert set(setuptools["packages"]) == expected | {"hybrid_rearec"}
    assert setuptools["package-dir"] == {f"hybrid_rearec.{name}": name for name in PACKAGES}


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=environment, capture_output=True, text=True)


def test_only_hybrid_rearec_is_installed_and_the_old_names_come_on_request(tmp_path):
    plain = run_python("import hybrid", tmp_path)  # outside the repository: the old name is not installed
    assert plain.returncode != 0 and "No module named 'hybrid'" in plain.stderr
    code = (
        "import hybrid_rearec.legacy\n"
        "from hybrid.model import HybridRecommender\n"
        "import hybrid_rearec, reasoning.rearec\n"
        "assert HybridRecommender is hybrid_rearec.HybridRecommender\n"
        "assert reasoning.rearec.__name__ == 'hybrid_rearec.reasoning.rearec'\n"
    )
    legacy = run_python(code, tmp_path)
    assert legacy.returncode == 0, legacy.stderr


def test_the_old_names_never_shadow_another_package(tmp_path):
    (tmp_path / "encoders").mkdir()
    (tmp_path / "encoders" / "__init__.py").write_text("MINE = True\n")
    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import hybrid_rearec.legacy\n"
        "import encoders, hybrid.model\n"
        "assert encoders.MINE and any('encoders' in str(w.message) for w in caught)\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr


def test_the_public_names_load_and_tab_completion_offers_them():
    import hybrid_rearec

    for name in hybrid_rearec.__all__:
        assert name in dir(hybrid_rearec) and getattr(hybrid_rearec, name) is not None
    assert hybrid_rearec.train.__module__ == "hybrid_rearec.hybrid.train"
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        hybrid_rearec.Nope  # noqa: B018
