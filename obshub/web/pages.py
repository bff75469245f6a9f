"""Pages of the web trace explorer (issue 7 fills this in); `routes` is mounted by app.py."""

from __future__ import annotations

from starlette.routing import BaseRoute

__all__ = ["routes"]

routes: list[BaseRoute] = []
