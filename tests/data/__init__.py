"""Test data carried by the repository (each set with its licence beside it)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["LOGHUB"]

LOGHUB = Path(__file__).resolve().parent / "loghub"
