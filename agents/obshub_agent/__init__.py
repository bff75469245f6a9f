"""obshub_agent: the per-host daemon that tails log files and ships them to the hub.

Data flows one way: sources/ (file tailing) -> parse/ (lines -> events) -> spool/ (bounded,
checksummed disk queue) -> ship/ (HTTP to the hub). Stdlib only, with orjson and zstandard used
when installed. Never imports the hub (`obshub`) or the SDK.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
