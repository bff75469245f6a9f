"""sources/: where lines come from. One source today: tailed files (`file.FileSource`)."""

from __future__ import annotations

from .file import FileSource, file_uid

__all__ = ["FileSource", "file_uid"]
