"""Correlation propagation for ``requests``: a transport adapter, mounted on a Session.

Why an adapter and not a Session subclass: mounting works on sessions the app (or a library it
uses) already built, and ``HTTPAdapter.add_headers`` is requests' documented extension point that
runs for every request just before it is sent, in the caller's thread, so the caller's context is
the one read. Importing this module imports ``requests``; the rest of the SDK does not.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter

from obshub_sdk.propagation import _inject

__all__ = ["CorrelationAdapter", "instrument_session"]


class CorrelationAdapter(HTTPAdapter):
    """``HTTPAdapter`` that adds :func:`obshub_sdk.outgoing_headers` to each request."""

    def __init__(self, *args: Any, baggage: bool | None = None, **kwargs: Any) -> None:
        self._baggage = baggage
        super().__init__(*args, **kwargs)

    def add_headers(self, request: requests.PreparedRequest, **kwargs: Any) -> None:
        super().add_headers(request, **kwargs)
        _inject(request, self._baggage)


def instrument_session(session: requests.Session | None = None, baggage: bool | None = None) -> requests.Session:
    """Mount :class:`CorrelationAdapter` for http:// and https:// on ``session`` (or a new one)."""
    session = session if session is not None else requests.Session()
    adapter = CorrelationAdapter(baggage=baggage)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
