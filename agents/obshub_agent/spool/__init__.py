"""spool/: the bounded, checksummed on-disk queue between reading and shipping."""

from __future__ import annotations

from .disk import Batch, Spool

__all__ = ["Batch", "Spool"]
