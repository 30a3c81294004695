"""The layering of the packages, as import-linter contracts (pyproject.toml [tool.importlinter])."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hybrid", "encoders", "reasoning", "foundation")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """Run the contracts over the packages under ``root`` (its own copies come first on the path)."""
    script = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"
    environment = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=environment, capture_output=True, text=True, timeout=300
    )


def copy_of_the_packages(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_packages_keep_every_import_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, line, broken",
    [
        ("encoders/id.py", "import hybrid.config  # noqa", "Layers"),  # upward: encoders -> hybrid
        ("reasoning/rearec.py", "import encoders.base  # noqa", "Layers"),  # sideways: reasoning -> encoders
        ("foundation/noise.py", "import reasoning.config  # noqa", "Layers"),  # the foundation imports up
        ("hybrid/ranking.py", "import hybrid.model  # noqa", "No import circles"),  # model -> ... -> ranking
    ],
)
def test_an_import_against_the_layers_fails_the_contracts(tmp_path, module, line, broken):
    root = copy_of_the_packages(tmp_path)
    path = root / module
    path.write_text(path.read_text() + f"\n{line}\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout
