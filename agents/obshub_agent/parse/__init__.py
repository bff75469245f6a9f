"""parse/: lines -> events. Presets and user regexes (`presets`), timestamps, the encoder."""

from __future__ import annotations

from .encode import FileEncoder, service_from_path
from .presets import PRESETS, build_line_parser, header_pattern
from .timestamps import TimestampParser

__all__ = ["PRESETS", "FileEncoder", "TimestampParser", "build_line_parser", "header_pattern", "service_from_path"]
