"""The package itself: its version, and what importing it costs."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import obshub


def test_version_is_the_installed_packages() -> None:
    assert obshub.__version__ == version("obshub")
    from obshub import __version__

    assert __version__ == obshub.__version__


def test_cli_help_does_not_read_package_metadata() -> None:
    """`obshub --help` stays fast: the version is looked up only when asked for (~20 ms)."""
    code = "import sys, obshub.cli; print('importlib.metadata' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
