"""The package itself: its version, what importing it costs, and what its wheel ships."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import obshub

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_the_installed_packages() -> None:
    assert obshub.__version__ == version("obshub")
    from obshub import __version__

    assert __version__ == obshub.__version__


def test_cli_help_does_not_read_package_metadata() -> None:
    """`obshub --help` stays fast: the version is looked up only when asked for (~20 ms)."""
    code = "import sys, obshub.cli; print('importlib.metadata' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_wheel_ships_py_typed_for_every_package(tmp_path: Path) -> None:
    """PEP 561: without `py.typed` in the installed package, a type checker ignores the hub's,
    the agent's and the SDK's annotations (the SDK is imported by users' typed code)."""
    src = tmp_path / "src"  # a copy: building writes build/ and *.egg-info beside pyproject.toml
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in ("obshub", "agents"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("obshub-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert {"obshub/py.typed", "obshub_agent/py.typed", "obshub_sdk/py.typed"} <= names
    assert "obshub/web/templates/base.html" in names  # the package data it already had
