"""The SDK's public surface is pinned: adding or removing a name is a deliberate API change."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

EXPORTS = {
    "obshub_sdk": [
        "JSONFormatter",
        "bind",
        "bind_user",
        "carry_context",
        "configure",
        "current",
        "outgoing_headers",
        "start_trace",
        "track",
    ],
    "obshub_sdk.asgi": ["CorrelationMiddleware"],
    "obshub_sdk.wsgi": ["CorrelationMiddleware"],
    "obshub_sdk.context": [
        "CORRELATION_KEYS",
        "bind",
        "bind_user",
        "carry_context",
        "current",
        "start_trace",
    ],
    "obshub_sdk.propagation": [
        "httpx_async_event_hooks",
        "httpx_event_hooks",
        "outgoing_headers",
        "parse_traceparent",
        "set_baggage_default",
        "valid_request_id",
    ],
    "obshub_sdk.formatter": ["JSONFormatter"],
    "obshub_sdk.requests_adapter": ["CorrelationAdapter", "instrument_session"],
}


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_exported_names_are_pinned(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(EXPORTS[module])
    for name in mod.__all__:
        assert getattr(mod, name) is not None
        if not name.isupper():
            assert getattr(mod, name).__doc__, f"{module}.{name} has no docstring"


def test_sdk_never_imports_the_hub_or_agent() -> None:
    code = (
        "import sys, obshub_sdk, obshub_sdk.asgi, obshub_sdk.wsgi, obshub_sdk.requests_adapter\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('obshub', 'obshub_agent')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
