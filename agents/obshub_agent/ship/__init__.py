"""ship/: spool -> hub over HTTP (`http.Shipper`)."""

from __future__ import annotations

from .http import Shipper

__all__ = ["Shipper"]
